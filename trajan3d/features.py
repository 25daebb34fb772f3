"""Optional per-track features for 3DSPA: DINO appearance and depth geometry.

Both are numpy, computed per clip in the data pipeline, and produce the model
inputs `dino_features [N, T, 768]` and `depth_features [N, T, 256]` for N
tracks over T frames (the batch axis is added by the loader).

DINO: feature maps [T, h, w, C] (precomputed, e.g. stored in a clip's extras
as `dino_features`, or produced by a callable backbone from the frames) are
sampled bilinearly at the track positions. The maps are taken to tile the
frame: cell (i, j) has its centre at normalised ((j + 0.5) / w, (i + 0.5) / h),
so the same normalised track coordinates work for any map resolution.

Depth: a fixed (parameter-free) encoder. At every (track, frame) four scalars
are read from the depth map Z [T, H, W] (metres) with bilinear sampling:

  a0 = log(Z(p))                             log depth at the point
  a1 = (log Z(p + e_x) - log Z(p - e_x)) / 2  log-depth gradient along x (per px)
  a2 = (log Z(p + e_y) - log Z(p - e_y)) / 2  log-depth gradient along y
  a3 = max over the 8 neighbours at distance `radius` px of |log Z(q) - log Z(p)|
                                             (depth discontinuity: occlusion edges)

and each is embedded with 32 sinusoids, frequencies s_i = 2^(i/4 - 2) (0.25 to
~54 rad per unit), sines then cosines: 4 * 2 * 32 = 256 values. Depths below
`min_depth` (e.g. sky / no hit = 0) are clamped to it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tapkit.ops import sampling

DEPTH_FEATURE_DIM = 256
_DEPTH_FREQS = 2.0 ** (np.arange(32, dtype=np.float64) / 4.0 - 2.0)


def sample_feature_maps(maps: np.ndarray, xy_normalized: np.ndarray) -> np.ndarray:
  """Bilinear lookup of feature maps at normalised track positions.

  Args:
    maps: [T, h, w, C] feature maps (e.g. DINO patch features, C = 768).
    xy_normalized: [N, T, 2] (x, y) in [0, 1] of the frame (TRAJAN's
      normalisation `(pixel + 0.5) / size`); outside points are clamped.

  Returns:
    [N, T, C] float32.
  """
  maps = np.asarray(maps, np.float32)
  xy = np.asarray(xy_normalized, np.float32)
  if maps.ndim != 4:
    raise ValueError(f'feature maps must be [T, h, w, C], got {maps.shape}.')
  if xy.ndim != 3 or xy.shape[-1] != 2 or xy.shape[1] != maps.shape[0]:
    raise ValueError(f'track positions must be [N, {maps.shape[0]}, 2], got {xy.shape}.')
  h, w = maps.shape[1:3]
  x = sampling.pixel_coords(xy[..., 0].T, w, align_corners=False)  # [T, N] map pixels
  y = sampling.pixel_coords(xy[..., 1].T, h, align_corners=False)
  return np.transpose(sampling.bilinear_sample(maps, x, y), (1, 0, 2)).astype(np.float32)


def dino_features(
    xy_normalized: np.ndarray,
    feature_maps: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    backbone: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
  """DINO features at the tracks, from precomputed maps or a backbone.

  Args:
    xy_normalized: [N, T, 2] normalised (x, y).
    feature_maps: [T, h, w, C] precomputed maps; or
    frames: [T, H, W, 3] uint8 with `backbone(frames) -> [T, h, w, C]` (e.g. a
      jitted `tapkit.models.vit` ViT returning patch tokens as a grid).

  Returns:
    [N, T, C] float32.
  """
  if feature_maps is None:
    if frames is None or backbone is None:
      raise ValueError('dino_features needs feature_maps, or frames and a backbone.')
    feature_maps = np.asarray(backbone(frames))
  return sample_feature_maps(feature_maps, xy_normalized)


def _embed(values: np.ndarray) -> np.ndarray:
  """[..., 4] -> [..., 256]: per scalar 32 sines then 32 cosines."""
  args = values[..., None].astype(np.float64) * _DEPTH_FREQS  # [..., 4, 32]
  emb = np.concatenate([np.sin(args), np.cos(args)], axis=-1)  # [..., 4, 64]
  return emb.reshape(values.shape[:-1] + (DEPTH_FEATURE_DIM,)).astype(np.float32)


def depth_features(depth: np.ndarray, xy_px: np.ndarray, radius: float = 2.0,
                   min_depth: float = 1e-2) -> np.ndarray:
  """The fixed 256-d depth encoder of the module docstring.

  Args:
    depth: [T, H, W] metres (z along the optical axis).
    xy_px: [N, T, 2] (x, y) pixels of the depth maps (pixel (i, j) has its
      centre at x = j, y = i).
    radius: neighbourhood radius in pixels for the discontinuity term.
    min_depth: depths are clamped below to this (metres) before the log.

  Returns:
    [N, T, 256] float32.
  """
  depth = np.asarray(depth, np.float32)
  xy = np.asarray(xy_px, np.float32)
  if depth.ndim != 3:
    raise ValueError(f'depth maps must be [T, H, W], got {depth.shape}.')
  if xy.ndim != 3 or xy.shape[-1] != 2 or xy.shape[1] != depth.shape[0]:
    raise ValueError(f'track pixels must be [N, {depth.shape[0]}, 2], got {xy.shape}.')
  log_depth = np.log(np.maximum(depth, min_depth))[..., None]  # [T, H, W, 1]
  x, y = xy[..., 0].T, xy[..., 1].T  # [T, N]
  look = lambda dx, dy: sampling.bilinear_sample(log_depth, x + dx, y + dy)[..., 0]  # [T, N]
  centre = look(0.0, 0.0)
  grad_x = 0.5 * (look(1.0, 0.0) - look(-1.0, 0.0))
  grad_y = 0.5 * (look(0.0, 1.0) - look(0.0, -1.0))
  edge = np.zeros_like(centre)
  for dx in (-radius, 0.0, radius):
    for dy in (-radius, 0.0, radius):
      if dx or dy:
        edge = np.maximum(edge, np.abs(look(dx, dy) - centre))
  scalars = np.stack([centre, grad_x, grad_y, edge], axis=-1)  # [T, N, 4]
  return np.transpose(_embed(scalars), (1, 0, 2))
