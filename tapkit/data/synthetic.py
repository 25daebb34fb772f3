"""A small "Kubric in numpy": ray-cast synthetic scenes with exact 3D point tracks.

No real dataset can be downloaded in CI, so tests, demos and default training runs
use clips rendered here. A scene is a handful of analytic primitives (spheres, boxes,
rectangles) textured with the photographs shipped in `skimage.data`:

  * a large emissive sky sphere that encloses everything (every ray hits something),
  * a ground rectangle at z = 0 (world z is up),
  * several objects with independent smooth rigid motion (translation + spin),
  * optionally one non-rigid object: a sphere whose shape is squashed and stretched
    along rotating principal axes (a smooth time-varying affine map), so distances
    between its surface points change over time while each point stays identified.

Every primitive is a canonical shape (unit sphere, cube [-1, 1]^3, or square
[-1, 1]^2 at z = 0) mapped to the world by a per-time affine matrix. An affine map
keeps ray parameters, so a ray is intersected in the canonical frame after mapping
its origin and direction with the inverse matrix, and a tracked surface point is
stored as (primitive, canonical point): its world position at any time is exact.

Conventions (shared with the rest of tapkit):
  * camera frame: OpenCV, x right, y down, z forward; poses are world-to-camera 4x4;
  * pixels: (x, y) with pixel centres at integers, x = fx * X / Z + cx; the default
    principal point is the image centre ((W - 1) / 2, (H - 1) / 2);
  * depth: z along the optical axis in metres;
  * normals: unit vectors in the camera frame, oriented towards the camera;
  * time: frames (t = 0, 1, ...); motions are smooth functions of continuous t.

A point is visible in a frame when it lies in front of the camera, projects inside
the image (its rounded pixel exists) and the first surface along the camera ray
through it is the point itself (same primitive, same distance to 1e-5 relative);
the test is done in float64, independently of the float32 renderer.

Public API: `SceneConfig`, `make_scene`, `Scene` (`render`, `raycast`,
`points_to_world`), `CameraPath`, `make_camera_path`, `make_intrinsics`,
`synthesize_clip` / `generate_clip` (TAPVid-3D `Clip`s), `render_view_pair`, and a
CLI (`python -m tapkit.data.synthetic --help`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shutil
import sys
from typing import Sequence

import numpy as np

from tapkit.data import geometry
from tapkit.data.clip import Clip

# Primitive kinds, as canonical shapes in their local frame.
SPHERE = 'sphere'  # unit sphere |p| = 1
BOX = 'box'  # cube [-1, 1]^3
QUAD = 'quad'  # square [-1, 1]^2 at z = 0, two-sided
_KINDS = (SPHERE, BOX, QUAD)

# Photographs shipped with scikit-image (no download needed). Grey ones are tinted.
_COLOUR_TEXTURES = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field',
                    'immunohistochemistry', 'colorwheel', 'retina')
_GREY_TEXTURES = ('brick', 'grass', 'gravel', 'camera', 'moon', 'coins', 'clock', 'cell')
_TEXTURE_NAMES = _COLOUR_TEXTURES + _GREY_TEXTURES
_GROUND_TEXTURES = ('grass', 'gravel', 'brick')
_SKY_TEXTURES = ('hubble_deep_field', 'coffee', 'rocket', 'astronaut', 'chelsea')

# Rays start this far (metres of depth) in front of the camera centre.
_NEAR = 1e-3
# Relative distance tolerance of the float64 visibility test.
_VIS_RTOL = 1e-5


# ----------------------------------------------------------------------------------
# Configuration and scene description.


@dataclasses.dataclass(frozen=True, eq=False)  # holds arrays: compare by identity
class SceneConfig:
  """Distributions of scene, motion and camera parameters (metres, degrees, frames)."""

  num_objects: tuple[int, int] = (3, 6)  # inclusive range of rigid objects
  object_kinds: tuple[str, ...] = (SPHERE, BOX, QUAD)
  deforming_object: bool = True  # add one non-rigid (squash-and-stretch) sphere
  dynamic: bool = True  # False: nothing moves or deforms (static scene)
  moving_object_prob: float = 0.75  # chance that a rigid object moves when dynamic
  sky_radius: float = 20.0
  arena_radius: float = 2.5  # objects' mean positions lie within this disc
  object_size: tuple[float, float] = (0.25, 0.75)  # half-extent / radius range
  object_travel: tuple[float, float] = (0.2, 0.8)  # wobble amplitude range
  spin_deg_per_frame: tuple[float, float] = (1.0, 4.0)
  deform_amplitude: tuple[float, float] = (0.15, 0.35)  # relative scale change
  camera_distance: tuple[float, float] = (5.0, 8.0)
  camera_height: tuple[float, float] = (0.8, 3.0)
  camera_orbit_deg_per_frame: tuple[float, float] = (0.3, 1.5)
  fov_deg: tuple[float, float] = (45.0, 65.0)  # horizontal field of view
  texture_size: int = 256
  ambient: float = 0.35

  def __post_init__(self):
    lo, hi = self.num_objects
    if not 0 <= lo <= hi:
      raise ValueError(f'SceneConfig.num_objects must be 0 <= lo <= hi, got {self.num_objects}')
    bad = [k for k in self.object_kinds if k not in _KINDS]
    if bad or not self.object_kinds:
      raise ValueError(f'SceneConfig.object_kinds must be a non-empty subset of {_KINDS}, '
                       f'got {self.object_kinds}')
    # Farthest reach of an object from the arena centre: mean position + travel +
    # bounding radius (panels are up to 1.5 * size wide, sqrt(2) to a corner).
    reach = self.arena_radius + self.object_travel[1] + 1.5 * np.sqrt(2) * self.object_size[1]
    if self.camera_distance[0] <= reach:
      raise ValueError('SceneConfig.camera_distance must keep the camera clear of the '
                       f'objects, got {self.camera_distance} for objects reaching {reach:.2f} m')
    if self.camera_distance[1] + self.arena_radius >= self.sky_radius:
      raise ValueError('SceneConfig.sky_radius must enclose the camera path')
    if not 0.0 < self.fov_deg[0] <= self.fov_deg[1] < 170.0:
      raise ValueError(f'SceneConfig.fov_deg must lie in (0, 170), got {self.fov_deg}')
    if self.texture_size < 8:
      raise ValueError(f'SceneConfig.texture_size must be >= 8, got {self.texture_size}')


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
  """[3, 3] rotation by `angle` radians about unit `axis` (Rodrigues)."""
  x, y, z = axis
  k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
  return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
  """Uniformly random [3, 3] rotation (from a random unit quaternion)."""
  q = rng.normal(size=4)
  w, x, y, z = q / np.linalg.norm(q)
  return np.array([
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ])


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.linalg.norm(v)


@dataclasses.dataclass(frozen=True, eq=False)  # holds arrays: compare by identity
class Motion:
  """Local-to-world affine map of a primitive as a smooth function of time.

  M(t) = [R(t) S(t) shape | p(t)], with
    p(t) = position + wobble_amp * sin(wobble_freq * t + wobble_phase)   (metres)
    R(t) = rotation about spin_axis by spin_angle + spin_rate * t        (radians)
    S(t) = Q diag(1 + deform_amp * sin(deform_freq * t + deform_phase)) Q^T
  where Q = deform_axes. Frequencies are in radians per frame. S(t) != I makes the
  map non-rigid (a squash-and-stretch deformation).
  """

  shape: np.ndarray  # [3, 3] canonical -> object frame (sizes, fixed orientation)
  position: np.ndarray  # [3]
  wobble_amp: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
  wobble_freq: float = 0.0
  wobble_phase: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
  spin_axis: np.ndarray = dataclasses.field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
  spin_angle: float = 0.0
  spin_rate: float = 0.0
  deform_axes: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))
  deform_amp: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
  deform_freq: float = 0.0
  deform_phase: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))

  @property
  def is_moving(self) -> bool:
    """True when the map changes over time (the primitive's points move)."""
    return bool(np.any(self.wobble_amp != 0) or self.spin_rate != 0 or
                np.any(self.deform_amp != 0))

  @property
  def is_rigid(self) -> bool:
    return not np.any(self.deform_amp != 0)

  def matrix(self, t: float) -> np.ndarray:
    """[4, 4] float64 local-to-world matrix at time `t` (frames)."""
    p = self.position + self.wobble_amp * np.sin(self.wobble_freq * t + self.wobble_phase)
    r = _rotation(self.spin_axis, self.spin_angle + self.spin_rate * t)
    q = self.deform_axes
    s = q @ np.diag(1.0 + self.deform_amp * np.sin(self.deform_freq * t + self.deform_phase)) @ q.T
    m = np.eye(4)
    m[:3, :3] = r @ s @ self.shape
    m[:3, 3] = p
    return m


@dataclasses.dataclass(frozen=True, eq=False)  # holds arrays: compare by identity
class Primitive:
  """One textured canonical shape of the scene."""

  kind: str  # SPHERE | BOX | QUAD
  object_id: int  # 0 = static background (sky, ground), objects from 1
  motion: Motion
  texture: int  # index into Scene.textures
  tint: np.ndarray  # [3] colour multiplier in [0, 1]
  uv_scale: tuple[float, float] = (1.0, 1.0)  # texture repeats over the (u, v) range
  emissive: bool = False  # True: not shaded (the sky)


@functools.lru_cache(maxsize=4)
def _texture_bank(size: int) -> tuple[np.ndarray, ...]:
  """The skimage photographs as [size, size, 3] float32 RGB in [0, 1], cached."""
  import skimage.data  # Local imports: only needed when a scene is built.
  from PIL import Image

  bank = []
  for name in _TEXTURE_NAMES:
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    # PIL's antialiased resize is fast and deterministic.
    image = Image.fromarray(image[..., :3].astype(np.uint8)).resize((size, size), Image.LANCZOS)
    image = np.asarray(image, dtype=np.float32) / 255.0
    image.setflags(write=False)
    bank.append(image)
  return tuple(bank)


# ----------------------------------------------------------------------------------
# Ray / canonical-shape intersection. `o` is one origin [3] shared by all rays, `d`
# the directions [R, 3], both in the primitive's canonical frame; returns the ray
# parameter [R] of the first hit beyond `near`, inf where there is none. The dtype of
# `d` is kept (float32 in the renderer, float64 for track visibility).


def _intersect_sphere(o: np.ndarray, d: np.ndarray, near: float) -> np.ndarray:
  a = np.einsum('rc,rc->r', d, d)
  b = d @ o
  c = o @ o - 1.0
  disc = b * b - a * c
  hit = disc >= 0
  sq = np.sqrt(np.where(hit, disc, 0))
  t0 = (-b - sq) / a
  t1 = (-b + sq) / a
  # From inside (the sky) the near root is behind the camera: take the far one.
  t = np.where(t0 > near, t0, np.where(t1 > near, t1, np.inf))
  return np.where(hit, t, np.inf).astype(d.dtype, copy=False)


def _intersect_quad(o: np.ndarray, d: np.ndarray, near: float) -> np.ndarray:
  dz = d[:, 2]
  with np.errstate(divide='ignore', invalid='ignore'):
    t = -o[2] / dz
  x = o[0] + t * d[:, 0]
  y = o[1] + t * d[:, 1]
  hit = (t > near) & (np.abs(x) <= 1) & (np.abs(y) <= 1)
  return np.where(hit, t, np.inf).astype(d.dtype, copy=False)


def _intersect_box(o: np.ndarray, d: np.ndarray, near: float) -> np.ndarray:
  tiny = np.finfo(d.dtype).tiny
  safe = np.where(np.abs(d) < tiny, tiny, d)  # avoid 0/0 for axis-parallel rays
  with np.errstate(over='ignore', divide='ignore'):  # +-inf slabs are correct here
    inv = 1.0 / safe
    t1 = (-1.0 - o) * inv
    t2 = (1.0 - o) * inv
  t_enter = np.minimum(t1, t2).max(axis=1)
  t_exit = np.maximum(t1, t2).min(axis=1)
  hit = (t_exit >= t_enter) & (t_exit > near)
  t = np.where(t_enter > near, t_enter, t_exit)
  return np.where(hit, t, np.inf).astype(d.dtype, copy=False)


_INTERSECT = {SPHERE: _intersect_sphere, QUAD: _intersect_quad, BOX: _intersect_box}


def _local_normals(kind: str, p: np.ndarray) -> np.ndarray:
  """[R, 3] outward normals (unnormalised) of canonical shape `kind` at points p."""
  if kind == SPHERE:
    return p
  if kind == QUAD:
    n = np.zeros_like(p)
    n[:, 2] = 1
    return n
  axis = np.argmax(np.abs(p), axis=1)
  n = np.zeros_like(p)
  rows = np.arange(p.shape[0])
  n[rows, axis] = np.sign(p[rows, axis])
  return n


def _local_uv(kind: str, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Surface (u, v) parametrisation in [0, 1) of canonical points p [R, 3]."""
  if kind == SPHERE:
    u = np.arctan2(p[:, 1], p[:, 0]) * (0.5 / np.pi) + 0.5
    v = np.arccos(np.clip(p[:, 2], -1, 1)) * (1 / np.pi)
    return u, v
  if kind == QUAD:
    return (p[:, 0] + 1) * 0.5, (p[:, 1] + 1) * 0.5
  # Box: each face maps its two in-plane coordinates; faces get different patches.
  axis = np.argmax(np.abs(p), axis=1)
  a = np.where(axis == 0, p[:, 1], p[:, 0])
  b = np.where(axis == 2, p[:, 1], p[:, 2])
  offset = (axis * 2 + (p[np.arange(p.shape[0]), axis] > 0)) * 0.17
  return (a + 1) * 0.5 + offset, (b + 1) * 0.5 + offset * 0.5


def _sample_texture(texture: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Bilinear, wrapping lookup of texture [S, S, 3] at (u, v) [R] -> [R, 3]."""
  size_v, size_u = texture.shape[:2]
  x = (u * size_u - 0.5).astype(np.float32)
  y = (v * size_v - 0.5).astype(np.float32)
  x0 = np.floor(x)
  y0 = np.floor(y)
  wx = (x - x0)[:, None]
  wy = (y - y0)[:, None]
  x0 = x0.astype(np.int64) % size_u
  y0 = y0.astype(np.int64) % size_v
  x1 = (x0 + 1) % size_u
  y1 = (y0 + 1) % size_v
  flat = texture.reshape(-1, 3)
  top = flat[y0 * size_u + x0] * (1 - wx) + flat[y0 * size_u + x1] * wx
  bottom = flat[y1 * size_u + x0] * (1 - wx) + flat[y1 * size_u + x1] * wx
  return top * (1 - wy) + bottom * wy


def _check_intrinsics(intrinsics: np.ndarray) -> np.ndarray:
  intrinsics = np.asarray(intrinsics, dtype=np.float64)
  if intrinsics.shape != (4,) or not np.all(np.isfinite(intrinsics)):
    raise ValueError(f'intrinsics must be 4 finite values (fx, fy, cx, cy), got {intrinsics}')
  if intrinsics[0] <= 0 or intrinsics[1] <= 0:
    raise ValueError(f'intrinsics focal lengths must be positive, got {intrinsics}')
  return intrinsics


def _check_pose(w2c: np.ndarray) -> np.ndarray:
  w2c = np.asarray(w2c, dtype=np.float64)
  if w2c.shape != (4, 4) or not np.all(np.isfinite(w2c)):
    raise ValueError(f'w2c must be a finite [4, 4] matrix, got shape {w2c.shape}')
  if not np.allclose(w2c[3], [0, 0, 0, 1]):
    raise ValueError(f'w2c last row must be (0, 0, 0, 1), got {w2c[3]}')
  return w2c


def _camera_rays(xs: np.ndarray, ys: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
  """Camera-frame ray directions [R, 3] with z = 1 through pixels (xs, ys) [R]."""
  fx, fy, cx, cy = intrinsics
  return np.stack([(xs - cx) / fx, (ys - cy) / fy, np.ones_like(xs)], axis=-1)


@dataclasses.dataclass(frozen=True, eq=False)  # holds arrays: compare by identity
class Scene:
  """Primitives with smooth motions, their textures and a directional light."""

  primitives: tuple[Primitive, ...]
  textures: tuple[np.ndarray, ...]  # each [S, S, 3] float32 RGB in [0, 1]
  light_dir: np.ndarray  # [3] unit vector towards the light, world frame
  ambient: float = 0.35

  def local_to_world(self, index: int, t: float) -> np.ndarray:
    """[4, 4] float64 map of primitive `index` from canonical to world at time t."""
    return self.primitives[index].motion.matrix(t)

  @property
  def moving(self) -> np.ndarray:
    """[P] bool, True for primitives whose surface points move over time."""
    return np.array([p.motion.is_moving for p in self.primitives])

  @property
  def object_ids(self) -> np.ndarray:
    """[P] int32 object id of each primitive."""
    return np.array([p.object_id for p in self.primitives], dtype=np.int32)

  def points_to_world(self, primitive_ids: np.ndarray, local: np.ndarray,
                      t: float) -> np.ndarray:
    """World positions [N, 3] float64 at time t of canonical points local [N, 3]."""
    primitive_ids = np.asarray(primitive_ids)
    local = np.asarray(local, dtype=np.float64)
    out = np.full(local.shape, np.nan)
    for index in np.unique(primitive_ids):
      sel = primitive_ids == index
      m = self.local_to_world(int(index), t)
      out[sel] = local[sel] @ m[:3, :3].T + m[:3, 3]
    return out

  def raycast(self, origin: np.ndarray, dirs: np.ndarray, t: float,
              near: float = _NEAR) -> tuple[np.ndarray, np.ndarray]:
    """First hits of rays origin + s * dirs at time t.

    Args:
      origin: [3] world position shared by all rays (metres).
      dirs: [R, 3] world directions; their dtype sets the precision. With camera
        rays of unit z in the camera frame, the ray parameter s is the depth.
      t: time in frames.
      near: smallest accepted ray parameter.

    Returns:
      s [R] (inf where nothing is hit) and primitive index [R] int32 (-1 = none).
    """
    dirs = np.asarray(dirs)
    origin = np.asarray(origin, dtype=np.float64)
    if dirs.ndim != 2 or dirs.shape[1] != 3:
      raise ValueError(f'dirs must be [R, 3], got {dirs.shape}')
    if origin.shape != (3,):
      raise ValueError(f'origin must be [3], got {origin.shape}')
    dtype = dirs.dtype if dirs.dtype in (np.float32, np.float64) else np.float64
    dirs = dirs.astype(dtype, copy=False)
    best = np.full(dirs.shape[0], np.inf, dtype=dtype)
    ids = np.full(dirs.shape[0], -1, dtype=np.int32)
    for index, prim in enumerate(self.primitives):
      m_inv = np.linalg.inv(self.local_to_world(index, t))
      o_local = (m_inv[:3, :3] @ origin + m_inv[:3, 3]).astype(dtype)
      d_local = dirs @ m_inv[:3, :3].T.astype(dtype)
      s = _INTERSECT[prim.kind](o_local, d_local, near)
      closer = s < best
      best = np.where(closer, s, best)
      ids = np.where(closer, np.int32(index), ids)
    return best, ids

  def render(self, w2c: np.ndarray, intrinsics: np.ndarray, t: float, height: int,
             width: int) -> dict[str, np.ndarray]:
    """Renders one view by ray casting every pixel centre (float32).

    Args:
      w2c: [4, 4] world-to-camera pose (OpenCV camera frame).
      intrinsics: [4] (fx, fy, cx, cy) in pixels; pixel centres at integers.
      t: scene time in frames.
      height, width: image size in pixels.

    Returns:
      rgb [H, W, 3] uint8; depth [H, W] float32 metres (z, 0 where nothing is hit);
      normals [H, W, 3] float32 unit, camera frame, towards the camera (0 where
      nothing is hit); primitive_id [H, W] int32 (-1 = none); object_id [H, W] int32
      (-1 = none); points_local [H, W, 3] float32 canonical surface coordinates of
      the hit; points_cam [H, W, 3] float32 camera-frame surface points (metres).
    """
    w2c = _check_pose(w2c)
    intrinsics = _check_intrinsics(intrinsics)
    if height < 1 or width < 1:
      raise ValueError(f'height and width must be positive, got {height}x{width}')
    c2w = np.linalg.inv(w2c)
    origin = c2w[:3, 3]
    r_c2w = c2w[:3, :3]
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float64),
                         np.arange(width, dtype=np.float64), indexing='ij')
    rays_cam = _camera_rays(xs.ravel(), ys.ravel(), intrinsics).astype(np.float32)
    num = rays_cam.shape[0]

    # Pass 1: depth buffer over all primitives. Directions go straight from the
    # camera frame to each canonical frame with one combined 3x3 matrix.
    best = np.full(num, np.inf, dtype=np.float32)
    ids = np.full(num, -1, dtype=np.int32)
    frames = []
    for index, prim in enumerate(self.primitives):
      m = self.local_to_world(index, t)
      m_inv = np.linalg.inv(m)
      to_local = m_inv[:3, :3] @ r_c2w
      o_local = m_inv[:3, :3] @ origin + m_inv[:3, 3]
      frames.append((m, to_local, o_local))
      s = _INTERSECT[prim.kind](o_local.astype(np.float32),
                                rays_cam @ to_local.T.astype(np.float32), _NEAR)
      closer = s < best
      np.copyto(best, s, where=closer)
      np.copyto(ids, np.int32(index), where=closer)

    # Pass 2: surface attributes, only for the pixels each primitive won.
    rgb = np.zeros((num, 3), np.float32)
    normals = np.zeros((num, 3), np.float32)
    local = np.zeros((num, 3), np.float32)
    light_cam = w2c[:3, :3] @ self.light_dir
    for index in np.unique(ids[ids >= 0]):
      prim = self.primitives[index]
      m, to_local, o_local = frames[index]
      pix = np.flatnonzero(ids == index)
      ray = rays_cam[pix]
      p = o_local.astype(np.float32) + best[pix, None] * (ray @ to_local.T.astype(np.float32))
      local[pix] = p
      # Normals transform with the inverse transpose of the linear part.
      normal_mat = (w2c[:3, :3] @ np.linalg.inv(m[:3, :3]).T).astype(np.float32)
      n = _local_normals(prim.kind, p) @ normal_mat.T
      n /= np.linalg.norm(n, axis=1, keepdims=True)
      n *= np.where(np.einsum('rc,rc->r', n, ray) > 0, -1.0, 1.0).astype(np.float32)[:, None]
      normals[pix] = n
      u, v = _local_uv(prim.kind, p)
      colour = _sample_texture(self.textures[prim.texture], u * prim.uv_scale[0],
                               v * prim.uv_scale[1]) * prim.tint.astype(np.float32)
      if not prim.emissive:
        lambert = np.maximum(n @ light_cam.astype(np.float32), 0)
        colour *= (self.ambient + (1 - self.ambient) * lambert)[:, None]
      rgb[pix] = colour

    hit = ids >= 0
    depth = np.where(hit, best, 0).astype(np.float32)
    object_ids = np.where(hit, self.object_ids[np.maximum(ids, 0)], -1).astype(np.int32)
    return {
        'rgb': np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8).reshape(height, width, 3),
        'depth': depth.reshape(height, width),
        'normals': normals.reshape(height, width, 3),
        'primitive_id': ids.reshape(height, width),
        'object_id': object_ids.reshape(height, width),
        'points_local': local.reshape(height, width, 3),
        'points_cam': (rays_cam * depth[:, None]).reshape(height, width, 3),
    }


