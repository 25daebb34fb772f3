"""Queries of the CoTracker3 predictors: grids, support grid, segmentation masks, dense passes.

All functions are numpy and reproduce the official predictors' float32 arithmetic:

* `grid_points(size, (H, W))` — `size`² points on a regular grid with a margin of W/64 pixels on
  every side (the width-based margin is used for the y axis too), rows ordered y-major
  (index = size·i + j for row i, column j); a single point (W/2, H/2) for size 1. The
  coordinates are torch's float32 `linspace` values (first half `start + k·step`, second half
  `end − (size−1−k)·step`), which can differ from `np.linspace` in the last bit. The rule
  itself is `tapkit.tracking.api.grid_queries` (one implementation for the predictors and the
  `tapkit.tracking` trackers).
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

from tapkit.tracking import api as tracking_api

SUPPORT_GRID_SIZE = 6

# torch.linspace's float32 arithmetic (re-exported: the predictors' tests use it from here).
torch_linspace = tracking_api.torch_linspace


def grid_points(size: int, extent: Sequence[int]) -> np.ndarray:
  """[size², 2] float32 (x, y) grid points in an image of extent = (height, width) pixels.

  Args:
    size: points per side (≥ 1).
    extent: (H, W) of the image the points live in.

  Returns:
    [size², 2] points, y-major (index size·i + j is row i, column j).
  """
  return grid_queries(size, extent)[:, 1:]


def grid_queries(size: int, extent: Sequence[int], query_frame: int = 0) -> np.ndarray:
  """[size², 3] float32 (t, x, y) queries: `grid_points(size, extent)` at frame `query_frame`."""
  return tracking_api.grid_queries(extent[0], extent[1], size, query_frame)


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


def mask_grid_points(points: np.ndarray, mask: np.ndarray,
                     interp_shape: Sequence[int]) -> np.ndarray:
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
