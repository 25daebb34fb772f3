"""The Lucas-Kanade baseline on a translating texture with exact tracks."""

import numpy as np
import pytest

from tapkit import tracking

STEP = np.array([2.0, 1.0])  # texture motion, pixels per frame (dx, dy); see conftest


def test_grid_follows_translation(texture):
  result = tracking.make_tracker('lk').track(texture, grid_size=6)
  num_frames = texture.shape[0]
  expected = result.queries[None, :, 1:] + np.arange(num_frames)[:, None, None] * STEP
  height, width = texture.shape[1:3]
  inside = ((expected[..., 0] > 8) & (expected[..., 0] < width - 8) &
            (expected[..., 1] > 8) & (expected[..., 1] < height - 8))
  error = np.linalg.norm(result.tracks - expected, axis=-1)
  assert result.tracks.shape == (num_frames, 36, 2)
  assert np.median(error[inside]) < 0.1
  assert np.mean(error[inside] < 0.5) > 0.95
  assert result.visible[inside].mean() > 0.95
  # Points carried out of the frame are not visible.
  outside = ((expected[..., 0] > width + 2) | (expected[..., 1] > height + 2))
  assert outside.any() and not result.visible[outside].any()


def test_backward_from_a_middle_frame(texture):
  queries = np.array([[5, 30.0, 30.0], [7, 40.0, 20.0]], np.float32)
  lk = tracking.make_tracker('lk')
  result = lk.track(texture, queries, backward=True)
  t = np.arange(texture.shape[0])[:, None, None]
  expected = queries[None, :, 1:] + (t - queries[None, :, :1]) * STEP
  error = np.linalg.norm(result.tracks - expected, axis=-1)
  valid = np.all((expected > 8) & (expected < [72, 56]), axis=-1)
  assert error[valid].max() < 0.5 and result.visible[valid].all()
  np.testing.assert_array_equal(result.queries, queries)
  forward_only = lk.track(texture, queries)
  before = t[..., 0] < queries[None, :, 0]
  assert not forward_only.visible[before].any()
  np.testing.assert_array_equal(forward_only.tracks[0], queries[:, 1:])
  np.testing.assert_array_equal(forward_only.tracks[~before], result.tracks[~before])


def test_occlusion_is_detected_and_recovered(moving_texture):
  frames = moving_texture(num_frames=10, step=(0, 0)).copy()
  frames[3:6, 10:50, 10:50] = 128  # a flat occluder over the centre for frames 3..5
  queries = np.array([[0, 30.0, 30.0], [0, 65.0, 55.0]], np.float32)
  result = tracking.make_tracker('lk').track(frames, queries)
  np.testing.assert_array_equal(result.visible[:, 1], True)
  np.testing.assert_array_equal(result.visible[:, 0],
                                [True, True, True, False, False, False, True, True, True, True])
  np.testing.assert_allclose(result.tracks[6:, 0], [[30.0, 30.0]] * 4, atol=0.05)


def test_options_are_checked():
  with pytest.raises(ValueError, match='fb_threshold'):
    tracking.make_tracker('lk', fb_threshold=0)
