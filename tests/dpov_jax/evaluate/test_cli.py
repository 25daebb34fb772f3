"""The one-command evaluation: keypoint tables, probe training, error reporting."""

import csv
import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from configs import probe3d
from tapkit.models import vit as bb
from dpov_jax.evaluate import __main__ as cli
from dpov_jax.evaluate import matching
from dpov_jax.evaluate import probe_task
from dpov_jax.evaluate import synthetic_pairs


def _read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_probe_layers_follow_probe3d():
  assert probe_task.probe_layers(12) == (2, 5, 8, 11)
  assert probe_task.probe_layers(24) == (5, 11, 17, 23)
  assert probe_task.probe_layers(2) == (0, 0, 1, 1)
  assert probe_task.probe_layers(12, multilayer=False) == (11,)


def test_dense_cls_features_concatenate_the_cls_token():
  backbone = probe_task.load_backbone('smoke')
  images = np.random.default_rng(0).normal(size=(2, 30, 28, 3)).astype(np.float32)
  maps = probe_task.backbone_features(backbone.module, backbone.params, images, (0, 1))
  # 30 px is zero-padded to 42 (3 patches of 14); channels 2 x 32.
  assert [m.shape for m in maps] == [(2, 3, 2, 64)] * 2
  out = backbone.module.apply({'params': backbone.params},
                              bb.pad_to_patch_multiple(images, 14), return_layers=(1,))
  np.testing.assert_allclose(maps[1][..., :32], out.feature_map(1), atol=1e-6)
  np.testing.assert_allclose(maps[1][:, 1, 1, 32:], out.cls(1), atol=1e-6)


def test_checkpoint_file_backbone_round_trip(tmp_path):
  cfg = bb.get_config('smoke')
  params = bb.init_params(cfg, jax.random.PRNGKey(7))
  path = str(tmp_path / 'ft.safetensors')
  bb.save_checkpoint(path, params, cfg)
  loaded = probe_task.load_backbone(path)
  assert loaded.name == 'ft' and loaded.config.num_layers == 2
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_export_sidecar_gives_the_architecture(tmp_path):
  # A 3-block smoke variant matches no preset: only the <file>.json that
  # dpov_jax.export writes tells the loader its architecture.
  cfg = bb.get_config('smoke', num_layers=3)
  path = str(tmp_path / 'ft3.safetensors')
  bb.save_checkpoint(path, bb.init_params(cfg, jax.random.PRNGKey(0)), cfg)
  with pytest.raises(ValueError, match='no preset matches'):
    probe_task.load_backbone(path)
  with open(path + '.json', 'w') as f:
    json.dump({'preset': 'smoke', 'arch': dataclasses.asdict(cfg)}, f)
  loaded = probe_task.load_backbone(path)
  assert loaded.config == cfg
  assert probe_task.probe_layers(loaded.config.num_layers) == (0, 1, 2, 2)


def test_keypoints_cli_writes_paper_tables(tmp_path):
  out = str(tmp_path / 'eval')
  argv = ['--task', 'keypoints', '--backbones', 'smoke,smoke', '--names', 'base,other',
          '--seed', '0', '--out', out, '--synthetic_seeds', '0', '--bin_edges', '0,30,90',
          '--synthetic_size', '48', '--num_kps', '8', '--num_corr', '100']
  assert cli.main(argv) == 0
  rows = _read_csv(os.path.join(out, 'keypoints.csv'))
  assert list(rows[0]) == ['model', '0-30', '30-90', 'all', 'pairs']
  assert [r['model'] for r in rows] == ['base', 'other']
  # Two pairs (15 and 60 deg), one scene: 'all' pools 8 + 8 keypoints, so it
  # is the mean of the two bins.
  for r in rows:
    assert r['pairs'] == '2'
    bins = [float(r['0-30']), float(r['30-90'])]
    assert all(0.0 <= v <= 100.0 for v in bins)
    assert float(r['all']) == pytest.approx(np.mean(bins))
  # Same preset and seed: same features, same numbers; and equal to the protocol.
  assert rows[0]['all'] == rows[1]['all']
  pairs = synthetic_pairs.synthetic_keypoint_pairs((0,), (15.0, 60.0), size=48, num_kps=8,
                                                   bin_edges=(0, 30, 90))
  ref = matching.run_keypoint_protocol(
      synthetic_pairs.keypoint_groups(pairs),
      probe_task.dense_features_fn(probe_task.load_backbone('smoke')))
  assert float(rows[0]['all']) == pytest.approx(
      [r['recall'] for r in ref['rows'] if r['bin'] == 'all'][0])
  corr = _read_csv(os.path.join(out, 'correspondence.csv'))
  assert list(corr[0])[:3] == ['model', '0-30', '30-90']
  assert 0.0 <= float(corr[0]['recall_50px']) <= 100.0
  with open(os.path.join(out, 'keypoints.md')) as f:
    md = f.read()
  assert '| model | 0-30 | 30-90 | all | pairs |' in md
  figures = os.listdir(os.path.join(out, 'figures'))
  assert 'matches_base_bin0-30.png' in figures and 'pca_other.png' in figures