def _tint(rng: np.random.Generator, texture_index: int) -> np.ndarray:
  """Colour multiplier: grey photographs get a random saturated tint."""
  if _TEXTURE_NAMES[texture_index] in _GREY_TEXTURES:
    hue = rng.uniform(0.35, 1.0, size=3)
    return hue / hue.max()
  return np.ones(3)


def make_scene(rng: np.random.Generator, config: SceneConfig = SceneConfig()) -> Scene:
  """Draws a random scene: sky, ground, rigid objects and a deforming object.

  The same random numbers are drawn whether or not `config.dynamic` is set, so a
  static scene has the layout of its dynamic twin with motion amplitudes zeroed.
  """
  textures = _texture_bank(config.texture_size)
  names = list(_TEXTURE_NAMES)
  r_sky = config.sky_radius
  prims = []
  sky_tex = names.index(_SKY_TEXTURES[rng.integers(len(_SKY_TEXTURES))])
  prims.append(Primitive(SPHERE, 0, Motion(shape=np.eye(3) * r_sky, position=np.zeros(3)),
                         sky_tex, np.ones(3), uv_scale=(4.0, 2.0), emissive=True))
  ground_tex = names.index(_GROUND_TEXTURES[rng.integers(len(_GROUND_TEXTURES))])
  # The ground square covers the sky sphere's equator disc; texture tiles are 4 m.
  prims.append(Primitive(QUAD, 0, Motion(shape=np.diag([r_sky, r_sky, 1.0]),
                                         position=np.zeros(3)),
                         ground_tex, _tint(rng, ground_tex), uv_scale=(r_sky / 2, r_sky / 2)))

  num_objects = int(rng.integers(config.num_objects[0], config.num_objects[1] + 1))
  specs = [('rigid', str(rng.choice(config.object_kinds))) for _ in range(num_objects)]
  if config.deforming_object:
    specs.append(('deforming', SPHERE))
  placed = []  # (x, y, footprint radius) of objects placed so far
  lo, hi = config.object_size
  for i, (mode, kind) in enumerate(specs):
    if kind == SPHERE:
      shape = np.eye(3) * rng.uniform(lo, hi)
    elif kind == BOX:
      shape = _random_rotation(rng) @ np.diag(rng.uniform(lo, hi, size=3))
    else:  # a free-standing panel: random orientation, no thickness
      # The z column (unit normal) is unused by the square but keeps M invertible.
      shape = _random_rotation(rng) @ np.diag([*rng.uniform(lo * 1.5, hi * 1.5, size=2), 1.0])
    deform_amp = rng.uniform(*config.deform_amplitude, size=3)
    deform_freq = 2 * np.pi / rng.uniform(12.0, 30.0)
    deform_phase = rng.uniform(0, 2 * np.pi, size=3)
    deform_axes = _random_rotation(rng)
    # Bounding radius of the canonical shape under the (max) deformation.
    corner = np.sqrt(3.0) if kind == BOX else (np.sqrt(2.0) if kind == QUAD else 1.0)
    growth = 1.0 + (deform_amp.max() if mode == 'deforming' else 0.0)
    bound = np.linalg.norm(shape, 2) * corner * growth
    moving = mode == 'deforming' or rng.uniform() < config.moving_object_prob
    travel = rng.uniform(*config.object_travel, size=3) * np.array([1.0, 1.0, 0.3])
    wobble_freq = 2 * np.pi / rng.uniform(30.0, 80.0)
    wobble_phase = rng.uniform(0, 2 * np.pi, size=3)
    spin_axis = _unit(rng.normal(size=3))
    spin_rate = np.deg2rad(rng.uniform(*config.spin_deg_per_frame)) * rng.choice([-1, 1])
    # Rejection-sample a position whose footprint (with its travel) is free.
    footprint = bound + np.abs(travel[:2]).max()
    for _ in range(64):
      radius = config.arena_radius * np.sqrt(rng.uniform())
      angle = rng.uniform(0, 2 * np.pi)
      xy = radius * np.array([np.cos(angle), np.sin(angle)])
      if all(np.hypot(*(xy - q[:2])) > footprint + q[2] for q in placed):
        break
    placed.append((xy[0], xy[1], footprint))
    z = bound + travel[2] + rng.uniform(0.0, 0.5)  # never reaches into the ground
    dynamic = config.dynamic and moving
    motion = Motion(
        shape=shape,
        position=np.array([xy[0], xy[1], z]),
        wobble_amp=travel if dynamic else np.zeros(3),
        wobble_freq=wobble_freq,
        wobble_phase=wobble_phase,
        spin_axis=spin_axis,
        spin_angle=rng.uniform(0, 2 * np.pi),
        spin_rate=spin_rate if dynamic else 0.0,
        deform_axes=deform_axes,
        deform_amp=deform_amp if (config.dynamic and mode == 'deforming') else np.zeros(3),
        deform_freq=deform_freq,
        deform_phase=deform_phase,
    )
    tex = int(rng.integers(len(names)))
    uv_scale = (2.0, 1.0) if kind == SPHERE else (1.0, 1.0)
    prims.append(Primitive(kind, i + 1, motion, tex, _tint(rng, tex), uv_scale=uv_scale))

  elevation = np.deg2rad(rng.uniform(30, 70))
  azimuth = rng.uniform(0, 2 * np.pi)
  light = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation),
                    np.sin(elevation)])
  return Scene(tuple(prims), textures, light, config.ambient)


