"""Dense crop-contrastive pre-training of the smoke backbone (dpov_jax/pretrain.py)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dpov as dpov_config
from tapkit.models import vit as bb
from dpov_jax import pretrain, task


def test_random_view_shows_the_crop_it_reports():
  h, w = 20, 28
  ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                       indexing='ij')
  # Channels x, y, x + 2y: linear, so bilinear resampling is exact.
  image = jnp.asarray(np.stack([xs, ys, xs + 2 * ys], -1))
  for seed in range(4):
    view, scale, offset = pretrain.random_view(image, jax.random.PRNGKey(seed), min_scale=0.5,
                                               contrast=0.0, brightness=0.0)
    assert 0.5 <= float(scale) <= 1.0
    assert 0.0 <= float(offset[0]) <= (1 - float(scale)) * (w - 1) + 1e-5
    assert 0.0 <= float(offset[1]) <= (1 - float(scale)) * (h - 1) + 1e-5
    np.testing.assert_allclose(view[..., 0], offset[0] + scale * xs, atol=2e-4)
    np.testing.assert_allclose(view[..., 1], offset[1] + scale * ys, atol=2e-4)
    np.testing.assert_allclose(view[..., 2], offset[0] + 2 * offset[1] + scale * (xs + 2 * ys),
                               atol=5e-4)


def test_random_view_jitter_is_affine_per_view():
  image = jax.random.normal(jax.random.PRNGKey(0), (14, 14, 3))
  plain, scale, offset = pretrain.random_view(image, jax.random.PRNGKey(3), min_scale=0.5,
                                              contrast=0.0, brightness=0.0)
  jittered, scale2, offset2 = pretrain.random_view(image, jax.random.PRNGKey(3), min_scale=0.5,
                                                   contrast=0.3, brightness=0.3)
  assert float(scale) == float(scale2) and np.array_equal(offset, offset2)
  # (plain - mean) * c + mean + b for one c, b per view.
  a = np.asarray(plain).ravel()
  b = np.asarray(jittered).ravel()
  c, d = np.polyfit(a, b, 1)
  np.testing.assert_allclose(b, c * a + d, atol=1e-4)
  assert 0.7 <= c <= 1.3 and not np.isclose(c, 1.0)


def test_grid_points():
  pts = pretrain.grid_points(jax.random.PRNGKey(0), 3, 16, (56, 84), 0.0)
  assert pts.shape == (3, 16, 2)
  np.testing.assert_allclose(pts[0, :4, 0], [10.0, 31.0, 52.0, 73.0])  # (j + .5) * 84/4 - .5
  np.testing.assert_allclose(pts[0, ::4, 1], [6.5, 20.5, 34.5, 48.5])
  jit = pretrain.grid_points(jax.random.PRNGKey(0), 3, 16, (56, 84), 3.0)
  assert float(jnp.max(jnp.abs(jit - pts))) <= 3.0 + 1e-6
  assert float(jnp.min(jit)) >= 0 and float(jnp.max(jit[..., 0])) <= 83
  with pytest.raises(ValueError, match='num_points must be a square'):
    pretrain.grid_points(jax.random.PRNGKey(0), 1, 10, (56, 56), 0.0)


def test_info_nce_hand_made():
  m, tau = 6, 0.5
  f = jnp.eye(m, 8)  # orthonormal: positives cos 1, negatives cos 0
  loss, top1 = pretrain.info_nce(f, f, jnp.ones(m, bool), tau)
  expect = -1 / tau + np.log(np.exp(1 / tau) + (m - 1))
  np.testing.assert_allclose(loss, expect, rtol=1e-6)
  assert float(top1) == 1.0
  # An invalid pair is neither a row nor a candidate column.
  valid = jnp.asarray([True] * (m - 1) + [False])
  loss, _ = pretrain.info_nce(f, f, valid, tau)
  np.testing.assert_allclose(loss, -1 / tau + np.log(np.exp(1 / tau) + (m - 2)), rtol=1e-6)
  # Swapped positives: every row prefers a wrong candidate.
  loss_bad, top1_bad = pretrain.info_nce(f, f[::-1], jnp.ones(m, bool), tau)
  assert float(loss_bad) > float(expect) + 1.0 and float(top1_bad) == 0.0


def _config(steps: int):
  config = dpov_config.get_config('smoke')
  config.backbone.num_layers = 2
  config.data.update({'input_size': 56, 'num_frames': 2, 'regular_step': 1,
                      'grid_size': 4})
  config.data.synthetic.update({'num_train': 2, 'num_eval': 1})
  config.pretrain.update({'steps': steps, 'batch_size': 2, 'num_points': 16, 'log_every': 1})
  config.checkpoint.async_save = False
  return config


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('dpov_pretrain'))
  config = _config(3)
  return workdir, config, pretrain.ensure_pretrained(config, workdir)


def test_ensure_pretrained_trains_exports_and_is_reused(pretrained):
  workdir, config, path = pretrained
  assert path == os.path.join(workdir, 'pretrain', 'backbone.safetensors')
  assert sorted(os.listdir(os.path.join(workdir, 'pretrain', 'checkpoints')))[-1] == '3'
  start = task.initial_backbone_params(config, workdir)
  rand = bb.init_params(task.backbone_config(config),
                        jax.random.PRNGKey(int(config.backbone.init_seed)))
  flat = dict(jax.tree_util.tree_flatten_with_path(start)[0])
  flat_rand = dict(jax.tree_util.tree_flatten_with_path(rand)[0])
  assert flat.keys() == flat_rand.keys()
  # Everything trains (no frozen groups): the patch embedding moved too.
  moved = [k for k in flat if not np.allclose(flat[k], flat_rand[k])]
  assert len(moved) > len(flat) // 2
  assert any('patch_embed' in jax.tree_util.keystr(k) for k in moved)
  mtime = os.path.getmtime(path)
  assert pretrain.ensure_pretrained(config, workdir) == path
  assert os.path.getmtime(path) == mtime  # a present file is a finished pre-training


def test_pretrain_loss_is_finite_and_prefers_the_true_correspondence(pretrained):
  workdir, config, _ = pretrained
  module = task.build_backbone(config)
  source = pretrain.FrameSource(pretrain.frame_roots(config, workdir), 56)
  assert len(source) == 2 * 2  # 2 clips x 2 rendered frames
  batch = {'image': np.stack([source[i]['image'] for i in range(2)])}
  params = {'backbone': task.initial_backbone_params(config, workdir)}
  loss, aux = pretrain.make_loss_fn(module, config)(params, batch, jax.random.PRNGKey(0), None)
  assert np.isfinite(float(loss)) and 0 < float(aux['valid_frac']) <= 1
  # With identical views (scale 1, no jitter) every positive is the point itself.
  config.pretrain.update({'min_scale': 1.0, 'contrast': 0.0, 'brightness': 0.0})
  loss_same, aux_same = pretrain.make_loss_fn(module, config)(params, batch,
                                                                jax.random.PRNGKey(0), None)
  assert float(aux_same['valid_frac']) == 1.0
  assert float(aux_same['top1']) == 1.0
  assert float(loss_same) < float(loss)


def _fine_tune_config(steps: int):
  """_config with the 3DPoV groups of a 2-block backbone and no eval hook."""
  config = _config(steps)
  config.optimizer.groups = ((r'^backbone/block_(0|1)/', 0.1), (r'^backbone/', 0.0))
  config.evals.eval.every_steps = 0
  return config


def test_missing_pretrained_backbone_is_named(tmp_path):
  config = _config(3)
  with pytest.raises(FileNotFoundError, match='backbone.safetensors'):
    task.initial_backbone_params(config, str(tmp_path))
  with pytest.raises(ValueError, match='pass workdir'):
    task.initial_backbone_params(config)
  config.backbone.init_checkpoint = str(tmp_path / 'x.safetensors')
  assert not task.uses_pretraining(config)


def test_build_method_never_pretrains_and_names_the_command(tmp_path):
  config = _fine_tune_config(3)
  assert task.uses_pretraining(config)
  with pytest.raises(FileNotFoundError, match=r'python -m dpov_jax\.pretrain --config'):
    task.build_method(config, str(tmp_path))
  assert not (tmp_path / 'pretrain').exists()  # nothing was trained or written


def test_build_method_starts_from_the_pretrained_file(pretrained):
  workdir, _, path = pretrained
  config = _fine_tune_config(3)
  mtime = os.path.getmtime(path)
  method = task.build_method(config, workdir)
  assert os.path.getmtime(path) == mtime
  batch = {'frames': np.zeros((1, 2, 56, 56, 3), np.uint8)}
  params = method.init_fn(jax.random.PRNGKey(0), batch)
  _, saved = bb.load_checkpoint(path, arch=task.backbone_config(config))
  got = dict(jax.tree_util.tree_flatten_with_path(params['backbone'])[0])
  want = dict(jax.tree_util.tree_flatten_with_path(saved)[0])
  assert got.keys() == want.keys()
  for k in want:
    np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]),
                                  err_msg=jax.tree_util.keystr(k))


def test_frame_source_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='not a directory'):
    pretrain.FrameSource([str(tmp_path / 'nope')], 56)
  with pytest.raises(FileNotFoundError, match='no .jpg'):
    pretrain.FrameSource([str(tmp_path)], 56)


