"""Non-finite guard: bad steps are skipped and counted; K in a row stop the run."""

import numpy as np
import pytest

from configs import toy as toy_config
from tapkit.train import checkpoint as ckpt_lib
from tapkit.train import loop, toy_task as toy, writers


def _config(**toy_overrides):
  config = toy_config.get_config('smoke')
  config.checkpoint.async_save = False
  for k, v in toy_overrides.items():
    config.toy[k] = v
  return config


def test_nan_steps_are_skipped_and_counted(tmp_path):
  config = _config(nan_steps=(3, 4, 11))
  state = loop.train(config, tmp_path, toy.build_method(config))
  assert int(state.step) == 20
  assert int(state.skipped_steps) == 3
  assert int(state.consecutive_bad) == 0
  rows = {r['step']: r for r in writers.read_jsonl(tmp_path / 'metrics.jsonl')
          if 'train/loss' in r}
  # Step s (1-based in the log) ran with state.step == s - 1.
  assert rows[4]['train/skipped_steps'] == 1 and rows[5]['train/skipped_steps'] == 2
  assert rows[5]['train/consecutive_bad'] == 2
  assert rows[12]['train/skipped_steps'] == 3 and rows[13]['train/consecutive_bad'] == 0
  assert np.isnan(rows[4]['train/loss'])  # Log window of one masked step: 0/0.
  assert np.isfinite(rows[6]['train/loss'])
  for leaf in np.concatenate([np.ravel(x) for x in _leaves(state.params)]):
    assert np.isfinite(leaf)
  _, saved = ckpt_lib.load_state_numpy(tmp_path)
  assert int(saved['skipped_steps']) == 3


def _leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_skipped_step_leaves_params_and_opt_state_unchanged(tmp_path):
  """4 steps with step index 3 NaN end where 3 clean steps end (constant lr, so
  the schedule does not depend on total_steps)."""
  clean = _config()
  clean.optimizer.schedule, clean.optimizer.warmup_steps = 'constant', 0
  clean.total_steps = 3
  clean_state = loop.train(clean, tmp_path / 'clean', toy.build_method(clean))
  bad = _config(nan_steps=(3,))
  bad.optimizer.schedule, bad.optimizer.warmup_steps = 'constant', 0
  bad.total_steps = 4
  bad_state = loop.train(bad, tmp_path / 'bad', toy.build_method(bad))
  # Step index 3 was dropped: params/opt_state are those after 3 good steps.
  for a, b in zip(_leaves(clean_state.params), _leaves(bad_state.params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_leaves(clean_state.opt_state), _leaves(bad_state.opt_state)):
    np.testing.assert_array_equal(a, b)


def test_k_consecutive_bad_steps_stop_with_clear_error(tmp_path):
  config = _config(nan_steps=(7, 8, 9, 10))
  config.guard.max_consecutive_bad = 3
  with pytest.raises(loop.NonFiniteError, match='3 consecutive steps with a non-finite'):
    loop.train(config, tmp_path, toy.build_method(config))
  # Only the clean step-5 checkpoint exists (the one at 10 was never written).
  steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()
                 if p.name.isdigit())
  assert steps == [5]
  _, saved = ckpt_lib.load_state_numpy(tmp_path)
  assert all(np.isfinite(x).all() for x in _leaves(saved['params']))
  assert int(saved['skipped_steps']) == 0


def test_eval_hook_and_best_checkpoint(tmp_path):
  config = _config(eval_every=5)
  config.checkpoint.keep = 1
  config.checkpoint.best_metric = 'eval/mse'
  loop.train(config, tmp_path, toy.build_method(config))
  evals = {r['step']: r['eval/mse'] for r in writers.read_jsonl(tmp_path / 'metrics.jsonl')
           if 'eval/mse' in r}
  assert sorted(evals) == [5, 10, 15, 20]
  assert evals[20] < 0.7 * evals[5]  # Held-out error falls.
  best = min(evals, key=evals.get)
  steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()
                 if p.name.isdigit())
  assert steps == sorted({best, 20})  # The best by eval/mse and the latest.


def test_profile_hook_writes_a_trace(tmp_path):
  config = _config()
  config.total_steps = 6
  config.profile.first_step, config.profile.num_steps = 2, 2
  loop.train(config, tmp_path, toy.build_method(config))
  assert list((tmp_path / 'plugins' / 'profile').glob('*/*.xplane.pb'))