def _tiny_config(task, head='dpt', features='precompute'):
  config = probe3d.get_config('smoke')
  config.probe.task = task
  config.probe.head = head
  config.probe.features = features
  config.probe.hidden_dim = 16
  config.data.image_size = 28
  config.data.synthetic.update({'num_train': 2, 'num_eval': 1,
                                'frames_per_clip': 2})
  config.batch_size = 4
  config.total_steps = 16
  config.optimizer.warmup_steps = 2
  config.log_every = 4
  config.viz.num_images = 1
  return config


@pytest.mark.parametrize('task,head,features', [('depth', 'dpt', 'precompute'),
                                                ('normals', 'linear', 'online')])
def test_probe_training_lowers_loss_and_gives_finite_metrics(tmp_path, task, head, features):
  config = _tiny_config(task, head, features)
  backbone = probe_task.load_backbone('smoke')
  train = probe_task.load_probe_data(config, 'train')
  test = probe_task.load_probe_data(config, 'test')
  assert len(train) == 4 and len(test) == 2
  res = probe_task.train_and_evaluate(config, str(tmp_path / task), backbone, train, test)
  steps, losses = res['loss_curve']
  np.testing.assert_array_equal(steps, [4, 8, 12, 16])
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  m = res['metrics']
  assert all(np.isfinite(v) for v in m.values())
  assert m['num_images'] == 2.0
  if task == 'depth':
    assert m['sa/rmse'] > 0 and 0.0 <= m['si/d1'] <= 1.0
    # The least-squares scale and shift can only lower the RMSE.
    assert m['si/rmse'] <= m['sa/rmse'] + 1e-9
    assert res['examples']['pred'].shape == (1, 28, 28)
  else:
    assert 0.0 <= m['median'] <= 180.0 and 0.0 <= m['d1'] <= m['d3'] <= 1.0
    assert res['examples']['pred'].shape == (1, 28, 28, 4)
  with open(os.path.join(tmp_path, task, 'metrics.jsonl')) as f:
    fractions = [r['train/valid_fraction'] for r in map(json.loads, f)
                 if 'train/valid_fraction' in r]
  # Depth: the sky (beyond 10 m) is no target, the objects and ground are. Normals: every
  # pixel with depth > 0 is scored, the sky sphere's too.
  assert len(fractions) == 4
  assert all(0.0 < v < 1.0 if task == 'depth' else v == 1.0 for v in fractions), fractions


def test_data_errors_surface_as_clear_cli_errors(tmp_path, capsys):
  missing = str(tmp_path / 'nowhere')
  argv = ['--task', 'keypoints', '--backbones', 'smoke', '--out', str(tmp_path / 'o'),
          '--spair_dir', missing]
  assert cli.main(argv) == 2
  assert f'SPair pair annotations not found: {missing}' in capsys.readouterr().err

  root = tmp_path / 'spair'
  (root / 'PairAnnotation' / 'test').mkdir(parents=True)
  bad = root / 'PairAnnotation' / 'test' / 'bad.json'
  bad.write_text(json.dumps({'filename': 'x-y-z:cat', 'category': 'cat'}))
  assert cli.main(argv[:-1] + [str(root)]) == 2
  err = capsys.readouterr().err
  assert str(bad) in err and "field '" in err

  assert cli.main(['--task', 'depth', '--backbones', str(tmp_path / 'x.safetensors'),
                   '--out', str(tmp_path / 'o')]) == 2
  assert 'x.safetensors' in capsys.readouterr().err

  assert cli.main(['--task', 'depth', '--backbones', 'smoke', '--out', str(tmp_path / 'o'),
                   '--nyu_test', str(tmp_path / 'nyu.npz')]) == 2
  assert 'nyu_train_dir' in capsys.readouterr().err