# ----------------------------------------------------------------------------------
# Cameras.


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


# ----------------------------------------------------------------------------------
# Tracks.


def _visibility(scene: Scene, prim_ids: np.ndarray, points_cam: np.ndarray,
                w2c: np.ndarray, intrinsics: np.ndarray, t: float, height: int,
                width: int) -> tuple[np.ndarray, np.ndarray]:
  """Visibility [N] and (x, y) projections [N, 2] of camera-frame points (float64)."""
  z = points_cam[:, 2]
  front = z > _NEAR
  xy = geometry.project(points_cam, intrinsics, behind='principal', min_depth=_NEAR)
  inside = (front & (xy[:, 0] >= -0.5) & (xy[:, 0] < width - 0.5) &
            (xy[:, 1] >= -0.5) & (xy[:, 1] < height - 0.5))
  visible = np.zeros(z.shape, bool)
  idx = np.flatnonzero(inside)
  if idx.size:
    c2w = np.linalg.inv(w2c)
    rays = points_cam[idx] / z[idx, None]  # z = 1: the ray parameter is the depth
    s, hit = scene.raycast(c2w[:3, 3], rays @ c2w[:3, :3].T, t)
    same = (hit == prim_ids[idx]) & (np.abs(s - z[idx]) <= _VIS_RTOL * z[idx])
    visible[idx] = same
  return visible, xy


