"""Frame-window / point sampling and normalisation of TracksTo4D clips (official reader).

Pure numpy functions of the arrays of one official clip file (`pred_tracks`
[1, T, P, 2] pixels, `pred_visibility` [1, T, P] bool, `started_at` [1, 1, P] query
frames, optional `Ks_all` [T, 3, 3] pixels, `Ms_all` [T, 3, 4] world-to-camera,
`GT_depth_tracks_all` [1, T, P], `GT_mask_tracks_all` [1, T, P]). Reading the file is
`tapkit.data.tracks4d_format`'s job; `sample_clip` reproduces what the official
`CustomDataset.__getitem__` returns, with the official unseeded torch randomness
replaced by an explicit `numpy.random.Generator`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

# Official settings.
MIN_RANDOM_WINDOW = 20  # Random windows draw F from [20, max_cameras).
MIN_VISIBLE_FRAMES = 10  # A track must be visible in MORE than 10 frames of the window.
INFERENCE_MAX_CAMERAS = 50
TRAIN_FIRST_PHASE_MAX_CAMERAS = 22  # Fixed 22-frame windows for epochs 0-49.
TRAIN_MAX_POINTS = 100
INFERENCE_MAX_POINTS = 1000


def _field(arrays: Mapping[str, Any], name: str, ndim: int, source: str) -> np.ndarray:
  if name not in arrays:
    raise ValueError(f'{source}: missing field {name!r}')
  value = np.asarray(arrays[name])
  if value.ndim != ndim:
    raise ValueError(f'{source}: field {name!r} must be {ndim}-D, got shape {value.shape}')
  return value


def validate_clip_arrays(arrays: Mapping[str, Any], source: str = '<clip>') -> tuple[int, int]:
  """Checks the official layout; returns (T frames, P tracks).

  Raises:
    ValueError naming `source` and the offending field.
  """
  tracks = _field(arrays, 'pred_tracks', 4, source)
  if tracks.shape[0] != 1 or tracks.shape[3] != 2:
    raise ValueError(f'{source}: field pred_tracks must be [1, T, P, 2], got {tracks.shape}')
  _, t, p, _ = tracks.shape
  expect = {'pred_visibility': (1, t, p), 'started_at': (1, 1, p)}
  optional = {'Ks_all': (t, 3, 3), 'Ms_all': (t, 3, 4), 'GT_depth_tracks_all': (1, t, p),
              'GT_mask_tracks_all': (1, t, p)}
  for name, shape in list(expect.items()) + list(optional.items()):
    if name not in arrays and name in optional:
      continue
    value = _field(arrays, name, len(shape), source)
    if value.shape != shape:
      hint = ' (world-to-camera [R | t] rows only, not 4x4)' if name == 'Ms_all' else ''
      raise ValueError(f'{source}: field {name!r} must have shape {shape}{hint}, '
                       f'got {value.shape}')
  return t, p


def select_window(num_frames: int, max_cameras: int, sample_cameras: bool,
                  rng: np.random.Generator | None = None) -> tuple[int, int]:
  """Frame window (start, F) as the official reader picks it.

  Fixed: (0, min(max_cameras, T)). Random: F ~ U{20..max_cameras-1}, then
  start ~ U{0..T-F-1}.

  Raises:
    ValueError: random window without `rng`, or a video not longer than F frames.
  """
  if not sample_cameras:
    return 0, int(min(max_cameras, num_frames))
  if rng is None:
    raise ValueError('random frame windows need a numpy Generator (rng)')
  if max_cameras <= MIN_RANDOM_WINDOW:
    raise ValueError(f'random windows need max_cameras > {MIN_RANDOM_WINDOW}, got {max_cameras}')
  f = int(rng.integers(MIN_RANDOM_WINDOW, max_cameras))
  if num_frames - f <= 0:
    raise ValueError(f'random window of {f} frames needs a video of more than {f} frames, '
                     f'got {num_frames}')
  start = int(rng.integers(0, num_frames - f))
  return start, f


def eligible_tracks(started_at: np.ndarray, visibility: np.ndarray, start: int,
                    num_cameras: int, sample_cameras: bool) -> np.ndarray:
  """Indices (ascending) of tracks usable in the window.

  Usable: queried inside the window (fixed: started_at < F; random: within F frames of the
  window centre) and visible in more than 10 of its frames.

  Args:
    started_at: [P] query frame of every track.
    visibility: [T, P] bool.
    start, num_cameras: the window.
    sample_cameras: random-window rule (query frame within F of the window centre)
      instead of the fixed-window rule (query frame < F).
  """
  if sample_cameras:
    near = np.abs(started_at - (start + num_cameras / 2)) < num_cameras
  else:
    near = started_at < num_cameras
  seen = visibility[start:start + num_cameras].sum(axis=0) > MIN_VISIBLE_FRAMES
  return np.nonzero(near & seen)[0].astype(np.int64)


def select_points(eligible: np.ndarray, max_points: int,
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
  """Shuffled subset of at most `max_points` eligible tracks, padded with index 0.

  Args:
    eligible: [E] candidate indices.
    max_points: output length.
    rng: shuffles the candidates (the official unseeded randperm); None keeps them in
      ascending order.

  Returns:
    (selected [max_points] int64, number of real tracks). Padding entries are 0 (the
    file's first track, eligible or not), as in the official reader.
  """
  order = eligible if rng is None else eligible[rng.permutation(eligible.shape[0])]
  num = int(min(max_points, eligible.shape[0]))
  selected = np.zeros(max_points, np.int64)
  selected[:num] = order[:num]
  return selected, num


def generic_intrinsics(pred_tracks: np.ndarray, pred_visibility: np.ndarray,
                       num_cameras: int) -> np.ndarray:
  """Generic K when no (or no trusted) calibration is given (official reader).

  The per-axis maxima (mx, my) of all visible track positions of the whole file stand
  in for the image size: focal (mx + my)/2 for both axes, principal point (mx/2, my/2).

  Args:
    pred_tracks: [1, T, P, 2] pixels.
    pred_visibility: [1, T, P] bool.
    num_cameras: F.

  Returns:
    [F, 3, 3] float32.
  """
  coords = np.asarray(pred_tracks, np.float32)[np.asarray(pred_visibility, bool)]  # [M, 2]
  if coords.shape[0] == 0:
    raise ValueError('generic intrinsics: the clip has no visible track position')
  max_xy = coords.max(axis=0)
  focal = np.float32((np.float64(max_xy[0]) + np.float64(max_xy[1])) / 2.0)
  k = np.zeros((num_cameras, 3, 3), np.float32)
  k[:, 0, 0] = focal
  k[:, 1, 1] = focal
  k[:, 0, 2] = max_xy[0] / np.float32(2.0)
  k[:, 1, 2] = max_xy[1] / np.float32(2.0)
  k[:, 2, 2] = 1.0
  return k


def normalise_tracks(tracks_px: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
  """Pixels -> normalised image coordinates with the inverse intrinsics (official reader).

  x_n = x (K^-1)_00 + (K^-1)_02, y_n = y (K^-1)_11 + (K^-1)_12 in float32 (two
  roundings, like the official in-place ops); the skew entry (K^-1)_01 is ignored.

  Args:
    tracks_px: [N, 2, F] pixels.
    intrinsics: [F, 3, 3].

  Returns:
    [N, 2, F] float32.
  """
  inv = np.linalg.inv(np.asarray(intrinsics, np.float32)).astype(np.float32)  # [F, 3, 3]
  x = np.asarray(tracks_px, np.float32)
  out = np.empty_like(x)
  out[:, 0] = (x[:, 0] * inv[:, 0, 0]).astype(np.float32) + inv[:, 0, 2]
  out[:, 1] = (x[:, 1] * inv[:, 1, 1]).astype(np.float32) + inv[:, 1, 2]
  return out


def camera_to_world_from_w2c(ms: np.ndarray) -> np.ndarray:
  """[F, 3, 4] world-to-camera [R | t] -> [F, 4, 4] camera-to-world (float32 inverse)."""
  ms = np.asarray(ms, np.float32)
  w2c = np.tile(np.eye(4, dtype=np.float32), (ms.shape[0], 1, 1))
  w2c[:, :3, :] = ms
  return np.linalg.inv(w2c).astype(np.float32)


def sample_clip(arrays: Mapping[str, Any], max_cameras: int = INFERENCE_MAX_CAMERAS,
                max_points: int = INFERENCE_MAX_POINTS, sample_cameras: bool = False,
                use_visible_input: bool = True, predict_focal_length: bool = False,
                rng: np.random.Generator | None = None,
                source: str = '<clip>') -> dict[str, Any]:
  """One sample as the official reader (`CustomDataset.__getitem__`) builds it.

  Args:
    arrays: the clip's fields (see the module docstring).
    max_cameras: 50 at inference/validation, 22 in the first training phase.
    max_points: 100 for training/validation, 1000 at inference.
    sample_cameras: random window (training from epoch 50) instead of the fixed one.
    use_visible_input: append the visibility row to the tracks (released configs).
    predict_focal_length: use the generic K even when `Ks_all` exists.
    rng: drives the window and the point shuffle (None: no shuffle, fixed window only).
    source: name used in error messages.

  Returns:
    dict with `tracks` [max_points, 3 (2), F] f32 normalised (x, y[, vis]);
    `tracks_vis` [F, max_points] bool; `GT_Ks` [F, 3, 3] f32 pixels; `GT_poses`
    [F, 4, 4] f32 camera-to-world (only with `Ms_all`); `GT_depth` [F, max_points] f32
    and `GT_mask` [F, max_points] bool (when present); `camera_num`, `start_ind`,
    `num_actual_tracklets` ints; `selected_inds` [max_points] int64; `point_mask`
    [max_points] bool (True for real tracks; for the model's `point_mask`). Rows beyond
    `num_actual_tracklets` are copies of the file's track 0.
  """
  num_frames, _ = validate_clip_arrays(arrays, source)
  pred_tracks = np.asarray(arrays['pred_tracks'], np.float32)
  visibility = np.asarray(arrays['pred_visibility']).astype(bool)
  started_at = np.asarray(arrays['started_at'])[0, 0]
  start, f = select_window(num_frames, max_cameras, sample_cameras, rng)
  eligible = eligible_tracks(started_at, visibility[0], start, f, sample_cameras)
  selected, num_actual = select_points(eligible, max_points, rng)
  window = slice(start, start + f)

  tracks_px = pred_tracks[0, window][:, selected].transpose(1, 2, 0)  # [N, 2, F]
  tracks_vis = visibility[0, window][:, selected]  # [F, N]
  if 'Ks_all' in arrays and not predict_focal_length:
    ks = np.asarray(arrays['Ks_all']).astype(np.float32)[window]
  else:
    ks = generic_intrinsics(pred_tracks, visibility, f)
  tracks = normalise_tracks(tracks_px, ks)
  if use_visible_input:
    vis_row = tracks_vis.T[:, None, :].astype(np.float32)  # [N, 1, F]
    tracks = np.concatenate([tracks, vis_row], axis=1)

  out: dict[str, Any] = {
      'tracks': tracks, 'tracks_vis': tracks_vis, 'GT_Ks': ks,
      'camera_num': f, 'start_ind': start, 'num_actual_tracklets': num_actual,
      'selected_inds': selected,
      # Not in the official output: False for the padding copies of track 0.
      'point_mask': np.arange(max_points) < num_actual,
  }
  if 'Ms_all' in arrays:
    out['GT_poses'] = camera_to_world_from_w2c(np.asarray(arrays['Ms_all'])[window])
  if 'GT_depth_tracks_all' in arrays:
    out['GT_depth'] = np.asarray(arrays['GT_depth_tracks_all'], np.float32)[0, window][:, selected]
  if 'GT_mask_tracks_all' in arrays:
    mask = np.asarray(arrays['GT_mask_tracks_all'], np.float32)[0, window][:, selected]
    out['GT_mask'] = mask > 0
  return out


def truncate_to_real(sample: Mapping[str, Any]) -> dict[str, Any]:
  """Drops the padding points (inference does this before the forward pass)."""
  n = int(sample['num_actual_tracklets'])
  out = dict(sample)
  out['tracks'] = sample['tracks'][:n]
  out['selected_inds'] = sample['selected_inds'][:n]
  if 'point_mask' in sample:
    out['point_mask'] = sample['point_mask'][:n]
  for key in ('tracks_vis', 'GT_depth', 'GT_mask'):
    if key in sample:
      out[key] = sample[key][:, :n]
  return out

