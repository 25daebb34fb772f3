"""Numpy preprocessing of tracks, with hand-made numbers."""

import numpy as np
import pytest

from tapkit.data import geometry
from trajan3d import preprocess


def test_normalize_and_denormalize_pixels():
  px = np.asarray([[0.0, 0.0], [99.5, 49.5], [9.5, 19.5]])
  norm = preprocess.normalize_pixel_tracks(px, width=100, height=50)
  np.testing.assert_allclose(norm, [[0.005, 0.01], [1.0, 1.0], [0.1, 0.4]],
                             rtol=1e-6)
  assert norm.dtype == np.float32
  # The colab multiplies back without removing the half pixel.
  np.testing.assert_allclose(
      preprocess.denormalize_tracks(norm, 100, 50), px + 0.5, rtol=1e-6)


def test_pad_or_crop_time():
  a = np.arange(6).reshape(3, 2)
  np.testing.assert_array_equal(preprocess.pad_or_crop_time(a, 5),
                                [[0, 1], [2, 3], [4, 5], [0, 0], [0, 0]])
  np.testing.assert_array_equal(preprocess.pad_or_crop_time(a, 2),
                                [[0, 1], [2, 3]])
  np.testing.assert_array_equal(
      preprocess.pad_or_crop_time(a, 3, axis=1), [[0, 1, 0], [2, 3, 0],
                                                  [4, 5, 0]])


def _toy_tracks(t=4, n=6):
  # Track n at frame f sits at (x, y) = (0.1 n, 0.01 f).
  x = np.broadcast_to(0.1 * np.arange(n), (t, n))
  y = np.broadcast_to(0.01 * np.arange(t)[:, None], (t, n))
  tracks = np.stack([x, y], -1).astype(np.float32)
  vis = np.ones((t, n), np.float32)
  vis[:, 0] = 0  # track 0 never visible
  vis[:, 1] = 0
  vis[2, 1] = 1  # track 1 visible only at frame 2
  return tracks, vis


def test_process_tracks_for_autoencoder_layout_and_queries():
  tracks, vis = _toy_tracks()
  out = preprocess.process_tracks_for_autoencoder(
      tracks, vis, num_frames=4, num_support_tracks=2, num_target_tracks=4,
      rng=np.random.default_rng(0), episode_length=6)
  assert out['support_tracks'].shape == (1, 2, 6, 2)
  assert out['support_tracks_visible'].shape == (1, 2, 6, 1)
  assert out['query_points'].shape == (1, 4, 3)
  assert out['target_points'].shape == (1, 4, 6, 2)
  assert out['target_tracks_visible'].shape == (1, 4, 6, 1)
  np.testing.assert_array_equal(out['boundary_frame'], [4])
  # Padded frames are zero.
  np.testing.assert_array_equal(out['support_tracks'][0, :, 4:], 0.0)
  np.testing.assert_array_equal(out['target_tracks_visible'][0, :, 4:], 0.0)
  # Support and targets are disjoint and cover 6 tracks.
  ids = lambda a: set(np.round(a[0, :, 0, 0] / 0.1).astype(int))
  sup, tgt = ids(out['support_tracks']), ids(out['target_points'])
  assert not sup & tgt and len(sup | tgt) == 6
  for q, target, tv in zip(out['query_points'][0], out['target_points'][0],
                           out['target_tracks_visible'][0, :, :, 0]):
    frame = int(q[0])
    track = int(round(target[0, 0] / 0.1))
    if track == 0:
      assert frame == 0  # never visible -> frame 0
    elif track == 1:
      assert frame == 2  # its only visible frame
    assert tv[frame] == 1 or track == 0
    np.testing.assert_allclose(q[1:], [0.1 * track, 0.01 * frame], atol=1e-7)


