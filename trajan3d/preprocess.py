"""Track geometry for TRAJAN / 3DSPA: pixel normalisation, time padding, lifting
2D tracks to 3D with depth, projection.

Pure numpy: no JAX, no I/O. The support / query sampling and the assembly of
model inputs built on these live in `trajan3d.input_pipeline`.

Layouts: tracker outputs and clip files are time-major (`[T, N, C]`, `[T, N]`);
2D coordinates are (x, y) pixels of the original video, or normalised to
[0, 1] as the TRAJAN colab does.
"""

from __future__ import annotations

import numpy as np

from tapkit.data import geometry
from tapkit.ops import sampling


def _require(cond: bool, msg: str) -> None:
  if not cond:
    raise ValueError(msg)


def normalize_pixel_tracks(tracks_px: np.ndarray, width: int, height: int
                           ) -> np.ndarray:
  """Pixels -> normalised [0, 1]: `(p + 0.5) / (width, height)`.

  Args:
    tracks_px: [..., 2] (x, y) pixels of the original video.
    width, height: video size in pixels.

  Returns:
    [..., 2] float32.
  """
  tracks_px = np.asarray(tracks_px, np.float32)
  _require(tracks_px.shape[-1:] == (2,),
           f'tracks_px must end in 2 (x, y), got {tracks_px.shape}.')
  _require(width > 0 and height > 0, f'bad video size {width}x{height}.')
  return (tracks_px + np.float32(0.5)) / np.asarray([width, height],
                                                    np.float32)


def denormalize_tracks(tracks: np.ndarray, width: int, height: int
                       ) -> np.ndarray:
  """Normalised [0, 1] -> pixels as the TRAJAN colab does: `t * (w, h)`.

  The +0.5 of `normalize_pixel_tracks` is not undone (the colab's
  half-pixel inconsistency); subtract 0.5 for the exact inverse.
  """
  return np.asarray(tracks, np.float32) * np.asarray([width, height],
                                                     np.float32)


def pad_or_crop_time(array: np.ndarray, length: int, axis: int = 0
                     ) -> np.ndarray:
  """Crops `axis` to `length` or pads it with zeros at the end."""
  array = np.asarray(array)
  n = array.shape[axis]
  if n >= length:
    return np.take(array, np.arange(length), axis=axis)
  pad = [(0, 0)] * array.ndim
  pad[axis] = (0, length - n)
  return np.pad(array, pad, constant_values=0)


def sample_depth(depth: np.ndarray, xy_px: np.ndarray) -> np.ndarray:
  """Bilinear depth lookup with pixel-centre convention.

  Args:
    depth: [T, H, W] depth maps (metres, z along the optical axis).
    xy_px: [T, N, 2] (x, y) pixels; pixel (i, j) has its centre at
      x = j, y = i. Points outside are clamped to the border.

  Returns:
    [T, N] depth at the points.
  """
  depth = np.asarray(depth, np.float32)
  xy_px = np.asarray(xy_px, np.float32)
  _require(depth.ndim == 3, f'depth must be [T, H, W], got {depth.shape}.')
  _require(xy_px.ndim == 3 and xy_px.shape[0] == depth.shape[0]
           and xy_px.shape[-1] == 2,
           f'xy_px must be [{depth.shape[0]}, N, 2], got {xy_px.shape}.')
  return sampling.bilinear_sample(depth[..., None], xy_px[..., 0], xy_px[..., 1],
                                  padding='border')[..., 0].astype(np.float32)


def lift_tracks_to_3d(
    xy_px: np.ndarray,
    depth: np.ndarray,
    fx_fy_cx_cy: np.ndarray,
) -> np.ndarray:
  """Back-projects 2D tracks with depth maps through a pinhole camera.

  `X = (x - cx) Z / fx`, `Y = (y - cy) Z / fy`, Z = depth at (x, y), in the
  camera frame of each frame (TAPVid-3D's `tracks_XYZ` convention).
  Intrinsics are in pixels of the frames `xy_px` refers to.

  Args:
    xy_px: [T, N, 2] (x, y) pixels.
    depth: [T, H, W] metres, or [T, N] depth already sampled per point.
    fx_fy_cx_cy: [4] pixels.

  Returns:
    [T, N, 3] float32 metres.
  """
  xy_px = np.asarray(xy_px, np.float32)
  fx, fy, cx, cy = np.asarray(fx_fy_cx_cy, np.float32).reshape(4)
  _require(fx != 0 and fy != 0, f'focal lengths must be non-zero, got '
           f'{fx}, {fy}.')
  depth = np.asarray(depth, np.float32)
  z = depth if depth.shape == xy_px.shape[:2] else sample_depth(depth, xy_px)
  return geometry.unproject(xy_px, z, np.stack([fx, fy, cx, cy])).astype(np.float32)

