"""Tests for the TracksTo4D clip file reader / writer / converter."""

import os

import numpy as np
import pytest

from tapkit.data import clip as clip_lib
from tapkit.data import synthetic
from tapkit.data import tracks4d_format as t4d

T, H, W, N = 6, 48, 64, 40


@pytest.fixture(scope='module')
def clip() -> clip_lib.Clip:
  return synthetic.generate_clip(21, T, H, W, N)


def _valid(num_frames: int = 4, num_points: int = 5) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  k = np.tile(np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]), (num_frames, 1, 1))
  ms = np.tile(np.eye(4)[:3], (num_frames, 1, 1))
  return {
      'pred_tracks': rng.uniform(0, 64, (1, num_frames, num_points, 2)).astype(np.float32),
      'pred_visibility': rng.uniform(size=(1, num_frames, num_points)) > 0.3,
      'started_at': np.zeros((1, 1, num_points), np.float32),
      'Ks_all': k,
      'Ms_all': ms,
      'GT_depth_tracks_all': rng.uniform(1, 5, (1, num_frames, num_points)).astype(np.float32),
      'GT_mask_tracks_all': np.ones((1, num_frames, num_points), np.float32),
  }


@pytest.mark.parametrize('name,frames,points,full', [('dataset_00_clip', 60, 180, True),
                                                     ('dataset_01_clip', 45, 150, False)])
def test_golden_files_load(golden, name, frames, points, full):
  data = t4d.load_tracks4d_npz(golden / 'tracks4d' / f'{name}.npz')
  assert data['pred_tracks'].shape == (1, frames, points, 2)
  assert data['pred_tracks'].dtype == np.float32
  assert data['pred_visibility'].shape == (1, frames, points)
  assert data['pred_visibility'].dtype == bool
  assert data['started_at'].shape == (1, 1, points)
  # Grids queried at frames 0, 20, 40, ... and the last frame (official preprocessing).
  np.testing.assert_array_equal(np.unique(data['started_at']), [0, 20, 40, frames - 1])
  assert ('Ks_all' in data) == full and ('Ms_all' in data) == full
  if full:
    assert data['Ks_all'].shape == (frames, 3, 3) and data['Ms_all'].shape == (frames, 3, 4)
    # Ms are rigid world-to-camera [R | t].
    r = data['Ms_all'][:, :, :3]
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-6)
    assert data['GT_depth_tracks_all'].shape == (1, frames, points)
    assert set(np.unique(data['GT_mask_tracks_all'])) <= {0.0, 1.0}


