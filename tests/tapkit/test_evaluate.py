"""`python -m tapkit.evaluate` on a TracksTo4D smoke run: the training-time numbers, offline."""

import json
import math

import pytest

from configs import tracks4d as t4d_config
from tapkit import evaluate
from tapkit.train import launch, loop, writers
from tracks4d import task


def _tiny_config():
  config = t4d_config.get_config('smoke')
  config.model.update({'width': 16, 'num_heads': 2, 'head_dim': 8, 'mlp_dim': 32,
                       'num_bases': 4, 'camera_kernel_size': 3})
  config.data.update({'max_points': 24, 'min_points': 4, 'first_phase_frames': 16})
  config.data.synthetic.update({'num_train': 2, 'num_eval': 1, 'num_frames': 16,
                                'height': 32, 'width': 40, 'num_tracks': 60})
  config.schedule.update({'camera_init_until_epoch': 1, 'clamp_from_epoch': 1})
  config.evals.eval.update({'every_steps': 2, 'max_frames': 16, 'max_points': 40})
  config.optimizer.warmup_steps = 1
  config.total_steps = 2
  config.log_every = 1
  config.checkpoint.update({'every_steps': 2, 'async_save': False})
  return config


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp('t4d_eval'))
  config = _tiny_config()
  launch.save_config(config, wd)
  loop.train(config, wd, task.build_method(config, wd))
  return wd


def test_offline_evaluation_repeats_the_training_time_numbers(workdir):
  trained = {}
  for row in writers.read_jsonl(f'{workdir}/metrics.jsonl'):
    if row['step'] == 2:
      trained.update({k[len('eval/'):]: v for k, v in row.items() if k.startswith('eval/')})
  assert {'ate', 'rpe_trans', 'rpe_rot', 'pixel_error', 'abs_rel', 'delta_1',
          'loss_total'} <= set(trained)
  out = evaluate.run(workdir, 'eval')
  assert (out['eval'], out['type'], out['step']) == ('eval', 'tracks4d.held_out', 2)
  assert set(out['metrics']) == set(trained)
  for key, value in trained.items():
    if math.isnan(value):
      assert math.isnan(out['metrics'][key]), key
    else:
      assert out['metrics'][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
  assert math.isfinite(out['metrics']['ate']) and out['metrics']['ate'] > 0
  with open(f'{workdir}/eval_eval.json') as f:
    assert json.load(f)['metrics']['ate'] == out['metrics']['ate']


def test_command_line_prints_and_names_unknown_evaluators(workdir, capsys):
  out = evaluate.main(['--workdir', workdir, '--eval', 'eval', '--step', '2'])
  printed = capsys.readouterr().out
  assert 'eval (tracks4d.held_out) at step 2' in printed
  lines = {line.split()[0]: line.split()[1] for line in printed.splitlines()[1:-1]}
  assert lines['ate'] == f'{out["metrics"]["ate"]:.6g}'
  assert set(lines) == set(out['metrics'])
  assert 'eval_eval.json' in printed
  with pytest.raises(ValueError, match=r"config key 'evals.heldout' is not known; evaluators "
                                       r"in this config: \['eval'\]"):
    evaluate.run(workdir, 'heldout')
  with pytest.raises(FileNotFoundError, match='config.json'):
    evaluate.run(f'{workdir}/nowhere', 'eval')
