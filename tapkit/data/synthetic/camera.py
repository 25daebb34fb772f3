"""Cameras of the synthetic generator: look-at poses, smooth orbits and intrinsics.

Cameras follow OpenCV (x right, y down, z forward); poses are world-to-camera 4x4
in metres, world z is up; intrinsics are (fx, fy, cx, cy) in pixels with pixel
centres at integers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tapkit.data.synthetic.scene import SceneConfig, _unit


def look_at_w2c(eye: np.ndarray, target: np.ndarray,
                up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
  """[4, 4] world-to-camera pose of an OpenCV camera at `eye` looking at `target`."""
  forward = _unit(np.asarray(target, np.float64) - eye)
  right = np.cross(forward, up)
  if np.linalg.norm(right) < 1e-8:
    raise ValueError('look_at_w2c: viewing direction is parallel to the up vector')
  right = _unit(right)
  down = np.cross(forward, right)
  r_c2w = np.stack([right, down, forward], axis=1)
  w2c = np.eye(4)
  w2c[:3, :3] = r_c2w.T
  w2c[:3, 3] = -r_c2w.T @ eye
  return w2c


@dataclasses.dataclass(frozen=True, eq=False)  # holds arrays: compare by identity
class CameraPath:
  """A smooth camera orbit around a drifting look-at point (metres, radians, frames)."""

  azimuth: float
  azimuth_rate: float
  radius: float
  radius_amp: float
  height: float
  height_amp: float
  freq: float
  phase: np.ndarray  # [2] phases of the radius and height oscillations
  target: np.ndarray  # [3]
  target_amp: np.ndarray  # [3]
  target_phase: np.ndarray  # [3]

  def eye(self, t: float) -> np.ndarray:
    az = self.azimuth + self.azimuth_rate * t
    r = self.radius + self.radius_amp * np.sin(self.freq * t + self.phase[0])
    h = self.height + self.height_amp * np.sin(self.freq * t + self.phase[1])
    return np.array([r * np.cos(az), r * np.sin(az), h])

  def look_target(self, t: float) -> np.ndarray:
    return self.target + self.target_amp * np.sin(self.freq * 0.7 * t + self.target_phase)

  def w2c(self, t: float) -> np.ndarray:
    """[4, 4] float64 world-to-camera pose at time t."""
    return look_at_w2c(self.eye(t), self.look_target(t))


def make_camera_path(rng: np.random.Generator,
                     config: SceneConfig = SceneConfig()) -> CameraPath:
  """Draws a smooth camera path outside the object arena."""
  d_lo, d_hi = config.camera_distance
  h_lo, h_hi = config.camera_height
  radius = rng.uniform(d_lo + 0.25 * (d_hi - d_lo), d_hi - 0.25 * (d_hi - d_lo))
  height = rng.uniform(h_lo + 0.25 * (h_hi - h_lo), h_hi - 0.25 * (h_hi - h_lo))
  rate = np.deg2rad(rng.uniform(*config.camera_orbit_deg_per_frame)) * rng.choice([-1, 1])
  return CameraPath(
      azimuth=rng.uniform(0, 2 * np.pi),
      azimuth_rate=rate,
      radius=radius,
      radius_amp=0.25 * (d_hi - d_lo) * rng.uniform(),
      height=height,
      height_amp=0.25 * (h_hi - h_lo) * rng.uniform(),
      freq=2 * np.pi / rng.uniform(40.0, 90.0),
      phase=rng.uniform(0, 2 * np.pi, size=2),
      target=np.array([*rng.uniform(-0.5, 0.5, size=2), rng.uniform(0.3, 0.8)]),
      target_amp=rng.uniform(0.0, 0.4, size=3) * np.array([1.0, 1.0, 0.3]),
      target_phase=rng.uniform(0, 2 * np.pi, size=3),
  )


def make_intrinsics(height: int, width: int, fov_deg: float) -> np.ndarray:
  """[4] float32 (fx, fy, cx, cy): square pixels, principal point at the centre."""
  if not 0 < fov_deg < 180:
    raise ValueError(f'fov_deg must lie in (0, 180), got {fov_deg}')
  focal = 0.5 * width / np.tan(np.deg2rad(fov_deg) / 2)
  return np.array([focal, focal, (width - 1) / 2, (height - 1) / 2], dtype=np.float32)
