"""3DSPA's depth lifting helpers against the released code's outputs (spa_lift golden)."""

import numpy as np
import pytest

from tapkit.models.depth import lift


def test_released_recipe_matches_golden(vda_case):
  case = vda_case('spa_lift')
  xyz = lift.lift_2d_to_3d(case['tracks_2d'], case['depth'], recipe='released')
  np.testing.assert_allclose(xyz, case['tracks_3d'], rtol=0, atol=1e-5)
  feats = lift.depth_track_features(case['depth'], case['tracks_2d'])
  assert feats.shape == (40, 6, 256) and not feats[..., 3:].any()
  np.testing.assert_allclose(feats[..., :3], case['depth_features_0_3'], rtol=0, atol=1e-5)
  h, w = case['depth'].shape[1:3]
  x, y = case['tracks_2d'][..., 0], case['tracks_2d'][..., 1]
  assert ((x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)).any()  # the border rule is exercised


def test_corrected_recipe():
  depth = np.full((2, 5, 7), 4.0, np.float32)  # inverse depth 4 -> 0.25 m
  depth[1, :, :] = 0.0
  tracks = np.array([[[3.0, 2.0], [3.0, 2.0]], [[6.0, 4.0], [0.0, 0.0]]], np.float32)
  xyz = lift.lift_2d_to_3d(tracks, depth, recipe='corrected', depth_kind='inverse', focal=10.0)
  np.testing.assert_allclose(xyz[0, 0], [0.0, 0.0, 0.25], atol=1e-7)  # the image centre
  np.testing.assert_allclose(xyz[1, 0], [3 * 0.25 / 10, 2 * 0.25 / 10, 0.25], atol=1e-7)
  assert np.isnan(xyz[:, 1]).all()  # no depth where the inverse depth is 0
  metric = lift.lift_2d_to_3d(tracks, depth, recipe='corrected', depth_kind='metric')
  np.testing.assert_allclose(metric[1, 0], [3 * 4.0 / 7, 2 * 4.0 / 7, 4.0], atol=1e-6)
  with pytest.raises(ValueError, match='recipe'):
    lift.lift_2d_to_3d(tracks, depth, recipe='other')
