"""The 3DPoV tracks file (`.npz`): one validating reader and an atomic writer.

A tracks file holds the 2D point tracks of one window of a video, as a point tracker returned
them (CoTracker3 offline with a 16 x 16 grid queried on the window's first frame in the 3DPoV
paper). A video's frames live in a frame folder (sorted image files); its windows are stored
one file per window:

  <tracks_root>/<video>/<window>.npz      (np.savez; read pickle-free with tapkit.io.npz)
    tracks         float [L, N, 2]  (x, y) pixels in the `image_size` frame, pixel centres at
                                    integers; finite everywhere
    visibility     bool or 0/1 [L, N]
    frame_indices  int [L]          indices into the sorted frame files of the video, strictly
                                    increasing (the window's frames; frame_indices[0] is the query
                                    frame)
    image_size     int [2]          (H, W) in pixels of the frames the tracker saw (coordinates
                                    are rescaled from it, so tracking at another resolution is fine)

N = grid_size² points queried on the window's first frame (any grid: CoTracker's margin grid or
pixel centres); the same N for every file of a run. A video may have several windows (e.g. the
non-overlapping CO3D / DL3DV windows, or several random starts for YouTube-VOS).

Writers: `python -m dpov_jax.prepare` (frame folders -> one file per window),
`python -m tapkit.track --format dpov` (one video -> one window), and the synthetic clips of
`dpov_jax.data.ensure_synthetic_windows`. Reader: `dpov_jax.data.FrameWindowSource`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from tapkit.io import BadFileError
from tapkit.io import npz as npz_io

TRACKS_KEYS = ('tracks', 'visibility', 'frame_indices', 'image_size')


class TracksFileError(BadFileError):
  """A tracks file (or the frame folder it refers to) that does not follow the format.

  A `tapkit.io.BadFileError` (so a `ValueError`): the message names the file and the field.
  """


def read_tracks_file(path: str | os.PathLike,
                     grid_size: int | None = None) -> dict[str, np.ndarray]:
  """Reads and validates one tracks file (format in the module docstring).

  Args:
    path: the `.npz` file.
    grid_size: when given, N must equal grid_size².

  Returns:
    {'tracks': [L, N, 2] float32, 'visibility': [L, N] bool, 'frame_indices': [L] int64,
     'image_size': [2] int64 (H, W)}.

  Raises:
    TracksFileError naming the file and the offending field.
  """
  path = os.fspath(path)
  try:
    arrays = npz_io.read_npz(path)
  except BadFileError as e:
    if 'pickle' in e.detail:  # object arrays need pickle: refused
      raise TracksFileError(path, e.field, f'cannot read without pickle ({e.detail}); store '
                            'plain numeric arrays') from e
    raise TracksFileError(path, None, f'not a readable .npz file ({e})') from e
  return validate_tracks(arrays, path, grid_size)


def validate_tracks(arrays: Mapping[str, np.ndarray], path: str,
                    grid_size: int | None = None) -> dict[str, np.ndarray]:
  """Checks the fields of a tracks file (read from or to be written to `path`).

  Returns:
    The fields cast as `read_tracks_file` returns them.

  Raises:
    TracksFileError naming `path` and the offending field.
  """
  missing = [k for k in TRACKS_KEYS if k not in arrays]
  if missing:
    raise TracksFileError(path, None, f'missing field(s) {missing} (has {sorted(arrays)}); a '
                          f'tracks file holds {list(TRACKS_KEYS)}')
  tracks, vis = arrays['tracks'], arrays['visibility']
  frames, size = arrays['frame_indices'], arrays['image_size']
  if tracks.dtype.kind not in 'fiu' or tracks.ndim != 3 or tracks.shape[-1] != 2:
    raise TracksFileError(path, 'tracks', f'must be a numeric [L, N, 2] array, got '
                          f'{tracks.dtype} {tracks.shape}')
  length, n = tracks.shape[:2]
  if length < 1 or n < 1:
    raise TracksFileError(path, 'tracks', f'is empty ({tracks.shape})')
  if not np.all(np.isfinite(tracks)):
    raise TracksFileError(path, 'tracks', 'has non-finite values')
  if vis.shape != (length, n):
    raise TracksFileError(path, 'visibility', f'must be [L, N] = [{length}, {n}], got '
                          f'{vis.shape}')
  if vis.dtype != np.bool_:
    if vis.dtype.kind not in 'iuf' or not np.all((vis == 0) | (vis == 1)):
      raise TracksFileError(path, 'visibility', f'must be bool or 0/1, got {vis.dtype} with '
                            'other values')
  if frames.shape != (length,) or frames.dtype.kind not in 'iu':
    raise TracksFileError(path, 'frame_indices', f'must be an integer [L] = [{length}] array, '
                          f'got {frames.dtype} {frames.shape}')
  if np.any(frames < 0) or np.any(np.diff(frames.astype(np.int64)) <= 0):
    raise TracksFileError(path, 'frame_indices', f'must be non-negative and strictly '
                          f'increasing, got {frames.tolist()[:8]}...')
  if size.shape != (2,) or size.dtype.kind not in 'iu' or np.any(size < 1):
    raise TracksFileError(path, 'image_size', f'must be two positive integers (H, W), got '
                          f'{size.dtype} {size.tolist() if size.size < 5 else size.shape}')
  if grid_size is not None and n != grid_size * grid_size:
    raise TracksFileError(path, 'tracks', f'has N = {n} points, expected grid_size² = '
                          f'{grid_size}² = {grid_size * grid_size}')
  return {'tracks': tracks.astype(np.float32), 'visibility': vis.astype(bool),
          'frame_indices': frames.astype(np.int64), 'image_size': size.astype(np.int64)}


def write_tracks_file(path: str | os.PathLike, tracks: np.ndarray, visibility: np.ndarray,
                      frame_indices: np.ndarray | Sequence[int],
                      image_size: Sequence[int]) -> None:
  """Validates the arrays, then writes one tracks file atomically (temporary file, rename).

  Args:
    path: the `.npz` file; its folder is created.
    tracks: [L, N, 2] (x, y) pixels of the `image_size` frames.
    visibility: [L, N] bool.
    frame_indices: [L] strictly increasing frame numbers of the window in its video.
    image_size: (H, W) of the frames the tracker saw.

  Raises:
    TracksFileError (nothing is left at `path`) when the arrays break the format.
  """
  path = os.fspath(path)
  arrays = validate_tracks({
      'tracks': np.asarray(tracks, np.float32), 'visibility': np.asarray(visibility, bool),
      'frame_indices': np.asarray(frame_indices, np.int64),
      'image_size': np.asarray(image_size, np.int64)}, path)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  npz_io.write_npz(path, arrays)  # atomic: temporary file in the same folder, then rename
