"""TAP-Vid 2D metrics of trackers on a tiny synthetic clip with exact tracks."""

import numpy as np
import pytest

from tapkit import tracking
from tapkit.data import geometry
from tapkit.data import synthetic
from tapkit.data import tapvid3d
from tapkit.tracking import evaluate


@pytest.fixture(scope='module')
def clip():
  return synthetic.generate_clip((0, 1), 10, 64, 64, 24)


def test_ground_truth_is_the_projected_clip(clip):
  tracks, visible = evaluate.clip_ground_truth(clip)
  assert tracks.shape == (10, 24, 2) and visible.dtype == bool
  # The clip's queries sit on its projected tracks.
  t = clip.query_frames
  np.testing.assert_allclose(tracks[t, np.arange(24)], clip.queries_xyt[:, :2], atol=1e-3)
  np.testing.assert_allclose(
      tracks, geometry.project(clip.tracks_xyz, clip.intrinsics, behind='principal',
                               min_depth=1e-6), atol=1e-4)


def test_tapvid_queries():
  visible = np.array([[0, 1], [1, 1], [1, 0], [0, 0], [0, 0], [1, 1], [1, 1]], bool)
  tracks = np.arange(7 * 2 * 2, dtype=np.float32).reshape(7, 2, 2)
  queries, track = evaluate.tapvid_queries(tracks, visible, 'first')
  np.testing.assert_array_equal(track, [0, 1])
  np.testing.assert_array_equal(queries[:, 0], [1, 0])
  np.testing.assert_array_equal(queries[0, 1:], tracks[1, 0])
  queries, track = evaluate.tapvid_queries(tracks, visible, 'strided', stride=5)
  np.testing.assert_array_equal(track, [0, 1, 1])
  np.testing.assert_array_equal(queries[:, 0], [5, 0, 5])


@pytest.mark.parametrize('query_mode', ['first', 'strided'])
def test_exact_tracker_is_perfect(clip, query_mode):
  tracks, visible = evaluate.clip_ground_truth(clip)
  tracker = evaluate.exact_tracker_for(tracks, visible, query_mode)
  metrics = evaluate.evaluate_clip(tracker, clip.frames, tracks, visible, query_mode)
  assert metrics == {'average_jaccard': 1.0, 'average_pts_within_thresh': 1.0,
                     'occlusion_accuracy': 1.0}


def test_lk_gives_a_sane_number(clip):
  tracks, visible = evaluate.clip_ground_truth(clip)
  lk = tracking.make_tracker('lk')
  metrics = evaluate.evaluate_clip(lk, clip.frames, tracks, visible, 'first')
  # A working tracker on this easy clip: far above chance, below perfect.
  assert 0.3 < metrics['average_jaccard'] < 1.0
  assert 0.4 < metrics['average_pts_within_thresh'] < 1.0
  assert 0.6 < metrics['occlusion_accuracy'] <= 1.0
  # Frames that are always wrong (a tracker reporting the query position, all visible)
  # score lower.
  queries, track = evaluate.tapvid_queries(tracks, visible, 'first')
  still = tracking.TrackResult(np.broadcast_to(queries[None, :, 1:], (10, len(track), 2)),
                               np.ones((10, len(track)), bool), queries)
  frozen = evaluate.score(still, tracks, visible, track, 'first', (64, 64))
  assert frozen['average_jaccard'] < metrics['average_jaccard']


def test_files_and_mp4_roundtrip(clip, tmp_path):
  path = str(tmp_path / 'clip_0000.npz')
  tapvid3d.save_clip(path, clip)
  decoded = evaluate.roundtrip(clip.frames, 'mp4')
  assert decoded.shape == clip.frames.shape
  assert np.abs(decoded.astype(int) - clip.frames).mean() < 6
  rows = evaluate.evaluate_files('exact', [path], codec='mp4')
  assert rows[0]['clip'] == 'clip_0000' and rows[0]['average_jaccard'] == 1.0
  rows = evaluate.evaluate_files('lk', [path], query_mode='strided')
  assert 0.2 < rows[0]['average_jaccard'] < 1.0
  assert evaluate.main(['--clips', str(tmp_path), '--tracker', 'lk', '--csv',
                        str(tmp_path / 'lk.csv')]) == 0
  assert (tmp_path / 'lk.csv').read_text().startswith('clip,average_jaccard')
