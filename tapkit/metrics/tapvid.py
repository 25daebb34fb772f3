"""TAP-Vid (2D) metrics, numerically equivalent to the official tapnet code.

`compute_tapvid_metrics` reproduces
`tapnet/tapvid/evaluation_datasets.py::compute_tapvid_metrics` (commit
c2cbab8): same arguments, dict keys (in the official order), output shapes,
float64 outputs and NaN behaviour (0/0 for tracks with nothing evaluated).

Unlike the 3D metric, the query frame is excluded from the evaluation
('strided'), and so are all earlier frames ('first'); thresholds are plain
pixel distances (δ ∈ {1, 2, 4, 8, 16}, strict), no scaling of any kind.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tapkit.metrics import tapvid3d

PIXEL_THRESHOLDS = tapvid3d.PIXEL_THRESHOLDS
METRIC_KEYS = tapvid3d.METRIC_KEYS
QUERY_MODES = ('first', 'strided')


def evaluation_mask(
    query_points: np.ndarray, num_frames: int, query_mode: str
) -> np.ndarray:
  """Which frames of each track are evaluated.

  Args:
    query_points: [..., 3] (t, y, x); t is rounded half to even.
    num_frames: t, the number of frames.
    query_mode: 'first' (frames strictly after the query frame) or 'strided'
      (every frame but the query frame).

  Returns:
    bool [..., t].
  """
  if query_mode not in QUERY_MODES:
    raise ValueError('Unknown query mode ' + str(query_mode))
  query_points = np.asarray(query_points)
  if query_points.ndim < 1 or query_points.shape[-1] != 3:
    raise ValueError(
        f'query_points must end in a (t, y, x) axis of 3; got {query_points.shape}.'
    )
  frames = np.round(query_points[..., 0])
  if not np.all(np.isfinite(frames)):
    raise tapvid3d.QueryFrameError('query_points hold a non-finite query frame.')
  if np.any(frames >= num_frames) or np.any(frames < -num_frames):
    raise tapvid3d.QueryFrameError(
        f'query frames must lie in [0, {num_frames}) (negative values wrap as '
        f'in numpy); got range [{frames.min()}, {frames.max()}].'
    )
  # The official code indexes a [t, t] table with the frame, so negative
  # frames wrap around to the end.
  query_frame = np.mod(frames.astype(np.int32), num_frames)[..., np.newaxis]
  frame = np.arange(num_frames)
  if query_mode == 'first':
    return frame > query_frame
  return frame != query_frame


def compute_tapvid_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
    get_trackwise_metrics: bool = False,
) -> Mapping[str, np.ndarray]:
  """TAP-Vid metrics (occlusion accuracy, pts-within-δ, Jaccard-δ) per video.

  Args:
    query_points: [b, n, 3] (t, y, x); t is the query frame.
    gt_occluded: [b, n, t] bool, True = occluded.
    gt_tracks: [b, n, t, 2] (x, y) in raster pixels (the benchmark uses 256x256
      frames; no rescaling happens here).
    pred_occluded: [b, n, t] bool (may broadcast to gt_occluded).
    pred_tracks: [b, n, t, 2] pixels (may broadcast to gt_tracks).
    query_mode: 'first' or 'strided'.
    get_trackwise_metrics: per track ([b, n]) instead of per video ([b]).

  Returns:
    Dict of the 13 metrics (keys in `METRIC_KEYS` order), float64, [b] or
    [b, n].
  """
  gt_occluded = tapvid3d.as_occlusion(gt_occluded, 'gt_occluded')
  pred_occluded = tapvid3d.as_occlusion(pred_occluded, 'pred_occluded')
  gt_tracks = tapvid3d.as_coordinates(gt_tracks, 'gt_tracks')
  pred_tracks = tapvid3d.as_coordinates(pred_tracks, 'pred_tracks')
  if gt_occluded.ndim != 3 or gt_tracks.shape != gt_occluded.shape + (2,):
    raise ValueError(
        'expected gt_occluded [b, n, t] and gt_tracks [b, n, t, 2]; got '
        f'{gt_occluded.shape} and {gt_tracks.shape}.'
    )
  if np.shape(query_points) != gt_occluded.shape[:2] + (3,):
    raise ValueError(
        f'query_points must be [b, n, 3] = {gt_occluded.shape[:2] + (3,)}; '
        f'got {np.shape(query_points)}.'
    )
  pred_occluded = tapvid3d.broadcast_prediction(
      pred_occluded, gt_occluded, 'pred_occluded')
  pred_tracks = tapvid3d.broadcast_prediction(
      pred_tracks, gt_tracks, 'pred_tracks')
  evaluated = evaluation_mask(query_points, gt_occluded.shape[2], query_mode)
  axis = (2,) if get_trackwise_metrics else (1, 2)

  def count(x):
    return np.sum(x & evaluated, axis=axis)

  metrics = {}
  with np.errstate(divide='ignore', invalid='ignore'):
    metrics['occlusion_accuracy'] = np.true_divide(
        count(np.equal(pred_occluded, gt_occluded)),
        np.sum(evaluated, axis=axis))
    visible = np.logical_not(gt_occluded)
    pred_visible = np.logical_not(pred_occluded)
    squared_error = np.sum(np.square(pred_tracks - gt_tracks), axis=-1)
    count_visible = count(visible)
    all_within, all_jaccard = [], []
    for delta in PIXEL_THRESHOLDS:
      within = squared_error < np.square(delta)
      is_correct = within & visible
      pts_within = np.true_divide(count(is_correct), count_visible)
      false_positives = count(pred_visible & (~visible | ~within))
      jaccard = np.true_divide(count(is_correct & pred_visible),
                               count_visible + false_positives)
      metrics[f'pts_within_{delta}'] = pts_within
      metrics[f'jaccard_{delta}'] = jaccard
      all_within.append(pts_within)
      all_jaccard.append(jaccard)
    metrics['average_jaccard'] = np.mean(np.stack(all_jaccard, axis=1), axis=1)
    metrics['average_pts_within_thresh'] = np.mean(
        np.stack(all_within, axis=1), axis=1)
  return {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}
