"""Synthetic TAPVid-3D clips: a scene and a camera path rendered over time, with exact tracks.

A point is visible in a frame when it lies in front of the camera, projects inside
the image (its rounded pixel exists) and the first surface along the camera ray
through it is the point itself (same primitive, same distance to 1e-5 relative);
the test is done in float64, independently of the float32 renderer.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from tapkit.data import geometry
from tapkit.data.clip import Clip
from tapkit.data.synthetic.camera import make_camera_path, make_intrinsics
from tapkit.data.synthetic.scene import (_NEAR, _VIS_RTOL, Scene, SceneConfig, _camera_rays,
                                         make_scene)


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

