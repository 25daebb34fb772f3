"""TRAJAN / 3DSPA model inputs from clips (trajan3d.input_pipeline, trajan3d.evaluators)."""

import numpy as np
import pytest

from tapkit.data import clip as clip_lib
from tapkit.data import pipeline
from trajan3d import evaluators
from trajan3d import features as features_lib
from trajan3d import input_pipeline


def _clip(t=4, n=6, size=(20, 40), depth=False):
  """Track k at frame f sits at pixel (x, y) = (2 k + 1, f + 1), depth 2 m."""
  fx, fy, cx, cy = 10.0, 10.0, 5.0, 3.0
  x = np.broadcast_to(2.0 * np.arange(n) + 1, (t, n))
  y = np.broadcast_to(np.arange(t)[:, None] + 1.0, (t, n))
  z = np.full((t, n), 2.0)
  xyz = np.stack([(x - cx) * z / fx, (y - cy) * z / fy, z], -1).astype(np.float32)
  vis = np.ones((t, n), bool)
  vis[:, 0] = False  # never visible
  vis[:, 1] = False
  vis[2, 1] = True  # visible only at frame 2
  queries = np.zeros((n, 3), np.float32)
  queries[:, 2] = np.arange(n) % t
  return clip_lib.Clip(
      tracks_xyz=xyz, visibility=vis, queries_xyt=queries,
      intrinsics=np.asarray([fx, fy, cx, cy], np.float32),
      raw_frames=np.zeros((t, *size, 3), np.uint8),
      depth=np.full((t, *size), 2.0, np.float32) if depth else None, path='/d/clip_7.npz')


def test_track_clip_and_model_tracks():
  clip = input_pipeline.track_clip(_clip())
  assert clip.raw_frames is None and clip.image_size == (20, 40) and clip.name == 'clip_7'
  uv = input_pipeline.model_tracks(clip, 'uv')  # (p + 0.5) / (width, height)
  np.testing.assert_allclose(uv[3, 2], [5.5 / 40, 4.5 / 20], rtol=1e-6)
  np.testing.assert_array_equal(input_pipeline.model_tracks(clip, 'xyz'), clip.tracks_xyz)
  # Without frames nor depth the frame size is 2 * (cy, cx).
  bare = input_pipeline.track_clip(_clip().replace(raw_frames=None))
  assert bare.image_size == (6, 10)
  # 2D tracks are lifted with depth for a 3D model; without depth they cannot be.
  flat = clip_lib.Clip(tracks_xyz=None, tracks_uv=input_pipeline.pixel_tracks(clip),
                       visibility=clip.visibility, queries_xyt=clip.queries_xyt,
                       intrinsics=clip.intrinsics, depth=np.full((4, 20, 40), 2.0, np.float32))
  np.testing.assert_allclose(input_pipeline.model_tracks(flat, 'xyz'), clip.tracks_xyz,
                             atol=1e-6)
  assert input_pipeline.known_frame_size(flat) == (20, 40)  # from the depth maps
  with pytest.raises(input_pipeline.TrackFileError, match='"depth"'):
    input_pipeline.model_tracks(flat.replace(depth=None), 'xyz')
  with pytest.raises(input_pipeline.TrackFileError, match='"frame_size"'):
    input_pipeline.model_tracks(flat.replace(depth=None), 'uv')


def test_training_transforms_layout_queries_and_padding():
  example = input_pipeline.ClipToExample('uv').map(_clip())
  padded = pipeline.PadOrCropTime(6).map(example)
  split = pipeline.SampleSupportQuery(2, 4).random_map(padded, np.random.default_rng(0))
  out = input_pipeline.ToModelInputs().map(split)
  assert sorted(out) == sorted(input_pipeline.MODEL_INPUT_KEYS[:4] + input_pipeline.TARGET_KEYS)
  assert out['support_tracks'].shape == (2, 6, 2)
  assert out['query_points'].shape == (4, 3) and out['target_points'].shape == (4, 6, 2)
  assert int(out['boundary_frame']) == 4
  np.testing.assert_array_equal(out['support_tracks'][:, 4:], 0.0)
  np.testing.assert_array_equal(out['target_tracks_visible'][:, 4:], 0.0)
  ids = lambda a: set(np.round((a[:, 0, 0] * 40 - 1.5) / 2).astype(int))
  assert not ids(out['support_tracks']) & ids(out['target_points'])
  for q, track in zip(out['query_points'], split['query_indices']):
    frame = int(q[0])
    if track == 0:
      assert frame == 0  # never visible -> frame 0
    elif track == 1:
      assert frame == 2  # its only visible frame
    np.testing.assert_allclose(q[1:], [(2 * track + 1.5) / 40, (frame + 1.5) / 20], rtol=1e-6)


