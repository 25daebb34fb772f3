"""Lifting 2D point tracks to 3D with a per-frame depth video (the 3DSPA release's helpers).

  xyz = lift_2d_to_3d(tracks_2d, depth, recipe='released')   # [N, T, 3]
  feats = depth_track_features(depth, tracks_2d)              # [N, T, 256] (released recipe)

Depth at a track point is sampled bilinearly at its pixel coordinate (x, y) (pixel i at integer
coordinate i): corners x0 = ⌊x⌋, x0 + 1 (same for y), weights x − x0 and y − y0 computed before the
corner indices are clamped to the image, so a point outside the image reads the border pixels.

Two recipes for the camera model:

- `recipe='released'` reproduces the released 3DSPA `inference.py` exactly: the sampled value z is
  used as the metric depth Z whatever it is (with VDA's relative models it is an affine-invariant
  *inverse* depth, so this inverts the depth order), focal fx = fy = max(H, W) pixels, principal
  point (W/2, H/2) (half a pixel off the centre of an integer-pixel grid).
- `recipe='corrected'`: `depth_kind='metric'` takes z as metres (VDA's metric models);
  `depth_kind='inverse'` converts Z = 1/z (NaN where z ≤ 0: no depth, e.g. the sky); focal
  `focal` pixels (default max(H, W)), principal point ((W − 1)/2, (H − 1)/2), the image centre on
  the integer-pixel grid.

X = (x − cx)·Z/fx, Y = (y − cy)·Z/fy, Z.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

DEPTH_FEATURE_DIM = 256


def _depth_maps(depth: np.ndarray) -> np.ndarray:
  """[T, H, W] float32 from [T, H, W] or [T, H, W, 1]."""
  depth = np.asarray(depth, np.float32)
  if depth.ndim == 4 and depth.shape[-1] == 1:
    depth = depth[..., 0]
  if depth.ndim != 3:
    raise ValueError(f'depth must be [T, H, W] or [T, H, W, 1], got {depth.shape}')
  return depth


def sample_depth(depth: np.ndarray, tracks_2d: np.ndarray) -> np.ndarray:
  """Bilinear depth z [N, T] at tracks_2d [N, T, 2] (x, y pixels) from depth [T, H, W(, 1)]."""
  depth = _depth_maps(depth)
  tracks_2d = np.asarray(tracks_2d, np.float32)
  t, h, w = depth.shape
  if tracks_2d.ndim != 3 or tracks_2d.shape[1:] != (t, 2):
    raise ValueError(f'tracks_2d must be [N, {t}, 2], got {tracks_2d.shape}')
  x, y = tracks_2d[..., 0], tracks_2d[..., 1]
  x0, y0 = np.floor(x), np.floor(y)
  wx, wy = x - x0, y - y0  # before clamping
  x0i = np.clip(x0.astype(np.int64), 0, w - 1)
  x1i = np.clip(x0.astype(np.int64) + 1, 0, w - 1)
  y0i = np.clip(y0.astype(np.int64), 0, h - 1)
  y1i = np.clip(y0.astype(np.int64) + 1, 0, h - 1)
  frame = np.broadcast_to(np.arange(t)[None, :], x.shape)
  return ((1 - wx) * (1 - wy) * depth[frame, y0i, x0i] + wx * (1 - wy) * depth[frame, y0i, x1i]
          + (1 - wx) * wy * depth[frame, y1i, x0i] + wx * wy * depth[frame, y1i, x1i])


def lift_2d_to_3d(tracks_2d: np.ndarray, depth: np.ndarray,
                  recipe: Literal['released', 'corrected'] = 'released',
                  depth_kind: Literal['metric', 'inverse'] = 'metric',
                  focal: float | None = None) -> np.ndarray:
  """3D tracks [N, T, 3] (camera coordinates) from 2D tracks [N, T, 2] and depth [T, H, W(, 1)].

  Args:
    tracks_2d: (x, y) pixels, every track at every frame (visible or not).
    depth: per-frame depth maps at the resolution of the track coordinates.
    recipe: 'released' (3DSPA's inference.py, bit for bit) or 'corrected' (module docstring).
    depth_kind: corrected recipe only: 'metric' (metres) or 'inverse' (Z = 1/z).
    focal: corrected recipe only: focal length in pixels (default max(H, W)).
  """
  depth = _depth_maps(depth)
  _, h, w = depth.shape
  z = sample_depth(depth, tracks_2d)
  tracks_2d = np.asarray(tracks_2d, np.float32)
  if recipe == 'released':
    f, cx, cy = float(max(h, w)), w / 2.0, h / 2.0
  elif recipe == 'corrected':
    if depth_kind == 'inverse':
      with np.errstate(divide='ignore'):
        z = np.where(z > 0, 1.0 / np.maximum(z, np.finfo(np.float32).tiny), np.nan)
    elif depth_kind != 'metric':
      raise ValueError(f"depth_kind must be 'metric' or 'inverse', got {depth_kind!r}")
    f = float(max(h, w) if focal is None else focal)
    if not f > 0:
      raise ValueError(f'focal must be > 0, got {focal}')
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
  else:
    raise ValueError(f"recipe must be 'released' or 'corrected', got {recipe!r}")
  xs = (tracks_2d[..., 0] - cx) * z / f
  ys = (tracks_2d[..., 1] - cy) * z / f
  return np.stack([xs, ys, z], axis=-1).astype(np.float32)


def depth_track_features(depth: np.ndarray, tracks_2d: np.ndarray,
                         dim: int = DEPTH_FEATURE_DIM) -> np.ndarray:
  """The released 3DSPA "depth features" [N, T, dim]: channel 0 the sampled depth z, 1 z/10,
  2 z_t − z_{t−1} (0 at t = 0), all others 0 (not learned features)."""
  if dim < 3:
    raise ValueError(f'dim must be >= 3, got {dim}')
  z = sample_depth(depth, tracks_2d)
  out = np.zeros(z.shape + (dim,), np.float32)
  out[..., 0] = z
  out[..., 1] = z / 10.0
  out[:, 1:, 2] = z[:, 1:] - z[:, :-1]
  return out
