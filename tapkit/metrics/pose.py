"""Camera-trajectory metrics: ATE, RPE-translation, RPE-rotation after Sim(3) alignment.

Equivalent to the official TracksTo4D `pose_eval.eval_one_seq_ret`:
the predicted camera centres are aligned onto the ground-truth ones
with Umeyama's method *with scale*, then

  ATE       = sqrt(mean_f |c'_f - g_f|^2)                          (GT units)
  RPE_trans = sqrt(mean_j |translation(E_j)|^2)                    (GT units)
  RPE_rot   = sqrt(mean_j theta(E_j)^2)                            (degrees)

with E_j = (G_j^-1 G_{j+1})^-1 (A_j^-1 A_{j+1}) over consecutive frames, G the GT and
A the aligned predicted camera-to-world poses. theta is the rotation angle as OpenCV's
`Rodrigues` returns it (exactly 0 below ~1e-5 rad). Everything is float64 numpy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tapkit.data import geometry


@dataclasses.dataclass
class PoseMetrics:
  """ATE / RPE results and the alignment used.

  Attributes:
    ate: absolute trajectory error (GT units).
    rpe_trans: relative pose error, translation (GT units).
    rpe_rot: relative pose error, rotation (degrees).
    aligned_c2w: [F, 3, 4] predicted camera-to-world poses after alignment.
    scale, rotation, translation: the Sim(3) (pred centres -> GT centres).
  """

  ate: float
  rpe_trans: float
  rpe_rot: float
  aligned_c2w: np.ndarray
  scale: float
  rotation: np.ndarray
  translation: np.ndarray


def _as_c2w_4x4(poses: np.ndarray, name: str) -> np.ndarray:
  poses = np.asarray(poses, np.float64)
  if poses.ndim != 3 or poses.shape[1:] not in ((3, 4), (4, 4)):
    raise ValueError(f'{name}: expected [F, 3, 4] or [F, 4, 4] poses, got {poses.shape}')
  out = np.tile(np.eye(4), (poses.shape[0], 1, 1))
  out[:, :3, :] = poses[:, :3, :]
  return out


def umeyama_alignment(source: np.ndarray, target: np.ndarray,
                      with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
  """Similarity (s, R, t) minimising sum |s R x_i + t - y_i|^2 (Umeyama 1991).

  Args:
    source: [F, 3] points x (predicted camera centres).
    target: [F, 3] points y (GT camera centres).
    with_scale: estimate s (else s = 1).

  Returns:
    (s, R [3, 3], t [3]).
  """
  x = np.asarray(source, np.float64).T  # [3, F]
  y = np.asarray(target, np.float64).T
  mu_x = x.mean(axis=1, keepdims=True)
  mu_y = y.mean(axis=1, keepdims=True)
  xc, yc = x - mu_x, y - mu_y
  var_x = (np.linalg.norm(xc, axis=0) ** 2).mean()
  cov = xc @ yc.T / x.shape[1]  # [3, 3]
  u, d, vt = np.linalg.svd(cov)
  # Reflection guard: det(V U^T) = -1 flips the weakest axis.
  e = np.diag([1.0, 1.0, np.linalg.det(vt.T @ u.T)])
  rot = vt.T @ e @ u.T
  scale = float(np.trace(np.diag(d) @ e) / var_x) if with_scale else 1.0
  trans = mu_y - scale * rot @ mu_x
  return scale, rot, trans[:, 0]


def pose_metrics(pred_c2w: np.ndarray, gt_c2w: np.ndarray) -> PoseMetrics:
  """ATE / RPE of predicted camera-to-world poses against GT ones.

  Args:
    pred_c2w: [F, 3 or 4, 4] predicted camera-to-world (any scale / world frame).
    gt_c2w: [F, 3 or 4, 4] GT camera-to-world.

  Returns:
    PoseMetrics (float64).
  """
  pred = _as_c2w_4x4(pred_c2w, 'pred_c2w')
  gt = _as_c2w_4x4(gt_c2w, 'gt_c2w')
  if pred.shape[0] != gt.shape[0] or pred.shape[0] < 2:
    raise ValueError(f'pose_metrics: need the same number (>= 2) of predicted and GT poses, '
                     f'got {pred.shape[0]} and {gt.shape[0]}')
  scale, rot, trans = umeyama_alignment(pred[:, :3, 3], gt[:, :3, 3], with_scale=True)
  aligned = np.tile(np.eye(4), (pred.shape[0], 1, 1))
  aligned[:, :3, :3] = rot @ pred[:, :3, :3]
  aligned[:, :3, 3] = (scale * rot @ pred[:, :3, 3].T).T + trans
  ate = float(np.sqrt((np.linalg.norm(aligned[:, :3, 3] - gt[:, :3, 3], axis=1) ** 2).mean()))
  rel_pred = np.linalg.inv(aligned[:-1]) @ aligned[1:]
  rel_gt = np.linalg.inv(gt[:-1]) @ gt[1:]
  err = np.linalg.inv(rel_gt) @ rel_pred  # [F-1, 4, 4]
  rpe_trans = float(np.sqrt((np.linalg.norm(err[:, :3, 3], axis=1) ** 2).mean()))
  angles = geometry.rotation_angle_deg(err[:, :3, :3], 'rodrigues')  # [F-1]
  rpe_rot = float(np.sqrt((angles**2).mean()))
  return PoseMetrics(ate=ate, rpe_trans=rpe_trans, rpe_rot=rpe_rot,
                     aligned_c2w=aligned[:, :3, :], scale=scale, rotation=rot,
                     translation=trans)


def pose_metrics_from_w2c(gt_w2c: np.ndarray, pred_w2c: np.ndarray) -> PoseMetrics:
  """The official `eval_one_seq_ret(gt_w2c, est_w2c)` entry point.

  The world-to-camera inputs are inverted back to camera-to-world in their own dtype
  (float32 inputs are inverted in float32, as the official does), then `pose_metrics`.
  """
  return pose_metrics(geometry.invert_pose(np.asarray(pred_w2c)[:, :3, :]),
                      geometry.invert_pose(np.asarray(gt_w2c)[:, :3, :]))


def network_pose_metrics(rotations: np.ndarray, translations: np.ndarray,
                         gt_c2w: np.ndarray) -> PoseMetrics:
  """Official per-video camera evaluation from network-format predictions.

  Mirrors `evaluate_cameras`: both trajectories go camera-to-world -> world-to-camera
  -> camera-to-world in float32 before the float64 metric.

  Args:
    rotations: [F, 3, 3] or [1, F, 3, 3] camera-to-world rotations.
    translations: [F, 3] or [1, F, 3] camera centres.
    gt_c2w: [F, 4, 4] GT camera-to-world (the reader's `GT_poses`).
  """
  rot = np.asarray(rotations, np.float32).reshape(-1, 3, 3)
  trans = np.asarray(translations, np.float32).reshape(-1, 3)
  pred = np.zeros((rot.shape[0], 3, 4), np.float32)
  pred[:, :, :3] = rot
  pred[:, :, 3] = trans
  gt = np.asarray(gt_c2w, np.float32)[:, :3, :]
  return pose_metrics_from_w2c(geometry.invert_pose(gt), geometry.invert_pose(pred))
