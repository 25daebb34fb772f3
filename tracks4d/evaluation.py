"""Per-video TracksTo4D evaluation, as the official inference.py `evaluate_model`.

Pixel reprojection error, depth metrics and ATE / RPE. Numpy in, numpy out; uses the dynamic
branch's outputs of the final forward pass.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tapkit.metrics import depth as depth_lib
from tapkit.metrics import pose as pose_lib


@dataclasses.dataclass
class VideoEvaluation:
  """Official per-video numbers.

  Attributes:
    ate, rpe_trans: GT scene units; rpe_rot: degrees (all 0 when GT poses are missing
      or the official metric would fail).
    pixel_reprojection_error: pixels (frame 0's fx).
    depth_all, depth_dynamic: (delta_1, delta_2, delta_3, AbsRel); zeros when GT depth
      or mask is missing; dynamic entries NaN when no track is dynamic.
  """

  ate: float
  rpe_trans: float
  rpe_rot: float
  pixel_reprojection_error: float
  depth_all: tuple[float, float, float, float]
  depth_dynamic: tuple[float, float, float, float]

  def as_official_dict(self) -> dict[str, Any]:
    """The JSON entry of the official script: ATE, RPE_trans, RPE_rot, rep, ALL, Dynamic."""
    return {'ATE': self.ate, 'RPE_trans': self.rpe_trans, 'RPE_rot': self.rpe_rot,
            'rep': self.pixel_reprojection_error, 'ALL': np.asarray(self.depth_all, np.float32),
            'Dynamic': np.asarray(self.depth_dynamic, np.float32)}


def _squeeze_batch(x: np.ndarray, ndim: int, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim == ndim + 1:
    if x.shape[0] != 1:
      raise ValueError(f'evaluate_video: {name} must have batch size 1, got {x.shape}')
    x = x[0]
  if x.ndim != ndim:
    raise ValueError(f'evaluate_video: {name} has shape {x.shape}, expected {ndim} dims '
                     '(plus an optional leading batch of 1)')
  return x


def evaluate_video(*, projections: np.ndarray, tracks: np.ndarray, tracks_vis: np.ndarray,
                   depths: np.ndarray, rotations: np.ndarray, translations: np.ndarray,
                   gt_ks: np.ndarray, gt_poses: np.ndarray | None = None,
                   gt_depth: np.ndarray | None = None,
                   gt_mask: np.ndarray | None = None) -> VideoEvaluation:
  """Evaluates one video like the official `evaluate_model`.

  Args:
    projections: [(1,) F, 2, N] dynamic projections, normalised coords.
    tracks: [(1,) N, 3, F] network input (normalised x, y, visibility).
    tracks_vis: [(1,) F, N] bool.
    depths: [(1,) F, N] dynamic depths (unclamped).
    rotations: [(1,) F, 3, 3], translations: [(1,) F, 3] camera-to-world predictions.
    gt_ks: [F, 3, 3] intrinsics used by the reader (pixels); only fx of frame 0 is used.
    gt_poses: [F, 4, 4] GT camera-to-world, or None (pose metrics reported as 0).
    gt_depth: [(1,) F, N] GT depth, or None (depth metrics reported as 0).
    gt_mask: [(1,) F, N] GT foreground mask, or None (depth metrics reported as 0).
  """
  proj = _squeeze_batch(projections, 3, 'projections')
  trk = _squeeze_batch(tracks, 3, 'tracks')
  vis = _squeeze_batch(tracks_vis, 2, 'tracks_vis').astype(bool)
  dep = _squeeze_batch(depths, 2, 'depths')
  tracks_xy = np.transpose(trk[:, :2, :], (2, 1, 0))  # [F, 2, N]
  fx = np.asarray(gt_ks, np.float32).reshape(-1, 3, 3)[0, 0, 0]
  pixel_error = depth_lib.pixel_reprojection_error(proj, tracks_xy, vis, fx)

  if gt_depth is None or gt_mask is None:
    # The official swallows the missing-GT exception and reports zeros.
    depth_all = depth_dynamic = (0.0, 0.0, 0.0, 0.0)
  else:
    g_depth = _squeeze_batch(gt_depth, 2, 'gt_depth')
    g_mask = _squeeze_batch(gt_mask, 2, 'gt_mask')
    metrics = depth_lib.depth_metrics(dep, g_depth, vis, depth_lib.dynamic_point_mask(g_mask))
    depth_all, depth_dynamic = metrics.all_tuple(), metrics.dynamic_tuple()

  rot = _squeeze_batch(rotations, 3, 'rotations')
  trans = _squeeze_batch(translations, 2, 'translations')
  ate = rpe_trans = rpe_rot = 0.0
  # The official swallows every pose-evaluation exception and reports zeros: missing GT
  # poses, a single frame (no relative motion), or a failed SVD (non-finite poses).
  if gt_poses is not None and rot.shape[0] >= 2:
    try:
      poses = pose_lib.network_pose_metrics(rot, trans, gt_poses)
      ate, rpe_trans, rpe_rot = poses.ate, poses.rpe_trans, poses.rpe_rot
    except np.linalg.LinAlgError:
      pass
  return VideoEvaluation(ate=ate, rpe_trans=rpe_trans, rpe_rot=rpe_rot,
                         pixel_reprojection_error=pixel_error, depth_all=depth_all,
                         depth_dynamic=depth_dynamic)
