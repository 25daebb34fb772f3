"""Track-depth and reprojection metrics of TracksTo4D's evaluation (inference.py).

* `depth_metrics`: per-frame median scaling, then AbsRel and delta < 1.25^k (k = 1..3)
  over all valid track points and over dynamic points, averaged over frames
  (official `calculate_depth_evaluation_metrics`).
* `pixel_reprojection_error`: mean pixel distance between projections and tracks.
* `aggregate_video_results`: mean / median over videos as the official script reports.

Computed in float32 with the official operation order, so values agree with the
official torch float32 code to ~1e-7.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

DYNAMIC_MIN_FRAMES = 40  # A track is dynamic when its GT mask is on in MORE than 40 frames.
DELTA_BASE = 1.25


def lower_median(values: np.ndarray) -> np.floating:
  """torch.median semantics: the lower of the two middle values for an even count.

  NaN for an empty input or any NaN (torch.median returns NaN in both cases).
  """
  values = np.asarray(values).ravel()
  if values.size == 0:
    return values.dtype.type(np.nan)
  if np.isnan(values).any():
    return values.dtype.type(np.nan)
  return np.sort(values)[(values.size - 1) // 2]


def dynamic_point_mask(gt_mask: np.ndarray, min_frames: int = DYNAMIC_MIN_FRAMES) -> np.ndarray:
  """[F, N] foreground mask -> [N] bool, True when on in more than `min_frames` frames.

  The count is absolute: with windows of <= 40 frames no point is dynamic.
  """
  return np.asarray(gt_mask).astype(bool).sum(axis=0) > min_frames


@dataclasses.dataclass
class DepthMetrics:
  """Depth results (fractions in [0, 1]; AbsRel unitless). `*_dynamic` NaN if undefined."""

  abs_rel: float
  delta_1: float
  delta_2: float
  delta_3: float
  abs_rel_dynamic: float
  delta_1_dynamic: float
  delta_2_dynamic: float
  delta_3_dynamic: float
  align_scales: np.ndarray  # [F] per-frame scale median(GT) / median(pred).

  def all_tuple(self) -> tuple[float, float, float, float]:
    """Official reporting order (delta_1, delta_2, delta_3, AbsRel), all points."""
    return (self.delta_1, self.delta_2, self.delta_3, self.abs_rel)

  def dynamic_tuple(self) -> tuple[float, float, float, float]:
    """Official reporting order, dynamic points."""
    return (self.delta_1_dynamic, self.delta_2_dynamic, self.delta_3_dynamic,
            self.abs_rel_dynamic)


def _mean32(values: np.ndarray) -> np.float32:
  # Mean of an empty selection is NaN (as torch), without numpy's RuntimeWarning.
  if values.size == 0:
    return np.float32(np.nan)
  return np.float32(np.mean(values, dtype=np.float32))


def _frame_scores(aligned: np.ndarray, gt: np.ndarray) -> tuple[np.float32, ...]:
  abs_rel = _mean32((np.abs(aligned - gt) / gt).astype(np.float32))
  # A negative aligned depth gives a negative ratio, which passes every threshold
  # (official quirk, kept).
  with np.errstate(divide='ignore', invalid='ignore'):
    ratio = np.maximum(aligned / gt, gt / aligned)
  deltas = tuple(_mean32((ratio < DELTA_BASE**k).astype(np.float32)) for k in (1, 2, 3))
  return (abs_rel, *deltas)


def depth_metrics(pred_depth: np.ndarray, gt_depth: np.ndarray, visible: np.ndarray,
                  dynamic_points: np.ndarray | None = None) -> DepthMetrics:
  """AbsRel and delta metrics with per-frame median scaling.

  For each frame f, valid = visible & GT > 0; s_f = median(GT[valid]) /
  median(pred[valid]) (lower medians); aligned = pred * median(GT) / median(pred).
  AbsRel_f = mean |aligned - g| / g; delta_k,f = fraction with max(aligned/g, g/aligned)
  < 1.25^k. Results are means over frames; the dynamic variants use the same s_f on
  valid entries of dynamic points only (a frame without any gives NaN).

  Args:
    pred_depth: [F, N] predicted depths (unclamped, any per-frame scale).
    gt_depth: [F, N] GT depths (<= 0 = unknown).
    visible: [F, N] bool.
    dynamic_points: [N] bool (see `dynamic_point_mask`); None = no dynamic points.
  """
  pred = np.asarray(pred_depth, np.float32)
  gt = np.asarray(gt_depth, np.float32)
  vis = np.asarray(visible).astype(bool)
  if pred.ndim != 2 or pred.shape != gt.shape or pred.shape != vis.shape:
    raise ValueError(f'depth_metrics: pred_depth {pred.shape}, gt_depth {gt.shape} and '
                     f'visible {vis.shape} must all be [F, N]')
  dyn = (np.zeros(pred.shape[1], bool) if dynamic_points is None
         else np.asarray(dynamic_points).astype(bool))
  if dyn.shape != (pred.shape[1],):
    raise ValueError(f'depth_metrics: dynamic_points must be [{pred.shape[1]}], got {dyn.shape}')

  scales, per_all, per_dyn = [], [], []
  for f in range(pred.shape[0]):
    valid = vis[f] & (gt[f] > 0)
    valid_dyn = valid & dyn
    med_gt = lower_median(gt[f][valid])
    med_pred = lower_median(pred[f][valid])
    with np.errstate(divide='ignore', invalid='ignore'):
      scales.append(np.float32(med_gt / med_pred))
      # Same operation order as the official: (pred * median_gt) / median_pred.
      aligned = (pred[f][valid] * med_gt).astype(np.float32) / med_pred
      aligned_dyn = (pred[f][valid_dyn] * med_gt).astype(np.float32) / med_pred
      per_all.append(_frame_scores(aligned.astype(np.float32), gt[f][valid]))
      per_dyn.append(_frame_scores(aligned_dyn.astype(np.float32), gt[f][valid_dyn]))
  all_m = np.array(per_all, np.float32).reshape(-1, 4)
  dyn_m = np.array(per_dyn, np.float32).reshape(-1, 4)
  means = [float(np.mean(all_m[:, i], dtype=np.float32)) for i in range(4)]
  dmeans = [float(np.mean(dyn_m[:, i], dtype=np.float32)) for i in range(4)]
  return DepthMetrics(abs_rel=means[0], delta_1=means[1], delta_2=means[2], delta_3=means[3],
                      abs_rel_dynamic=dmeans[0], delta_1_dynamic=dmeans[1],
                      delta_2_dynamic=dmeans[2], delta_3_dynamic=dmeans[3],
                      align_scales=np.array(scales, np.float32))


def pixel_reprojection_error(projections: np.ndarray, tracks_xy: np.ndarray,
                             visible: np.ndarray, focal_px: float) -> float:
  """Mean over visible (f, n) of |focal * projection - focal * track| in pixels.

  The official uses frame 0's fx (`GT_Ks[0][0, 0]`) for every frame and both axes.

  Args:
    projections: [F, 2, N] normalised image coordinates.
    tracks_xy: [F, 2, N] normalised input tracks (same layout).
    visible: [F, N] bool.
    focal_px: fx of frame 0, pixels.
  """
  fx = np.float32(focal_px)
  proj = np.asarray(projections, np.float32)
  trk = np.asarray(tracks_xy, np.float32)
  if proj.shape != trk.shape or proj.ndim != 3 or proj.shape[1] != 2:
    raise ValueError(f'pixel_reprojection_error: projections {proj.shape} and tracks '
                     f'{trk.shape} must both be [F, 2, N]')
  diff = (fx * proj).astype(np.float32) - (fx * trk).astype(np.float32)  # [F, 2, N]
  dist = np.sqrt(np.sum(diff**2, axis=1, dtype=np.float32))  # [F, N]
  return float(_mean32(dist[np.asarray(visible).astype(bool)]))


POSE_KEYS = ('ATE', 'RPE_trans', 'RPE_rot', 'rep')
DEPTH_KEYS = ('ALL', 'Dynamic')


def aggregate_video_results(per_video: Mapping[str, Mapping[str, object]]) -> dict:
  """Mean and median over videos as the official inference script reports them.

  Args:
    per_video: name -> {'ATE', 'RPE_trans', 'RPE_rot', 'rep' (pixel error), 'ALL' and
      'Dynamic' (4-tuples delta_1, delta_2, delta_3, AbsRel)}.

  Returns:
    {'mean': {...}, 'median': {...}} with the same keys. Medians of the depth tuples are
    per component, lower medians, NaN-propagating (torch.median); the reported median
    pixel error is the MEAN (official quirk: the median of a single number).
  """
  if not per_video:
    raise ValueError('aggregate_video_results: no videos')
  videos = list(per_video.values())
  mean, median = {}, {}
  for key in POSE_KEYS:
    vals = np.array([float(v[key]) for v in videos], np.float64)
    mean[key] = float(vals.mean())
    median[key] = float(vals.mean()) if key == 'rep' else float(np.median(vals))
  for key in DEPTH_KEYS:
    vals = np.array([np.asarray(v[key], np.float32) for v in videos], np.float32)  # [V, 4]
    mean[key] = np.mean(vals, axis=0, dtype=np.float32)
    median[key] = np.array([lower_median(vals[:, i]) for i in range(vals.shape[1])],
                           np.float32)
  return {'mean': mean, 'median': median}