@dataclasses.dataclass(eq=False)
class SyntheticClip:
  """A generated clip with the scene and per-track / per-pixel ground truth."""

  clip: Clip
  scene: Scene
  primitive_ids: np.ndarray  # [T, H, W] int32, rendered primitive per pixel (-1 = none)
  track_primitive: np.ndarray  # [N] int32, primitive each track lies on
  track_local: np.ndarray  # [N, 3] float64 canonical surface point of each track
  tracks_world: np.ndarray  # [T, N, 3] float64 world positions (metres)


def _rng(seed: int | Sequence[int]) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence(seed))


def synthesize_clip(seed: int | Sequence[int], num_frames: int = 24, height: int = 256,
                    width: int = 256, num_tracks: int = 256, *, query_mode: str = 'random',
                    grid_size: int = 16, dynamic: bool = True,
                    dynamic_fraction: float = 0.5,
                    config: SceneConfig | None = None) -> SyntheticClip:
  """Renders one clip and tracks surface points through it exactly.

  Args:
    seed: integer or sequence of integers (e.g. (base_seed, clip_index)).
    num_frames, height, width: clip size T, H, W.
    num_tracks: N in 'random' mode (ignored in 'grid' mode, where N = grid_size^2).
    query_mode: 'random' - each track is queried at a uniformly drawn frame, at a
      uniform position inside a uniformly drawn surface pixel (a `dynamic_fraction`
      share of tracks is drawn among pixels of moving objects when there are any);
      'grid' - a grid_size x grid_size grid of pixel centres on frame 0, x_j =
      floor((j + 0.5) * W / grid_size), same for y, row-major (index = G * i + j).
    grid_size: G for 'grid' mode.
    dynamic: False renders a static scene (the camera still moves).
    dynamic_fraction: share of 'random' tracks drawn on moving objects, in [0, 1].
    config: scene distributions; `dynamic` overrides `config.dynamic`.

  Returns:
    A SyntheticClip whose `clip` has raw_frames, depth, normals, object_ids,
    dynamic_mask and float32 extrinsics filled.
  """
  if num_frames < 1 or height < 2 or width < 2:
    raise ValueError(f'need num_frames >= 1 and a frame of at least 2x2, got '
                     f'{num_frames} frames of {height}x{width}')
  if query_mode not in ('random', 'grid'):
    raise ValueError(f"query_mode must be 'random' or 'grid', got {query_mode!r}")
  if query_mode == 'grid' and not 1 <= grid_size <= min(height, width):
    raise ValueError(f'grid_size must lie in [1, min(H, W)] = [1, {min(height, width)}], '
                     f'got {grid_size}')
  if query_mode == 'random' and num_tracks < 1:
    raise ValueError(f'num_tracks must be >= 1, got {num_tracks}')
  if not 0.0 <= dynamic_fraction <= 1.0:
    raise ValueError(f'dynamic_fraction must lie in [0, 1], got {dynamic_fraction}')
  config = dataclasses.replace(config or SceneConfig(), dynamic=dynamic)
  rng = _rng(seed)
  scene = make_scene(rng, config)
  path = make_camera_path(rng, config)
  intrinsics = make_intrinsics(height, width, rng.uniform(*config.fov_deg))
  # The stored float32 pose and intrinsics are the truth everything is computed
  # from, so that files reproduce the tracks to float32 rounding of the points.
  w2c = np.stack([path.w2c(t) for t in range(num_frames)]).astype(np.float32)
  w2c64 = w2c.astype(np.float64)
  k64 = intrinsics.astype(np.float64)

  views = [scene.render(w2c64[t], k64, t, height, width) for t in range(num_frames)]
  moving_prims = np.flatnonzero(scene.moving)

  # Query pixels (x, y) and frames.
  if query_mode == 'grid':
    cols = np.floor((np.arange(grid_size) + 0.5) * width / grid_size)
    rows = np.floor((np.arange(grid_size) + 0.5) * height / grid_size)
    gy, gx = np.meshgrid(rows, cols, indexing='ij')
    qx, qy = gx.ravel(), gy.ravel()
    qt = np.zeros(qx.shape, np.int64)
  else:
    qt = np.sort(rng.integers(num_frames, size=num_tracks))
    want_dynamic = rng.uniform(size=num_tracks) < dynamic_fraction
    pixel = np.empty(num_tracks, np.int64)
    for t in np.unique(qt):
      ids = views[t]['primitive_id'].ravel()
      pool_all = np.flatnonzero(ids >= 0)
      pool_dyn = np.flatnonzero(np.isin(ids, moving_prims))
      sel = np.flatnonzero(qt == t)
      for sub, pool in ((sel[want_dynamic[sel]], pool_dyn), (sel[~want_dynamic[sel]], pool_all)):
        if sub.size:
          pool = pool if pool.size else pool_all
          pixel[sub] = pool[rng.integers(pool.size, size=sub.size)]
    jitter = rng.uniform(-0.5, 0.5, size=(num_tracks, 2))
    qx = pixel % width + jitter[:, 0]
    qy = pixel // width + jitter[:, 1]
  n = qx.shape[0]

  # Cast each query ray in float64 to find the tracked surface point.
  track_prim = np.empty(n, np.int32)
  track_local = np.empty((n, 3))
  for t in np.unique(qt):
    sel = np.flatnonzero(qt == t)
    c2w = np.linalg.inv(w2c64[t])
    rays = _camera_rays(qx[sel], qy[sel], k64)
    s, hit = scene.raycast(c2w[:3, 3], rays @ c2w[:3, :3].T, float(t))
    if np.any(hit < 0):
      raise RuntimeError('query ray missed every surface (the sky should enclose the scene)')
    world = c2w[:3, 3] + s[:, None] * (rays @ c2w[:3, :3].T)
    track_prim[sel] = hit
    for index in np.unique(hit):
      sub = sel[hit == index]
      m_inv = np.linalg.inv(scene.local_to_world(int(index), float(t)))
      track_local[sub] = world[hit == index] @ m_inv[:3, :3].T + m_inv[:3, 3]

  tracks_world = np.stack([scene.points_to_world(track_prim, track_local, float(t))
                           for t in range(num_frames)])
  tracks_cam = np.einsum('tij,tnj->tni', w2c64[:, :3, :3], tracks_world) + w2c64[:, None, :3, 3]
  visibility = np.zeros((num_frames, n), bool)
  for t in range(num_frames):
    visibility[t], _ = _visibility(scene, track_prim, tracks_cam[t], w2c64[t], k64, float(t),
                                   height, width)
  # Visible at its query frame by construction (the query ray's first hit); this only
  # overrides float64 rounding at exact silhouettes.
  visibility[qt, np.arange(n)] = True

  clip = Clip(
      tracks_xyz=tracks_cam.astype(np.float32),
      visibility=visibility,
      queries_xyt=np.stack([qx, qy, qt], axis=-1).astype(np.float32),
      intrinsics=intrinsics,
      extrinsics_w2c=w2c,
      raw_frames=np.stack([v['rgb'] for v in views]),
      depth=np.stack([v['depth'] for v in views]),
      normals=np.stack([v['normals'] for v in views]),
      object_ids=scene.object_ids[track_prim],
      dynamic_mask=scene.moving[track_prim],
  )
  return SyntheticClip(clip=clip, scene=scene,
                       primitive_ids=np.stack([v['primitive_id'] for v in views]),
                       track_primitive=track_prim, track_local=track_local,
                       tracks_world=tracks_world)


