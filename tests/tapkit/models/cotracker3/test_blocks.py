"""CoTracker3 building blocks against the official code's block goldens (golden/cotracker3/block_*)."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.models.cotracker3 import blocks
from tapkit.models.cotracker3 import convert
from tapkit.models.cotracker3 import model as model_lib
from tapkit.ops import sampling

BLOCK_ATOL = 1e-5
CNN_ATOL = 2e-4


def _load(golden, require_reference, name):
  path = require_reference(f'CoTracker3 reference {name}', golden / 'cotracker3' / f'{name}.npz')
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope='module')
def offline_params(shared, require_reference):
  folder = require_reference('CoTracker3 goldens', shared / 'golden' / 'cotracker3')
  spec = importlib.util.spec_from_file_location('ct3_make_params', folder / 'make_params.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  state = module.make_params(shared / 'data' / 'param_trees' / 'cotracker3_offline.json', 0,
                             folder / 'param_overrides.json')
  return convert.params_from_state_dict(state)


def _close(actual, expected, atol):
  actual = np.asarray(actual)
  assert actual.shape == expected.shape
  np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)
  return float(np.max(np.abs(actual - expected)))


def test_bilinear_sampler(golden, require_reference):
  g = _load(golden, require_reference, 'block_bilinear_sampler')
  _close(blocks.bilinear_sampler(g['input4d'], g['coords4d']), g['out4d'], BLOCK_ATOL)
  _close(blocks.bilinear_sampler(g['input5d'], g['coords5d']), g['out5d'], BLOCK_ATOL)
  # The other grid_sample conventions through the shared sampler: zero padding, and
  # align_corners=False (the official sampler then treats x ∈ [0, W] as pixel edges).
  image = np.moveaxis(g['input4d'], 1, -1)
  x = g['coords4d'][..., 0].reshape(2, -1)
  y = g['coords4d'][..., 1].reshape(2, -1)
  zeros = sampling.bilinear_sample(image, x, y, padding='zeros')
  _close(np.moveaxis(zeros.reshape(2, 4, 6, 3), -1, 1), g['out4d_zeros'], BLOCK_ATOL)
  edge = sampling.bilinear_sample(image, x - 0.5, y - 0.5, padding='border')
  _close(np.moveaxis(edge.reshape(2, 4, 6, 3), -1, 1), g['out4d_align_false'], BLOCK_ATOL)


def test_sample_features5d(golden, require_reference):
  g = _load(golden, require_reference, 'block_sample_features5d')
  _close(blocks.sample_features5d(g['input'], g['coords']), g['out'], BLOCK_ATOL)


def test_support_and_correlation_features(golden, require_reference):
  g = _load(golden, require_reference, 'block_support_corr')
  fmaps = jnp.asarray(np.moveaxis(g['fmaps'], 2, -1))  # [B, T, h, w, C]
  b, t = fmaps.shape[:2]
  frames = jnp.asarray(g['queried_frames'], jnp.int32)
  qc = jnp.asarray(g['queried_coords'])
  support = blocks.sample_neighbourhoods(fmaps, frames, qc[..., 0], qc[..., 1])  # [B,N,7,7,C]
  n, c = support.shape[1], support.shape[-1]
  flat = np.transpose(np.asarray(support).reshape(b, n, 49, c), (0, 2, 1, 3))  # [B, 49, N, C]
  _close(flat, g['track_feat_support'], BLOCK_ATOL)
  _close(flat[:, 24:25], g['track_feat'], BLOCK_ATOL)
  coords = jnp.asarray(g['coords']).reshape(b, t * n, 2)
  frame_idx = jnp.repeat(jnp.arange(t, dtype=jnp.int32), n)[None].repeat(b, 0)
  corr = blocks.sample_neighbourhoods(fmaps, frame_idx, coords[..., 0], coords[..., 1])
  corr = corr.reshape(b, t, n, 7, 7, c)
  _close(corr, g['corr_feat'], BLOCK_ATOL)
  volume = jnp.einsum('btnhwc,bnijc->btnhwij', corr, support, precision='highest')
  _close(volume, g['corr_volume'], BLOCK_ATOL)


def test_neighbourhoods_equal_pointwise_sampling_far_outside():
  """Points far outside the map (and on its last row/column) read border values exactly like
  pointwise bilinear sampling of each neighbourhood point."""
  rng = np.random.default_rng(0)
  fmaps = rng.standard_normal((1, 2, 5, 6, 3)).astype(np.float32)
  x = np.array([[-40.3, 5.0, 2.25, 1e6]], np.float32)
  y = np.array([[1.5, 4.0, -0.75, 2.5]], np.float32)
  frame = np.array([[0, 1, 1, 0]], np.int32)
  got = np.asarray(blocks.sample_neighbourhoods(jnp.asarray(fmaps), frame, x, y))
  d = np.arange(-3, 4, dtype=np.float32)
  for m in range(4):
    px = np.broadcast_to(x[0, m] + d[:, None], (7, 7)).reshape(1, -1)
    py = np.broadcast_to(y[0, m] + d[None, :], (7, 7)).reshape(1, -1)
    want = sampling.bilinear_sample(fmaps[:, frame[0, m]], px, py, padding='border')
    np.testing.assert_allclose(got[0, m].reshape(49, 3), want[0], atol=1e-6, rtol=0)


def test_posenc(golden, require_reference):
  g = _load(golden, require_reference, 'block_posenc')
  _close(blocks.posenc(jnp.asarray(g['x']), 0, 10), g['out'], BLOCK_ATOL)


def test_time_embedding_and_interpolation(golden, require_reference):
  g = _load(golden, require_reference, 'block_time_emb')
  table60 = blocks.time_embedding_table(60)
  np.testing.assert_array_equal(table60, g['time_emb_60'][0])
  np.testing.assert_array_equal(blocks.time_embedding_table(16), g['time_emb_16'][0])
  worst = 0.0
  for t in (4, 8, 12, 16, 59, 61, 75):
    got = blocks.interpolate_time_embedding(table60, t)
    worst = max(worst, _close(got, g[f'interp_60_to_{t}'][0], BLOCK_ATOL))
  assert worst <= 1e-6  # The exact source-index rounding reproduces torch's kernel.
  assert blocks.interpolate_time_embedding(table60, 60) is table60


def test_fnet(golden, require_reference, offline_params):
  g = _load(golden, require_reference, 'block_fnet')
  image = jnp.asarray(np.transpose(g['image_uint8'], (0, 2, 3, 1)).astype(np.float32))
  image = image / 255 * 2 - 1
  out, stages = model_lib.MODEL.apply({'params': offline_params}, image, True,
                                      method=model_lib.CoTrackerThree.features)
  for i, stage in enumerate(stages):
    _close(np.transpose(stage, (0, 3, 1, 2)), g[f'layer{i + 1}_out'], CNN_ATOL)
  _close(np.transpose(out, (0, 3, 1, 2)), g['fnet_out'], CNN_ATOL)


def test_corr_mlp(golden, require_reference, offline_params):
  g = _load(golden, require_reference, 'block_corr_mlp')
  out = model_lib.MODEL.apply({'params': offline_params}, jnp.asarray(g['x']),
                              method=model_lib.CoTrackerThree.embed_corr)
  _close(out, g['out'], BLOCK_ATOL)


def test_updateformer_and_its_blocks(golden, require_reference, offline_params):
  g = _load(golden, require_reference, 'block_updateformer')
  uf = offline_params['updateformer']
  apply = lambda x, space: model_lib.MODEL.apply({'params': offline_params}, x, space,
                                                 method=model_lib.CoTrackerThree.update)
  _close(apply(jnp.asarray(g['x']), True), g['delta'], BLOCK_ATOL)
  _close(apply(jnp.asarray(g['x']), False), g['delta_no_space'], BLOCK_ATOL)
  out = blocks.AttnBlock().apply({'params': uf['time_blocks_0']}, jnp.asarray(g['time_block_in']))
  _close(out, g['time_block0_out'], BLOCK_ATOL)
  virtual, point = jnp.asarray(g['virtual_tokens_in']), jnp.asarray(g['point_tokens_in'])
  out = blocks.CrossAttnBlock().apply({'params': uf['space_virtual2point_blocks_0']}, virtual,
                                      point)
  _close(out, g['space_virtual2point0_out'], BLOCK_ATOL)
  out = blocks.AttnBlock().apply({'params': uf['space_virtual_blocks_0']}, virtual)
  _close(out, g['space_virtual0_out'], BLOCK_ATOL)
  out = blocks.CrossAttnBlock().apply({'params': uf['space_point2virtual_blocks_0']}, point,
                                      virtual)
  _close(out, g['space_point2virtual0_out'], BLOCK_ATOL)


def test_avg_pool_drops_odd_edges():
  x = jnp.arange(5 * 7, dtype=jnp.float32).reshape(1, 5, 7, 1)
  out = np.asarray(blocks.avg_pool2(x))[0, ..., 0]
  assert out.shape == (2, 3)
  np.testing.assert_allclose(out[0, 0], (0 + 1 + 7 + 8) / 4)
  np.testing.assert_allclose(out[1, 2], (18 + 19 + 25 + 26) / 4)


def test_param_tree_has_official_size():
  assert blocks.num_params(model_lib.param_shapes()) == 25_385_700
  assert jax.tree_util.tree_structure(model_lib.param_shapes()) == jax.tree_util.tree_structure(
      jax.eval_shape(model_lib.init_params, jax.random.PRNGKey(0)))
