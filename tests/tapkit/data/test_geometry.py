"""Pinhole projection, rigid poses and rotation angles: known values and round trips."""

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
  with pytest.raises(ValueError, match='behind'):
    geometry.project(np.ones((2, 3)), INTRINSICS, behind='drop')
  with pytest.raises(ValueError, match='pose'):
    geometry.invert_pose(np.eye(3))
  with pytest.raises(ValueError, match='convention'):
    geometry.rotation_angle_deg(np.eye(3), 'euler')


# Points in front, exactly on the camera plane, just in front of a 1e-6 near plane, behind.
_BEHIND_POINTS = np.array([[1.0, -0.5, 2.0], [1.0, 1.0, 0.0], [1.0, 1.0, 5e-7],
                           [1.0, 1.0, -2.0]])


def test_behind_policy_keep_is_the_plain_formula():
  with np.errstate(divide='ignore'):
    xy = geometry.project(_BEHIND_POINTS, INTRINSICS)
  np.testing.assert_array_equal(xy[0], [570.0, 140.0])
  assert np.isinf(xy[1]).all()
  # z < 0 mirrors through the principal point: (320 - 500 / 2, 240 - 400 / 2).
  np.testing.assert_allclose(xy[3], [70.0, 40.0], atol=1e-12)


def test_behind_policy_nan():
  xy = geometry.project(_BEHIND_POINTS, INTRINSICS, behind='nan', min_depth=1e-6)
  np.testing.assert_array_equal(xy[0], [570.0, 140.0])
  assert np.isnan(xy[1:]).all()
  # The threshold is strict: z = 5e-7 counts as in front with min_depth = 1e-9.
  xy = geometry.project(_BEHIND_POINTS, INTRINSICS, behind='nan', min_depth=1e-9)
  np.testing.assert_allclose(xy[2], [320.0 + 500.0 / 5e-7, 240.0 + 400.0 / 5e-7])
  assert np.isnan(xy[[1, 3]]).all()


def test_behind_policy_principal_point():
  xy = geometry.project(_BEHIND_POINTS.astype(np.float32), INTRINSICS, behind='principal',
                        min_depth=1e-6)
  assert xy.dtype == np.float32  # Computed in the points' dtype.
  np.testing.assert_array_equal(xy, [[570.0, 140.0], [320.0, 240.0], [320.0, 240.0],
                                     [320.0, 240.0]])


def test_behind_policy_clamp_divides_by_min_depth():
  xy = geometry.project(_BEHIND_POINTS, INTRINSICS, behind='clamp', min_depth=0.5)
  np.testing.assert_allclose(xy, [[570.0, 140.0], [1320.0, 1040.0], [1320.0, 1040.0],
                                  [1320.0, 1040.0]], atol=1e-12)


def test_matrix_intrinsics_match_the_vector_form():
  rng = np.random.default_rng(3)
  points = rng.uniform(-1, 1, (6, 3)) + np.array([0.0, 0.0, 3.0])
  k = np.array([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])
  np.testing.assert_allclose(geometry.project(points, k), geometry.project(points, INTRINSICS),
                             rtol=1e-12)
  # Per-frame matrices [T, 1, 3, 3] broadcast like per-frame vectors.
  ks = np.stack([k, 2 * k])[:, None]
  ks[1, 0, 2, 2] = 1.0
  xy = geometry.project(np.stack([points, points]), ks)
  np.testing.assert_allclose(xy[1], geometry.project(points, [1000.0, 800.0, 640.0, 480.0]),
                             rtol=1e-12)
  # A skewed K: u = fx X / Z + s Y / Z + cx.
  k_skew = k.copy()
  k_skew[0, 1] = 10.0
  xy = geometry.project(np.array([[1.0, 2.0, 4.0]]), k_skew, behind='clamp', min_depth=1e-9)
  np.testing.assert_allclose(xy, [[320.0 + 125.0 + 5.0, 240.0 + 200.0]], rtol=1e-12)
  xy = geometry.project(np.array([[1.0, 2.0, -4.0]]), k, behind='clamp', min_depth=1e-9)
  np.testing.assert_allclose(xy, [[(500.0 - 4 * 320.0) / 1e-9, (800.0 - 4 * 240.0) / 1e-9]])


def test_unproject_float32_known_values():
  xy = np.array([[320.0, 240.0], [570.0, 140.0]], np.float32)
  points = geometry.unproject(xy, np.array([3.0, 2.0], np.float32), INTRINSICS)
  assert points.dtype == np.float32
  np.testing.assert_allclose(points, [[0.0, 0.0, 3.0], [1.0, -0.5, 2.0]], atol=1e-7)


def test_invert_pose_3x4_keeps_shape_and_dtype():
  rng = np.random.default_rng(4)
  poses = np.stack([_random_pose(rng) for _ in range(3)])
  inverse = geometry.invert_pose(poses[:, :3].astype(np.float32))
  assert inverse.shape == (3, 3, 4) and inverse.dtype == np.float32
  np.testing.assert_allclose(inverse, np.linalg.inv(poses)[:, :3], atol=1e-5)
  rebuilt = geometry.rigid_matrix(poses[:, :3, :3], poses[:, :3, 3])
  np.testing.assert_array_equal(rebuilt, poses)


def _rot_z(deg: float) -> np.ndarray:
  a = np.deg2rad(deg)
  return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_rotation_angle_trace():
  assert geometry.rotation_angle_deg(np.eye(3)) == 0.0
  np.testing.assert_allclose(geometry.rotation_angle_deg(np.stack([_rot_z(37.0), _rot_z(120.0)])),
                             [37.0, 120.0], rtol=1e-12)
  # Not orthonormal: the trace formula takes it as is, (tr - 1) / 2 = 0.5 -> 60 degrees.
  np.testing.assert_allclose(geometry.rotation_angle_deg(np.eye(3) * 2 / 3), 60.0)


def test_rotation_angle_like_rodrigues():
  assert geometry.rotation_angle_deg(np.eye(3), 'rodrigues') == 0.0
  tiny = _rot_z(np.rad2deg(1e-7))  # Below OpenCV's 1e-5 sine threshold: exactly 0.
  assert geometry.rotation_angle_deg(tiny, 'rodrigues') == 0.0
  assert geometry.rotation_angle_deg(tiny) > 0.0
  flip = np.diag([-1.0, -1.0, 1.0])  # 180 degrees about z (sine 0, cosine -1).
  assert abs(geometry.rotation_angle_deg(flip, 'rodrigues') - 180.0) < 1e-9
  b = np.deg2rad(37.0)
  rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
  assert abs(geometry.rotation_angle_deg(rx, 'rodrigues') - 37.0) < 1e-9
  # Scaled rotations are projected onto SO(3) first.
  angles = geometry.rotation_angle_deg(np.stack([1.5 * rx, 0.9 * _rot_z(70.0)]), 'rodrigues')
  np.testing.assert_allclose(angles, [37.0, 70.0], rtol=1e-12)