def generate_clip(seed: int | Sequence[int], num_frames: int = 24, height: int = 256,
                  width: int = 256, num_tracks: int = 256, *, query_mode: str = 'random',
                  grid_size: int = 16, dynamic: bool = True, dynamic_fraction: float = 0.5,
                  config: SceneConfig | None = None) -> Clip:
  """A TAPVid-3D `Clip` rendered from `seed`; see `synthesize_clip` for arguments."""
  return synthesize_clip(seed, num_frames, height, width, num_tracks, query_mode=query_mode,
                         grid_size=grid_size, dynamic=dynamic,
                         dynamic_fraction=dynamic_fraction, config=config).clip


# ----------------------------------------------------------------------------------
# Two views with a known relative rotation (Probe3D-style correspondence protocol).


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


# ----------------------------------------------------------------------------------
# CLI.


def _draw_tracks(frames: np.ndarray, clip: Clip) -> np.ndarray:
  """Frames [T, H, W, 3] with visible track points painted as 3x3 dots."""
  out = frames.copy()
  xy = geometry.project(clip.tracks_xyz, clip.intrinsics, behind='principal', min_depth=_NEAR)
  x, y = np.floor(xy[..., 0] + 0.5).astype(np.int64), np.floor(xy[..., 1] + 0.5).astype(np.int64)
  colours = np.where(clip.dynamic_mask[:, None], [[255, 60, 60]], [[60, 255, 60]]).astype(np.uint8)
  h, w = frames.shape[1:3]
  for t in range(frames.shape[0]):
    vis = np.flatnonzero(clip.visibility[t])
    for dy in (-1, 0, 1):
      for dx in (-1, 0, 1):
        yy = np.clip(y[t, vis] + dy, 0, h - 1)
        xx = np.clip(x[t, vis] + dx, 0, w - 1)
        out[t, yy, xx] = colours[vis]
  return out


