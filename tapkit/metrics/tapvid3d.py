"""TAPVid-3D metrics, numerically equivalent to the official tapnet evaluation.

`compute_tapvid3d_metrics` reproduces `tapnet/tapvid3d/evaluation/metrics.py`
(commit c2cbab8) value for value: same keyword arguments, dict keys, output
shapes, float64 outputs, NaN behaviour and floating-point operation order for
every distance test (so float32 inputs are judged in float32, as in the
original). See `shared/spec/tapvid3d_metrics.md` for the semantics.

Deliberate differences, all on calls where the official code crashes:

* `scaling='per_trajectory'` (and `'local_neighborhood'`) on unbatched input
  accept query points `[n, 3]` as well as `[1, n, 3]` (the official code takes
  only `[1, n, 3]` resp. `[n, 3]`; its own evaluation script passes `[n, 3]`
  and therefore scores `per_trajectory` as 0).
* `scaling='local_neighborhood'` with `get_trackwise_metrics=False` returns the
  per-video values (0-d arrays) the official code computes before failing to
  stack them; the two averages are the mean of the five per-threshold values.
* `median`, `mean` and `median_on_queries` compute one scale factor per video
  for batches larger than 1 (the official factor broadcasts against the track
  axis and raises, or silently mixes videos when n == b).
* A prediction whose shape broadcasts to the ground truth's (e.g. one track
  for all) is broadcast, as the official arithmetic does in every mode.

`scaling='local_neighborhood'` is vectorised: neighbourhoods are found with a
per-frame spatial grid (exact re-test of every candidate with the official
expression) and the metrics are accumulated per anchor track with one
histogram per chunk, instead of one Python iteration and one `[n, t]` distance
pass per track. `create_local_tracks` returns the official padded layout.

Conventions: tracks are (x, y, z) in metres in each frame's camera frame;
intrinsics (fx, fy, cx, cy) in pixels (only fx, fy are used); query points are
(t, y, x) with t a frame index (only t is read); occlusion True = occluded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import math
from typing import Optional
import warnings

import numpy as np

# The five pixel thresholds of TAP-Vid, in the order the outputs are listed.
PIXEL_THRESHOLDS = (1, 2, 4, 8, 16)

# Metric-space thresholds (metres) used with use_fixed_metric_threshold=True.
# Official values: 0.01 * delta**2, i.e. quadratic in delta.
PIXEL_TO_FIXED_METRIC_THRESH = {1: 0.01, 2: 0.04, 4: 0.16, 8: 0.64, 16: 2.56}

# Output keys in the official insertion order.
METRIC_KEYS = (
    ('occlusion_accuracy',)
    + tuple(
        key
        for delta in PIXEL_THRESHOLDS
        for key in (f'pts_within_{delta}', f'jaccard_{delta}')
    )
    + ('average_jaccard', 'average_pts_within_thresh')
)

SCALINGS = (
    'median',
    'mean',
    'none',
    'per_trajectory',
    'local_neighborhood',
    'reproduce_2d',
    'median_on_queries',
)

# Axis permutation from each supported `order` to the canonical one
# ('b n t' batched, 'n t' unbatched).
_ORDERS = {
    'n t': (0, 1),
    't n': (1, 0),
    'b n t': (0, 1, 2),
    'b t n': (0, 2, 1),
}

# Candidate pairs handled per chunk in the local-neighbourhood search; bounds
# the temporary memory (about 100 bytes per candidate) in dense scenes.
_CHUNK = 1 << 21


class UnsupportedInputError(ValueError, AssertionError):
  """A call the official code rejects with an `assert` (e.g. batched local).

  Subclasses AssertionError as well, so callers written against the official
  code keep catching it.
  """


class MissingQueryPointsError(ValueError, TypeError):
  """`query_points` is None for a scaling that needs query frames.

  The official code fails with a TypeError (indexing None) at this point.
  """


class QueryFrameError(ValueError, IndexError):
  """A query frame is not finite or lies outside [-t, t) after rounding.

  Negative frames in [-t, -1] wrap around as in the official numpy indexing;
  frames >= t make the official code raise IndexError.
  """


def as_occlusion(x: np.ndarray, name: str) -> np.ndarray:
  """Returns occlusion flags as bool; accepts bool or numeric 0/1 arrays.

  Other values (e.g. probabilities) are rejected: the official code would treat
  them inconsistently (unequal to both flags, yet "occluded" when non-zero).
  """
  x = np.asarray(x)
  if x.dtype == np.bool_:
    return x
  if np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x):
    if np.all((x == 0) | (x == 1)):
      return x.astype(np.bool_)
  raise ValueError(
      f'{name} must be a boolean array (True = occluded) or hold only 0/1; '
      f'got dtype {x.dtype}.'
  )


def as_coordinates(x: np.ndarray, name: str) -> np.ndarray:
  """Returns `x` as a real floating array, keeping float16/32/64 as given.

  The dtype is kept because the official code computes distances in the input
  dtype (float32 files are judged in float32).
  """
  x = np.asarray(x)
  if np.issubdtype(x.dtype, np.floating):
    return x
  if (np.issubdtype(x.dtype, np.integer)
      or np.issubdtype(x.dtype, np.bool_)):
    return x.astype(np.float64)
  raise ValueError(f'{name} must be a real numeric array; got {x.dtype}.')


def _to_canonical(
    x: np.ndarray, order: str, name: str, add_batch: bool, point_dim: int
) -> np.ndarray:
  """Permutes `x` from `order` to 'b n t' / 'n t' (views, as einops does)."""
  perm = _ORDERS[order]
  want_ndim = len(perm) + point_dim
  if x.ndim != want_ndim:
    raise ValueError(
        f'{name} must have {want_ndim} dims for order {order!r}'
        f'{" plus a point axis of 3" if point_dim else ""}; got {x.shape}.'
    )
  if point_dim and x.shape[-1] != 3:
    raise ValueError(f'{name} must end in an (x, y, z) axis of 3; got {x.shape}.')
  x = np.transpose(x, perm + tuple(range(len(perm), x.ndim)))
  return x[np.newaxis] if add_batch else x


def broadcast_prediction(
    pred: np.ndarray, gt: np.ndarray, name: str
) -> np.ndarray:
  """Broadcasts a prediction to the ground truth's shape.

  The official arithmetic does this implicitly (e.g. one predicted track
  scored against every ground-truth track); anything else is a clear error.
  """
  try:
    return np.broadcast_to(pred, gt.shape)
  except ValueError:
    raise ValueError(
        f'{name} of shape {pred.shape} (canonical layout) does not match or '
        f'broadcast to the ground truth shape {gt.shape}.'
    ) from None


def _query_frames(query_points, num_frames: int, scaling: str) -> np.ndarray:
  """Rounded query frames `round(query_points[..., 0])` as int32 (half to even)."""
  if query_points is None:
    raise MissingQueryPointsError(
        f"scaling={scaling!r} needs query_points (t, y, x) per track."
    )
  query_points = np.asarray(query_points)
  if query_points.ndim < 1 or query_points.shape[-1] != 3:
    raise ValueError(
        f'query_points must end in a (t, y, x) axis of 3; got {query_points.shape}.'
    )
  frames = np.round(query_points[..., 0])
  if not np.all(np.isfinite(frames)):
    raise QueryFrameError('query_points hold a non-finite query frame.')
  if np.any(frames >= num_frames) or np.any(frames < -num_frames):
    raise QueryFrameError(
        f'query frames must lie in [0, {num_frames}) (negative values wrap as '
        f'in numpy); got range [{frames.min()}, {frames.max()}].'
    )
  return frames.astype(np.int32)


def _per_track_factor(
    gt_tracks: np.ndarray, pred_tracks: np.ndarray, query_frame: np.ndarray
) -> np.ndarray:
  """Ratio of clamped gt / predicted depth at each track's query frame.

  Args:
    gt_tracks: [..., n, t, 3] canonical ground truth.
    pred_tracks: same shape, predictions.
    query_frame: int [..., n] with as many dims as the tracks' leading axes.

  Returns:
    [..., n, 1, 1] factor in the tracks' dtype.
  """
  lead = gt_tracks.shape[:-2]
  try:
    np.broadcast_shapes(query_frame.shape, lead)
  except ValueError:
    raise ValueError(
        f'query_points give query frames of shape {query_frame.shape}, which '
        f'does not match the tracks {lead} (canonical [b, n] / [n]).'
    ) from None
  index = query_frame[..., np.newaxis]

  def depth_at_query(tracks):
    took = np.take_along_axis(tracks[..., -1], index, axis=-1)
    return np.maximum(took, 1e-12)[..., np.newaxis]

  return depth_at_query(gt_tracks) / depth_at_query(pred_tracks)


def _mean_focal(intrinsics_params: np.ndarray) -> np.ndarray:
  intrinsics_params = np.asarray(intrinsics_params)
  if intrinsics_params.ndim < 1 or intrinsics_params.shape[-1] != 4:
    raise ValueError(
        'intrinsics_params must be [..., 4] = (fx, fy, cx, cy); got '
        f'{intrinsics_params.shape}.'
    )
  return np.sqrt(intrinsics_params[..., 0] * intrinsics_params[..., 1])


def _average(values: list[np.ndarray]) -> np.ndarray:
  """Mean over the five thresholds (one sequential sum, as np.stack + mean)."""
  return np.mean(np.stack(values, axis=0), axis=0)


def compute_tapvid3d_metrics(
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    intrinsics_params: np.ndarray,
    get_trackwise_metrics: bool = False,
    scaling: str = 'median',
    query_points: Optional[np.ndarray] = None,
    use_fixed_metric_threshold: bool = False,
    local_neighborhood_thresh: Optional[float] = 0.05,
    order: str = 'n t',
) -> Mapping[str, np.ndarray]:
  """TAPVid-3D metrics (occlusion accuracy, 3D pts-within, 3D Jaccard).

  Every frame counts (the query frame is not excluded, unlike the 2D metric).
  A point is within δ ∈ {1, 2, 4, 8, 16} when ‖s·P − G‖² < τ_δ² with
  τ_δ = δ·Gz / sqrt(fx·fy) metres (or 0.01·δ² m with fixed thresholds), s the
  scale factor chosen by `scaling`.

  Args:
    gt_occluded: bool, [n, t], [t, n], [b, n, t] or [b, t, n] as `order` says;
      True = occluded.
    gt_tracks: float, the same layout plus a last axis (x, y, z), metres.
    pred_occluded: as gt_occluded (may broadcast to it).
    pred_tracks: as gt_tracks (may broadcast to it).
    intrinsics_params: [..., 4] (fx, fy, cx, cy) in pixels; [4], or [b, 4] for
      one row per video.
    get_trackwise_metrics: per track ([b, n]) instead of per video ([b]).
    scaling: 'median', 'mean', 'none', 'per_trajectory', 'local_neighborhood',
      'reproduce_2d' or 'median_on_queries'.
    query_points: (t, y, x) per track, [n, 3], [1, n, 3] or [b, n, 3]; only t
      is read (rounded half to even). Needed by 'per_trajectory',
      'local_neighborhood' and 'median_on_queries'.
    use_fixed_metric_threshold: fixed metric thresholds instead of the
      depth-adaptive ones.
    local_neighborhood_thresh: radius in metres of the neighbourhoods of
      'local_neighborhood'.
    order: axis order of the inputs: 'n t', 't n', 'b n t' or 'b t n'.

  Returns:
    Dict of the 13 metrics (keys in `METRIC_KEYS` order), float64 arrays of
    shape [1] / [1, n] (unbatched), [b] / [b, n] (batched), and 0-d / [n] for
    'local_neighborhood' (unbatched only).
  """
  if order not in _ORDERS:
    raise ValueError(f"order must be one of {list(_ORDERS)}; got {order!r}.")
  if scaling not in SCALINGS:
    raise ValueError('Unknown scaling:' + str(scaling))
  batched = len(_ORDERS[order]) == 3
  local = scaling == 'local_neighborhood'
  if local and batched:
    raise UnsupportedInputError(
        "Local neighborhood doesn't support batched inputs."
    )
  add_batch = not batched and not local

  gt_occluded = _to_canonical(
      as_occlusion(gt_occluded, 'gt_occluded'), order, 'gt_occluded', add_batch, 0)
  pred_occluded = _to_canonical(
      as_occlusion(pred_occluded, 'pred_occluded'), order, 'pred_occluded',
      add_batch, 0)
  gt_tracks = _to_canonical(
      as_coordinates(gt_tracks, 'gt_tracks'), order, 'gt_tracks', add_batch, 1)
  pred_tracks = _to_canonical(
      as_coordinates(pred_tracks, 'pred_tracks'), order, 'pred_tracks', add_batch, 1)
  if gt_tracks.shape[:-1] != gt_occluded.shape:
    raise ValueError(
        f'gt_tracks {gt_tracks.shape} and gt_occluded {gt_occluded.shape} '
        'disagree (canonical layout).'
    )
  pred_occluded = broadcast_prediction(pred_occluded, gt_occluded,
                                        'pred_occluded')
  pred_tracks = broadcast_prediction(pred_tracks, gt_tracks, 'pred_tracks')
  focal = None if use_fixed_metric_threshold else _mean_focal(intrinsics_params)
  num_frames = gt_occluded.shape[-1]

  with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
    if local:
      query_frame = _query_frames(query_points, num_frames, scaling)
      if query_frame.ndim == 2 and query_frame.shape[0] == 1:
        query_frame = query_frame[0]  # [1, n] is accepted as [n].
      if query_frame.ndim != 1:
        raise ValueError(
            'local_neighborhood needs query_points [n, 3] (or [1, n, 3]); got '
            f'{np.shape(query_points)}.'
        )
      factor = _per_track_factor(gt_tracks, pred_tracks, query_frame)
      return _local_neighborhood_metrics(
          gt_occluded, gt_tracks, pred_occluded, pred_tracks,
          factor[:, 0, 0], focal, local_neighborhood_thresh,
          get_trackwise_metrics)
    return _global_metrics(
        gt_occluded, gt_tracks, pred_occluded, pred_tracks, focal, scaling,
        query_points, get_trackwise_metrics, batched)


def _scale_factor(
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    scaling: str,
    query_points,
    batched: bool,
):
  """Factor multiplied onto the canonical [b, n, t, 3] predictions."""
  if scaling == 'none':
    return 1.0
  if scaling == 'reproduce_2d':
    # Per point: move the prediction along its ray to the gt depth (no clamp).
    return gt_tracks[..., -1:] / pred_tracks[..., -1:]
  num_frames = gt_occluded.shape[-1]
  if scaling == 'per_trajectory':
    query_frame = _query_frames(query_points, num_frames, scaling)
    if not batched and query_frame.ndim == 1:
      query_frame = query_frame[np.newaxis]  # [n, 3] works like [1, n, 3].
    if query_frame.ndim != 2:
      raise ValueError(
          'per_trajectory needs query_points [b, n, 3] (batched) or [n, 3] / '
          f'[1, n, 3] (unbatched); got {np.shape(query_points)}.'
      )
    return _per_track_factor(gt_tracks, pred_tracks, query_frame)

  # median, mean, median_on_queries: norms of points visible in both.
  pred_norms = np.sqrt(np.maximum(1e-12, np.sum(np.square(pred_tracks), -1)))
  gt_norms = np.sqrt(np.maximum(1e-12, np.sum(np.square(gt_tracks), -1)))
  either_occluded = np.logical_or(gt_occluded, pred_occluded)
  nan_mat = np.full(pred_norms.shape, np.nan)
  pred_norms = np.where(either_occluded, nan_mat, pred_norms)
  gt_norms = np.where(either_occluded, nan_mat, gt_norms)
  reduce = np.nanmean if scaling == 'mean' else np.nanmedian
  if scaling == 'median_on_queries':
    query_frame = _query_frames(query_points, num_frames, scaling)
    num_videos, num_tracks = gt_norms.shape[:2]
    if query_frame.ndim == 2 and query_frame.shape[0] == 1:
      query_frame = query_frame[0]  # One set of queries shared by all videos.
    if query_frame.ndim == 1:
      query_frame = np.broadcast_to(query_frame, (num_videos,) + query_frame.shape)
    if query_frame.ndim != 2 or query_frame.shape[0] != num_videos:
      raise ValueError(
          'median_on_queries needs query_points [n, 3], [1, n, 3] or '
          f'[b, n, 3]; got {np.shape(query_points)} for {num_videos} videos.'
      )
    if query_frame.shape[1] not in (1, num_tracks):
      raise ValueError(
          f'query_points give {query_frame.shape[1]} query frames for '
          f'{num_tracks} tracks.'
      )
    tracks = np.arange(num_tracks)
    # [b, n, 1]: each video's norms at its own tracks' query frames.
    pred_norms = np.stack(
        [pred_norms[v, tracks, query_frame[v]] for v in range(num_videos)]
    )[..., np.newaxis]
    gt_norms = np.stack(
        [gt_norms[v, tracks, query_frame[v]] for v in range(num_videos)]
    )[..., np.newaxis]
  with warnings.catch_warnings():
    # A video with no point visible in both gives NaN, as officially.
    warnings.simplefilter('ignore', RuntimeWarning)
    factor = reduce(gt_norms, axis=(-2, -1), keepdims=True) / reduce(
        pred_norms, axis=(-2, -1), keepdims=True)
  # [b, 1, 1] -> [b, 1, 1, 1]: one factor per video (also for b > 1).
  return factor[..., np.newaxis]


def _global_metrics(
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    focal: Optional[np.ndarray],
    scaling: str,
    query_points,
    trackwise: bool,
    batched: bool,
) -> dict[str, np.ndarray]:
  """Metrics on canonical [b, n, t] arrays with unit weights."""
  factor = _scale_factor(gt_occluded, gt_tracks, pred_occluded, pred_tracks,
                         scaling, query_points, batched)
  pred_tracks = pred_tracks * factor
  axis = (-1,) if trackwise else (-2, -1)

  def fraction(numerator, denominator):
    # Integer counts (exact, as the official sums of bool x float64 ones).
    return np.true_divide(np.sum(numerator, axis=axis),
                          np.sum(denominator, axis=axis))

  metrics = {}
  metrics['occlusion_accuracy'] = fraction(
      np.equal(pred_occluded, gt_occluded), np.ones(gt_occluded.shape, bool))
  visible = np.logical_not(gt_occluded)
  pred_visible = np.logical_not(pred_occluded)
  squared_error = np.sum(np.square(pred_tracks - gt_tracks), axis=-1)
  if focal is not None:
    try:
      np.broadcast_shapes(np.shape(focal) + (1, 1), gt_occluded.shape)
    except ValueError:
      raise ValueError(
          f'intrinsics_params rows {np.shape(focal)} do not broadcast against '
          f'the videos {gt_occluded.shape[:1]}; pass [4] or [b, 4].'
      ) from None
    multiplier = gt_tracks[..., -1] / focal[..., np.newaxis, np.newaxis]
  all_within, all_jaccard = [], []
  for delta in PIXEL_THRESHOLDS:
    if focal is None:
      threshold = PIXEL_TO_FIXED_METRIC_THRESH[delta]
    else:
      threshold = delta * multiplier
    within = squared_error < np.square(threshold)
    is_correct = np.logical_and(within, visible)
    count_visible = np.sum(visible, axis=axis)
    pts_within = np.true_divide(np.sum(is_correct, axis=axis), count_visible)
    true_positives = np.sum(is_correct & pred_visible, axis=axis)
    false_positives = np.sum(pred_visible & (~visible | ~within), axis=axis)
    jaccard = np.true_divide(true_positives, count_visible + false_positives)
    metrics[f'pts_within_{delta}'] = pts_within
    metrics[f'jaccard_{delta}'] = jaccard
    all_within.append(pts_within)
    all_jaccard.append(jaccard)
  metrics['average_jaccard'] = _average(all_jaccard)
  metrics['average_pts_within_thresh'] = _average(all_within)
  return {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}


# --------------------------------------------------------------------------
# Local neighbourhoods.
# --------------------------------------------------------------------------


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


def _neighbour_pairs(
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
  gt_occluded = as_occlusion(gt_occluded, 'gt_occluded')
  pred_occluded = as_occlusion(pred_occluded, 'pred_occluded')
  gt_tracks = as_coordinates(gt_tracks, 'gt_tracks')
  pred_tracks = as_coordinates(pred_tracks, 'pred_tracks')
  if gt_occluded.ndim != 2 or gt_tracks.shape != gt_occluded.shape + (3,):
    raise ValueError(
        'expected gt_occluded [n, t] and gt_tracks [n, t, 3]; got '
        f'{gt_occluded.shape} and {gt_tracks.shape}.'
    )
  pred_occluded = broadcast_prediction(pred_occluded, gt_occluded,
                                        'pred_occluded')
  pred_tracks = broadcast_prediction(pred_tracks, gt_tracks, 'pred_tracks')
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
  for anchor, member in _neighbour_pairs(gt_tracks, thresh):
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
_VISIBLE_BIT = 1 << len(PIXEL_THRESHOLDS)
_PRED_VISIBLE_BIT = _VISIBLE_BIT << 1
_NUM_CODES = _PRED_VISIBLE_BIT << 1


def _local_neighborhood_metrics(
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
    fixed_limits = [np.square(PIXEL_TO_FIXED_METRIC_THRESH[delta])
                    for delta in PIXEL_THRESHOLDS]
  else:
    focal_shape = np.shape(focal)
    # [F, n*t] metres per pixel at each point's gt depth (F = prod(S)).
    multiplier = gt_tracks[..., -1] / np.asarray(focal)[..., np.newaxis,
                                                        np.newaxis]
    multiplier = multiplier.reshape(-1, num_tracks * num_frames)
  num_focal = int(np.prod(focal_shape, dtype=np.int64))
  histogram = np.zeros((num_focal, num_tracks * _NUM_CODES), np.int64)
  for anchor, member in _neighbour_pairs(gt_tracks, thresh):
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
      for bit, delta in enumerate(PIXEL_THRESHOLDS):
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
  for bit, delta in enumerate(PIXEL_THRESHOLDS):
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
  metrics['average_jaccard'] = _average(all_jaccard)
  metrics['average_pts_within_thresh'] = _average(all_within)
  return {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}
