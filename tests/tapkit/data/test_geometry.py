"""Pinhole projection and rigid poses: known values and round trips."""

import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.data import geometry

INTRINSICS = np.array([500.0, 400.0, 320.0, 240.0])


def _random_pose(rng) -> np.ndarray:
  q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  q *= np.sign(np.linalg.det(q))  # A proper rotation.
  pose = np.eye(4)
  pose[:3, :3] = q
  pose[:3, 3] = rng.normal(size=3)
  return pose


def test_project_known_values():
  points = np.array([[0.0, 0.0, 2.0], [1.0, -0.5, 2.0], [0.2, 0.3, 4.0]])
  xy = geometry.project(points, INTRINSICS)
  np.testing.assert_allclose(
      xy, [[320.0, 240.0], [570.0, 140.0], [345.0, 270.0]], rtol=0, atol=1e-12)


def test_unproject_inverts_project():
  rng = np.random.default_rng(0)
  points = rng.uniform(-2, 2, (5, 7, 3))
  points[..., 2] = rng.uniform(0.5, 10, (5, 7))
  xy = geometry.project(points, INTRINSICS)
  back = geometry.unproject(xy, points[..., 2], INTRINSICS)
  np.testing.assert_allclose(back, points, rtol=1e-12, atol=1e-12)


def test_per_frame_intrinsics_broadcast():
  points = np.ones((2, 3, 3))
  intrinsics = np.array([[10.0, 10.0, 0.0, 0.0], [20.0, 20.0, 1.0, 1.0]])[:, None]
  xy = geometry.project(points, intrinsics)
  np.testing.assert_allclose(xy[0], 10.0)
  np.testing.assert_allclose(xy[1], 21.0)


def test_pose_round_trips():
  rng = np.random.default_rng(1)
  poses = np.stack([_random_pose(rng) for _ in range(4)])  # [T, 4, 4]
  inverse = geometry.invert_pose(poses)
  np.testing.assert_allclose(inverse, np.linalg.inv(poses), atol=1e-12)
  np.testing.assert_allclose(inverse @ poses, np.broadcast_to(np.eye(4), (4, 4, 4)),
                             atol=1e-12)
  world = rng.normal(size=(4, 6, 3))
  cam = geometry.world_to_camera(world, poses[:, None])
  # Explicit R p + t for one point.
  np.testing.assert_allclose(cam[2, 3], poses[2, :3, :3] @ world[2, 3] + poses[2, :3, 3],
                             atol=1e-12)
  np.testing.assert_allclose(geometry.camera_to_world(cam, poses[:, None]), world,
                             atol=1e-12)
  np.testing.assert_allclose(geometry.tracks_to_world(cam, poses), world, atol=1e-12)


def test_jax_inputs():
  rng = np.random.default_rng(2)
  pose = _random_pose(rng).astype(np.float32)
  points = rng.normal(size=(8, 3)).astype(np.float32) + np.array([0, 0, 5], np.float32)
  cam = geometry.world_to_camera(jnp.asarray(points), jnp.asarray(pose))
  xy = geometry.project(cam, jnp.asarray(INTRINSICS, jnp.float32))
  assert isinstance(xy, type(jnp.zeros(1)))
  np.testing.assert_allclose(
      np.asarray(xy), geometry.project(geometry.world_to_camera(points, pose),
                                       INTRINSICS.astype(np.float32)), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(geometry.invert_pose(jnp.asarray(pose))),
                             np.linalg.inv(pose), atol=1e-5)


def test_shape_errors():
  with pytest.raises(ValueError, match='intrinsics'):
    geometry.project(np.ones((2, 3)), np.ones(3))
  with pytest.raises(ValueError, match='pose'):
    geometry.invert_pose(np.eye(3))
