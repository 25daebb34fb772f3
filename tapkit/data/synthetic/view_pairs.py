"""Two views of one static synthetic scene related by a known rotation.

This is the Probe3D-style correspondence protocol: pixel pairs of the same surface
point seen from both cameras, with exact relative pose.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from tapkit.data.synthetic.camera import look_at_w2c, make_camera_path, make_intrinsics
from tapkit.data.synthetic.render import _rng, _visibility
from tapkit.data.synthetic.scene import SceneConfig, _camera_rays, _rotation, make_scene


def render_view_pair(seed: int | Sequence[int], rotation_deg: float, height: int = 224,
                     width: int = 224, *, num_pairs: int | None = 1000,
                     config: SceneConfig | None = None) -> dict[str, np.ndarray]:
  """Renders a static scene from two cameras related by a known rotation.

  View B orbits view A's camera by `rotation_deg` about the vertical axis through
  A's look-at point, so the cameras' relative rotation has exactly that angle.

  Args:
    seed: integer or sequence of integers.
    rotation_deg: relative rotation angle in degrees, |angle| <= 180.
    height, width: image size.
    num_pairs: number of correspondences to draw at random among all mutually
      visible pixel centres of view A (None = all of them).
    config: scene distributions (the scene is rendered static at t = 0).

  Returns:
    rgb_a, rgb_b [H, W, 3] uint8; depth_a, depth_b [H, W] float32 metres;
    normals_a, normals_b [H, W, 3] float32 (camera frames); object_id_a,
    object_id_b [H, W] int32; intrinsics [4] float32; w2c_a, w2c_b [4, 4] float64;
    relative_pose [4, 4] float64 mapping camera-A to camera-B coordinates;
    relative_rotation [3, 3] float64 (its rotation); rotation_deg () float64;
    pairs [M, 4] float32 (x_a, y_a, x_b, y_b) pixels: x_a, y_a are pixel centres
    (integers) of A, x_b, y_b the exact projection in B of the same surface point,
    which is visible in both views.
  """
  rotation_deg = float(rotation_deg)
  if not np.isfinite(rotation_deg) or abs(rotation_deg) > 180:
    raise ValueError(f'rotation_deg must be finite with |angle| <= 180, got {rotation_deg}')
  if num_pairs is not None and num_pairs < 1:
    raise ValueError(f'num_pairs must be >= 1 or None, got {num_pairs}')
  config = dataclasses.replace(config or SceneConfig(), dynamic=False)
  rng = _rng(seed)
  scene = make_scene(rng, config)
  path = make_camera_path(rng, config)
  intrinsics = make_intrinsics(height, width, rng.uniform(*config.fov_deg))
  k64 = intrinsics.astype(np.float64)
  eye, target = path.eye(0.0), path.look_target(0.0)
  rot = _rotation(np.array([0.0, 0.0, 1.0]), np.deg2rad(rotation_deg))
  w2c_a = look_at_w2c(eye, target)
  c2w_b = np.linalg.inv(w2c_a)
  c2w_b[:3, :3] = rot @ c2w_b[:3, :3]
  c2w_b[:3, 3] = target + rot @ (eye - target)
  w2c_b = np.linalg.inv(c2w_b)
  view_a = scene.render(w2c_a, k64, 0.0, height, width)
  view_b = scene.render(w2c_b, k64, 0.0, height, width)
  relative = w2c_b @ np.linalg.inv(w2c_a)

  # Candidate pixel centres of A, cast exactly in float64.
  ys, xs = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                       indexing='ij')
  xs, ys = xs.ravel(), ys.ravel()
  c2w_a = np.linalg.inv(w2c_a)
  rays = _camera_rays(xs, ys, k64)
  s, hit = scene.raycast(c2w_a[:3, 3], rays @ c2w_a[:3, :3].T, 0.0)
  ok = hit >= 0
  points_b = (rays * np.where(ok, s, 0)[:, None]) @ relative[:3, :3].T + relative[:3, 3]
  vis_b, xy_b = _visibility(scene, hit, points_b, w2c_b, k64, 0.0, height, width)
  good = np.flatnonzero(ok & vis_b)
  if num_pairs is not None and good.size > num_pairs:
    good = np.sort(rng.choice(good, size=num_pairs, replace=False))
  pairs = np.stack([xs[good], ys[good], xy_b[good, 0], xy_b[good, 1]], -1).astype(np.float32)
  return {
      'rgb_a': view_a['rgb'], 'rgb_b': view_b['rgb'],
      'depth_a': view_a['depth'], 'depth_b': view_b['depth'],
      'normals_a': view_a['normals'], 'normals_b': view_b['normals'],
      'object_id_a': view_a['object_id'], 'object_id_b': view_b['object_id'],
      'intrinsics': intrinsics, 'w2c_a': w2c_a, 'w2c_b': w2c_b,
      'relative_pose': relative, 'relative_rotation': relative[:3, :3],
      'rotation_deg': np.float64(rotation_deg), 'pairs': pairs,
  }