def write_video(path_stem: str, frames: np.ndarray, fps: int = 10) -> str:
  """Writes frames [T, H, W, 3] uint8 as <stem>.mp4 (needs ffmpeg) or <stem>.gif."""
  if shutil.which('ffmpeg'):
    import mediapy  # Local import: mediapy shells out to ffmpeg.

    path = path_stem + '.mp4'
    mediapy.write_video(path, frames, fps=fps)
  else:
    import imageio.v3 as iio

    path = path_stem + '.gif'
    iio.imwrite(path, frames, duration=1000 / fps, loop=0)
  return path


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m tapkit.data.synthetic',
      description='Render synthetic TAPVid-3D clips (and optionally TracksTo4D files).')
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument('--num_clips', type=int, default=8)
  parser.add_argument('--seed', type=int, default=0, help='clip i uses seed (seed, i)')
  parser.add_argument('--num_frames', type=int, default=24)
  parser.add_argument('--height', type=int, default=256)
  parser.add_argument('--width', type=int, default=256)
  parser.add_argument('--num_tracks', type=int, default=256,
                      help='tracks per clip in random mode (grid mode: grid_size^2)')
  parser.add_argument('--source', default='synthetic', help='subfolder name of the clips')
  parser.add_argument('--frames_format', default='jpeg_bytes',
                      choices=('jpeg_bytes', 'raw', 'png_blob'))
  parser.add_argument('--compress', action='store_true',
                      help='deflate clip files (depth and normals are ~100 bytes/pixel)')
  parser.add_argument('--tracks4d', action='store_true',
                      help='also write TracksTo4D files to OUT/tracks4d/')
  parser.add_argument('--video', action='store_true',
                      help='also write a video per clip to OUT/video/')
  parser.add_argument('--query_mode', default='random', choices=('random', 'grid'))
  parser.add_argument('--grid_size', type=int, default=16)
  parser.add_argument('--static_only', action='store_true', help='no object motion')
  args = parser.parse_args(argv)
  if args.num_clips < 1:
    parser.error(f'--num_clips must be >= 1, got {args.num_clips}')
  if args.seed < 0:
    parser.error(f'--seed must be >= 0, got {args.seed}')
  if not args.source or os.sep in args.source:
    parser.error(f'--source must be a plain folder name, got {args.source!r}')
  return args


