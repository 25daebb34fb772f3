"""The evaluator registry: names, dotted paths, keyword checks, and the engine's hooks."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import toy as toy_config
from tapkit import evaluate
from tapkit.train import evaluators, launch, loop, toy_task as toy, writers


@evaluators.register('testpkg.constant')
def _constant(config, workdir, value: float = 1.0):
  del config, workdir
  return lambda state, step, writer=None: {'value': value, 'step': float(step)}


def toy_held_out_mse(config: ml_collections.ConfigDict, workdir: str | None, num_records: int):
  """The toy's held-out MSE (the same records and formula as its own EvalHook)."""
  del workdir
  model = toy.MLP(hidden=tuple(config.model.hidden), dim_out=config.toy.dim_out,
                  dropout=config.model.dropout)
  source = toy.ToySource(config.toy.num_records, config.toy.dim_in, config.toy.dim_out,
                         config.toy.data_seed)
  held_out = [source[config.toy.num_records + i] for i in range(num_records)]
  x = np.stack([r['x'] for r in held_out])  # [num_records, D_in]
  y = np.stack([r['y'] for r in held_out])  # [num_records, D_out]
  mse = jax.jit(lambda p: jnp.mean(jnp.square(model.apply({'params': p}, x) - y)))
  return lambda state, step, writer=None: {'mse': float(mse(state.params))}


def test_resolve_by_registered_name_and_by_module_path():
  assert evaluators.resolve('testpkg.constant') is _constant
  assert 'testpkg.constant' in evaluators.registered()
  assert evaluators.resolve(f'{__name__}:toy_held_out_mse') is toy_held_out_mse
  with pytest.raises(ValueError, match=r"'testpkg.constnt' is not registered; did you mean "
                                       r"'testpkg.constant'\?"):
    evaluators.resolve('testpkg.constnt')
  with pytest.raises(ValueError, match='has no'):
    evaluators.resolve(f'{__name__}:missing')
  with pytest.raises(ValueError, match='already registered'):
    evaluators.register('testpkg.constant')(toy_held_out_mse)


def test_a_method_name_imports_its_evaluators_module_at_run_time():
  assert evaluators.resolve('tracks4d.held_out').__module__ == 'tracks4d.evaluators'
  assert evaluators.resolve('dpov_jax.match').__module__ == 'dpov_jax.evaluators'


def test_build_checks_the_keyword_arguments_by_full_name():
  config = toy_config.get_config('smoke')
  config.evals.c = ml_collections.ConfigDict({'type': 'testpkg.constant', 'every_steps': 2,
                                              'value': 3.0})
  fn = evaluators.build(config, None, 'c')
  assert fn(None, 4) == {'value': 3.0, 'step': 4.0}
  config.evals.c.valeu = 1.0
  with pytest.raises(ValueError, match=r"config key 'evals.c.valeu' is not known; did you mean "
                                       r"'evals.c.value'\?"):
    evaluators.build(config, None, 'c')
  with pytest.raises(ValueError, match=r"config key 'evals.d' is not known"):
    evaluators.build(config, None, 'd')


def test_engine_runs_config_evals_like_a_method_hook(tmp_path):
  config = toy_config.get_config('smoke')
  config.toy.eval_every = 5  # the toy's own EvalHook, written as eval/mse
  config.evals.held_out = ml_collections.ConfigDict({
      'type': f'{__name__}:toy_held_out_mse', 'every_steps': 5, 'num_records': 64})
  config.evals.off = ml_collections.ConfigDict({'type': 'testpkg.constant', 'every_steps': 0})
  config.checkpoint.async_save = False
  launch.save_config(config, tmp_path)
  loop.train(config, tmp_path, toy.build_method(config))
  by_step = {}
  for r in writers.read_jsonl(tmp_path / 'metrics.jsonl'):
    by_step.setdefault(r['step'], {}).update(r)
  rows = [r for _, r in sorted(by_step.items()) if 'held_out/mse' in r]
  assert [r['step'] for r in rows] == [5, 10, 15, 20]
  for r in rows:
    assert r['held_out/mse'] == pytest.approx(r['eval/mse'], rel=1e-6)
  assert not any('off/value' in r for r in writers.read_jsonl(tmp_path / 'metrics.jsonl'))

  # The same evaluator offline on the step-10 checkpoint gives the training-time number.
  out = evaluate.main(['--workdir', str(tmp_path), '--eval', 'held_out', '--step', '10'])
  assert out['step'] == 10
  assert out['metrics']['mse'] == pytest.approx(rows[1]['held_out/mse'], rel=1e-6)
  saved = evaluate.json.loads((tmp_path / 'eval_held_out.json').read_text())
  assert saved == out
  # Entries with every_steps 0 are not run in training but run offline.
  assert evaluate.run(tmp_path, 'off')['metrics'] == {'value': 1.0, 'step': 20.0}
