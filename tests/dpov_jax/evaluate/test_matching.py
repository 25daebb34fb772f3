"""Tests of dpov_jax.evaluate.matching (downsampling, keypoint transfer, NN matching)."""

import jax.numpy as jnp
import numpy as np
import pytest

from dpov_jax.evaluate import matching


def test_downsample_nearest_torch_indices():
  g = np.arange(8 * 8).reshape(8, 8, 1)
  d = matching.downsample_nearest(g, 0.25)
  assert d.shape == (2, 2, 1)
  np.testing.assert_array_equal(d[..., 0], [[0, 4], [32, 36]])


def test_transfer_keypoints_argmax_over_width():
  # One-hot features: target patch (row 2, col 3) carries the code of the
  # source patch at (row 0, col 1).
  h = w = 5
  src = np.zeros((h, w, h * w), np.float32)
  trg = np.zeros((h, w, h * w), np.float32)
  for y in range(h):
    for x in range(w):
      src[y, x, y * w + x] = 1.0
  trg[2, 3, 0 * w + 1] = 1.0
  # Source keypoint at patch (0, 1): x_unit (w - 1) = 1.
  pred = np.asarray(matching.transfer_keypoints(
      jnp.asarray(src), jnp.asarray(trg), jnp.array([[0.25, 0.0]])))
  np.testing.assert_allclose(pred, [[3 / 5, 2 / 5]])


def test_ratio_test_matches_known_example():
  src = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  trg = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
  i0, i1, w = matching.ratio_test_matches(src, trg, 10, chunk=2)
  # src 0 and 1 match exactly (d1 = 0 -> 1e-9, weight ~ 1); src 2 is
  # equidistant from targets 0 and 1 (weight 0).
  assert i0.tolist() == [0, 1, 2]
  assert i1.tolist()[:2] == [0, 1]
  np.testing.assert_allclose(w, [1.0, 1.0, 0.0], atol=1e-6)
  # Invalid targets are never matched; invalid sources never kept.
  i0, i1, _ = matching.ratio_test_matches(
      src, trg, 10, src_valid=np.array([True, False, True]),
      trg_valid=np.array([False, True, True]))
  assert sorted(i0.tolist()) == [0, 2]
  assert 0 not in i1.tolist()
  i0, _, _ = matching.ratio_test_matches(src, trg, 1)
  assert len(i0) == 1


def test_navi_pair_errors_identity_pair_is_exact():
  rng = np.random.default_rng(1)
  size, grid = 64, 16
  depth = rng.uniform(1.0, 2.0, (size, size))
  depth[:8] = 0.0  # missing depth rows are never matched.
  xyz = np.stack([rng.normal(size=(size, size)), rng.normal(size=(size, size)),
                  depth], -1)
  # Unique features per downsampled grid cell, at the grid resolution, so the
  # bicubic resize is the identity.
  feat = rng.normal(size=(grid, grid, 64)).astype(np.float32)
  k = np.diag([100.0, 100.0, 1.0])
  res = matching.navi_pair_errors(feat, feat, xyz, xyz, np.eye(4), k,
                                  num_corr=50, scale_factor=0.25)
  assert res['err_3d'].shape == (50,)
  np.testing.assert_allclose(res['err_3d'], 0.0, atol=1e-12)
  np.testing.assert_allclose(res['err_2d'], 0.0, atol=1e-9)
  np.testing.assert_allclose(res['uv_0'], res['uv_1'])
  assert (res['uv_0'][:, 1] > 8).all()


def test_features_fn_multilayer_list_is_concatenated():
  f = matching._as_feature_map([np.ones((2, 3, 3, 4)), np.zeros((2, 3, 3, 2))])
  assert f.shape == (2, 3, 3, 6)
  with pytest.raises(ValueError, match='B, h, w, D'):
    matching._as_feature_map(np.ones((3, 3, 4)))