def test_process_tracks_crops_long_clips_and_keeps_video_length():
  tracks, vis = _toy_tracks(t=8)
  out = preprocess.process_tracks_for_autoencoder(
      tracks, vis, num_frames=8, num_support_tracks=3, num_target_tracks=3,
      rng=np.random.default_rng(1), episode_length=5)
  assert out['support_tracks'].shape == (1, 3, 5, 2)
  assert out['target_points'].shape == (1, 3, 5, 2)
  np.testing.assert_allclose(out['support_tracks'][0, :, 4, 1], 0.04)
  assert np.all(out['query_points'][0, :, 0] < 5)
  np.testing.assert_array_equal(out['boundary_frame'], [8])
  with pytest.raises(ValueError, match='need at least'):
    preprocess.process_tracks_for_autoencoder(
        tracks, vis, 8, 4, 3, np.random.default_rng(0))


def test_tapvid3d_to_model_inputs():
  t, n = 3, 2
  xyz = np.arange(t * n * 3, dtype=np.float32).reshape(t, n, 3)
  vis = np.asarray([[1, 0], [1, 1], [0, 1]])
  q = np.asarray([[10.0, 20.0, 1.0], [5.0, 6.0, 2.0]])
  out = preprocess.tapvid3d_to_model_inputs(xyz, vis, q, num_frames=5)
  assert out['support_tracks'].shape == (1, 2, 5, 3)
  np.testing.assert_array_equal(out['support_tracks'][0, 1, 2], xyz[2, 1])
  np.testing.assert_array_equal(out['support_tracks'][0, :, 3:], 0.0)
  np.testing.assert_array_equal(out['support_tracks_visible'][0, :, :, 0],
                                [[1, 1, 0, 0, 0], [0, 1, 1, 0, 0]])
  np.testing.assert_array_equal(out['query_points'][0],
                                [[1, 6, 7, 8], [2, 15, 16, 17]])  # xyz[1, 0], xyz[2, 1]
  np.testing.assert_array_equal(out['boundary_frame'], [3])
  with pytest.raises(ValueError, match='queries_xyt frames'):
    preprocess.tapvid3d_to_model_inputs(xyz, vis, q, num_frames=2)


def test_prepare_3d_batch():
  n, t = 5, 4
  tracks = np.arange(n * t * 3, dtype=np.float32).reshape(n, t, 3)
  vis = np.ones((n, t, 1), np.float32)
  dino = np.arange(n * t * 2, dtype=np.float32).reshape(n, t, 2)
  out = preprocess.prepare_3d_batch(tracks, vis, 2, 3,
                                    np.random.default_rng(0),
                                    features={'dino_features': dino})
  np.testing.assert_array_equal(out['boundary_frame'], [4])
  sup = out['support_tracks'][0, :, 0, 0] // 12
  qry = out['query_tracks'][0, :, 0, 0] // 12
  assert len(set(sup) | set(qry)) == 5
  np.testing.assert_array_equal(out['dino_features'][0, :, 0, 0] // 8, sup)
  for qp, track in zip(out['query_points'][0], out['query_tracks'][0]):
    np.testing.assert_array_equal(qp[1:], track[int(qp[0])])


def test_lift_and_project_roundtrip():
  depth = np.full((1, 4, 6), 2.0, np.float32)
  depth[0, :, 3:] = 4.0
  intr = np.asarray([100.0, 50.0, 3.0, 2.0])
  xy = np.asarray([[[3.0, 2.0], [1.0, 0.0], [2.5, 1.0]]], np.float32)
  xyz = preprocess.lift_tracks_to_3d(xy, depth, intr)
  # (3, 2) at the principal point, depth 4; (1, 0): X = -2*2/100, Y = -2*2/50;
  # (2.5, 1): bilinear between depth 2 (x=2) and 4 (x=3) -> 3.
  np.testing.assert_allclose(
      xyz[0], [[0, 0, 4], [-0.04, -0.08, 2], [-0.5 * 3 / 100, -3 / 50, 3]],
      rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(geometry.project(xyz, intr), xy,
                             atol=1e-5)
  # Already-sampled per-point depth.
  z = np.asarray([[1.0, 2.0, 3.0]])
  np.testing.assert_allclose(
      preprocess.lift_tracks_to_3d(xy, z, intr)[..., 2], z)