def main(argv: Sequence[str] | None = None) -> None:
  args = _parse_args(argv)
  from tqdm import tqdm
  from tapkit.data import tapvid3d  # Local import: only the CLI writes clip files.

  clip_dir = os.path.join(args.out, args.source)
  os.makedirs(clip_dir, exist_ok=True)
  if args.tracks4d:
    from tapkit.data import tracks4d_format

    os.makedirs(os.path.join(args.out, 'tracks4d'), exist_ok=True)
  if args.video:
    os.makedirs(os.path.join(args.out, 'video'), exist_ok=True)
  for i in tqdm(range(args.num_clips), desc='synthetic clips', unit='clip'):
    clip = generate_clip((args.seed, i), args.num_frames, args.height, args.width,
                         args.num_tracks, query_mode=args.query_mode,
                         grid_size=args.grid_size, dynamic=not args.static_only)
    name = f'clip_{i:04d}'
    tapvid3d.save_clip(os.path.join(clip_dir, name + '.npz'), clip,
                       frames_format=args.frames_format, compress=args.compress)
    if args.tracks4d:
      tracks4d_format.save_tracks4d_npz(os.path.join(args.out, 'tracks4d', name + '.npz'),
                                        tracks4d_format.clip_to_tracks4d(clip))
    if args.video:
      write_video(os.path.join(args.out, 'video', name), _draw_tracks(clip.frames, clip))


if __name__ == '__main__':
  main(sys.argv[1:])
