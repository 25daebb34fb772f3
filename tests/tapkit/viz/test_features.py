"""Tests for tapkit.viz.features: joint PCA colour maps of feature maps."""

import numpy as np
import pytest

from tapkit.viz import _common
from tapkit.viz import features


def _two_cluster_features(rng, batch=2, h=4, w=6, dim=16):
  """Left half of each map near feature a, right half near b (plus small noise)."""
  a, b = rng.normal(size=dim) * 3, rng.normal(size=dim) * 3
  feats = rng.normal(scale=0.05, size=(batch, h, w, dim))
  feats[:, :, : w // 2] += a
  feats[:, :, w // 2:] += b
  return feats, a, b


def test_fit_pca_finds_dominant_direction():
  rng = np.random.default_rng(0)
  direction = np.array([3.0, 4.0, 0.0]) / 5.0
  x = rng.normal(size=(500, 1)) * 10 * direction + rng.normal(scale=0.1, size=(500, 3))
  mean, comps = features.fit_pca(-x + 7.0, num_components=2)
  assert comps.shape == (2, 3)
  np.testing.assert_allclose(np.abs(comps[0]), direction, atol=0.01)
  assert comps[0, np.argmax(np.abs(comps[0]))] > 0  # sign convention
  np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-9)
  np.testing.assert_allclose(mean, 7.0, atol=1.5)
  with pytest.raises(ValueError):
    features.fit_pca(x, num_components=4)


def test_pca_rgb_shape_range_and_joint_colours():
  rng = np.random.default_rng(1)
  # Four clusters (one per quadrant) span three principal components, so all
  # three colour channels carry structure rather than noise.
  centres = rng.normal(size=(4, 16)) * 3
  quadrant = 2 * (np.arange(4)[:, None] >= 2) + (np.arange(6)[None, :] >= 3)  # [h, w]
  feats = centres[quadrant][None] + rng.normal(scale=0.05, size=(2, 4, 6, 16))
  feats[1] = feats[1][:, ::-1]  # image 1: quadrants swapped left/right
  rgb = features.pca_rgb(feats, image_size=(32, 48))
  assert rgb.shape == (2, 32, 48, 3) and rgb.dtype == np.float32
  assert rgb.min() >= 0.0 and rgb.max() <= 1.0
  left0, right0 = rgb[0, 4, 5], rgb[0, 4, 40]
  left1, right1 = rgb[1, 4, 5], rgb[1, 4, 40]
  assert np.abs(left0 - right0).max() > 0.3  # the clusters get different colours...
  # ...and one feature gets one colour in both images (joint fit).
  np.testing.assert_allclose(left0, right1, atol=0.1)
  np.testing.assert_allclose(right0, left1, atol=0.1)
  # Nearest upsampling: each 8x8 pixel block is one feature cell.
  np.testing.assert_array_equal(rgb[0, :8, :8], np.broadcast_to(rgb[0, 0, 0], (8, 8, 3)))


def test_pca_rgb_mask_and_bilinear():
  rng = np.random.default_rng(2)
  feats, _, _ = _two_cluster_features(rng, batch=1)
  mask = np.zeros((1, 4, 6), bool)
  mask[:, 1:3, 1:5] = True
  rgb = features.pca_rgb(feats, mask, background=0.25)
  np.testing.assert_allclose(rgb[~mask], 0.25)
  assert np.abs(rgb[0, 1, 1] - rgb[0, 1, 4]).max() > 0.5
  smooth = features.pca_rgb(feats[0], image_size=(16, 24), interpolation='bilinear')
  assert smooth.shape == (1, 16, 24, 3)
  # Bilinear gives intermediate colours along the boundary between the clusters.
  assert len(np.unique(smooth[0, 8].round(3), axis=0)) > 2
  with pytest.raises(ValueError, match='no feature'):
    features.pca_rgb(feats, np.zeros((1, 4, 6), bool))


def test_resize_helpers():
  ramp = np.arange(4.0)[None, None, :, None] * np.ones((1, 2, 1, 1))
  up = features.resize_bilinear(ramp, (4, 8))
  assert up.shape == (1, 4, 8, 1)
  assert np.all(np.diff(up[0, 0, :, 0]) >= 0)
  np.testing.assert_allclose(up[0, 0, [0, -1], 0], [0.0, 3.0])
  np.testing.assert_allclose(features.resize_bilinear(np.full((1, 3, 3, 2), 5.0), (7, 5)), 5.0)
  near = features.resize_nearest(ramp, (2, 8))
  np.testing.assert_array_equal(near[0, 0, :, 0], [0, 0, 1, 1, 2, 2, 3, 3])


def test_pca_figure(tmp_path):
  rng = np.random.default_rng(3)
  feats, _, _ = _two_cluster_features(rng)
  images = rng.integers(0, 256, size=(2, 32, 48, 3)).astype(np.uint8)
  fig = features.pca_figure(images, feats, titles=['a', 'b'], alpha=0.6,
                            path=tmp_path / 'pca.png')
  assert len(fig.axes) == 4
  assert len(np.unique(_common.figure_to_array(fig).reshape(-1, 3), axis=0)) > 100
  assert (tmp_path / 'pca.png').read_bytes().startswith(b'\x89PNG')
