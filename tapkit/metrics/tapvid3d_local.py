"""TAPVid-3D `scaling='local_neighborhood'`, vectorised.

The official code loops over tracks: for every anchor track it finds the
points within `local_neighborhood_thresh` metres of the anchor in each frame
and scores the prediction on that neighbourhood, one `[n, t]` distance pass per
track. Here neighbourhoods are found with a per-frame spatial grid (every
candidate pair is re-tested with the official expression, same dtype and
operation order) and the metrics are accumulated per anchor track with one
histogram per chunk of pairs. `create_local_tracks` returns the official padded
layout. Results equal the official ones; `tapkit.metrics.tapvid3d` dispatches
here and re-exports `create_local_tracks`.

Conventions as in `tapkit.metrics.tapvid3d`: tracks [n, t, 3] metres in each
frame's camera frame, occlusion True = occluded.
"""

from __future__ import annotations

from collections.abc import Iterator
import math
from typing import Optional

import numpy as np

from tapkit.metrics import tapvid3d_common as common

# Candidate pairs handled per chunk in the local-neighbourhood search; bounds
# the temporary memory (about 100 bytes per candidate) in dense scenes.
_CHUNK = 1 << 21


def _squared_norm(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
  """(dx² + dy²) + dz²: bit-identical to np.sum(np.square(d), axis=-1).

  numpy sums a length-3 axis left to right in every memory layout; writing it
  out on 1-D component arrays avoids the slow short-axis reduction.
  """
  return (np.square(dx) + np.square(dy)) + np.square(dz)


def _grid_keys(points: np.ndarray, frames: np.ndarray, cell: float,
               num_frames: int) -> tuple[np.ndarray, int]:
  """Sort keys (frame, cell y, cell x) packed in int64.

  Cell indices are clipped to the representable range; clipping maps cells
  monotonically with Lipschitz constant 1, so cells that were adjacent stay
  adjacent (the candidate set only grows, the exact test decides).

  Args:
    points: [m, 3] finite points (only x and y are read), metres.
    frames: [m] frame index of each point.
    cell: cell side, metres.
    num_frames: t, bounds the frame field.

  Returns:
    [m] int64 keys, and the size of the x / y fields (key of the cell one row
    further in y = key + size).
  """
  frame_bits = max(1, math.ceil(math.log2(num_frames + 1)))
  bits = min(30, (62 - frame_bits) // 2)
  size = 1 << bits
  with np.errstate(over='ignore', invalid='ignore', divide='ignore'):
    cells = np.floor(points[:, :2].astype(np.float64) / cell)
  cells = np.clip(cells + size // 2, 1, size - 2).astype(np.int64)
  keys = (frames.astype(np.int64) * size + cells[:, 1]) * size + cells[:, 0]
  return keys, size


def neighbour_pairs(
    gt_tracks: np.ndarray, thresh, chunk: int = _CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (anchor track, member flat index) of every neighbourhood entry.

  Entry (i, j*t + f) is yielded iff the official test
  `sum((G[j, f] - G[i, f])**2) < thresh * thresh` holds (same dtype, same
  operation order), each exactly once, in chunks; order is unspecified.

  Args:
    gt_tracks: [n, t, 3] ground-truth points, metres.
    thresh: neighbourhood radius, metres.
    chunk: maximum number of candidate pairs examined at once.
  """
  num_tracks, num_frames, _ = gt_tracks.shape
  flat = gt_tracks.reshape(-1, 3)
  radius_sq = thresh * thresh

  finite = np.flatnonzero(np.all(np.isfinite(flat), axis=-1))
  # Each finite point against itself: the difference is exactly 0, so the
  # official test reduces to `0 < thresh * thresh` in the same dtype.
  zero = np.zeros((1, 3), flat.dtype)
  if np.sum(np.square(zero - zero), axis=-1)[0] < radius_sq:
    yield finite // num_frames, finite
  if not radius_sq > 0 or finite.size < 2:
    return

  # A neighbour differs by less than ~thresh in x and in y, so it lies in the
  # same or an adjacent (x, y) grid cell of the same frame; the 1% margin
  # absorbs rounding of the float32/float64 test. Only pairs (p, q) with q
  # after p in key order are enumerated, each once: the same cell and the next
  # cell in x from position p + 1 on, and the three-cell x-span of the next row
  # in y (rows before, and the previous cell, are covered from their side).
  cell = abs(float(thresh)) * 1.01
  keys, size = _grid_keys(flat[finite], finite % num_frames, cell, num_frames)
  by_key = np.argsort(keys, kind='stable')
  sorted_keys = keys[by_key]
  sorted_flat = finite[by_key]
  # Coordinates in key order, in the input dtype (the test's dtype).
  sx, sy, sz = (np.ascontiguousarray(flat[sorted_flat, axis]) for axis in range(3))
  num_points = sorted_keys.size
  positions = np.arange(num_points)
  starts = np.stack([
      positions + 1,
      np.searchsorted(sorted_keys, sorted_keys + (size - 1), side='left'),
  ], axis=1)  # [points, 2] sorted positions.
  ends = np.stack([
      np.searchsorted(sorted_keys, sorted_keys + 1, side='right'),
      np.searchsorted(sorted_keys, sorted_keys + (size + 1), side='right'),
  ], axis=1)
  counts = np.maximum(ends - starts, 0)
  cumulative = np.cumsum(counts.sum(axis=1))
  begin = 0
  while begin < num_points:
    # At least one point per chunk, then as many as fit in `chunk` candidates.
    limit = (cumulative[begin - 1] if begin else 0) + chunk
    end = max(begin + 1, int(np.searchsorted(cumulative, limit, side='right')))
    span_starts = starts[begin:end].ravel()
    span_counts = counts[begin:end].ravel()
    total = int(span_counts.sum())
    if total:
      offsets = np.cumsum(span_counts) - span_counts
      first = np.repeat(np.repeat(positions[begin:end], 2), span_counts)
      second = (np.arange(total) - np.repeat(offsets - span_starts,
                                             span_counts))
      # Cheap pre-filter on z: adding non-negative squares never decreases
      # the sum in floating point, so dz² < thresh² is implied by the test.
      dz = sz[second] - sz[first]
      close = np.flatnonzero(np.square(dz) < radius_sq)
      first, second, dz = first[close], second[close], dz[close]
      # The official test, member minus anchor (the sign does not matter).
      keep = _squared_norm(sx[second] - sx[first], sy[second] - sy[first],
                           dz) < radius_sq
      first_flat = sorted_flat[first[keep]]
      second_flat = sorted_flat[second[keep]]
      # The test is symmetric (a - b = -(b - a) exactly), so each accepted
      # pair is an entry of both tracks' neighbourhoods.
      yield (np.concatenate([first_flat, second_flat]) // num_frames,
             np.concatenate([second_flat, first_flat]))
    begin = end


def _check_local_inputs(gt_occluded, gt_tracks, pred_occluded, pred_tracks):
  gt_occluded = common.as_occlusion(gt_occluded, 'gt_occluded')
  pred_occluded = common.as_occlusion(pred_occluded, 'pred_occluded')
  gt_tracks = common.as_coordinates(gt_tracks, 'gt_tracks')
  pred_tracks = common.as_coordinates(pred_tracks, 'pred_tracks')
  if gt_occluded.ndim != 2 or gt_tracks.shape != gt_occluded.shape + (3,):
    raise ValueError(
        'expected gt_occluded [n, t] and gt_tracks [n, t, 3]; got '
        f'{gt_occluded.shape} and {gt_tracks.shape}.'
    )
  pred_occluded = common.broadcast_prediction(pred_occluded, gt_occluded,
                                        'pred_occluded')
  pred_tracks = common.broadcast_prediction(pred_tracks, gt_tracks, 'pred_tracks')
  return gt_occluded, gt_tracks, pred_occluded, pred_tracks


def create_local_tracks(
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    thresh: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Gathers, for every track, all points within `thresh` of it (official layout).

  Neighbourhood i holds every (track j, frame f) whose ground truth lies
  strictly within `thresh` of track i's ground truth at the same frame
  (occluded points included), in row-major (j, f) order, zero/False padded to
  the largest neighbourhood size L.

  Args:
    gt_occluded: [n, t] bool, True = occluded.
    gt_tracks: [n, t, 3] metres.
    pred_occluded: [n, t] bool.
    pred_tracks: [n, t, 3] metres (unscaled).
    thresh: radius in metres.

  Returns:
    local gt occlusion [n, L] bool, local gt points [n, L, 3], local predicted
    occlusion [n, L] bool, local predicted points [n, L, 3], and weights [n, L]
    float64: (gt-visible frames of track i) / max(1, gt-visible entries of
    neighbourhood i) on real entries, 0 on padding.
  """
  gt_occluded, gt_tracks, pred_occluded, pred_tracks = _check_local_inputs(
      gt_occluded, gt_tracks, pred_occluded, pred_tracks)
  num_tracks, num_frames = gt_occluded.shape
  if num_tracks == 0:
    raise ValueError('create_local_tracks needs at least one track.')
  anchors, members = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
  for anchor, member in neighbour_pairs(gt_tracks, thresh):
    anchors.append(anchor)
    members.append(member)
  anchor = np.concatenate(anchors)
  member = np.concatenate(members)
  # Official order inside a row: member track outer, frame inner.
  by_entry = np.lexsort((member, anchor))
  anchor, member = anchor[by_entry], member[by_entry]
  sizes = np.bincount(anchor, minlength=num_tracks)
  length = int(sizes.max())
  slot = np.arange(anchor.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)

  def gather(values, dtype):
    values = values.reshape((num_tracks * num_frames,) + values.shape[2:])
    out = np.zeros((num_tracks, length) + values.shape[1:], dtype=dtype)
    out[anchor, slot] = values[member]
    return out

  local_gt_occluded = gather(gt_occluded, gt_occluded.dtype)
  local_gt_tracks = gather(gt_tracks, gt_tracks.dtype)
  local_pred_occluded = gather(pred_occluded, pred_occluded.dtype)
  local_pred_tracks = gather(pred_tracks, pred_tracks.dtype)
  valid = np.zeros((num_tracks, length), dtype=np.bool_)
  valid[anchor, slot] = True
  weighting = np.sum(1.0 - gt_occluded, axis=1, keepdims=True) / np.maximum(
      1.0, np.sum((1.0 - local_gt_occluded) * valid, axis=1, keepdims=True))
  return (local_gt_occluded, local_gt_tracks, local_pred_occluded,
          local_pred_tracks, valid * weighting)


# Histogram layout of one neighbourhood entry: bits 0-4 = within δ for the
# five thresholds, bit 5 = gt visible, bit 6 = predicted visible.
_VISIBLE_BIT = 1 << len(common.PIXEL_THRESHOLDS)
_PRED_VISIBLE_BIT = _VISIBLE_BIT << 1
_NUM_CODES = _PRED_VISIBLE_BIT << 1


def local_neighborhood_metrics(
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    factor: np.ndarray,
    focal: Optional[np.ndarray],
    thresh,
    trackwise: bool,
) -> dict[str, np.ndarray]:
  """Official local-neighbourhood metrics without materialising [n, L].

  Per anchor track i, entries (j, f) of its neighbourhood are classified by
  (within δ for each δ, gt visible, predicted visible) with the prediction
  scaled by the anchor's factor, and counted in a [n, 128] histogram; the
  official weighted sums follow as (count · w_i).

  Args:
    gt_occluded: [n, t] bool.
    gt_tracks: [n, t, 3].
    pred_occluded: [n, t] bool.
    pred_tracks: [n, t, 3], unscaled.
    factor: [n] per-track scale (anchor's factor, applied to its neighbours).
    focal: mean focal length sqrt(fx·fy), shape S (usually 0-d), or None for
      fixed thresholds.
    thresh: neighbourhood radius, metres.
    trackwise: per anchor ([n]) or per video (0-d).

  Returns:
    The 13 metrics: [n] / 0-d, with the focal's shape S prepended to all but
    occlusion_accuracy (the official broadcasting).
  """
  if thresh is None:
    raise ValueError('local_neighborhood needs local_neighborhood_thresh.')
  num_tracks, num_frames = gt_occluded.shape
  if num_tracks == 0:
    raise ValueError('local_neighborhood needs at least one track.')
  # Contiguous x, y, z columns: 1-D gathers are much cheaper than row gathers.
  gt_axes = [np.ascontiguousarray(gt_tracks[..., axis]).reshape(-1)
             for axis in range(3)]
  pred_axes = [np.ascontiguousarray(pred_tracks[..., axis]).reshape(-1)
               for axis in range(3)]
  # Per-point part of the code: gt / predicted visibility.
  point_code = (np.logical_not(gt_occluded).astype(np.int16) * _VISIBLE_BIT
                + np.logical_not(pred_occluded).astype(np.int16)
                * _PRED_VISIBLE_BIT).reshape(-1)
  if focal is None:
    focal_shape = ()
    # Official: np.square of a Python float, i.e. float64 scalars.
    fixed_limits = [np.square(common.PIXEL_TO_FIXED_METRIC_THRESH[delta])
                    for delta in common.PIXEL_THRESHOLDS]
  else:
    focal_shape = np.shape(focal)
    # [F, n*t] metres per pixel at each point's gt depth (F = prod(S)).
    multiplier = gt_tracks[..., -1] / np.asarray(focal)[..., np.newaxis,
                                                        np.newaxis]
    multiplier = multiplier.reshape(-1, num_tracks * num_frames)
  num_focal = int(np.prod(focal_shape, dtype=np.int64))
  histogram = np.zeros((num_focal, num_tracks * _NUM_CODES), np.int64)
  for anchor, member in neighbour_pairs(gt_tracks, thresh):
    if not anchor.size:
      continue
    # Neighbour's point times the anchor's factor, as the official
    # local_pred_tracks * scale_factor, then its squared error.
    anchor_factor = factor[anchor]
    squared_error = _squared_norm(
        *(pred_axes[axis][member] * anchor_factor - gt_axes[axis][member]
          for axis in range(3)))
    base = anchor.astype(np.int64) * _NUM_CODES + point_code[member]
    for k in range(num_focal):
      code = base.copy()
      if focal is not None:
        member_multiplier = multiplier[k, member]
      for bit, delta in enumerate(common.PIXEL_THRESHOLDS):
        if focal is None:
          limit = fixed_limits[bit]
        else:
          limit = np.square(delta * member_multiplier)
        code += (squared_error < limit).astype(np.int64) << bit
      histogram[k] += np.bincount(code, minlength=histogram.shape[1])
  histogram = histogram.reshape(num_focal, num_tracks, _NUM_CODES)

  codes = np.arange(_NUM_CODES)
  visible = (codes & _VISIBLE_BIT) > 0
  pred_visible = (codes & _PRED_VISIBLE_BIT) > 0

  def count(mask):
    return (histogram * mask).sum(axis=-1).astype(np.float64)  # [F, n]

  # w_i = gt-visible frames of anchor i / max(1, gt-visible entries).
  entries = count(np.ones(_NUM_CODES, bool))[0]
  visible_entries = count(visible)[0]
  own_visible = np.sum(1.0 - gt_occluded, axis=1)
  weight = own_visible / np.maximum(1.0, visible_entries)

  def weighted(numerator, denominator):
    numerator = numerator * weight
    denominator = denominator * weight
    if not trackwise:
      numerator = numerator.sum(axis=-1)
      denominator = denominator.sum(axis=-1)
    return numerator / denominator

  metrics = {}
  metrics['occlusion_accuracy'] = weighted(count(visible == pred_visible)[0],
                                           entries)
  out_shape = focal_shape + ((num_tracks,) if trackwise else ())
  all_within, all_jaccard = [], []
  for bit, delta in enumerate(common.PIXEL_THRESHOLDS):
    within = (codes >> bit) & 1 > 0
    correct = count(within & visible)
    true_positives = count(within & visible & pred_visible)
    false_positives = count(pred_visible & (~visible | ~within))
    pts_within = weighted(correct, visible_entries).reshape(out_shape)
    jaccard = weighted(true_positives,
                       visible_entries + false_positives).reshape(out_shape)
    metrics[f'pts_within_{delta}'] = pts_within
    metrics[f'jaccard_{delta}'] = jaccard
    all_within.append(pts_within)
    all_jaccard.append(jaccard)
  metrics['average_jaccard'] = common.average_over_thresholds(all_jaccard)
  metrics['average_pts_within_thresh'] = common.average_over_thresholds(all_within)
  return {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}