def test_clip_to_tracks4d_values(clip):
  out = t4d.clip_to_tracks4d(clip)
  fx, fy, cx, cy = clip.intrinsics.astype(np.float64)
  xyz = clip.tracks_xyz.astype(np.float64)
  front = xyz[..., 2] > 0
  assert front.all()  # synthetic cameras look at the scene from outside
  x = fx * xyz[..., 0] / xyz[..., 2] + cx
  y = fy * xyz[..., 1] / xyz[..., 2] + cy
  np.testing.assert_allclose(out['pred_tracks'][0], np.stack([x, y], -1), atol=1e-3)
  # At the query frame the 2D track is the query point.
  qt = clip.queries_xyt[:, 2].astype(int)
  np.testing.assert_allclose(out['pred_tracks'][0, qt, np.arange(N)], clip.queries_xyt[:, :2],
                             atol=2e-3)
  np.testing.assert_array_equal(out['pred_visibility'][0], clip.visibility)
  np.testing.assert_array_equal(out['started_at'][0, 0], clip.queries_xyt[:, 2])
  np.testing.assert_allclose(out['Ks_all'][3], [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
  np.testing.assert_allclose(out['Ms_all'], clip.extrinsics_w2c[:, :3, :])
  np.testing.assert_allclose(out['GT_depth_tracks_all'][0], clip.tracks_xyz[..., 2])
  np.testing.assert_array_equal(out['GT_mask_tracks_all'][0],
                                np.broadcast_to(clip.dynamic_mask, (T, N)).astype(np.float32))
  # Reprojecting the GT depth with K and the inverse pose gives fixed world points
  # for static tracks (what TracksTo4D's static branch assumes).
  static = ~clip.dynamic_mask
  ray = np.stack([(out['pred_tracks'][0, ..., 0] - cx) / fx,
                  (out['pred_tracks'][0, ..., 1] - cy) / fy, np.ones((T, N))], -1)
  cam = ray * out['GT_depth_tracks_all'][0, ..., None]
  r, tr = out['Ms_all'][:, :, :3], out['Ms_all'][:, :, 3]
  world = np.einsum('tji,tnj->tni', r, cam - tr[:, None])
  np.testing.assert_allclose(world[:, static], np.broadcast_to(world[:1, static],
                                                               world[:, static].shape), atol=1e-4)


def test_points_behind_camera_get_nearest_projection():
  xyz = np.array([[[1.0, 0.0, 2.0], [0.0, 0.0, -1.0]],
                  [[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]],
                  [[0.0, 0.0, -3.0], [0.0, 0.0, -1.0]],
                  [[0.0, 1.0, 4.0], [0.0, 0.0, -1.0]]], np.float32)  # [T=4, N=2, 3]
  clip = clip_lib.Clip(tracks_xyz=xyz, visibility=np.array([[1, 0], [0, 0], [0, 0], [1, 0]], bool),
                       queries_xyt=np.array([[60.0, 30.0, 0.0], [30.0, 30.0, 0.0]], np.float32),
                       intrinsics=np.array([60.0, 60.0, 30.0, 20.0], np.float32))
  out = t4d.clip_to_tracks4d(clip)
  tracks = out['pred_tracks'][0]
  np.testing.assert_allclose(tracks[0, 0], [60.0, 20.0])  # 60 * 1/2 + 30
  np.testing.assert_allclose(tracks[1, 0], [60.0, 20.0])  # nearest: frame 0 (tie -> earlier)
  np.testing.assert_allclose(tracks[2, 0], [30.0, 35.0])  # nearest: frame 3
  np.testing.assert_allclose(tracks[3, 0], [30.0, 35.0])
  np.testing.assert_allclose(tracks[:, 1], np.tile([30.0, 20.0], (4, 1)))  # never in front
  np.testing.assert_array_equal(out['GT_depth_tracks_all'][0, :, 0], [2.0, 0.0, 0.0, 4.0])
  assert 'Ms_all' not in out and 'GT_mask_tracks_all' not in out


def test_round_trip(tmp_path, clip):
  arrays = t4d.clip_to_tracks4d(clip)
  path = tmp_path / 'sub' / 'clip.npz'
  t4d.save_tracks4d_npz(path, arrays)
  loaded = t4d.load_tracks4d_npz(path)
  assert sorted(loaded) == sorted(arrays)
  for key, value in arrays.items():
    np.testing.assert_array_equal(loaded[key], value, err_msg=key)
  assert loaded['pred_tracks'].dtype == np.float32
  assert loaded['Ms_all'].dtype == np.float64
  # Plain np.load (as the official reader does) sees the same fields.
  with np.load(path) as raw:
    assert sorted(raw.files) == sorted(arrays)


def _write(path, data) -> str:
  np.savez(path, **data)
  return os.fspath(path)


@pytest.mark.parametrize('field,change,message', [
    ('pred_tracks', None, 'is missing'),
    ('started_at', None, 'is missing'),
    ('pred_tracks', lambda a: a[0], r'\[1, T, P, 2\]'),
    ('pred_tracks', lambda a: a.astype(np.int32), 'floating point'),
    ('pred_tracks', lambda a: np.where(a > 30, np.nan, a), 'non-finite'),
    ('pred_visibility', lambda a: a.astype(np.float32), 'bool'),
    ('pred_visibility', lambda a: a[:, :-1], 'shape'),
    ('started_at', lambda a: a[0], 'shape'),
    ('started_at', lambda a: a + 10, 'frame indices'),
    ('started_at', lambda a: a + 0.5, 'frame indices'),
    ('Ks_all', lambda a: a[:-1], 'shape'),
    ('Ks_all', lambda a: -a, 'focal'),
    ('Ms_all', lambda a: np.concatenate([a, np.tile([[[0, 0, 0, 1.0]]], (4, 1, 1))], 1), '4x4'),
    ('Ms_all', lambda a: a.astype(object), 'pickle'),
    ('GT_depth_tracks_all', lambda a: a[..., :2], 'shape'),
    ('GT_mask_tracks_all', lambda a: np.full(a.shape, 'x'), 'finite numbers'),
])
def test_malformed_files_rejected(tmp_path, field, change, message):
  data = _valid()
  if change is None:
    del data[field]
  else:
    data[field] = change(data[field])
  path = _write(tmp_path / 'bad.npz', data)
  with pytest.raises(ValueError, match=message) as info:
    t4d.load_tracks4d_npz(path)
  assert path in str(info.value) and field in str(info.value)
  # The writer refuses what the reader would refuse (object arrays aside: in memory
  # they are only a dtype problem).
  if not (change is not None and message == 'pickle'):
    with pytest.raises(ValueError, match=field):
      t4d.save_tracks4d_npz(tmp_path / 'out.npz', data)
    assert not (tmp_path / 'out.npz').exists()


def test_unreadable_files_rejected(tmp_path):
  junk = tmp_path / 'junk.npz'
  junk.write_bytes(b'not a zip file at all')
  with pytest.raises(ValueError, match='junk.npz'):
    t4d.load_tracks4d_npz(junk)
  single = tmp_path / 'single.npy'
  np.save(single, np.zeros(3))
  with pytest.raises(ValueError, match='single array'):
    t4d.load_tracks4d_npz(single)
  truncated = tmp_path / 'truncated.npz'
  _write(truncated, _valid())
  truncated.write_bytes(truncated.read_bytes()[:200])
  with pytest.raises(ValueError, match='truncated.npz'):
    t4d.load_tracks4d_npz(truncated)


def test_integer_visibility_accepted(tmp_path):
  data = _valid()
  data['pred_visibility'] = data['pred_visibility'].astype(np.uint8)
  loaded = t4d.load_tracks4d_npz(_write(tmp_path / 'int_vis.npz', data))
  assert loaded['pred_visibility'].dtype == bool
  np.testing.assert_array_equal(loaded['pred_visibility'], data['pred_visibility'] == 1)
