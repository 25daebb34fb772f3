"""Track preprocessing for TRAJAN / 3DSPA (spec trajan3d.md, section 6).

Pure numpy: no JAX, no I/O. Randomness comes from an explicit
`np.random.Generator` (the released colab uses NumPy's global state, so its
exact draws cannot be reproduced; the distributions are the same).

Layouts: tracker outputs and clip files are time-major (`[T, N, C]`, `[T, N]`);
model inputs are track-major with a batch axis (`[1, N, T, C]`,
`[1, N, T, 1]`); query points are (t, x, y) for TRAJAN and (t, x, y, z) for
3DSPA, t a frame index stored as float.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from tapkit.data import geometry
from tapkit.ops import sampling

EPISODE_LENGTH = 150


def _require(cond: bool, msg: str) -> None:
  if not cond:
    raise ValueError(msg)


def normalize_pixel_tracks(tracks_px: np.ndarray, width: int, height: int
                           ) -> np.ndarray:
  """Pixels -> normalised [0, 1]: `(p + 0.5) / (width, height)`.

  Args:
    tracks_px: [..., 2] (x, y) pixels of the original video.
    width, height: video size in pixels.

  Returns:
    [..., 2] float32.
  """
  tracks_px = np.asarray(tracks_px, np.float32)
  _require(tracks_px.shape[-1:] == (2,),
           f'tracks_px must end in 2 (x, y), got {tracks_px.shape}.')
  _require(width > 0 and height > 0, f'bad video size {width}x{height}.')
  return (tracks_px + np.float32(0.5)) / np.asarray([width, height],
                                                    np.float32)


def denormalize_tracks(tracks: np.ndarray, width: int, height: int
                       ) -> np.ndarray:
  """Normalised [0, 1] -> pixels as the TRAJAN colab does: `t * (w, h)`.

  The +0.5 of `normalize_pixel_tracks` is not undone (the colab's
  half-pixel inconsistency); subtract 0.5 for the exact inverse.
  """
  return np.asarray(tracks, np.float32) * np.asarray([width, height],
                                                     np.float32)


def pad_or_crop_time(array: np.ndarray, length: int, axis: int = 0
                     ) -> np.ndarray:
  """Crops `axis` to `length` or pads it with zeros at the end."""
  array = np.asarray(array)
  n = array.shape[axis]
  if n >= length:
    return np.take(array, np.arange(length), axis=axis)
  pad = [(0, 0)] * array.ndim
  pad[axis] = (0, length - n)
  return np.pad(array, pad, constant_values=0)


def sample_query_frames(visible: np.ndarray, rng: np.random.Generator
                        ) -> np.ndarray:
  """A frame chosen uniformly among each track's visible frames (0 if none).

  Args:
    visible: [Q, T] visibility (> 0 = visible).
    rng: random generator.

  Returns:
    [Q] int64 frame indices.
  """
  visible = np.asarray(visible) > 0
  frames = np.zeros(visible.shape[0], np.int64)
  for i, row in enumerate(visible):
    idx = np.flatnonzero(row)
    if idx.size:
      frames[i] = rng.choice(idx)
  return frames


def process_tracks_for_autoencoder(
    tracks: np.ndarray,
    visible: np.ndarray,
    num_frames: int,
    num_support_tracks: int,
    num_target_tracks: int,
    rng: np.random.Generator,
    episode_length: int = EPISODE_LENGTH,
) -> dict[str, np.ndarray]:
  """TRAJAN colab `ProcessTracksForTrackAutoencoder` (before_boundary=True).

  Args:
    tracks: [T, N, 2] (x, y) already normalised to [0, 1] (see
      `normalize_pixel_tracks`).
    visible: [T, N] visibility (> 0 = visible).
    num_frames: number of video frames; becomes `boundary_frame` (not
      clipped to `episode_length`, as in the colab: a value >= the episode
      length simply masks nothing).
    num_support_tracks, num_target_tracks: disjoint subsets drawn from a
      random permutation: targets are its first entries, support its last.
    rng: random generator (permutation and query frames).
    episode_length: time axis is cropped / zero-padded to this.

  Returns:
    support_tracks [1, Ns, E, 2], support_tracks_visible [1, Ns, E, 1],
    query_points [1, Nt, 3] = (t, x, y) with t uniform among the target's
    visible frames (0 if never visible; the colab does not filter such
    tracks), target_points [1, Nt, E, 2], target_tracks_visible
    [1, Nt, E, 1], boundary_frame [1] int32. All float32 except the last.
  """
  tracks = np.asarray(tracks, np.float32)
  visible = np.asarray(visible, np.float32)
  _require(tracks.ndim == 3 and tracks.shape[-1] >= 2,
           f'tracks must be [T, N, 2], got {tracks.shape}.')
  tracks = tracks[..., :2]
  _require(visible.shape == tracks.shape[:2],
           f'visible must be [T, N] = {tracks.shape[:2]}, got {visible.shape}.')
  num_tracks = tracks.shape[1]
  _require(
      num_tracks >= num_support_tracks + num_target_tracks,
      f'need at least num_support_tracks + num_target_tracks = '
      f'{num_support_tracks + num_target_tracks} tracks, got {num_tracks}.')
  _require(num_support_tracks > 0 and num_target_tracks > 0,
           'num_support_tracks and num_target_tracks must be positive.')

  tracks = pad_or_crop_time(tracks, episode_length)
  visible = pad_or_crop_time(visible, episode_length)
  order = rng.permutation(num_tracks)
  support_idx = order[num_tracks - num_support_tracks:]
  target_idx = order[:num_target_tracks]

  support = np.transpose(tracks[:, support_idx], (1, 0, 2))  # [Ns, E, 2]
  support_vis = np.transpose(visible[:, support_idx])[..., None]  # [Ns, E, 1]
  target = np.transpose(tracks[:, target_idx], (1, 0, 2))  # [Nt, E, 2]
  target_vis = np.transpose(visible[:, target_idx])  # [Nt, E]

  frames = sample_query_frames(target_vis, rng)  # [Nt]
  xy = target[np.arange(num_target_tracks), frames]  # [Nt, 2]
  queries = np.concatenate([frames[:, None].astype(np.float32), xy], -1)
  return {
      'support_tracks': support[None],
      'support_tracks_visible': support_vis[None],
      'query_points': queries[None].astype(np.float32),
      'target_points': target[None],
      'target_tracks_visible': target_vis[None, ..., None],
      'boundary_frame': np.asarray([num_frames], np.int32),
  }


def tapvid3d_to_model_inputs(
    tracks_xyz: np.ndarray,
    visibility: np.ndarray,
    queries_xyt: np.ndarray,
    num_frames: int = EPISODE_LENGTH,
) -> dict[str, np.ndarray]:
  """A TAPVid-3D clip as 3DSPA inputs (every track is support and query).

  Args:
    tracks_xyz: [T, N, 3] metres, camera frame of each frame.
    visibility: [T, N] (> 0 = visible).
    queries_xyt: [N, 3] (x pixel, y pixel, t frame); only t is used.
    num_frames: the model's frame count; T is cropped / zero-padded to it.

  Returns:
    support_tracks [1, N, F, 3], support_tracks_visible [1, N, F, 1],
    query_points [1, N, 4] = (t, X, Y, Z) with (X, Y, Z) = tracks_xyz[t, n],
    boundary_frame [1] = min(T, F) int32.

  Raises:
    ValueError: bad shapes, or a query frame outside the kept frames.
  """
  tracks_xyz = np.asarray(tracks_xyz, np.float32)
  visibility = np.asarray(visibility)
  queries_xyt = np.asarray(queries_xyt, np.float32)
  _require(tracks_xyz.ndim == 3 and tracks_xyz.shape[-1] == 3,
           f'tracks_XYZ must be [T, N, 3], got {tracks_xyz.shape}.')
  t_len, n = tracks_xyz.shape[:2]
  _require(visibility.shape == (t_len, n),
           f'visibility must be [{t_len}, {n}], got {visibility.shape}.')
  _require(queries_xyt.shape == (n, 3),
           f'queries_xyt must be [{n}, 3], got {queries_xyt.shape}.')
  frames = np.round(queries_xyt[:, 2]).astype(np.int64)
  kept = min(t_len, num_frames)
  _require(bool(np.all((frames >= 0) & (frames < kept))),
           f'queries_xyt frames must lie in [0, {kept}), got range '
           f'[{frames.min()}, {frames.max()}].')
  xyz = tracks_xyz[frames, np.arange(n)]  # [N, 3]
  tracks = pad_or_crop_time(tracks_xyz, num_frames)
  vis = pad_or_crop_time((visibility > 0).astype(np.float32), num_frames)
  queries = np.concatenate([frames[:, None].astype(np.float32), xyz], -1)
  return {
      'support_tracks': np.transpose(tracks, (1, 0, 2))[None],
      'support_tracks_visible': np.transpose(vis)[None, ..., None],
      'query_points': queries[None],
      'boundary_frame': np.asarray([kept], np.int32),
  }


def prepare_3d_batch(
    tracks: np.ndarray,
    visible: np.ndarray,
    num_support_tracks: int,
    num_query_tracks: int,
    rng: np.random.Generator,
    features: Optional[Mapping[str, np.ndarray]] = None,
) -> dict[str, np.ndarray]:
  """The 3DSPA release's `prepare_3d_batch` (training batches).

  Differs from the TRAJAN colab: support = first `num_support_tracks` of a
  random permutation, queries = the next `num_query_tracks`; the query frame
  is uniform over ALL frames (visible or not); boundary = T; no padding.

  Args:
    tracks: [N, T, D] (D = 3 for 3DSPA, 2 for TRAJAN).
    visible: [N, T, 1] or [N, T].
    num_support_tracks, num_query_tracks: subset sizes.
    rng: random generator.
    features: optional {'dino_features': [N, T, 768], 'depth_features':
      [N, T, 256]}, gathered for the support tracks only.

  Returns:
    support_tracks [1, Ns, T, D], support_tracks_visible [1, Ns, T, 1],
    query_points [1, Nq, 1 + D], query_tracks [1, Nq, T, D],
    query_tracks_visible [1, Nq, T, 1], boundary_frame [1] int32, plus the
    gathered features.
  """
  tracks = np.asarray(tracks, np.float32)
  visible = np.asarray(visible, np.float32)
  _require(tracks.ndim == 3, f'tracks must be [N, T, D], got {tracks.shape}.')
  if visible.ndim == 2:
    visible = visible[..., None]
  n, t, _ = tracks.shape
  _require(visible.shape == (n, t, 1),
           f'visible must be [{n}, {t}, 1], got {visible.shape}.')
  _require(n >= num_support_tracks + num_query_tracks,
           f'need {num_support_tracks + num_query_tracks} tracks, got {n}.')
  order = rng.permutation(n)
  support_idx = order[:num_support_tracks]
  query_idx = order[num_support_tracks:num_support_tracks + num_query_tracks]
  query_tracks = tracks[query_idx]
  frames = rng.integers(0, t, size=num_query_tracks)
  pos = query_tracks[np.arange(num_query_tracks), frames]  # [Nq, D]
  queries = np.concatenate([frames[:, None].astype(np.float32), pos], -1)
  batch = {
      'support_tracks': tracks[support_idx][None],
      'support_tracks_visible': visible[support_idx][None],
      'query_points': queries[None],
      'query_tracks': query_tracks[None],
      'query_tracks_visible': visible[query_idx][None],
      'boundary_frame': np.asarray([t], np.int32),
  }
  for key, value in (features or {}).items():
    value = np.asarray(value, np.float32)
    _require(value.shape[:2] == (n, t),
             f'{key} must be [{n}, {t}, C], got {value.shape}.')
    batch[key] = value[support_idx][None]
  return batch


def sample_depth(depth: np.ndarray, xy_px: np.ndarray) -> np.ndarray:
  """Bilinear depth lookup with pixel-centre convention.

  Args:
    depth: [T, H, W] depth maps (metres, z along the optical axis).
    xy_px: [T, N, 2] (x, y) pixels; pixel (i, j) has its centre at
      x = j, y = i. Points outside are clamped to the border.

  Returns:
    [T, N] depth at the points.
  """
  depth = np.asarray(depth, np.float32)
  xy_px = np.asarray(xy_px, np.float32)
  _require(depth.ndim == 3, f'depth must be [T, H, W], got {depth.shape}.')
  _require(xy_px.ndim == 3 and xy_px.shape[0] == depth.shape[0]
           and xy_px.shape[-1] == 2,
           f'xy_px must be [{depth.shape[0]}, N, 2], got {xy_px.shape}.')
  return sampling.bilinear_sample(depth[..., None], xy_px[..., 0], xy_px[..., 1],
                                  padding='border')[..., 0].astype(np.float32)


def lift_tracks_to_3d(
    xy_px: np.ndarray,
    depth: np.ndarray,
    fx_fy_cx_cy: np.ndarray,
) -> np.ndarray:
  """Back-projects 2D tracks with depth maps through a pinhole camera.

  `X = (x - cx) Z / fx`, `Y = (y - cy) Z / fy`, Z = depth at (x, y), in the
  camera frame of each frame (TAPVid-3D's `tracks_XYZ` convention).
  Intrinsics are in pixels of the frames `xy_px` refers to.

  Args:
    xy_px: [T, N, 2] (x, y) pixels.
    depth: [T, H, W] metres, or [T, N] depth already sampled per point.
    fx_fy_cx_cy: [4] pixels.

  Returns:
    [T, N, 3] float32 metres.
  """
  xy_px = np.asarray(xy_px, np.float32)
  fx, fy, cx, cy = np.asarray(fx_fy_cx_cy, np.float32).reshape(4)
  _require(fx != 0 and fy != 0, f'focal lengths must be non-zero, got '
           f'{fx}, {fy}.')
  depth = np.asarray(depth, np.float32)
  z = depth if depth.shape == xy_px.shape[:2] else sample_depth(depth, xy_px)
  return geometry.unproject(xy_px, z, np.stack([fx, fy, cx, cy])).astype(np.float32)

