"""The TracksTo4D clip file (`.npz`): one validating reader, a writer, and a converter.

Layout (as the official CoTracker2 preprocessing writes it; P tracks, T frames):

  pred_tracks          [1, T, P, 2] float32  (x, y) pixels, also where occluded
  pred_visibility      [1, T, P]    bool
  started_at           [1, 1, P]    float32  query frame of each track, in [0, T - 1]
  Ks_all               [T, 3, 3]    float    per-frame intrinsics, pixels     (optional)
  Ms_all               [T, 3, 4]    float    world-to-camera [R | t]          (optional)
  GT_depth_tracks_all  [1, T, P]    float    depth of each track, <= 0 = unknown (optional)
  GT_mask_tracks_all   [1, T, P]    float    > 0 = moving-object (foreground) (optional)

`Ms_all` must have 3 rows: a 4x4 pose makes the official reader fail, so it is
rejected here. The official reader turns `Ms_all` into camera-to-world poses; this
module only reads and writes the file and leaves conventions to the caller.
Files are read with `tapkit.io.npz` (no pickles); every problem raises a ValueError that
names the file and the field.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from tapkit.data import geometry
from tapkit.data.clip import Clip
from tapkit.io import npz as npz_io

REQUIRED_FIELDS = ('pred_tracks', 'pred_visibility', 'started_at')
OPTIONAL_FIELDS = ('Ks_all', 'Ms_all', 'GT_depth_tracks_all', 'GT_mask_tracks_all')

# Camera-frame depths at or below this (metres) cannot be projected.
_MIN_DEPTH = 1e-6


def _is_real(array: np.ndarray) -> bool:
  return np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)


def validate_tracks4d(data: Mapping[str, np.ndarray],
                      name: str = 'tracks4d') -> dict[str, np.ndarray]:
  """Checks TracksTo4D arrays and returns the known fields.

  Args:
    data: field name -> array (e.g. an opened `.npz`). Unknown fields are dropped.
    name: file name used in error messages.

  Returns:
    The known fields as numpy arrays with their stored dtypes, except that an
    integer 0/1 `pred_visibility` is returned as bool.

  Raises:
    ValueError: naming `name` and the field, on a missing field, wrong shape,
      wrong dtype, non-finite value, or out-of-range query frame.
  """

  def fail(field: str, message: str) -> None:
    raise ValueError(f'{name}: field {field!r} {message}')

  for field in REQUIRED_FIELDS:
    if field not in data:
      fail(field, f'is missing (required fields: {", ".join(REQUIRED_FIELDS)})')
  out = {}

  tracks = np.asarray(data['pred_tracks'])
  if tracks.ndim != 4 or tracks.shape[0] != 1 or tracks.shape[3] != 2:
    fail('pred_tracks', f'must have shape [1, T, P, 2], got {list(tracks.shape)}')
  if not np.issubdtype(tracks.dtype, np.floating):
    fail('pred_tracks', f'must be floating point (pixels), got {tracks.dtype}')
  _, num_frames, num_points, _ = tracks.shape
  if num_frames < 1 or num_points < 1:
    fail('pred_tracks', f'must hold at least one frame and one track, got {list(tracks.shape)}')
  if not np.all(np.isfinite(tracks)):
    fail('pred_tracks', 'has non-finite values')
  out['pred_tracks'] = tracks
  per_point = (1, num_frames, num_points)

  vis = np.asarray(data['pred_visibility'])
  if vis.shape != per_point:
    fail('pred_visibility', f'must have shape {list(per_point)}, got {list(vis.shape)}')
  if vis.dtype != np.bool_:
    if not np.issubdtype(vis.dtype, np.integer) or not np.all((vis == 0) | (vis == 1)):
      fail('pred_visibility', f'must be bool (or integer 0/1), got {vis.dtype}')
    vis = vis.astype(bool)
  out['pred_visibility'] = vis

  started = np.asarray(data['started_at'])
  if started.shape != (1, 1, num_points):
    fail('started_at', f'must have shape [1, 1, {num_points}], got {list(started.shape)}')
  if not _is_real(started) or not np.all(np.isfinite(started)):
    fail('started_at', f'must hold finite numbers, got dtype {started.dtype}')
  if (np.any(started < 0) or np.any(started > num_frames - 1) or
      np.any(started != np.round(started))):
    fail('started_at', f'must hold whole frame indices in [0, {num_frames - 1}]')
  out['started_at'] = started

  if 'Ks_all' in data:
    ks = np.asarray(data['Ks_all'])
    if ks.shape != (num_frames, 3, 3):
      fail('Ks_all', f'must have shape [{num_frames}, 3, 3], got {list(ks.shape)}')
    if not _is_real(ks) or not np.all(np.isfinite(ks)):
      fail('Ks_all', f'must hold finite numbers, got dtype {ks.dtype}')
    if np.any(ks[:, 0, 0] <= 0) or np.any(ks[:, 1, 1] <= 0):
      fail('Ks_all', 'must have positive focal lengths K[0, 0] and K[1, 1]')
    out['Ks_all'] = ks

  if 'Ms_all' in data:
    ms = np.asarray(data['Ms_all'])
    if ms.ndim == 3 and ms.shape[1:] == (4, 4):
      fail('Ms_all', f'must be [{num_frames}, 3, 4] world-to-camera [R | t], got a 4x4 '
           f'array {list(ms.shape)} (the official reader fails on it; drop the last row)')
    if ms.shape != (num_frames, 3, 4):
      fail('Ms_all', f'must have shape [{num_frames}, 3, 4], got {list(ms.shape)}')
    if not _is_real(ms) or not np.all(np.isfinite(ms)):
      fail('Ms_all', f'must hold finite numbers, got dtype {ms.dtype}')
    out['Ms_all'] = ms

  for field in ('GT_depth_tracks_all', 'GT_mask_tracks_all'):
    if field in data:
      value = np.asarray(data[field])
      if value.shape != per_point:
        fail(field, f'must have shape {list(per_point)}, got {list(value.shape)}')
      if value.dtype != np.bool_ and (not _is_real(value) or not np.all(np.isfinite(value))):
        fail(field, f'must hold finite numbers, got dtype {value.dtype}')
      out[field] = value
  return out


def load_tracks4d_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Reads and validates one TracksTo4D `.npz` (no pickles); see `validate_tracks4d`."""
  name = os.fspath(path)
  if npz_io.is_npy(name):
    raise ValueError(f'{name}: expected an .npz archive of named fields, got a single array')
  data = npz_io.read_npz(name)
  return validate_tracks4d(data, name)