def test_normalize_inputs_by_the_visible_support():
  support = np.asarray([[[0.0, 0.0], [2.0, 0.0]], [[9.0, 9.0], [0.0, 2.0]]], np.float32)
  visible = np.asarray([[1.0, 1.0], [0.0, 1.0]], np.float32)[..., None]
  inputs = {'support_tracks': support, 'support_tracks_visible': visible,
            'query_points': np.asarray([[1.0, 2.0, 2.0]], np.float32),
            'target_points': np.ones((1, 2, 2), np.float32)}
  out, centre, scale = input_pipeline.normalize_inputs(inputs, 'support')
  # Visible points (0, 0), (2, 0), (0, 2): centre (2/3, 2/3); squared distances 8/9, 20/9, 20/9.
  np.testing.assert_allclose(centre, [2 / 3, 2 / 3], rtol=1e-6)
  radius = np.sqrt(np.mean([8 / 9, 20 / 9, 20 / 9]))
  assert scale == pytest.approx(radius, rel=1e-6)
  np.testing.assert_allclose(out['query_points'], [[1.0, *(np.asarray([2, 2]) - 2 / 3) / radius]],
                             rtol=1e-5)
  np.testing.assert_allclose(out['target_points'], (1 - 2 / 3) / radius, rtol=1e-5)
  same, centre, scale = input_pipeline.normalize_inputs(inputs, 'none')
  np.testing.assert_array_equal(same['support_tracks'], support)
  assert float(scale) == 1.0 and not centre.any()


def test_support_features_match_the_feature_functions_and_pad():
  clip = input_pipeline.track_clip(_clip(depth=True))
  support = np.asarray([4, 2])
  feats = input_pipeline.support_features(clip, support, 6, depth=True, dino=False)
  pixels = np.swapaxes(input_pipeline.pixel_tracks(clip)[:, support], 0, 1)  # [S, T, 2]
  want = features_lib.depth_features(clip.depth, pixels)
  assert feats['depth_features'].shape == (2, 6, 256)
  np.testing.assert_array_equal(feats['depth_features'][:, :4], want)
  np.testing.assert_array_equal(feats['depth_features'][:, 4:], 0.0)
  assert input_pipeline.support_features(clip, support, 6, depth=False, dino=False) == {}
  with pytest.raises(input_pipeline.TrackFileError, match='dino_features'):
    input_pipeline.support_features(clip, support, 6, depth=False, dino=True)


class _EchoModel:
  """Stands in for a Reconstructor: every query track stays at its query point."""
  num_frames, depth, dino = 6, False, False

  def __call__(self, support, support_visible, query_points, boundary, feats):
    self.seen = (support, support_visible, query_points, boundary, feats)
    pos = np.broadcast_to(query_points[:, None, 1:], (len(query_points), 6, 3))
    return pos, np.ones((len(query_points), 6), np.float32)


def test_reconstruct_builds_the_query_points_from_the_clip():
  clip = input_pipeline.track_clip(_clip())
  tracks = input_pipeline.model_tracks(clip, 'xyz')
  echo = _EchoModel()
  pred, visible = evaluators.reconstruct(echo, clip, tracks, np.asarray([0, 1]),
                                         np.asarray([5, 3]), clip.query_frames)
  support, support_visible, queries, boundary, _ = echo.seen
  assert boundary == 4 and support.shape == (2, 4, 3) and support_visible.shape == (2, 4)
  np.testing.assert_array_equal(queries[:, 0], [1, 3])  # queries_xyt t of tracks 5, 3
  np.testing.assert_array_equal(queries[:, 1:], tracks[[1, 3], [5, 3]])
  assert pred.shape == (4, 2, 3) and visible.shape == (4, 2) and visible.all()
