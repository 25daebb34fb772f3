"""Scenes of the synthetic generator: analytic primitives, ray casting and shading.

A scene is a handful of analytic primitives (spheres, boxes, rectangles) textured
with the photographs shipped in `skimage.data`:

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

Conventions: see the package docstring (`tapkit.data.synthetic`).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

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
