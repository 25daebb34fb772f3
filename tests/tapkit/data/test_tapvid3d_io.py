"""Reader / writer of TAPVid-3D clip files: round trips, official layouts, malformed files."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image

from tapkit.data import clip as clip_lib
from tapkit.io import npz as safe_npz
from tapkit.data import tapvid3d

T, N, H, W = 4, 6, 24, 32


def _smooth_frames(rng) -> np.ndarray:
  """[T, H, W, 3] uint8 gradients: JPEG keeps them to a few grey levels."""
  yy, xx = np.mgrid[0:H, 0:W]
  base = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1)  # No edges: values < 160.
  return np.stack([base + 10 * t + rng.integers(0, 3) for t in range(T)]).astype(np.uint8)


def make_clip(seed: int = 0, frames: bool = True) -> clip_lib.Clip:
  rng = np.random.default_rng(seed)
  tracks = rng.uniform(-1, 1, (T, N, 3)).astype(np.float32)
  tracks[..., 2] = rng.uniform(1.0, 4.0, (T, N))
  queries = np.stack([rng.uniform(0, W, N), rng.uniform(0, H, N),
                      rng.integers(0, T, N)], axis=-1).astype(np.float32)
  w2c = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
  w2c[:, :3, 3] = rng.normal(size=(T, 3))
  return clip_lib.Clip(
      tracks_xyz=tracks, visibility=rng.random((T, N)) > 0.3, queries_xyt=queries,
      intrinsics=np.array([30.0, 31.0, 16.0, 12.0], np.float32), extrinsics_w2c=w2c,
      raw_frames=_smooth_frames(rng) if frames else None,
      depth=rng.uniform(0.5, 5.0, (T, H, W)).astype(np.float32),
      object_ids=np.arange(N, dtype=np.int32) % 2,
      dynamic_mask=np.arange(N) % 2 == 1,
      extras={'scene_scale': np.array(2.5)})


def _jpeg(frame: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(frame).save(buffer, format='JPEG', quality=90)
  return buffer.getvalue()


def _official_arrays(clip: clip_lib.Clip) -> dict:
  """The fields exactly as the official generators pass them to np.savez."""
  return {
      'images_jpeg_bytes': [_jpeg(f) for f in clip.raw_frames],  # list of bytes -> |S
      'queries_xyt': clip.queries_xyt, 'tracks_XYZ': clip.tracks_xyz,
      'visibility': clip.visibility, 'fx_fy_cx_cy': clip.intrinsics,
      'extrinsics_w2c': clip.extrinsics_w2c,
  }


# ----------------------------------------------------------------------------
# Round trips and accepted layouts.


@pytest.mark.parametrize('frames_format', tapvid3d.FRAMES_FORMATS)
def test_round_trip(tmp_path, frames_format):
  clip = make_clip()
  path = tmp_path / f'{frames_format}.npz'
  tapvid3d.save_clip(path, clip, frames_format=frames_format)
  # Everything we write loads with numpy's pickle-free loader.
  with np.load(path, allow_pickle=False) as raw:
    assert set(raw.files) >= {'tracks_XYZ', 'visibility', 'queries_xyt', 'fx_fy_cx_cy'}
    if frames_format == 'jpeg_bytes':
      assert raw['images_jpeg_bytes'].dtype.kind == 'S'
  loaded = tapvid3d.load_clip(path)
  np.testing.assert_array_equal(loaded.tracks_xyz, clip.tracks_xyz)
  assert loaded.tracks_xyz.dtype == np.float32
  np.testing.assert_array_equal(loaded.visibility, clip.visibility)
  np.testing.assert_array_equal(loaded.queries_xyt, clip.queries_xyt)
  np.testing.assert_array_equal(loaded.intrinsics, clip.intrinsics)
  np.testing.assert_array_equal(loaded.extrinsics_w2c, clip.extrinsics_w2c)
  np.testing.assert_array_equal(loaded.depth, clip.depth)
  np.testing.assert_array_equal(loaded.object_ids, clip.object_ids)
  np.testing.assert_array_equal(loaded.dynamic_mask, clip.dynamic_mask)
  assert list(loaded.extras) == ['scene_scale'] and loaded.extras['scene_scale'] == 2.5
  assert loaded.frame_size == (H, W)
  error = np.abs(loaded.frames.astype(int) - clip.raw_frames.astype(int))
  if frames_format == 'jpeg_bytes':
    assert 0 < error.mean() < 2.0  # Lossy, but close on smooth images.
  else:
    assert error.max() == 0  # raw and PNG blob are lossless.


def test_round_trip_without_frames_and_compressed(tmp_path):
  clip = make_clip(frames=False).replace(depth=None)
  tapvid3d.save_clip(tmp_path / 'c.npz', clip, compress=True)
  loaded = tapvid3d.load_clip(tmp_path / 'c.npz')
  assert not loaded.has_frames
  np.testing.assert_array_equal(loaded.tracks_xyz, clip.tracks_xyz)


def test_save_is_atomic_and_refuses_invalid_clip(tmp_path):
  clip = make_clip()
  bad = clip.replace(tracks_xyz=np.full_like(clip.tracks_xyz, np.nan))
  with pytest.raises(ValueError, match='tracks_XYZ'):
    tapvid3d.save_clip(tmp_path / 'bad.npz', bad)
  assert os.listdir(tmp_path) == []  # No partial or temporary file left behind.


def test_official_fixed_width_bytes_file(tmp_path):
  clip = make_clip()
  arrays = _official_arrays(clip)
  # JPEGs padded with NULs: a |S array strips them, decoding still works.
  arrays['images_jpeg_bytes'][1] += b'\x00\x00'
  np.savez(tmp_path / 'official.npz', **arrays)
  with np.load(tmp_path / 'official.npz', allow_pickle=False) as raw:
    assert raw['images_jpeg_bytes'].dtype.kind == 'S'
  loaded = tapvid3d.load_clip(tmp_path / 'official.npz')
  assert len(loaded.jpeg_bytes) == T
  assert all(b.endswith(b'\xff\xd9') for b in loaded.jpeg_bytes)
  assert loaded.jpeg_bytes[0] == arrays['images_jpeg_bytes'][0]
  assert loaded.frames.shape == (T, H, W, 3)
  np.testing.assert_array_equal(loaded.tracks_xyz, clip.tracks_xyz)


def test_object_array_file(tmp_path):
  clip = make_clip()
  arrays = _official_arrays(clip)
  jpegs = np.empty(T, dtype=object)
  jpegs[:] = arrays['images_jpeg_bytes']
  arrays['images_jpeg_bytes'] = jpegs
  np.savez(tmp_path / 'object.npz', **arrays)
  loaded = tapvid3d.load_clip(tmp_path / 'object.npz')
  assert loaded.jpeg_bytes == list(jpegs)
  # Same pixels as a numpy decode of the same bytes.
  np.testing.assert_array_equal(loaded.frames[2], clip_lib.decode_jpeg(jpegs[2]))


def test_predictions_file(tmp_path):
  clip = make_clip()
  probabilities = np.linspace(0, 1, T * N).reshape(T, N)
  tapvid3d.save_predictions(tmp_path / 'p.npz', clip.tracks_xyz, probabilities)
  pred = tapvid3d.load_predictions(tmp_path / 'p.npz')
  np.testing.assert_array_equal(pred.tracks_xyz, clip.tracks_xyz)
  np.testing.assert_array_equal(pred.visibility, probabilities)  # Kept as stored.
  # A full clip file is also a valid prediction file.
  tapvid3d.save_clip(tmp_path / 'c.npz', clip)
  assert tapvid3d.load_predictions(tmp_path / 'c.npz').tracks_xyz.shape == (T, N, 3)
  np.savez(tmp_path / 'bad.npz', tracks_XYZ=clip.tracks_xyz, visibility=np.ones((T, N + 1)))
  with pytest.raises(ValueError, match=r"bad\.npz: field 'visibility'"):
    tapvid3d.load_predictions(tmp_path / 'bad.npz')


def test_eval_intrinsics():
  clip = make_clip()  # 24 x 32 frames.
  # Official evaluation: all four intrinsics times k = 256 / min(H, W), in float64.
  k = 256 / 24
  intrinsics = tapvid3d.eval_intrinsics(clip.intrinsics, 24, 32)
  assert intrinsics.dtype == np.float64
  np.testing.assert_array_equal(intrinsics, clip.intrinsics.astype(np.float64) * k)
  assert intrinsics[0] == 320.0 and intrinsics[3] == 128.0


def test_splits():
  assert len(tapvid3d.split_files('minival', 'adt')) == 50
  assert len(tapvid3d.split_files('full_eval')) == 1906 + 2407 + 106
  assert len(tapvid3d.split_files('all', 'pstudio')) == 156
  assert tapvid3d.split_files('minival', 'pstudio')[0] == 'basketball_5.npz'
  for name in tapvid3d.split_files('minival', 'drivetrack')[:3]:
    assert tapvid3d.source_from_filename(name) == 'drivetrack'
  assert tapvid3d.source_from_filename('Apartment_release_meal_seq136_8.npz') == 'adt'
  assert tapvid3d.source_from_filename('boxes_6.npz') == 'pstudio'
  with pytest.raises(ValueError, match='split'):
    tapvid3d.split_files('train')


# ----------------------------------------------------------------------------
# Malformed files: one clear ValueError naming file and field; no code execution.


class _RunsCode:
  """Pickles to a call of os.system; must never be executed by the reader."""

  def __init__(self, command: str):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def _npy_member(dtype_descr: str, shape: tuple, payload: bytes) -> bytes:
  header = repr({'descr': dtype_descr, 'fortran_order': False, 'shape': shape}).encode()
  header += b' ' * (63 - (len(header) + 10) % 64) + b'\n'
  return b'\x93NUMPY\x01\x00' + len(header).to_bytes(2, 'little') + header + payload


def _write_zip(path, arrays: dict, raw_members: dict | None = None) -> None:
  """np.savez-compatible archive with extra hand-made members."""
  with zipfile.ZipFile(path, 'w') as archive:
    for name, value in arrays.items():
      buffer = io.BytesIO()
      np.save(buffer, np.asanyarray(value), allow_pickle=True)
      archive.writestr(name + '.npy', buffer.getvalue())
    for name, data in (raw_members or {}).items():
      archive.writestr(name, data)


def _arrays(**changes) -> dict:
  clip = make_clip()
  arrays = _official_arrays(clip)
  arrays['images_jpeg_bytes'] = np.array(arrays['images_jpeg_bytes'])
  arrays.update(changes)
  return {k: v for k, v in arrays.items() if v is not None}


def _bad_tracks(fn):
  tracks = make_clip().tracks_xyz.copy()
  fn(tracks)
  return tracks


def _object_array(items):
  array = np.empty(len(items), dtype=object)
  array[:] = items
  return array


def _visible_tn(clip=None):
  clip = clip or make_clip()
  return tuple(np.argwhere(clip.visibility)[0])


MALFORMED = {
    # name: (arrays or None, raw members, expected field)
    'missing_tracks': (_arrays(tracks_XYZ=None), None, 'tracks_XYZ'),
    'missing_visibility': (_arrays(visibility=None), None, 'visibility'),
    'missing_queries': (_arrays(queries_xyt=None), None, 'queries_xyt'),
    'missing_intrinsics': (_arrays(fx_fy_cx_cy=None), None, 'fx_fy_cx_cy'),
    'tracks_2d': (_arrays(tracks_XYZ=np.ones((T, N, 2), np.float32)), None, 'tracks_XYZ'),
    'tracks_int': (_arrays(tracks_XYZ=np.ones((T, N, 3), np.int32)), None, 'tracks_XYZ'),
    'tracks_nan': (_arrays(tracks_XYZ=_bad_tracks(lambda t: t.__setitem__((1, 2, 0), np.nan))),
                   None, 'tracks_XYZ'),
    'tracks_behind_camera': (
        _arrays(tracks_XYZ=_bad_tracks(lambda t: t.__setitem__(_visible_tn() + (2,), -0.5))),
        None, 'tracks_XYZ'),
    'visibility_shape': (_arrays(visibility=np.ones((T, N + 1), bool)), None, 'visibility'),
    'visibility_float': (_arrays(visibility=np.full((T, N), 0.5)), None, 'visibility'),
    'queries_shape': (_arrays(queries_xyt=np.zeros((N, 2), np.float32)), None, 'queries_xyt'),
    'query_frame_too_late': (
        _arrays(queries_xyt=np.tile(np.array([1.0, 1.0, T], np.float32), (N, 1))),
        None, 'queries_xyt'),
    'query_frame_negative': (
        _arrays(queries_xyt=np.tile(np.array([1.0, 1.0, -1.0], np.float32), (N, 1))),
        None, 'queries_xyt'),
    'queries_inf': (_arrays(queries_xyt=np.full((N, 3), np.inf, np.float32)), None,
                    'queries_xyt'),
    'intrinsics_shape': (_arrays(fx_fy_cx_cy=np.ones(3, np.float32)), None, 'fx_fy_cx_cy'),
    'intrinsics_negative_focal': (
        _arrays(fx_fy_cx_cy=np.array([-30.0, 31, 16, 12], np.float32)), None, 'fx_fy_cx_cy'),
    'extrinsics_shape': (_arrays(extrinsics_w2c=np.ones((T, 3, 4), np.float32)), None,
                         'extrinsics_w2c'),
    'extrinsics_not_rigid': (_arrays(extrinsics_w2c=np.ones((T, 4, 4), np.float32)), None,
                             'extrinsics_w2c'),
    'jpeg_count': (_arrays(images_jpeg_bytes=np.array([b'\xff\xd8\xff\xe0'] * (T - 1))), None,
                   'images_jpeg_bytes'),
    'jpeg_not_an_image': (_arrays(images_jpeg_bytes=np.array([b'hello'] * T)), None,
                          'images_jpeg_bytes'),
    'jpeg_2d': (_arrays(images_jpeg_bytes=np.array([[b'\xff\xd8\xff']] * T)), None,
                'images_jpeg_bytes'),
    'jpeg_object_of_str': (_arrays(images_jpeg_bytes=_object_array(['abc'] * T)), None,
                           'images_jpeg_bytes'),
    'jpeg_object_of_dict': (_arrays(images_jpeg_bytes=_object_array([{'a': 1}] * T)), None,
                            'images_jpeg_bytes'),
    'object_array_elsewhere': (_arrays(visibility=_object_array([b'x'] * T)), None,
                               'visibility'),
    'raw_frames_float': (_arrays(images_jpeg_bytes=None,
                                 frames_uint8=np.zeros((T, H, W, 3), np.float32)), None,
                         'frames_uint8'),
    'blob_offsets': (_arrays(images_jpeg_bytes=None, frames_encoded=np.zeros(10, np.uint8),
                             frames_offsets=np.array([0, 5, 4, 8, 10])), None,
                     'frames_offsets'),
    'two_frame_fields': (_arrays(frames_uint8=np.zeros((T, H, W, 3), np.uint8)), None,
                         'frames_uint8'),
    'negative_depth': (_arrays(depth=-np.ones((T, H, W), np.float32)), None, 'depth'),
    'object_ids_shape': (_arrays(object_ids=np.zeros(N + 2, np.int32)), None, 'object_ids'),
    'bad_npy_header': (_arrays(), {'extra_field.npy': b'\x93NUMPY\x01\x00\x05\x00{bad}'},
                       'extra_field'),
    'truncated_npy_data': (_arrays(), {'weights.npy': _npy_member('<f4', (10,), b'\0' * 12)},
                           'weights'),
    'not_npy_member': (_arrays(), {'readme.txt': b'hello'}, 'readme.txt'),
}


@pytest.mark.parametrize('name', sorted(MALFORMED))
def test_malformed_file_raises_clear_error(tmp_path, name):
  arrays, raw_members, field = MALFORMED[name]
  path = tmp_path / f'{name}.npz'
  _write_zip(path, arrays, raw_members)
  with pytest.raises(ValueError) as error:
    tapvid3d.load_clip(path)
  message = str(error.value)
  assert str(path) in message and f"'{field}'" in message, message


def test_truncated_and_garbage_archives(tmp_path):
  tapvid3d.save_clip(tmp_path / 'ok.npz', make_clip())
  data = (tmp_path / 'ok.npz').read_bytes()
  (tmp_path / 'cut.npz').write_bytes(data[: len(data) // 2])
  (tmp_path / 'garbage.npz').write_bytes(b'not a zip at all' * 10)
  for name in ('cut.npz', 'garbage.npz', 'missing.npz'):
    with pytest.raises(ValueError, match=rf"{name}: field '<archive>'"):
      tapvid3d.load_clip(tmp_path / name)


def test_corrupted_member_is_caught_by_crc(tmp_path):
  clip = make_clip()
  tapvid3d.save_clip(tmp_path / 'ok.npz', clip, frames_format='raw')
  data = bytearray((tmp_path / 'ok.npz').read_bytes())
  # Flip one byte inside the (stored, uncompressed) frames payload.
  offset = data.find(b'frames_uint8.npy') + 2000
  data[offset] ^= 0xFF
  (tmp_path / 'flipped.npz').write_bytes(bytes(data))
  with pytest.raises(ValueError, match=r"flipped\.npz: field 'frames_uint8'"):
    tapvid3d.load_clip(tmp_path / 'flipped.npz')


@pytest.mark.parametrize('field', ['images_jpeg_bytes', 'my_extra'])
def test_code_in_pickle_is_never_run(tmp_path, field):
  marker = tmp_path / 'pwned'
  payload = pickle.dumps(_object_array([_RunsCode(f'touch {marker}')]), protocol=3)
  members = {f'{field}.npy': _npy_member('|O', (1,), payload)}
  arrays = _arrays(images_jpeg_bytes=None) if field == 'images_jpeg_bytes' else _arrays()
  path = tmp_path / 'evil.npz'
  _write_zip(path, arrays, members)
  # Sanity: numpy's general unpickler *would* run it (proves the payload is live).
  # We do not call it; instead check the global it references.
  assert b'system' in payload
  with pytest.raises(ValueError, match=rf"evil\.npz: field '{field}'"):
    tapvid3d.load_clip(path)
  assert not marker.exists()


def test_restricted_unpickler_refuses_globals_directly(tmp_path):
  marker = tmp_path / 'pwned2'
  payload = pickle.dumps(_RunsCode(f'touch {marker}'), protocol=4)
  members = {'images_jpeg_bytes.npy': _npy_member('|O', (1,), payload)}
  _write_zip(tmp_path / 'evil2.npz', {}, members)
  with pytest.raises(safe_npz.NpzFieldError) as error:
    safe_npz.read_npz(tmp_path / 'evil2.npz', object_fields=('images_jpeg_bytes',))
  assert error.value.field == 'images_jpeg_bytes'
  assert 'refusing to load global' in str(error.value)
  assert not marker.exists()


def test_safe_npz_reads_fortran_and_scalars(tmp_path):
  fortran = np.asfortranarray(np.arange(12, dtype='>i8').reshape(3, 4))
  np.savez(tmp_path / 'a.npz', f=fortran, s=np.float64(3.5), b=np.array([b'ab', b'c']))
  out = safe_npz.read_npz(tmp_path / 'a.npz')
  np.testing.assert_array_equal(out['f'], fortran)
  assert out['f'].dtype == np.dtype('>i8') and out['s'] == 3.5 and out['s'].shape == ()
  assert out['b'].tolist() == [b'ab', b'c']
  assert safe_npz.list_fields(tmp_path / 'a.npz') == ['f', 's', 'b']
  assert list(safe_npz.read_npz(tmp_path / 'a.npz', fields=['s'])) == ['s']


@pytest.mark.parametrize('protocol', [3, 4, 5])
def test_object_array_pickle_protocols(tmp_path, protocol):
  items = [b'\xff\xd8\xff\xe0abc', b'\xff\xd8\xff\xe0de\x00']
  payload = pickle.dumps(_object_array(items), protocol=protocol)
  _write_zip(tmp_path / 'p.npz', {}, {'images_jpeg_bytes.npy': _npy_member('|O', (2,), payload)})
  out = safe_npz.read_npz(tmp_path / 'p.npz', object_fields=('images_jpeg_bytes',))
  assert out['images_jpeg_bytes'].dtype == object
  assert out['images_jpeg_bytes'].tolist() == items  # Object arrays keep trailing NULs.


@pytest.mark.parametrize('array', [
    np.array([(b'x',)], dtype=[('a', 'O')]),  # Structured dtype holding objects.
    np.array([[b'x']], dtype=object),  # 2-D.
    np.array([b'x'], dtype='S1'),  # Not an object array at all.
], ids=['structured', '2d', 'fixed_width'])
def test_object_field_must_be_plain_1d_object_array(tmp_path, array):
  payload = pickle.dumps(array, protocol=4)
  _write_zip(tmp_path / 'q.npz', {}, {'images_jpeg_bytes.npy': _npy_member('|O', (1,), payload)})
  with pytest.raises(ValueError, match=r"q\.npz: field 'images_jpeg_bytes'"):
    safe_npz.read_npz(tmp_path / 'q.npz', object_fields=('images_jpeg_bytes',))


def test_concurrent_reads_from_threads(tmp_path):
  # grain reads records from threads; header parsing must survive that.
  from concurrent import futures

  paths = []
  for i in range(4):
    path = str(tmp_path / f'clip_{i}.npz')
    tapvid3d.save_clip(path, make_clip(seed=i), frames_format='raw')
    paths.append(path)
  with futures.ThreadPoolExecutor(8) as pool:
    clips = list(pool.map(tapvid3d.load_clip, paths * 25))
  for i, loaded in enumerate(clips):
    expected = make_clip(seed=i % 4)
    np.testing.assert_array_equal(loaded.tracks_xyz, expected.tracks_xyz)
