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
and broadcast over leading axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any  # np.ndarray or jax.Array.


def _xp(x: Array):
  """numpy for numpy inputs, jax.numpy for jax arrays (imported only when needed)."""
  if isinstance(x, (np.ndarray, np.generic, float, int, list, tuple)):
    return np
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp


def _split_intrinsics(intrinsics: Array, xp):
  intrinsics = xp.asarray(intrinsics)
  if intrinsics.shape[-1] != 4:
    raise ValueError(f'intrinsics must end in an axis of 4 (fx, fy, cx, cy), got '
                     f'shape {intrinsics.shape}')
  return (intrinsics[..., 0:1], intrinsics[..., 1:2], intrinsics[..., 2:3],
          intrinsics[..., 3:4])


def project(points_xyz: Array, intrinsics: Array) -> Array:
  """Projects camera-frame points to pixels.

  Args:
    points_xyz: [..., 3] metres in the camera frame (z > 0 in front of the camera).
    intrinsics: [4] or [..., 4] (fx, fy, cx, cy) in pixels, broadcast against the
      leading axes of `points_xyz`.

  Returns:
    [..., 2] pixel coordinates (x, y). Points with z = 0 give inf/nan (no clamping, so
    a caller can see them).
  """
  xp = _xp(points_xyz)
  points_xyz = xp.asarray(points_xyz)
  fx, fy, cx, cy = _split_intrinsics(intrinsics, xp)
  z = points_xyz[..., 2:3]
  x = fx * points_xyz[..., 0:1] / z + cx
  y = fy * points_xyz[..., 1:2] / z + cy
  return xp.concatenate([x, y], axis=-1)


def unproject(xy: Array, depth: Array, intrinsics: Array) -> Array:
  """Lifts pixels with known depth back to camera-frame points (inverse of `project`).

  Args:
    xy: [..., 2] pixel coordinates (x, y).
    depth: [...] z in metres (along the optical axis), same leading shape as `xy`.
    intrinsics: [4] or [..., 4] (fx, fy, cx, cy) in pixels.

  Returns:
    [..., 3] points (X, Y, Z) in metres in the camera frame, Z = depth.
  """
  xp = _xp(xy)
  xy = xp.asarray(xy)
  z = xp.asarray(depth)[..., None]
  fx, fy, cx, cy = _split_intrinsics(intrinsics, xp)
  x = (xy[..., 0:1] - cx) / fx * z
  y = (xy[..., 1:2] - cy) / fy * z
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
  xp = _xp(points)
  points = xp.asarray(points)
  pose = xp.asarray(pose)
  _check_pose(pose, 'pose')
  rotation = pose[..., :3, :3]
  translation = pose[..., :3, 3]
  return xp.einsum('...ij,...j->...i', rotation, points) + translation


def invert_pose(pose: Array) -> Array:
  """Inverts rigid 4×4 transforms in closed form: [R t; 0 1]⁻¹ = [Rᵀ −Rᵀt; 0 1].

  Args:
    pose: [..., 4, 4] rigid transforms (R orthonormal; not checked).

  Returns:
    [..., 4, 4] inverses (w2c ↔ c2w).
  """
  xp = _xp(pose)
  pose = xp.asarray(pose)
  _check_pose(pose, 'pose')
  rotation_t = xp.swapaxes(pose[..., :3, :3], -1, -2)
  translation = -xp.einsum('...ij,...j->...i', rotation_t, pose[..., :3, 3])
  top = xp.concatenate([rotation_t, translation[..., None]], axis=-1)
  bottom = xp.broadcast_to(
      xp.asarray([0.0, 0.0, 0.0, 1.0], dtype=pose.dtype), top.shape[:-2] + (1, 4))
  return xp.concatenate([top, bottom], axis=-2)


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
  xp = _xp(tracks_xyz)
  return camera_to_world(tracks_xyz, xp.asarray(extrinsics_w2c)[:, None])
