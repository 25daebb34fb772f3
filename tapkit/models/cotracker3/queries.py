"""Query generation of the CoTracker3 predictors: grids, support grid, segmentation masks, dense passes.

All functions are numpy and reproduce the official predictors' float32 arithmetic:

* `grid_points(size, (H, W))` — `size`² points on a regular grid with a margin of W/64 pixels on
  every side (the width-based margin is used for the y axis too), rows ordered y-major
  (index = size·i + j for row i, column j); a single point (W/2, H/2) for size 1. The
  coordinates are torch's float32 `linspace` values (first half `start + k·step`, second half
  `end − (size−1−k)·step`), which can differ from `np.linspace` in the last bit.
* `support_points(interp_shape)` — the 6×6 grid at frame 0 that the offline predictor appends
  to explicit queries (and to segmentation-masked grids) to give the tracker context.
* `mask_grid_points` — keeps the grid points whose nearest pixel of the (nearest-neighbour
  resized) segmentation mask is non-zero.
* `dense_query_passes` — the query sets of dense tracking: one pass per offset of a
  `W // 80`-pixel lattice, every pass a full lattice of (frame, x, y) points.

Coordinates are pixels (x, y) with pixel centres at integers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SUPPORT_GRID_SIZE = 6


def torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
  """[steps] float32, the values torch.linspace(start, end, steps) computes in float32."""
  start32, end32 = np.float32(start), np.float32(end)
  if steps == 1:
    return np.array([start32], np.float32)
  step = np.float32((end32 - start32) / np.float32(steps - 1))
  idx = np.arange(steps)
  half = steps // 2
  low = start32 + step * idx.astype(np.float32)
  high = end32 - step * (steps - 1 - idx).astype(np.float32)
  return np.where(idx < half, low, high).astype(np.float32)


def grid_points(size: int, extent: Sequence[int]) -> np.ndarray:
  """[size², 2] float32 (x, y) grid points in an image of extent = (height, width) pixels.

  Args:
    size: points per side (≥ 1).
    extent: (H, W) of the image the points live in.

  Returns:
    [size², 2] points, y-major (index size·i + j is row i, column j).
  """
  if size < 1:
    raise ValueError(f'grid size must be >= 1, got {size}')
  height, width = float(extent[0]), float(extent[1])
  if size == 1:
    return np.array([[width / 2, height / 2]], np.float32)
  center_y, center_x = height / 2, width / 2
  margin = width / 64
  ys = torch_linspace(margin - height / 2 + center_y, height / 2 + center_y - margin, size)
  xs = torch_linspace(margin - width / 2 + center_x, width / 2 + center_x - margin, size)
  gy, gx = np.meshgrid(ys, xs, indexing='ij')
  return np.stack([gx, gy], axis=-1).reshape(-1, 2).astype(np.float32)


def grid_queries(size: int, extent: Sequence[int], query_frame: int = 0) -> np.ndarray:
  """[size², 3] float32 (t, x, y) queries: `grid_points(size, extent)` at frame `query_frame`."""
  pts = grid_points(size, extent)
  frame = np.full((len(pts), 1), query_frame, np.float32)
  return np.concatenate([frame, pts], axis=1)


def support_points(interp_shape: Sequence[int]) -> np.ndarray:
  """[36, 3] float32 support queries (frame 0, a 6×6 grid in model pixels)."""
  return grid_queries(SUPPORT_GRID_SIZE, interp_shape, 0)


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
  """[out_size] int source index of torch's mode='nearest' resize: floor(i · in/out) in float32."""
  if in_size == out_size:
    return np.arange(out_size)
  scale = np.float32(np.float32(in_size) / np.float32(out_size))
  src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
  return np.minimum(src, in_size - 1)


def resize_mask_nearest(mask: np.ndarray, out_hw: Sequence[int]) -> np.ndarray:
  """[h, w] nearest-neighbour resize of a [H, W] mask (torch F.interpolate(mode='nearest'))."""
  mask = np.asarray(mask)
  rows = nearest_indices(mask.shape[0], int(out_hw[0]))
  cols = nearest_indices(mask.shape[1], int(out_hw[1]))
  return mask[rows[:, None], cols[None, :]]


def mask_grid_points(points: np.ndarray, mask: np.ndarray, interp_shape: Sequence[int]) -> np.ndarray:
  """Boolean [n]: which (x, y) points (model pixels) fall on non-zero pixels of `mask`.

  Args:
    points: [n, 2] (x, y) in interp_shape pixels.
    mask: [H, W] segmentation mask at the input video's resolution (non-zero = keep).
    interp_shape: (h, w) of the model resolution; the mask is resized to it (nearest).

  Returns:
    [n] bool, True where mask[round(y), round(x)] != 0 (round half to even).
  """
  small = resize_mask_nearest(mask, interp_shape)
  xi = np.rint(points[:, 0]).astype(np.int64)
  yi = np.rint(points[:, 1]).astype(np.int64)
  return small[yi, xi] != 0


def dense_query_passes(height: int, width: int, query_frame: int = 0,
                       grid_size: int = 80) -> list[np.ndarray]:
  """Query sets [n, 3] float32 (t, x, y) of dense tracking, one per pass, in input pixels.

  The lattice step is g = width // grid_size pixels; a pass for offset o = 0..g²−1
  (ox = o mod g, oy = o div g) holds the points (i·g + ox, j·g + oy) for i < width // g,
  j < height // g, x index fastest. Together the passes cover every pixel of the
  (width // g)·g × (height // g)·g top-left region once.

  Args:
    height: H of the input video.
    width: W of the input video (must be ≥ grid_size).
    query_frame: frame of every query.
    grid_size: lattice points along the width (80 in the official predictor).

  Returns:
    g² arrays [ (width // g) · (height // g), 3 ].
  """
  if width < grid_size:
    raise ValueError(f'dense tracking needs width >= grid_size ({grid_size}), got width {width}')
  step = width // grid_size
  gw, gh = width // step, height // step
  xs = np.tile(np.arange(gw), gh) * step
  ys = np.repeat(np.arange(gh), gw) * step
  passes = []
  for offset in range(step * step):
    ox, oy = offset % step, offset // step
    q = np.stack([np.full(gw * gh, query_frame), xs + ox, ys + oy], axis=1)
    passes.append(q.astype(np.float32))
  return passes
