"""The 3DPoV tracks file: round trip, validation, atomic writes."""

import os

import numpy as np
import pytest

from tapkit.data import dpov_tracks
from tapkit.io import BadFileError


def _good():
  return {'tracks': np.zeros((3, 4, 2), np.float32), 'visibility': np.ones((3, 4), bool),
          'frame_indices': np.arange(3), 'image_size': np.array([8, 8])}


def test_round_trip_casts_and_validates(tmp_path):
  tracks = np.arange(24, dtype=np.float64).reshape(3, 4, 2)
  vis = np.array([[1, 0, 1, 1]] * 3)
  path = tmp_path / 'v' / 'w0.npz'
  dpov_tracks.write_tracks_file(path, tracks, vis, [2, 5, 9], (40, 60))
  rec = dpov_tracks.read_tracks_file(path, grid_size=2)
  assert rec['tracks'].dtype == np.float32 and rec['visibility'].dtype == np.bool_
  np.testing.assert_array_equal(rec['tracks'], tracks.astype(np.float32))
  assert rec['visibility'][:, 1].tolist() == [False, False, False]
  assert rec['frame_indices'].tolist() == [2, 5, 9] and rec['image_size'].tolist() == [40, 60]
  assert os.listdir(tmp_path / 'v') == ['w0.npz']  # no temporary file left


def test_writer_refuses_bad_arrays_and_leaves_nothing(tmp_path):
  path = tmp_path / 'w.npz'
  with pytest.raises(dpov_tracks.TracksFileError, match="field 'frame_indices': must be "
                     'non-negative and strictly increasing') as err:
    dpov_tracks.write_tracks_file(path, np.zeros((3, 1, 2)), np.ones((3, 1)), [0, 0, 1], (8, 8))
  assert isinstance(err.value, BadFileError) and err.value.path == str(path)
  with pytest.raises(dpov_tracks.TracksFileError, match="field 'tracks': has non-finite"):
    dpov_tracks.write_tracks_file(path, np.full((1, 1, 2), np.nan), [[True]], [0], (8, 8))
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize('fields,match', [
    ({'visibility': np.ones((3, 4), bool), 'frame_indices': np.arange(3),
      'image_size': np.array([8, 8])}, r'missing field\(s\) \[.tracks.\]'),
    ({'tracks': np.zeros((3, 4, 3))}, "field 'tracks': must be a numeric \\[L, N, 2\\]"),
    ({'tracks': np.full((3, 4, 2), np.nan)}, "field 'tracks': has non-finite"),
    ({'visibility': np.full((3, 4), 2)}, "field 'visibility': must be bool or 0/1"),
    ({'visibility': np.ones((3, 5), bool)}, "field 'visibility': must be \\[L, N\\]"),
    ({'frame_indices': np.array([0, 2, 1])}, "field 'frame_indices': must be non-negative"),
    ({'frame_indices': np.arange(3.0)}, "field 'frame_indices': must be an integer"),
    ({'image_size': np.array([8])}, "field 'image_size'"),
    ({'tracks': np.zeros((3, 9, 2)), 'visibility': np.ones((3, 9), bool)},
     'N = 9 points, expected grid_size'),
    ({'tracks': np.array([[['a', 'b']]], dtype=object)}, 'without pickle'),
])
def test_reader_rejects_malformed(tmp_path, fields, match):
  arrays = {**_good(), **fields}
  if 'tracks' not in fields and 'missing' in match:
    arrays.pop('tracks')
  path = tmp_path / 'bad.npz'
  np.savez(path, **arrays)
  with pytest.raises(dpov_tracks.TracksFileError, match=match) as err:
    dpov_tracks.read_tracks_file(path, grid_size=2)
  assert str(path) in str(err.value)
  good = tmp_path / 'good.npz'
  np.savez(good, **_good())
  assert dpov_tracks.read_tracks_file(good, grid_size=2)['tracks'].shape == (3, 4, 2)


def test_reader_names_unreadable_file(tmp_path):
  path = tmp_path / 'junk.npz'
  path.write_bytes(b'not a zip')
  with pytest.raises(dpov_tracks.TracksFileError, match='not a readable .npz'):
    dpov_tracks.read_tracks_file(path)


def test_dpov_data_reexports_the_format():
  from dpov_jax import data  # pylint: disable=g-import-not-at-top
  assert data.read_tracks_file is dpov_tracks.read_tracks_file
  assert data.TracksFileError is dpov_tracks.TracksFileError


def test_track_cli_writes_the_dpov_format(texture, tmp_path):
  from tapkit import track  # pylint: disable=g-import-not-at-top
  from tapkit.io import video as video_io  # pylint: disable=g-import-not-at-top
  frames_root = tmp_path / 'frames'
  video_io.write_video(os.fspath(frames_root / 'texture'), texture, fps=10)  # a frame folder
  out = tmp_path / 'tracks'
  assert track.main(['--video', os.fspath(frames_root / 'texture'), '--tracker', 'lk',
                     '--grid_size', '4', '--format', 'dpov', '--out', os.fspath(out)]) == 0
  rec = dpov_tracks.read_tracks_file(out / 'texture' / 'window_000.npz', grid_size=4)
  assert rec['frame_indices'].tolist() == list(range(10))
  assert rec['image_size'].tolist() == [64, 80]
  # The texture moves by (2, 1) px per frame: lk recovers it for the visible points.
  vis = rec['visibility']
  shift = rec['tracks'][9] - rec['tracks'][0]
  np.testing.assert_allclose(shift[vis[9]], np.broadcast_to([18.0, 9.0], shift[vis[9]].shape),
                             atol=0.5)
  assert vis[9].sum() >= 8
  # The tracks file pairs with the frame folder in 3DPoV's reader.
  from dpov_jax import data  # pylint: disable=g-import-not-at-top
  clip = data.FrameWindowSource(frames_root, out, input_size=32, num_clip_frames=3,
                                regular_step=4, grid_size=4)[0]
  assert clip['frames'].shape == (3, 32, 32, 3)
  # Queries off frame 0 do not fit the format: the video is listed as failed.
  assert track.main(['--video', os.fspath(frames_root / 'texture'), '--grid_query_frame', '2',
                     '--format', 'dpov', '--out', os.fspath(tmp_path / 'bad')]) == 2
