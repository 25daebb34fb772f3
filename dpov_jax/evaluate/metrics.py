"""Probe3D evaluation metrics, as pure numpy functions.

Keypoint transfer (SPair-71k), correspondence recall binned by relative
rotation (NAVI), depth and surface normals, as Probe3D's released scripts
compute them. Every function
works on arrays; the I/O lives in `readers.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# PCK threshold of Probe3D's SPair script: error / tau < 0.10.
SPAIR_PCK_ALPHA = 0.10
# SPair `viewpoint_variation` levels: 0 small, 1 medium, 2 large.
SPAIR_VIEWPOINT_BINS = (0, 1, 2)
SPAIR_BIN_NAMES = ('0', '1', '2', 'all')
# Probe3D's released NAVI bin edges (degrees) and the edges of 3DPoV's tables (the
# default; they appear in no released code).
NAVI_BIN_EDGES_PROBE3D = (0.0, 30.0, 60.0, 90.0, 120.0)
NAVI_BIN_EDGES_3DPOV = (0.0, 15.0, 30.0, 60.0, 120.0)
NAVI_RECALL_METRES = (0.01, 0.02, 0.05)
NAVI_RECALL_PIXELS = (5.0, 25.0, 50.0)
NAVI_BIN_THRESHOLD_METRES = 0.02
NORMAL_THRESHOLDS_DEG = (11.25, 22.5, 30.0)
DEPTH_DELTA_BASE = 1.25


# ----------------------------------------------------------------------------
# Keypoint transfer (SPair-71k).


def spair_threshold_scale(trg_bndbox: Sequence[float],
                          trg_imsize: Sequence[float]) -> float:
  """tau = max(bbox w, bbox h) / max(image w, image h) of the target image.

  Args:
    trg_bndbox: [x0, y0, x1, y1] target bounding box, original pixels.
    trg_imsize: [w, h, ...] target image size, original pixels.

  Returns:
    The dimensionless PCK normaliser of Probe3D's SPair script (keypoints are in units of the padded
    square side, so pixel error / max bbox side = error / tau).
  """
  x0, y0, x1, y1 = (float(v) for v in trg_bndbox[:4])
  return max(x1 - x0, y1 - y0) / max(float(trg_imsize[0]), float(trg_imsize[1]))


def spair_keypoint_errors(pred_kps: np.ndarray, trg_kps: np.ndarray,
                          src_valid: np.ndarray, trg_valid: np.ndarray,
                          threshold_scale: float) -> np.ndarray:
  """Normalised transfer errors of keypoints annotated in both images.

  Args:
    pred_kps: [K, 2] predicted target keypoints (x, y) in [0, 1] units of the
      square image side.
    trg_kps: [K, 2] ground-truth target keypoints in the same units.
    src_valid, trg_valid: [K] bool, keypoint annotated in source / target.
    threshold_scale: tau of `spair_threshold_scale`.

  Returns:
    [K'] errors ||pred - gt|| / tau for the K' keypoints valid in both.
  """
  pred_kps = np.asarray(pred_kps, np.float64)
  trg_kps = np.asarray(trg_kps, np.float64)
  both = np.asarray(src_valid, bool) & np.asarray(trg_valid, bool)
  err = np.linalg.norm(pred_kps - trg_kps, axis=-1) / threshold_scale
  return err[both]


def pck_correct(errors: np.ndarray,
                alpha: float = SPAIR_PCK_ALPHA) -> np.ndarray:
  """Correct iff normalised error < alpha (strict, as Probe3D)."""
  return np.asarray(errors) < alpha


def recall_percent(errors: np.ndarray, alpha: float = SPAIR_PCK_ALPHA) -> float:
  """Pooled PCK in percent; NaN when there are no keypoints."""
  errors = np.asarray(errors)
  if errors.size == 0:
    return float('nan')
  return float(pck_correct(errors, alpha).mean() * 100.0)


def class_averaged_recall(
    per_class: Mapping[str, Mapping[str, float]],
    bin_names: Sequence[str] = SPAIR_BIN_NAMES) -> dict[str, float]:
  """Per bin, mean over the classes that have pairs in that bin (Probe3D SPair).

  Args:
    per_class: class -> bin name -> recall (%); a missing bin or NaN means
      the class had no pairs in the bin and is left out of that bin's mean.
    bin_names: bins to report.

  Returns:
    bin name -> class-averaged recall (%), NaN if no class has the bin.
  """
  out = {}
  for name in bin_names:
    vals = [r[name] for r in per_class.values()
            if name in r and np.isfinite(r[name])]
    out[name] = float(np.mean(vals)) if vals else float('nan')
  return out


# ----------------------------------------------------------------------------
# Relative-rotation bins (NAVI).


def assign_bins(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
  """Index of the half-open bin [edges[i], edges[i+1]) holding each value.

  Args:
    values: [N] e.g. relative rotation in degrees.
    edges: increasing bin edges, len >= 2.

  Returns:
    [N] int bin index, -1 for values outside [edges[0], edges[-1]) (so an
    angle of exactly edges[-1] (120 deg) falls in no bin, as in Probe3D).
  """
  edges = np.asarray(edges, np.float64)
  if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
    raise ValueError(f'bin edges must be strictly increasing, got {edges}')
  values = np.asarray(values, np.float64)
  idx = np.searchsorted(edges, values, side='right') - 1
  idx[(values < edges[0]) | (values >= edges[-1]) | ~np.isfinite(values)] = -1
  return idx


def binned_mean(y: np.ndarray, x: np.ndarray,
                edges: Sequence[float]) -> np.ndarray:
  """Mean of y over the samples whose x lies in each [lo, hi) bin.

  Returns:
    [len(edges) - 1] means; NaN for an empty bin (torch's mean of empty).
  """
  y = np.asarray(y, np.float64)
  idx = assign_bins(x, edges)
  out = np.full(len(edges) - 1, np.nan)
  for b in range(len(edges) - 1):
    sel = idx == b
    if sel.any():
      out[b] = y[sel].mean()
  return out


def navi_correspondence_metrics(
    err_3d: np.ndarray, err_2d: np.ndarray, rel_angle_deg: np.ndarray,
    bin_edges: Sequence[float] = NAVI_BIN_EDGES_3DPOV) -> dict[str, float]:
  """NAVI correspondence summary of Probe3D's `evaluate_navi_correspondence.py`.

  Args:
    err_3d: [P, M] (or P arrays [M_p]) 3D errors (metres) of each pair's
      matches; overall recalls pool all matches.
    err_2d: same layout, 2D errors (pixels at 512 px).
    rel_angle_deg: [P] relative rotation of each pair, degrees.
    bin_edges: relative-rotation bin edges ([lo, hi) bins).

  Returns:
    'recall_1cm', 'recall_2cm', 'recall_5cm', 'recall_5px', 'recall_25px',
    'recall_50px' (percent over all matches) and 'bin_<lo>-<hi>' (percent,
    mean over the bin's pairs of per-pair recall@2cm).
  """
  err_3d = [np.asarray(e, np.float64).reshape(-1) for e in err_3d]
  err_2d = [np.asarray(e, np.float64).reshape(-1) for e in err_2d]
  if len(err_3d) != len(rel_angle_deg) or len(err_2d) != len(err_3d):
    raise ValueError('err_3d, err_2d and rel_angle_deg need one entry per '
                     f'pair, got {len(err_3d)}, {len(err_2d)}, '
                     f'{len(rel_angle_deg)}')
  all_3d = np.concatenate(err_3d)
  all_2d = np.concatenate(err_2d)
  out = {}
  for th in NAVI_RECALL_METRES:
    out[f'recall_{round(th * 100)}cm'] = float((all_3d < th).mean() * 100)
  for th in NAVI_RECALL_PIXELS:
    out[f'recall_{round(th)}px'] = float((all_2d < th).mean() * 100)
  per_pair = np.array([(e < NAVI_BIN_THRESHOLD_METRES).mean() for e in err_3d])
  binned = binned_mean(per_pair, rel_angle_deg, bin_edges)
  for b in range(len(bin_edges) - 1):
    out[f'bin_{bin_edges[b]:g}-{bin_edges[b + 1]:g}'] = float(binned[b] * 100)
  return out


# ----------------------------------------------------------------------------
# Depth (Probe3D depth probe: RMSE and delta_k, scale-aware and scale-invariant).


def match_scale_and_shift(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """Per image least-squares a, b minimising sum_valid (a pred + b - gt)^2.

  Args:
    pred, gt: [B, H, W] depth in metres; valid where gt > 0.

  Returns:
    [B, H, W] a * pred + b (every pixel); a = 1, b = 0 when the 2x2 system is
    singular (e.g. fewer than two distinct valid predictions).
  """
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  m = (gt > 0).astype(np.float64)
  a00 = (m * pred * pred).sum((1, 2))
  a01 = (m * pred).sum((1, 2))
  a11 = m.sum((1, 2))
  b0 = (m * pred * gt).sum((1, 2))
  b1 = (m * gt).sum((1, 2))
  det = a00 * a11 - a01 * a01
  ok = det != 0
  safe = np.where(ok, det, 1.0)
  scale = np.where(ok, (a11 * b0 - a01 * b1) / safe, 1.0)
  shift = np.where(ok, (-a01 * b0 + a00 * b1) / safe, 0.0)
  return pred * scale[:, None, None] + shift[:, None, None]


def depth_metrics(pred: np.ndarray, gt: np.ndarray, *,
                  scale_invariant: bool = False, nyu_crop: bool = False,
                  image_average: bool = True) -> dict[str, np.ndarray | float]:
  """Probe3D `evaluate_depth` plus AbsRel (our extension).

  Per image over valid pixels (gt > 0): rmse (metres), d1/d2/d3 (fractions
  with max(gt/pred, pred/gt) < 1.25^k; pred clamped at 1e-9 in the ratio so
  non-positive predictions count as wrong), abs_rel = mean |pred - gt| / gt.
  An image with no valid pixel gets 0 for every metric (Probe3D clamps the
  count to 1).

  Args:
    pred, gt: [B, H, W] or [B, 1, H, W] depth, metres.
    scale_invariant: fit per-image scale and shift first (SI metrics).
    nyu_crop: evaluate only [45:471, 41:601] of 480x640 maps.
    image_average: mean over images (else [B] arrays).

  Returns:
    dict with 'rmse', 'abs_rel', 'd1', 'd2', 'd3'.
  """
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  if pred.shape != gt.shape:
    raise ValueError(f'depth shapes differ: {pred.shape} vs {gt.shape}')
  if pred.ndim == 4:
    pred, gt = pred[:, 0], gt[:, 0]
  if pred.ndim != 3:
    raise ValueError(f'depth must be [B, H, W], got {pred.shape}')
  if nyu_crop:
    if pred.shape[-2:] != (480, 640):
      raise ValueError(f'nyu_crop needs 480x640 maps, got {pred.shape}')
    pred, gt = pred[:, 45:471, 41:601], gt[:, 45:471, 41:601]
  if scale_invariant:
    pred = match_scale_and_shift(pred, gt)
  valid = (gt > 0).astype(np.float64)
  pred = pred * valid
  n = np.maximum(valid.sum((1, 2)), 1.0)
  with np.errstate(divide='ignore', invalid='ignore'):
    ratio = np.maximum(gt / np.maximum(pred, 1e-9), pred / np.maximum(gt, 1e-9))
    rel = np.where(valid > 0, np.abs(pred - gt) / np.where(gt > 0, gt, 1.0), 0)
  out = {}
  for k in (1, 2, 3):
    out[f'd{k}'] = ((ratio < DEPTH_DELTA_BASE**k) * valid).sum((1, 2)) / n
  out['rmse'] = np.sqrt((((gt - pred) ** 2) * valid).sum((1, 2)) / n)
  out['abs_rel'] = rel.sum((1, 2)) / n
  if image_average:
    out = {k: float(v.mean()) for k, v in out.items()}
  return out


# ----------------------------------------------------------------------------
# Surface normals (Probe3D normal probe: angular error and recalls).


def angular_error_deg(pred: np.ndarray, gt: np.ndarray,
                      eps: float = 1e-8) -> np.ndarray:
  """Angle between normal maps, degrees.

  Args:
    pred: [B, C>=3, H, W] (channels beyond 3, e.g. kappa, are ignored).
    gt: [B, 3, H, W].
    eps: norm floor of torch.cosine_similarity.

  Returns:
    [B, H, W] arccos(clamp(cos, -1, 1)) in degrees.
  """
  pred = np.asarray(pred, np.float64)[:, :3]
  gt = np.asarray(gt, np.float64)
  if pred.shape != gt.shape:
    raise ValueError(f'normal shapes differ: {pred.shape} vs {gt.shape}')
  dot = (pred * gt).sum(1)
  den = (np.maximum(np.linalg.norm(pred, axis=1), eps) *
         np.maximum(np.linalg.norm(gt, axis=1), eps))
  return np.degrees(np.arccos(np.clip(dot / den, -1.0, 1.0)))


def normal_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, *,
                   image_average: bool = True) -> dict[str, np.ndarray | float]:
  """Probe3D `evaluate_surface_norm` plus pooled mean/median (extension).

  Args:
    pred: [B, C>=3, H, W] predicted normals (need not be unit length).
    gt: [B, 3, H, W] ground-truth normals.
    valid: [B, H, W] or [B, 1, H, W] validity mask.
    image_average: mean the per-image metrics over images.

  Returns:
    per image (then averaged): 'rmse' (deg), 'd1', 'd2', 'd3' (fractions with
    error < 11.25, 22.5, 30 deg); pooled over all valid pixels of the batch:
    'mean', 'median' (deg) and 'pooled_d1..3'.
  """
  err = angular_error_deg(pred, gt)
  valid = np.asarray(valid)
  if valid.ndim == 4:
    valid = valid[:, 0]
  if valid.shape != err.shape:
    raise ValueError(f'valid mask shape {valid.shape} != {err.shape}')
  v = valid.astype(bool)
  vf = v.astype(np.float64)
  err = err * vf
  n = np.maximum(vf.sum((1, 2)), 1.0)
  out = {'rmse': np.sqrt((err**2).sum((1, 2)) / n)}
  for k, th in enumerate(NORMAL_THRESHOLDS_DEG, 1):
    out[f'd{k}'] = ((err < th) * vf).sum((1, 2)) / n
  if image_average:
    out = {k: float(x.mean()) for k, x in out.items()}
  pooled = err[v]
  out['mean'] = float(pooled.mean()) if pooled.size else float('nan')
  out['median'] = float(np.median(pooled)) if pooled.size else float('nan')
  for k, th in enumerate(NORMAL_THRESHOLDS_DEG, 1):
    out[f'pooled_d{k}'] = (float((pooled < th).mean()) if pooled.size
                           else float('nan'))
  return out
