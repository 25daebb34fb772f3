"""Pinhole camera geometry in the TAPVid-3D conventions.

Conventions (also in tapkit/data/README.md):
* Camera frame: OpenCV style, x right, y down, z forward along the optical axis, metres.
  "Depth" is z (distance along the optical axis), not the distance to the camera centre.
* Pixels: (x, y) = (column, row) in pixels of the stored frames, x = fx·X/Z + cx,
  y = fy·Y/Z + cy, with `intrinsics = (fx, fy, cx, cy)`. No half-pixel offset is applied:
  whatever convention the principal point was calibrated in is kept.
* Poses: 4×4 world-to-camera matrices `w2c` with `p_cam = R·p_world + t`
  (`R = w2c[:3, :3]`, `t = w2c[:3, 3]`); a name containing `c2w` means the inverse.

All functions accept numpy or jax arrays (the module of the first array argument is used)
and broadcast over leading axes, except `rotation_angle_deg` (numpy, float64).
Points behind the camera have no pixel; `project` makes the caller choose what they get
(`behind=`), see its docstring for the policies and which caller uses which.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tapkit.ops.numeric import array_module

Array = Any  # np.ndarray or jax.Array.


def _split_intrinsics(intrinsics: Array, xp):
  intrinsics = xp.asarray(intrinsics)
  if intrinsics.shape[-1] != 4:
    raise ValueError(f'intrinsics must end in an axis of 4 (fx, fy, cx, cy), got '
                     f'shape {intrinsics.shape}')
  return (intrinsics[..., 0:1], intrinsics[..., 1:2], intrinsics[..., 2:3],
          intrinsics[..., 3:4])


BEHIND_POLICIES = ('keep', 'nan', 'principal', 'clamp')


def _as_float(x: Array, xp) -> Array:
  """x as an array of its own float dtype (integers become the default float)."""
  x = xp.asarray(x)
  if not xp.issubdtype(x.dtype, xp.floating):
    x = x.astype(xp.result_type(x.dtype, xp.float32))
  return x


def project(points_xyz: Array, intrinsics: Array, *, behind: str = 'keep',
            min_depth: float = 0.0) -> Array:
  """Projects camera-frame points to pixels, with an explicit rule for points behind the camera.

  The arithmetic runs in the points' float dtype (the intrinsics are cast to it), so float32
  tracks give float32 pixels exactly as a float32 pinhole formula would.

  Points count as "in front" when z > `min_depth`. What the others get is `behind`:

  | behind      | pixel of a point with z <= min_depth      | used by                              |
  | ----------- | ----------------------------------------- | ------------------------------------ |
  | 'keep'      | the plain formula (z = 0: inf/nan; z < 0: | TRAJAN preprocessing, round trips    |
  |             | mirrored through the principal point)     |                                      |
  | 'nan'       | NaN (never painted, never matched)        | track painting (min_depth 1e-9)      |
  | 'principal' | the principal point (cx, cy), NaN-free;   | TAPVid-3D clip pipelines (1e-6),     |
  |             | callers mask those points with visibility | synthetic scenes and TracksTo4D      |
  |             |                                           | export (their near plane)            |
  | 'clamp'     | the formula with z replaced by min_depth  | Probe3D NAVI correspondence (1e-9)   |

  Args:
    points_xyz: [..., 3] metres in the camera frame (z > 0 in front of the camera).
    intrinsics: [4] or [..., 4] (fx, fy, cx, cy) in pixels, broadcast against the leading axes
      of `points_xyz`: x = fx·X/Z + cx, y = fy·Y/Z + cy. Or a matrix K [3, 3] / [..., 3, 3]
      (skew allowed): (u, v, w) = K·p and (x, y) = (u, v) / w, with w in place of z above.
    behind: one of BEHIND_POLICIES (table above).
    min_depth: the depth (metres) at or below which a point counts as behind; unused by 'keep'.

  Returns:
    [..., 2] pixel coordinates (x, y).
  """
  if behind not in BEHIND_POLICIES:
    raise ValueError(f'behind must be one of {BEHIND_POLICIES}, got {behind!r}')
  xp = array_module(points_xyz)
  points_xyz = _as_float(points_xyz, xp)
  intrinsics = xp.asarray(intrinsics).astype(points_xyz.dtype)
  if intrinsics.shape[-2:] == (3, 3):
    # Homogeneous form: (u, v, w) = p Kᵀ, then (u, v) / w.
    if intrinsics.ndim == 2:
      uvw = points_xyz @ intrinsics.T
    else:
      uvw = xp.matmul(points_xyz[..., None, :], xp.swapaxes(intrinsics, -1, -2))[..., 0, :]
    if behind == 'clamp':
      return uvw[..., :2] / xp.maximum(uvw[..., 2:3], min_depth)
    fx = fy = xp.ones((), points_xyz.dtype)
    cx = cy = xp.zeros((), points_xyz.dtype)
    points_xyz = uvw
  else:
    fx, fy, cx, cy = _split_intrinsics(intrinsics, xp)
  z = points_xyz[..., 2:3]
  if behind == 'keep':
    z_div = z
  elif behind == 'nan':
    z_div = xp.where(z > min_depth, z, xp.nan)
  elif behind == 'clamp':
    z_div = xp.maximum(z, min_depth)
  else:  # 'principal'
    z_div = xp.where(z > min_depth, z, 1.0)
  x = fx * points_xyz[..., 0:1] / z_div + cx
  y = fy * points_xyz[..., 1:2] / z_div + cy
  if behind == 'principal':
    x = xp.where(z > min_depth, x, cx)
    y = xp.where(z > min_depth, y, cy)
  return xp.concatenate([x, y], axis=-1)


def unproject(xy: Array, depth: Array, intrinsics: Array) -> Array:
  """Lifts pixels with known depth back to camera-frame points (inverse of `project`).

  X = (x − cx)·Z / fx, Y = (y − cy)·Z / fy, computed in the pixels' float dtype.

  Args:
    xy: [..., 2] pixel coordinates (x, y).
    depth: [...] z in metres (along the optical axis), same leading shape as `xy`.
    intrinsics: [4] or [..., 4] (fx, fy, cx, cy) in pixels.

  Returns:
    [..., 3] points (X, Y, Z) in metres in the camera frame, Z = depth.
  """
  xp = array_module(xy)
  xy = _as_float(xy, xp)
  z = xp.asarray(depth)[..., None]
  fx, fy, cx, cy = _split_intrinsics(xp.asarray(intrinsics).astype(xy.dtype), xp)
  x = (xy[..., 0:1] - cx) * z / fx
  y = (xy[..., 1:2] - cy) * z / fy
  # Broadcast z in case the intrinsics carry more leading axes than the pixels.
  return xp.concatenate([x, y, xp.broadcast_to(z, x.shape)], axis=-1)


def _check_pose(pose: Array, name: str) -> None:
  if pose.shape[-2:] != (4, 4):
    raise ValueError(f'{name} must end in [4, 4], got shape {pose.shape}')


def apply_pose(points: Array, pose: Array) -> Array:
  """Applies a rigid 4×4 transform: `R·p + t`.

  Args:
    points: [..., 3].
    pose: [4, 4] or [..., 4, 4], broadcast against the leading axes of `points`
      (e.g. points [T, N, 3] with poses [T, 1, 4, 4]).

  Returns:
    [..., 3] transformed points.
  """
  xp = array_module(points)
  points = xp.asarray(points)
  pose = xp.asarray(pose)
  _check_pose(pose, 'pose')
  rotation = pose[..., :3, :3]
  translation = pose[..., :3, 3]
  return xp.einsum('...ij,...j->...i', rotation, points) + translation


def invert_pose(pose: Array) -> Array:
  """Inverts rigid transforms in closed form: [R t; 0 1]⁻¹ = [Rᵀ −Rᵀt; 0 1].

  Computed in the input dtype (float32 poses are inverted in float32, as the official
  TAPVid-3D / TracksTo4D evaluation helpers do).

  Args:
    pose: [..., 4, 4] rigid transforms, or [..., 3, 4] without the constant last row
      (R orthonormal; not checked).

  Returns:
    The inverses, same shape and dtype (w2c ↔ c2w).
  """
  xp = array_module(pose)
  pose = xp.asarray(pose)
  if pose.shape[-2:] not in ((3, 4), (4, 4)):
    raise ValueError(f'pose must end in [4, 4] or [3, 4], got shape {pose.shape}')
  rotation_t = xp.swapaxes(pose[..., :3, :3], -1, -2)
  translation = -xp.einsum('...ij,...j->...i', rotation_t, pose[..., :3, 3])
  top = xp.concatenate([rotation_t, translation[..., None]], axis=-1)
  if pose.shape[-2] == 3:
    return top
  bottom = xp.broadcast_to(
      xp.asarray([0.0, 0.0, 0.0, 1.0], dtype=pose.dtype), top.shape[:-2] + (1, 4))
  return xp.concatenate([top, bottom], axis=-2)


def rigid_matrix(rotation: Array, translation: Array) -> Array:
  """[..., 4, 4] homogeneous transforms [R t; 0 1] from rotations [..., 3, 3] and translations [..., 3]."""
  xp = array_module(rotation)
  rotation = xp.asarray(rotation)
  translation = xp.asarray(translation).astype(rotation.dtype)
  top = xp.concatenate([rotation, translation[..., None]], axis=-1)
  bottom = xp.broadcast_to(
      xp.asarray([0.0, 0.0, 0.0, 1.0], dtype=rotation.dtype), top.shape[:-2] + (1, 4))
  return xp.concatenate([top, bottom], axis=-2)


ROTATION_ANGLE_CONVENTIONS = ('trace', 'rodrigues')


def rotation_angle_deg(rotation: np.ndarray, convention: str = 'trace') -> np.ndarray:
  """Rotation angle of 3×3 matrices in degrees (numpy, float64).

  'trace': arccos((tr R − 1) / 2), the cosine clipped to [−1, 1] (Probe3D's NAVI bins use it).
  'rodrigues': |cv2.Rodrigues(R)| as OpenCV computes it (the TracksTo4D pose evaluation):
    R is first projected onto SO(3) via SVD (U Vᵀ); with s = |vee(R − Rᵀ)| / 2 and
    c = (tr − 1) / 2 clipped to [−1, 1] the angle is arccos(c), except exactly 0 when
    s < 1e-5 and c > 0. Differs from 'trace' for matrices that are not exactly orthonormal.

  Args:
    rotation: [..., 3, 3].
    convention: one of ROTATION_ANGLE_CONVENTIONS.

  Returns:
    [...] degrees in [0, 180] (a 0-d array for a single matrix).
  """
  rotation = np.asarray(rotation, np.float64)
  if rotation.shape[-2:] != (3, 3):
    raise ValueError(f'rotation must end in [3, 3], got shape {rotation.shape}')
  if convention == 'trace':
    tr = np.trace(rotation, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1.0) * 0.5, -1.0, 1.0)))
  if convention != 'rodrigues':
    raise ValueError(f'convention must be one of {ROTATION_ANGLE_CONVENTIONS}, '
                     f'got {convention!r}')
  u, _, vt = np.linalg.svd(rotation)
  r = u @ vt
  rx = r[..., 2, 1] - r[..., 1, 2]
  ry = r[..., 0, 2] - r[..., 2, 0]
  rz = r[..., 1, 0] - r[..., 0, 1]
  s = np.sqrt((rx * rx + ry * ry + rz * rz) * 0.25)
  c = np.clip((r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2] - 1.0) * 0.5, -1.0, 1.0)
  return np.where((s < 1e-5) & (c > 0), 0.0, np.arccos(c) * 180.0 / np.pi)


def world_to_camera(points_world: Array, w2c: Array) -> Array:
  """World-frame points [..., 3] → camera frame with world-to-camera poses [..., 4, 4]."""
  return apply_pose(points_world, w2c)


def camera_to_world(points_cam: Array, w2c: Array) -> Array:
  """Camera-frame points [..., 3] → world frame; `w2c` [..., 4, 4] is world-to-camera."""
  return apply_pose(points_cam, invert_pose(w2c))


def tracks_to_world(tracks_xyz: Array, extrinsics_w2c: Array) -> Array:
  """TAPVid-3D tracks [T, N, 3] (camera frame of each frame) → world frame [T, N, 3].

  Args:
    tracks_xyz: [T, N, 3] metres, frame t expressed in camera t.
    extrinsics_w2c: [T, 4, 4] world-to-camera pose of each frame.
  """
  xp = array_module(tracks_xyz)
  return camera_to_world(tracks_xyz, xp.asarray(extrinsics_w2c)[:, None])
