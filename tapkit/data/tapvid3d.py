"""TAPVid-3D clip files: the one reader (validating, pickle-free) and writer.

File layout (official field names; see tapkit/data/README.md for the conventions):
  tracks_XYZ         [T, N, 3] float, metres, camera frame of each frame
  visibility         [T, N] bool (0/1 integers accepted)
  queries_xyt        [N, 3] float, (x pixel, y pixel, t frame)
  fx_fy_cx_cy        [4] float, pixels of the stored frames
  extrinsics_w2c     [T, 4, 4] float, world-to-camera (optional)
Frames, one of (optional, e.g. absent in track-only files):
  images_jpeg_bytes  [T] per-frame JPEG bytes: fixed-width `|S<len>` as the official
                     generators write it, or a 1-D object array of `bytes` (read with a
                     restricted unpickler, see `tapkit.io.npz`)
  frames_uint8       [T, H, W, 3] uint8 (ours, `frames_format='raw'`)
  frames_encoded     [L] uint8 concatenated encoded frames (PNG/JPEG) and
  frames_offsets     [T + 1] int64 frame boundaries in it (ours, `frames_format='png_blob'`)
Our extras (optional): depth [T, H, W], normals [T, H, W, 3], object_ids [N],
dynamic_mask [N]; any other field goes to `Clip.extras`.

Prediction files hold `tracks_XYZ` [T, N, 3] and `visibility` [T, N]; read them with
`load_predictions`.

Every problem raises one `ValueError` (`tapkit.io.BadFileError`, alias `NpzFieldError`) whose
message starts with the file name and names the field.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import io
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

from tapkit.data import clip as clip_lib
from tapkit.io import npz as safe_npz

Clip = clip_lib.Clip
NpzFieldError = safe_npz.NpzFieldError

TRACKS = 'tracks_XYZ'
VISIBILITY = 'visibility'
QUERIES = 'queries_xyt'
INTRINSICS = 'fx_fy_cx_cy'
EXTRINSICS = 'extrinsics_w2c'
JPEG_BYTES = 'images_jpeg_bytes'
FRAMES_RAW = 'frames_uint8'
FRAMES_BLOB = 'frames_encoded'
FRAMES_OFFSETS = 'frames_offsets'
OPTIONAL_FIELDS = ('depth', 'normals', 'object_ids', 'dynamic_mask')

REQUIRED_FIELDS = (TRACKS, VISIBILITY, QUERIES, INTRINSICS)
FRAME_FIELDS = (JPEG_BYTES, FRAMES_RAW, FRAMES_BLOB, FRAMES_OFFSETS)
RESERVED_FIELDS = REQUIRED_FIELDS + (EXTRINSICS,) + FRAME_FIELDS + OPTIONAL_FIELDS

FRAMES_FORMATS = ('jpeg_bytes', 'raw', 'png_blob')

_JPEG_MAGIC = b'\xff\xd8\xff'
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'

# The official evaluation measures pixel thresholds at this shortest side.
EVAL_SHORT_SIDE = 256

DATA_SOURCES = ('adt', 'drivetrack', 'pstudio')
SPLITS = ('minival', 'full_eval', 'all')


# ----------------------------------------------------------------------------
# Field checks. Each takes (path, field name, array) and raises NpzFieldError.


def _fail(path, field: str, message: str):
  raise NpzFieldError(path if path is not None else '<clip>', field, message)


def _check_float(path, field, x: np.ndarray) -> np.ndarray:
  if not np.issubdtype(x.dtype, np.floating):
    _fail(path, field, f'expected a floating dtype, got {x.dtype}')
  return x


def _check_real(path, field, x: np.ndarray) -> np.ndarray:
  """Floating or integer (not bool, not complex); kept in its stored dtype."""
  if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating)
                                 or np.issubdtype(x.dtype, np.integer)):
    _fail(path, field, f'expected a real numeric dtype, got {x.dtype}')
  return x


def _check_finite(path, field, x: np.ndarray) -> None:
  if not np.all(np.isfinite(x)):
    bad = np.argwhere(~np.isfinite(x))[0].tolist()
    _fail(path, field, f'holds non-finite values (first at index {bad})')


def _check_shape(path, field, x: np.ndarray, shape: Sequence[int | None]) -> None:
  """`shape` entries of None match any size."""
  pretty = '[' + ', '.join('?' if s is None else str(s) for s in shape) + ']'
  if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
    _fail(path, field, f'expected shape {pretty}, got {list(x.shape)}')


def _as_bool(path, field, x: np.ndarray) -> np.ndarray:
  if x.dtype == np.bool_:
    return x
  if np.issubdtype(x.dtype, np.integer) and np.all((x == 0) | (x == 1)):
    return x.astype(np.bool_)
  _fail(path, field, f'expected bool (or 0/1 integers), got dtype {x.dtype}')


def _frames_from_bytes_field(path, x: np.ndarray, num_frames: int) -> list[bytes]:
  """`images_jpeg_bytes` as a list of per-frame encoded images."""
  if x.ndim != 1:
    _fail(path, JPEG_BYTES, f'expected a 1-D array of per-frame bytes, got shape '
          f'{list(x.shape)}')
  if x.dtype.kind == 'S':
    # `tolist` strips trailing NUL bytes of each item (numpy's fixed-width semantics).
    # JPEG ends in FF D9 and PNG in its IEND CRC, so nothing of the image is lost; a
    # writer that padded frames with NULs gets them back unpadded, which decoders accept.
    frames = [bytes(item) for item in x.tolist()]
  elif x.dtype == np.dtype(object):
    frames = list(x)  # safe_npz already checked every item is `bytes`.
  else:
    _fail(path, JPEG_BYTES, f'expected bytes (|S or object of bytes), got dtype {x.dtype}')
  _check_encoded_frames(path, JPEG_BYTES, frames, num_frames)
  return frames


def _check_encoded_frames(path, field, frames: list[bytes], num_frames: int) -> None:
  if len(frames) != num_frames:
    _fail(path, field, f'has {len(frames)} frames, tracks have T={num_frames}')
  for i, frame in enumerate(frames):
    if not (frame.startswith(_JPEG_MAGIC) or frame.startswith(_PNG_MAGIC)):
      _fail(path, field, f'frame {i} is not a JPEG or PNG image '
            f'(starts with {frame[:4]!r}, {len(frame)} bytes)')


def _frames_from_blob(path, blob: np.ndarray, offsets: np.ndarray,
                      num_frames: int) -> list[bytes]:
  if blob.dtype != np.uint8 or blob.ndim != 1:
    _fail(path, FRAMES_BLOB, f'expected a 1-D uint8 blob, got {blob.dtype} '
          f'shape {list(blob.shape)}')
  if not np.issubdtype(offsets.dtype, np.integer):
    _fail(path, FRAMES_OFFSETS, f'expected integer offsets, got {offsets.dtype}')
  _check_shape(path, FRAMES_OFFSETS, offsets, (num_frames + 1,))
  if offsets[0] != 0 or offsets[-1] != blob.shape[0] or np.any(np.diff(offsets) <= 0):
    _fail(path, FRAMES_OFFSETS, f'offsets must rise strictly from 0 to the blob length '
          f'{blob.shape[0]}, got first {offsets[0]} last {offsets[-1]}')
  data = blob.tobytes()
  frames = [data[int(a):int(b)] for a, b in zip(offsets[:-1], offsets[1:])]
  _check_encoded_frames(path, FRAMES_BLOB, frames, num_frames)
  return frames


def _clip_from_arrays(arrays: dict[str, np.ndarray], path) -> Clip:
  """Validates the fields of one clip file and assembles a `Clip`."""
  missing = [f for f in REQUIRED_FIELDS if f not in arrays]
  if missing:
    _fail(path, missing[0], f'required field missing (file has {sorted(arrays)})')

  tracks = _check_float(path, TRACKS, arrays[TRACKS])
  _check_shape(path, TRACKS, tracks, (None, None, 3))
  num_frames, num_tracks = tracks.shape[:2]
  if num_frames < 1 or num_tracks < 1:
    _fail(path, TRACKS, f'empty clip: T={num_frames}, N={num_tracks}')
  _check_finite(path, TRACKS, tracks)

  visibility = arrays[VISIBILITY]
  _check_shape(path, VISIBILITY, visibility, (num_frames, num_tracks))
  visibility = _as_bool(path, VISIBILITY, visibility)
  depth_visible = tracks[..., 2][visibility]
  if np.any(depth_visible <= 0):
    t, n = np.argwhere(visibility & (tracks[..., 2] <= 0))[0].tolist()
    _fail(path, TRACKS, f'visible point has depth z <= 0 (frame {t}, track {n}: '
          f'z={tracks[t, n, 2]})')

  queries = _check_real(path, QUERIES, arrays[QUERIES])
  _check_shape(path, QUERIES, queries, (num_tracks, 3))
  _check_finite(path, QUERIES, queries)
  # The metrics read round-half-to-even of t as the frame index.
  query_frames = np.round(queries[:, 2])
  if np.any(query_frames < 0) or np.any(query_frames >= num_frames):
    _fail(path, QUERIES, f'query frame t outside [0, {num_frames}): range '
          f'[{queries[:, 2].min()}, {queries[:, 2].max()}]')

  intrinsics = _check_real(path, INTRINSICS, arrays[INTRINSICS])
  _check_shape(path, INTRINSICS, intrinsics, (4,))
  _check_finite(path, INTRINSICS, intrinsics)
  if intrinsics[0] <= 0 or intrinsics[1] <= 0:
    _fail(path, INTRINSICS, f'focal lengths must be positive, got fx={intrinsics[0]}, '
          f'fy={intrinsics[1]}')

  extrinsics = arrays.get(EXTRINSICS)
  if extrinsics is not None:
    _check_float(path, EXTRINSICS, extrinsics)
    _check_shape(path, EXTRINSICS, extrinsics, (num_frames, 4, 4))
    _check_finite(path, EXTRINSICS, extrinsics)
    # Rigid 4x4 poses; a loose tolerance accepts float16/32 round-off.
    if not np.allclose(extrinsics[:, 3], [0, 0, 0, 1], atol=1e-3):
      _fail(path, EXTRINSICS, 'bottom row of every pose must be [0, 0, 0, 1]')

  frame_fields = [f for f in (JPEG_BYTES, FRAMES_RAW, FRAMES_BLOB) if f in arrays]
  if len(frame_fields) > 1:
    _fail(path, frame_fields[1], f'several frame fields present {frame_fields}; '
          'keep one')
  if (FRAMES_BLOB in arrays) != (FRAMES_OFFSETS in arrays):
    _fail(path, FRAMES_OFFSETS if FRAMES_BLOB in arrays else FRAMES_BLOB,
          f'{FRAMES_BLOB} and {FRAMES_OFFSETS} must be stored together')
  raw_frames = jpeg_bytes = None
  if JPEG_BYTES in arrays:
    jpeg_bytes = _frames_from_bytes_field(path, arrays[JPEG_BYTES], num_frames)
  elif FRAMES_BLOB in arrays:
    jpeg_bytes = _frames_from_blob(path, arrays[FRAMES_BLOB], arrays[FRAMES_OFFSETS],
                                   num_frames)
  elif FRAMES_RAW in arrays:
    raw_frames = arrays[FRAMES_RAW]
    if raw_frames.dtype != np.uint8:
      _fail(path, FRAMES_RAW, f'expected uint8 frames, got {raw_frames.dtype}')
    _check_shape(path, FRAMES_RAW, raw_frames, (num_frames, None, None, 3))

  clip = Clip(
      tracks_xyz=tracks, visibility=visibility, queries_xyt=queries,
      intrinsics=intrinsics, extrinsics_w2c=extrinsics, raw_frames=raw_frames,
      jpeg_bytes=jpeg_bytes, path=None if path is None else os.fspath(path))
  _check_extras(path, arrays, clip)
  return clip


def _check_extras(path, arrays: dict[str, np.ndarray], clip: Clip) -> None:
  """Fills and validates depth / normals / object_ids / dynamic_mask / extras."""
  num_frames, num_tracks = clip.num_frames, clip.num_tracks
  depth = arrays.get('depth')
  if depth is not None:
    _check_float(path, 'depth', depth)
    _check_shape(path, 'depth', depth, (num_frames, None, None))
    _check_finite(path, 'depth', depth)
    if np.any(depth < 0):
      _fail(path, 'depth', 'holds negative depths (0 marks "nothing hit")')
    clip.depth = depth
  normals = arrays.get('normals')
  if normals is not None:
    _check_float(path, 'normals', normals)
    _check_shape(path, 'normals', normals, (num_frames, None, None, 3))
    _check_finite(path, 'normals', normals)
    if depth is not None and normals.shape[1:3] != depth.shape[1:3]:
      _fail(path, 'normals', f'size {list(normals.shape[1:3])} differs from depth '
            f'{list(depth.shape[1:3])}')
    clip.normals = normals
  for field, maps in (('depth', depth), ('normals', normals)):
    if maps is not None and clip.has_frames:
      # Decodes one frame at most; only clips carrying dense maps pay for it.
      if tuple(maps.shape[1:3]) != clip.frame_size:
        _fail(path, field, f'size {list(maps.shape[1:3])} differs from the frames '
              f'{list(clip.frame_size)}')
  object_ids = arrays.get('object_ids')
  if object_ids is not None:
    if not np.issubdtype(object_ids.dtype, np.integer):
      _fail(path, 'object_ids', f'expected integers, got {object_ids.dtype}')
    _check_shape(path, 'object_ids', object_ids, (num_tracks,))
    clip.object_ids = object_ids
  dynamic_mask = arrays.get('dynamic_mask')
  if dynamic_mask is not None:
    _check_shape(path, 'dynamic_mask', dynamic_mask, (num_tracks,))
    clip.dynamic_mask = _as_bool(path, 'dynamic_mask', dynamic_mask)
  clip.extras = {k: v for k, v in arrays.items() if k not in RESERVED_FIELDS}


# ----------------------------------------------------------------------------
# Reading.


def load_clip(path: str | os.PathLike[str]) -> Clip:
  """Reads and validates one TAPVid-3D clip `.npz` (official or ours).

  Arrays keep their stored dtypes (official files: float32), so metrics see exactly
  what the official evaluation sees; `visibility` / `dynamic_mask` become bool. JPEG
  frames stay encoded until `Clip.frames` is used.

  Raises:
    ValueError (`NpzFieldError`) naming the file and the field, for: an unreadable or
    truncated archive, a missing required field, wrong shapes or dtypes, T/N
    disagreements, non-finite values, a visible point with z <= 0, a query frame
    outside [0, T), non-positive focal lengths, a non-rigid pose, malformed frames, or
    any pickled field other than a plain array of bytes in `images_jpeg_bytes`.
  """
  arrays = safe_npz.read_npz(path, object_fields=(JPEG_BYTES,))
  return _clip_from_arrays(arrays, path)


@dataclasses.dataclass(frozen=True)
class Predictions:
  """A prediction file's content, as stored (dtypes untouched).

  tracks_xyz: [T, N, 3] float, metres in each frame's camera frame.
  visibility: [T, N] bool or numeric; as in the official script any non-zero value
    means visible (`np.logical_not` is how it becomes occlusion).
  """

  tracks_xyz: np.ndarray
  visibility: np.ndarray


def load_predictions(path: str | os.PathLike[str]) -> Predictions:
  """Reads a prediction `.npz` (`tracks_XYZ` [T, N, 3], `visibility` [T, N]).

  Only those two fields are read (other members are not even decompressed). Values are
  not range-checked: like the official script, NaN or wrong predictions are scored, not
  rejected. Structure is checked: both fields present, real numeric, `[T, N, 3]` and
  `[T, N]` with the same T, N.
  """
  arrays = safe_npz.read_npz(path, fields=(TRACKS, VISIBILITY))
  for field in (TRACKS, VISIBILITY):
    if field not in arrays:
      _fail(path, field, 'required field missing')
  tracks = arrays[TRACKS]
  _check_real(path, TRACKS, tracks)
  _check_shape(path, TRACKS, tracks, (None, None, 3))
  visibility = arrays[VISIBILITY]
  if visibility.dtype != np.bool_:
    _check_real(path, VISIBILITY, visibility)
  _check_shape(path, VISIBILITY, visibility, tracks.shape[:2])
  return Predictions(tracks_xyz=tracks, visibility=visibility)


# ----------------------------------------------------------------------------
# Writing.


def _encode(frame: np.ndarray, fmt: str, quality: int) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  buffer = io.BytesIO()
  image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), mode='RGB')
  if fmt == 'JPEG':
    image.save(buffer, format='JPEG', quality=quality)
  else:
    image.save(buffer, format='PNG')
  return buffer.getvalue()


def _clip_arrays(clip: Clip, frames_format: str, jpeg_quality: int) -> dict[str, np.ndarray]:
  arrays: dict[str, np.ndarray] = {
      TRACKS: np.asarray(clip.tracks_xyz),
      VISIBILITY: np.asarray(clip.visibility),
      QUERIES: np.asarray(clip.queries_xyt),
      INTRINSICS: np.asarray(clip.intrinsics),
  }
  if clip.extrinsics_w2c is not None:
    arrays[EXTRINSICS] = np.asarray(clip.extrinsics_w2c)
  if clip.has_frames:
    if frames_format == 'jpeg_bytes':
      if clip.jpeg_bytes is not None and all(b.startswith(_JPEG_MAGIC) for b in clip.jpeg_bytes):
        frames = list(clip.jpeg_bytes)
      else:
        frames = [_encode(f, 'JPEG', jpeg_quality) for f in clip.frames]
      for i, frame in enumerate(frames):
        if frame.endswith(b'\x00'):
          # A fixed-width |S array cannot keep trailing NULs.
          raise NpzFieldError(clip.path or '<clip>', JPEG_BYTES,
                              f'frame {i} ends in NUL bytes; use frames_format="png_blob"')
      # A list of bytes becomes a fixed-width |S<max len> array, exactly like the
      # official generators' np.savez call: no pickle involved.
      arrays[JPEG_BYTES] = np.array(frames, dtype=bytes)
    elif frames_format == 'raw':
      arrays[FRAMES_RAW] = np.asarray(clip.frames, dtype=np.uint8)
    else:
      # Keep already-encoded frames verbatim (lossless w.r.t. the clip); encode raw
      # frames as PNG (lossless).
      frames = (list(clip.jpeg_bytes) if clip.jpeg_bytes is not None
                else [_encode(f, 'PNG', jpeg_quality) for f in clip.frames])
      lengths = np.array([len(f) for f in frames], dtype=np.int64)
      arrays[FRAMES_BLOB] = np.frombuffer(b''.join(frames), dtype=np.uint8)
      arrays[FRAMES_OFFSETS] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  for name in OPTIONAL_FIELDS:
    value = getattr(clip, name)
    if value is not None:
      arrays[name] = np.asarray(value)
  for name, value in clip.extras.items():
    if name in RESERVED_FIELDS:
      raise NpzFieldError(clip.path or '<clip>', name,
                          'extras may not reuse a reserved field name')
    arrays[name] = np.asarray(value)
  return arrays


def clip_arrays(clip: Clip, frames_format: str = 'png_blob', jpeg_quality: int = 95
                ) -> dict[str, np.ndarray]:
  """The fields `save_clip` writes for `clip` (same `frames_format`s), without writing."""
  if frames_format not in FRAMES_FORMATS:
    raise ValueError(f'frames_format must be one of {FRAMES_FORMATS}, got {frames_format!r}')
  return _clip_arrays(clip, frames_format, jpeg_quality)


def clip_from_arrays(arrays: dict[str, np.ndarray], name: str) -> Clip:
  """A validated `Clip` from the fields of a clip file (the checks of `load_clip`);
  errors name `name`."""
  return _clip_from_arrays(arrays, name)


def save_clip(
    path: str | os.PathLike[str],
    clip: Clip,
    frames_format: str = 'jpeg_bytes',
    jpeg_quality: int = 95,
    compress: bool = False,
) -> None:
  """Writes a clip with the official field names, atomically and without pickle.

  Args:
    path: destination `.npz`.
    clip: the clip; validated with the reader's checks before anything is written.
    frames_format: 'jpeg_bytes' (official `images_jpeg_bytes`, a fixed-width `|S`
      array; raw frames are JPEG-encoded at `jpeg_quality`), 'raw' (`frames_uint8`
      [T, H, W, 3]) or 'png_blob' (`frames_encoded` uint8 blob + `frames_offsets`
      [T + 1] int64; raw frames are PNG-encoded, already-encoded frames kept as they
      are). Ignored for clips without frames.
    jpeg_quality: JPEG quality when encoding raw frames for 'jpeg_bytes'.
    compress: deflate the archive (np.savez_compressed); loads the same way.
  """
  if frames_format not in FRAMES_FORMATS:
    raise ValueError(f'{os.fspath(path)}: frames_format must be one of {FRAMES_FORMATS}, '
                     f'got {frames_format!r}')
  arrays = _clip_arrays(clip, frames_format, jpeg_quality)
  # The same checks as on load, so we never write a file we would refuse to read.
  _clip_from_arrays(dict(arrays), path)
  safe_npz.write_npz(path, arrays, compress=compress)


def save_predictions(path: str | os.PathLike[str], tracks_xyz: np.ndarray,
                     visibility: np.ndarray) -> None:
  """Writes a prediction file (`tracks_XYZ` [T, N, 3], `visibility` [T, N]) atomically."""
  safe_npz.write_npz(path, {TRACKS: np.asarray(tracks_xyz),
                            VISIBILITY: np.asarray(visibility)})


def save_tracks2d(path: str | os.PathLike[str], tracks_uv: np.ndarray, visibility: np.ndarray,
                  queries_xyt: np.ndarray, image_size: Sequence[int],
                  fps: float | None = None) -> None:
  """Writes 2D tracks (no depth, no camera) in the TAPVid-3D naming, atomically.

  Fields: `tracks` [T, N, 2] float32 (x, y) pixels (centres at integers), `visibility`
  [T, N] bool, `queries_xyt` [N, 3] float32 (x, y, t), `query_frames` [N] int64 (t
  rounded down), `frame_size` [2] int64 (height, width) of the frames the pixels refer
  to, and `fps` [] float32 when given. `trajan3d.score --tracks` reads these files.
  """
  tracks = np.asarray(tracks_uv, np.float32)
  visibility = np.asarray(visibility, bool)
  queries = np.asarray(queries_xyt, np.float32)
  name = os.fspath(path)
  if tracks.ndim != 3 or tracks.shape[-1] != 2 or min(tracks.shape[:2]) < 1:
    raise ValueError(f'{name}: tracks_uv must be [T, N, 2] with T, N >= 1, got {tracks.shape}')
  if visibility.shape != tracks.shape[:2]:
    raise ValueError(f'{name}: visibility must be {list(tracks.shape[:2])}, got '
                     f'{list(visibility.shape)}')
  if queries.shape != (tracks.shape[1], 3):
    raise ValueError(f'{name}: queries_xyt must be [{tracks.shape[1]}, 3], got '
                     f'{list(queries.shape)}')
  query_frames = np.floor(queries[:, 2]).astype(np.int64)
  if np.any(query_frames < 0) or np.any(query_frames >= tracks.shape[0]):
    raise ValueError(f'{name}: query frames must lie in [0, {tracks.shape[0]})')
  arrays = {'tracks': tracks, VISIBILITY: visibility, QUERIES: queries,
            'query_frames': query_frames,
            'frame_size': np.asarray([int(s) for s in image_size], np.int64)}
  if fps is not None:
    arrays['fps'] = np.asarray(fps, np.float32)
  safe_npz.write_npz(path, arrays)


# ----------------------------------------------------------------------------
# Resizing.


def eval_intrinsics(intrinsics: np.ndarray, height: int, width: int,
                    short_side: int = EVAL_SHORT_SIDE) -> np.ndarray:
  """Intrinsics at the official evaluation resolution, exactly as evaluate_model.py.

  All four of (fx, fy, cx, cy) are multiplied by one factor k = short_side / min(H, W)
  (float64, unrounded), and the result is float64.

  Args:
    intrinsics: [4] (fx, fy, cx, cy) in pixels of the H×W frames.
    height, width: size of the (first) stored frame, pixels.
    short_side: shortest side of the evaluation frames, pixels.
  """
  factor = short_side / np.min(np.array([height, width]))
  return np.asarray(intrinsics) * factor


# ----------------------------------------------------------------------------
# Splits (official lists, packaged as tapkit/data/assets/tapvid3d_splits.json).


@functools.cache
def _splits() -> dict[str, dict[str, list[str]]]:
  text = importlib.resources.files('tapkit.data').joinpath(
      'assets/tapvid3d_splits.json').read_text()
  return json.loads(text)


def split_files(split: str, source: str | None = None) -> list[str]:
  """File names of a split, for one data source or all (chained adt, drivetrack, pstudio).

  Args:
    split: 'minival', 'full_eval' or 'all' (minival followed by full_eval, as the
      official `get_all_files`).
    source: 'adt', 'drivetrack', 'pstudio', or None for every source.
  """
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
  if split == 'all':
    return split_files('minival', source) + split_files('full_eval', source)
  table = _splits()[split]
  if source is None:
    return [name for files in table.values() for name in files]
  if source not in table:
    raise ValueError(f'unknown data source {source!r}; known: {list(table)}')
  return list(table[source])


def source_from_filename(filename: str) -> str:
  """The official rule on the bare name: `tapvid3d_*` → drivetrack, `Lite*`/`Apartment*`
  → adt, anything else → pstudio (a path with folders is not stripped, as upstream)."""
  name = filename
  if name.startswith('tapvid3d_'):
    return 'drivetrack'
  if name.startswith('Lite') or name.startswith('Apartment'):
    return 'adt'
  return 'pstudio'


def iter_clips(paths: Iterable[str | os.PathLike[str]]):
  """Loads clips one by one (generator), e.g. `iter_clips(glob.glob('dir/*.npz'))`."""
  for path in paths:
    yield load_clip(path)
