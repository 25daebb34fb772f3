"""tapkit.tracking.api: results, query grids (CoTracker's rule), the registry, 'exact'."""

import numpy as np
import pytest

from tapkit import tracking
from tapkit.tracking import api

# (size, (H, W)) of the reference grids, in the reference file's order.
GRID_CASES = [(1, (384, 512)), (2, (64, 96)), (5, (384, 512)), (6, (64, 96)), (10, (50, 70))]


def test_grid_queries_match_reference(golden, require_reference):
  path = require_reference('CoTracker3 grid points', golden / 'cotracker3' / 'block_grid_points.npz')
  reference = np.load(path)
  for i, (size, (height, width)) in enumerate(GRID_CASES):
    queries = tracking.grid_queries(height, width, size, query_frame=3)
    assert queries.dtype == np.float32 and queries.shape == (size * size, 3)
    np.testing.assert_array_equal(queries[:, 0], 3)
    np.testing.assert_array_equal(queries[:, 1:], reference[f'grid_{i}'][0])


def test_grid_queries_layout():
  q = tracking.grid_queries(64, 128, 3)
  # Margin W / 64 = 2 on both axes; x fastest.
  np.testing.assert_allclose(q[:3, 1], [2, 64, 126])
  np.testing.assert_allclose(q[::3, 2], [2, 32, 62])
  with pytest.raises(ValueError, match='grid_size'):
    tracking.grid_queries(64, 64, 0)


def test_track_result_validates():
  result = tracking.TrackResult(np.zeros((4, 2, 2)), np.ones((4, 2)), np.zeros((2, 3)))
  assert result.tracks.dtype == np.float32 and result.visible.dtype == bool
  assert (result.num_frames, result.num_tracks) == (4, 2)
  with pytest.raises(ValueError, match='visible'):
    tracking.TrackResult(np.zeros((4, 2, 2)), np.ones((4, 3)), np.zeros((2, 3)))
  with pytest.raises(ValueError, match='queries'):
    tracking.TrackResult(np.zeros((4, 2, 2)), np.ones((4, 2)), np.zeros((3, 3)))


def test_registry_and_errors(texture):
  assert set(api.TRACKERS) <= set(api._REGISTRY)
  with pytest.raises(ValueError, match='tracker must be one of'):
    tracking.make_tracker('sift')
  with pytest.raises(ValueError, match='checkpoint'):
    tracking.make_tracker('cotracker3')
  with pytest.raises(ValueError, match='checkpoint'):
    tracking.make_tracker('cotracker3_online')
  with pytest.raises(ValueError, match='no weights'):
    tracking.make_tracker('lk', 'weights.pth')
  lk = tracking.make_tracker('lk')
  with pytest.raises(ValueError, match='query frames'):
    lk.track(texture, np.array([[10.0, 5.0, 5.0]]))
  with pytest.raises(ValueError, match='uint8'):
    lk.track(texture.astype(np.float32))
  with pytest.raises(ValueError, match='grid_query_frame'):
    lk.track(texture, grid_query_frame=-1)


def test_exact_tracker(texture):
  tracks = np.random.default_rng(0).uniform(0, 60, (10, 5, 2)).astype(np.float32)
  visible = np.ones((10, 5), bool)
  visible[:3, 1] = False
  tracker = tracking.make_tracker('exact', tracks=tracks, visible=visible)
  result = tracker.track(texture)
  np.testing.assert_array_equal(result.tracks, tracks)
  np.testing.assert_array_equal(result.visible, visible)
  # Default queries: first visible frame and the position there.
  np.testing.assert_array_equal(result.queries[1], [3, *tracks[3, 1]])
  with pytest.raises(ValueError, match='frames'):
    tracker.track(texture[:4])
  with pytest.raises(ValueError, match='tracks= and visible='):
    tracking.make_tracker('exact')