def save_tracks4d_npz(path: str | os.PathLike[str], data: Mapping[str, np.ndarray]) -> None:
  """Validates `data` and writes it with the official dtypes (compressed `.npz`).

  pred_tracks / started_at / GT arrays are written as float32, pred_visibility as
  bool, Ks_all / Ms_all as float64 (as the official preprocessing does).
  """
  name = os.fspath(path)
  checked = validate_tracks4d(data, name)
  dtypes = {'pred_tracks': np.float32, 'pred_visibility': np.bool_, 'started_at': np.float32,
            'Ks_all': np.float64, 'Ms_all': np.float64, 'GT_depth_tracks_all': np.float32,
            'GT_mask_tracks_all': np.float32}
  arrays = {k: np.asarray(v).astype(dtypes[k]) for k, v in checked.items()}
  parent = os.path.dirname(name)
  if parent:
    os.makedirs(parent, exist_ok=True)
  with open(name, 'wb') as f:  # a file object keeps the exact name (no '.npz' added)
    np.savez_compressed(f, **arrays)


def _fill_along_time(values: np.ndarray, valid: np.ndarray, default: np.ndarray) -> np.ndarray:
  """Replaces invalid entries of values [T, N, C] by the nearest valid frame's value.

  Ties go to the earlier frame; tracks with no valid frame get `default` [C].
  """
  num_frames = values.shape[0]
  frames = np.arange(num_frames)[:, None]
  prev = np.maximum.accumulate(np.where(valid, frames, -1), axis=0)  # -1: none before
  nxt = np.minimum.accumulate(np.where(valid, frames, num_frames)[::-1], axis=0)[::-1]
  d_prev = np.where(prev >= 0, frames - prev, np.iinfo(np.int64).max)
  d_next = np.where(nxt < num_frames, nxt - frames, np.iinfo(np.int64).max)
  source = np.where(d_prev <= d_next, prev, nxt).clip(0, num_frames - 1)
  filled = np.take_along_axis(values, source[..., None], axis=0)
  return np.where(valid.any(axis=0)[None, :, None], filled, default)


def clip_to_tracks4d(clip: Clip) -> dict[str, np.ndarray]:
  """Converts a TAPVid-3D clip to TracksTo4D arrays.

  pred_tracks are the pinhole projections x = fx X / Z + cx of `tracks_xyz`
  (exact, so they are "predictions" with zero error). Where a point is behind the
  camera it has no projection; the value of the nearest frame where it has one is
  repeated (the principal point if it never has one) so that the network input
  stays bounded - those entries are never visible.

  Args:
    clip: with tracks_xyz [T, N, 3] (metres, camera frame), visibility [T, N],
      queries_xyt [N, 3], intrinsics [4]; extrinsics_w2c [T, 4, 4] and
      dynamic_mask [N] are used when present.

  Returns:
    pred_tracks [1, T, N, 2] float32, pred_visibility [1, T, N] bool, started_at
    [1, 1, N] float32, Ks_all [T, 3, 3] float64, GT_depth_tracks_all [1, T, N]
    float32 (z, 0 where behind the camera), and when available Ms_all [T, 3, 4]
    float64 (world-to-camera) and GT_mask_tracks_all [1, T, N] float32 (1 on
    moving objects).
  """
  xyz = np.asarray(clip.tracks_xyz, dtype=np.float64)
  if xyz.ndim != 3 or xyz.shape[2] != 3:
    raise ValueError(f'{clip.path or "clip"}: tracks_xyz must be [T, N, 3], got {xyz.shape}')
  num_frames, num_points, _ = xyz.shape
  fx, fy, cx, cy = np.asarray(clip.intrinsics, dtype=np.float64)
  z = xyz[..., 2]
  front = z > _MIN_DEPTH
  xy = geometry.project(xyz, np.array([fx, fy, cx, cy]), behind='principal', min_depth=_MIN_DEPTH)
  xy = _fill_along_time(xy, front, np.array([cx, cy]))
  k = np.zeros((num_frames, 3, 3))
  k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = fx, fy, cx, cy, 1.0
  started = np.asarray(clip.queries_xyt, dtype=np.float64)[:, 2]
  out = {
      'pred_tracks': xy[None].astype(np.float32),
      'pred_visibility': np.asarray(clip.visibility, dtype=bool)[None],
      'started_at': np.round(started)[None, None].astype(np.float32),
      'Ks_all': k,
      'GT_depth_tracks_all': np.where(front, z, 0.0)[None].astype(np.float32),
  }
  if clip.extrinsics_w2c is not None:
    out['Ms_all'] = np.asarray(clip.extrinsics_w2c, dtype=np.float64)[:, :3, :]
  if clip.dynamic_mask is not None:
    mask = np.broadcast_to(np.asarray(clip.dynamic_mask, dtype=np.float32),
                           (num_frames, num_points))
    out['GT_mask_tracks_all'] = mask[None].copy()
  return validate_tracks4d(out, clip.path or 'clip')
