r"""Motion realism / consistency score of point tracks from TRAJAN / 3DSPA reconstruction.

    python -m trajan3d.score --tracks DIR_OR_FILES... --checkpoint CKPT \
        --out scores.csv [--plot scores.png] [--config configs/spa3d.py:default]

Idea (TRAJAN, 3DSPA): an autoencoder trained on real motion reconstructs
held-out tracks of a video from the other tracks well when the motion is
plausible (rigid parts, smooth paths, consistent occlusions) and badly when it
is not (jitter, teleports, non-physical deformation). Per video, the tracks are
split into folds of `num_query` tracks; each fold is decoded from up to
`num_support` of the other tracks (support and query disjoint), so every
track is reconstructed once without having been seen. The score is the average
Jaccard of the reconstruction against the input tracks (TAPVid-3D definition,
`tapkit.metrics.tapvid3d`, scaling 'none': reconstruction is in the input's
own metric frame), in [0, 1], higher = more realistic. Also reported: mean
position error (metres for 3D, pixels at a 256-pixel short side for 2D),
occlusion accuracy, and per-frame Jaccard / error (CSV `<out>_per_frame.csv`,
plot).

Inputs, per file (`.npz`, read with allow_pickle=False):
  * a TAPVid-3D clip (`tracks_XYZ`, `visibility`, `queries_xyt`,
    `fx_fy_cx_cy`, ...), read by `tapkit.data.tapvid3d.load_clip`; or
  * a plain file with `tracks` [T, N, 2|3] (2D: pixels; 3D: camera metres) and
    `visibility` [T, N] (bool / 0-1), optionally `fx_fy_cx_cy` [4] (pixels),
    `depth` [T, H, W] (metres), `frame_size` [2] (height, width) pixels,
    `query_frames` [N] int.
3DSPA (3D model) with 2D tracks needs `depth` and `fx_fy_cx_cy`: the tracks
are lifted with `trajan3d.preprocess.lift_tracks_to_3d`. TRAJAN (2D model)
needs pixel tracks and `frame_size` (or 3D tracks + intrinsics + frame size).
Thresholds: 3D uses TAPVid-3D's depth-adaptive thresholds with the clip's
intrinsics rescaled to a 256-pixel short side (without intrinsics: focal
`DEFAULT_FOCAL_PX`, a 60-degree field of view at 256 pixels); 2D uses 1, 2, 4,
8, 16 pixels at a 256-pixel short side.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import sys
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

from tapkit.data import tapvid3d
from tapkit.metrics import tapvid3d as metrics_lib
from trajan3d import checkpoint as checkpoint_lib
from trajan3d import features as features_lib
from trajan3d import preprocess
from trajan3d import task

EVAL_SHORT_SIDE = 256
DEFAULT_FOCAL_PX = EVAL_SHORT_SIDE / (2.0 * math.tan(math.radians(30.0)))  # ~221.7


class TrackFileError(ValueError):
  """A track file that cannot be scored; the message names the file and field."""


# ----------------------------------------------------------------------------
# Track sets: what is scored.


@dataclasses.dataclass
class TrackSet:
  """Tracks of one video.

  tracks: [T, N, C] float32; C = 3 camera metres, or C = 2 pixels.
  visible: [T, N] bool.
  intrinsics: [4] (fx, fy, cx, cy) pixels of the frames, or None.
  frame_size: (height, width) pixels, or None.
  query_frames: [N] int frame each track is queried at (default: its first
    visible frame).
  depth: [T, H, W] metres (2D -> 3D lifting, depth features), or None.
  dino_maps: [T, h, w, C] DINO feature maps, or None.
  """

  name: str
  tracks: np.ndarray
  visible: np.ndarray
  intrinsics: np.ndarray | None = None
  frame_size: tuple[int, int] | None = None
  query_frames: np.ndarray | None = None
  depth: np.ndarray | None = None
  dino_maps: np.ndarray | None = None

  @property
  def num_frames(self) -> int:
    return int(self.tracks.shape[0])

  @property
  def num_tracks(self) -> int:
    return int(self.tracks.shape[1])


def track_set_from_clip(clip, name: str | None = None) -> TrackSet:
  """A TAPVid-3D `Clip` as a 3D TrackSet."""
  return TrackSet(
      name=name or pathlib.Path(clip.path or 'clip').stem,
      tracks=np.asarray(clip.tracks_xyz, np.float32),
      visible=np.asarray(clip.visibility, bool),
      intrinsics=np.asarray(clip.intrinsics, np.float32),
      frame_size=task.clip_frame_size(clip),
      query_frames=np.round(np.asarray(clip.queries_xyt)[:, 2]).astype(np.int64),
      depth=None if clip.depth is None else np.asarray(clip.depth, np.float32),
      dino_maps=clip.extras.get('dino_features'))


def _read_field(npz, path: str, field: str) -> np.ndarray:
  try:
    return npz[field]
  except ValueError as e:  # Object arrays need pickle, which is refused.
    raise TrackFileError(f'{path}: field {field!r} cannot be read without pickle '
                         f'(object array?); refused: {e}') from None
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise TrackFileError(f'{path}: field {field!r} is corrupt: {e}') from None


def _numeric(path: str, field: str, x: np.ndarray) -> np.ndarray:
  if x.dtype == np.bool_:
    return x
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise TrackFileError(f'{path}: field {field!r} must be numeric, got dtype {x.dtype}.')
  return x


def load_track_file(path: str | os.PathLike) -> TrackSet:
  """Reads a TAPVid-3D clip or a plain track `.npz` (module docstring).

  Raises:
    TrackFileError (a ValueError) naming the file and the field for: unreadable
    or non-npz files, pickled (object) fields, missing fields, wrong shapes or
    dtypes, non-finite visible points, non-positive focal lengths.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise TrackFileError(f'{path}: no such file.')
  if not zipfile.is_zipfile(path):
    raise TrackFileError(f'{path}: not an .npz (zip) archive, or truncated.')
  try:
    npz = np.load(path, allow_pickle=False)
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise TrackFileError(f'{path}: unreadable .npz: {type(e).__name__}: {e}') from None
  with npz:
    names = set(npz.files)
    if tapvid3d.TRACKS in names:
      npz.close()
      try:
        clip = tapvid3d.load_clip(path)
      except ValueError as e:
        raise TrackFileError(str(e)) from None
      return track_set_from_clip(clip)
    for field in ('tracks', 'visibility'):
      if field not in names:
        raise TrackFileError(
            f'{path}: field {field!r} missing (need tracks [T, N, 2|3] and visibility '
            f'[T, N], or a TAPVid-3D clip with {tapvid3d.TRACKS}); has {sorted(names)}.')
    tracks = _numeric(path, 'tracks', _read_field(npz, path, 'tracks'))
    if tracks.ndim != 3 or tracks.shape[-1] not in (2, 3) or tracks.dtype == np.bool_:
      raise TrackFileError(f'{path}: field "tracks" must be float [T, N, 2|3], got '
                           f'{tracks.dtype} {list(tracks.shape)}.')
    t_len, n = tracks.shape[:2]
    if t_len < 1 or n < 2:
      raise TrackFileError(f'{path}: field "tracks" needs T >= 1 frames and N >= 2 '
                           f'tracks, got {list(tracks.shape)}.')
    visible = _numeric(path, 'visibility', _read_field(npz, path, 'visibility'))
    if visible.shape != (t_len, n):
      raise TrackFileError(f'{path}: field "visibility" must be [{t_len}, {n}] like '
                           f'tracks, got {list(visible.shape)}.')
    visible = visible.astype(bool)
    tracks = tracks.astype(np.float32)
    bad = ~np.all(np.isfinite(tracks), axis=-1) & visible
    if bad.any():
      t, i = np.argwhere(bad)[0]
      raise TrackFileError(f'{path}: field "tracks" has non-finite values at visible '
                           f'points ({int(bad.sum())}, first at frame {t}, track {i}).')
    tracks = np.where(np.isfinite(tracks), tracks, 0.0).astype(np.float32)
    out = TrackSet(name=pathlib.Path(path).stem, tracks=tracks, visible=visible)
    if 'fx_fy_cx_cy' in names:
      k = _numeric(path, 'fx_fy_cx_cy', _read_field(npz, path, 'fx_fy_cx_cy'))
      k = np.asarray(k, np.float32).reshape(-1)
      if k.shape != (4,) or not np.all(np.isfinite(k)) or k[0] <= 0 or k[1] <= 0:
        raise TrackFileError(f'{path}: field "fx_fy_cx_cy" must be 4 finite values with '
                             f'positive focal lengths, got {k.tolist()}.')
      out.intrinsics = k
    if 'depth' in names:
      depth = _numeric(path, 'depth', _read_field(npz, path, 'depth'))
      if depth.ndim != 3 or depth.shape[0] != t_len:
        raise TrackFileError(f'{path}: field "depth" must be [{t_len}, H, W], got '
                             f'{list(depth.shape)}.')
      out.depth = depth.astype(np.float32)
    if 'frame_size' in names:
      size = _numeric(path, 'frame_size', _read_field(npz, path, 'frame_size')).reshape(-1)
      if size.shape != (2,) or np.any(size <= 0):
        raise TrackFileError(f'{path}: field "frame_size" must be [2] positive (height, '
                             f'width), got {size.tolist()}.')
      out.frame_size = (int(size[0]), int(size[1]))
    elif out.depth is not None:
      out.frame_size = tuple(int(v) for v in out.depth.shape[1:])
    if 'query_frames' in names:
      q = _numeric(path, 'query_frames', _read_field(npz, path, 'query_frames'))
      q = np.asarray(q).reshape(-1)
      if q.shape != (n,) or np.any(q < 0) or np.any(q >= t_len):
        raise TrackFileError(f'{path}: field "query_frames" must be [{n}] frames in '
                             f'[0, {t_len}).')
      out.query_frames = q.astype(np.int64)
  return out


def expand_paths(items: Sequence[str]) -> list[str]:
  """Files as given; directories -> their `.npz` files (recursive, sorted)."""
  paths = []
  for item in items:
    if os.path.isdir(item):
      found = sorted(str(p) for p in pathlib.Path(item).rglob('*.npz'))
      if not found:
        raise TrackFileError(f'{item}: directory holds no .npz track files.')
      paths += found
    else:
      paths.append(item)
  if not paths:
    raise TrackFileError('no track files given.')
  return paths


# ----------------------------------------------------------------------------
# Corruption (for checking that the score ranks implausible motion lower).


def corrupt_track_set(ts: TrackSet, seed: int = 0, jitter: float = 0.03,
                      teleport_fraction: float = 0.3, teleport_scale: float = 0.3
                      ) -> TrackSet:
  """Jitter + teleports: a copy with implausible motion.

  The unit u is the point's depth z for 3D tracks (metres) and the frame's short
  side for 2D tracks (pixels; 256 if unknown). Every point gets i.i.d.
  N(0, (jitter u)^2) noise per coordinate (2D: x, y; 3D: x, y; z keeps its
  sign), and a `teleport_fraction` of the tracks jump at a random frame by
  `teleport_scale * u` in a random direction and stay displaced.
  """
  rng = np.random.default_rng(seed)
  tracks = np.array(ts.tracks, np.float32, copy=True)
  t_len, n, c = tracks.shape
  if c == 3:
    unit = np.abs(tracks[..., 2:3]) + 1e-3  # [T, N, 1]
  else:
    unit = np.full((t_len, n, 1), float(min(ts.frame_size)) if ts.frame_size else 256.0)
  noise = rng.normal(size=(t_len, n, 2)).astype(np.float32)
  tracks[..., :2] += jitter * unit * noise
  jumpers = np.flatnonzero(rng.random(n) < teleport_fraction)
  for i in jumpers:
    t0 = int(rng.integers(0, t_len))
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    tracks[t0:, i, :2] += teleport_scale * unit[t0:, i] * direction.astype(np.float32)
  return dataclasses.replace(ts, name=ts.name + '_corrupted', tracks=tracks)


# ----------------------------------------------------------------------------
# Model views and reconstruction.


class Reconstructor:
  """Jitted encode-decode of one video at a time (batch 1, batch position 0).

  Attributes:
    model: TrackAutoEncoder(3D); params: its parameters (may be replaced).
    coords: 'xyz' (3DSPA) or 'uv' (TRAJAN).
  """

  def __init__(self, model, params: Mapping[str, Any], coords: str,
               features_cfg: Mapping[str, Any] | None = None, normalize: str = 'none'):
    self.model, self.params, self.coords = model, params, coords
    self.normalize = normalize
    features_cfg = features_cfg or {}
    self.dino = bool(features_cfg.get('dino', False))
    self.depth = bool(features_cfg.get('depth', False))
    self.num_frames = int(model.num_output_frames)
    self._apply = jax.jit(lambda p, x: model.apply({'params': p}, x))

  def __call__(self, support: np.ndarray, support_visible: np.ndarray,
               query_points: np.ndarray, boundary: int,
               feats: Mapping[str, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Reconstructs query tracks.

    Args:
      support: [S, T, C] model units (T <= num_output_frames, padded here).
      support_visible: [S, T] bool.
      query_points: [Q, 1 + C] (t, coords).
      boundary: number of real frames.
      feats: optional {'dino_features' | 'depth_features': [S, T, D]}.

    Returns:
      tracks [Q, T_out, C] float32, visible_logits [Q, T_out] float32.
    """
    length = self.num_frames
    pad = lambda x: preprocess.pad_or_crop_time(x, length, axis=1)
    support = np.asarray(support, np.float32)
    centre, scale = task.normalization(support, support_visible, self.normalize)
    query_points = np.array(query_points, np.float32, copy=True)
    query_points[:, 1:] = (query_points[:, 1:] - centre) / scale
    inputs = {
        'support_tracks': pad((support - centre) / scale)[None],
        'support_tracks_visible': pad(np.asarray(support_visible, np.float32))[None, ..., None],
        'query_points': np.asarray(query_points, np.float32)[None],
        'boundary_frame': np.asarray([min(boundary, length)], np.int32),
    }
    for key, value in (feats or {}).items():
      inputs[key] = pad(np.asarray(value, np.float32))[None]
    out = self._apply(self.params, inputs)
    return (np.asarray(out.tracks[0], np.float32) * scale + centre,
            np.asarray(out.visible_logits[0, ..., 0], np.float32))


def model_view(ts: TrackSet, coords: str) -> np.ndarray:
  """[T, N, C] tracks in model units: 'xyz' metres, 'uv' normalised [0, 1]."""
  tracks = ts.tracks
  if coords == 'xyz':
    if tracks.shape[-1] == 3:
      return tracks
    if ts.depth is None or ts.intrinsics is None:
      raise TrackFileError(f'{ts.name}: 2D tracks need fields "depth" [T, H, W] and '
                           '"fx_fy_cx_cy" [4] to be lifted to 3D for a 3DSPA model.')
    return preprocess.lift_tracks_to_3d(tracks, ts.depth, ts.intrinsics)
  if ts.frame_size is None:
    raise TrackFileError(f'{ts.name}: a TRAJAN (2D) model needs field "frame_size" '
                         '[2] (height, width) to normalise the tracks.')
  pixels = _pixels(ts)
  height, width = ts.frame_size
  return preprocess.normalize_pixel_tracks(pixels, width, height)


def _pixels(ts: TrackSet) -> np.ndarray:
  """[T, N, 2] pixel positions (projected for 3D tracks)."""
  if ts.tracks.shape[-1] == 2:
    return ts.tracks
  if ts.intrinsics is None:
    raise TrackFileError(f'{ts.name}: 3D tracks need field "fx_fy_cx_cy" to be projected '
                         'to pixels.')
  from tapkit.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.project_to_pixels(ts.tracks, ts.intrinsics)


def support_features(recon: Reconstructor, ts: TrackSet, support: np.ndarray
                     ) -> dict[str, np.ndarray]:
  """Feature inputs [S, T, D] of the support tracks the model was trained with."""
  feats = {}
  if recon.depth:
    if ts.depth is None:
      raise TrackFileError(f'{ts.name}: the model uses depth features; field "depth" '
                           '[T, H, W] is missing.')
    feats['depth_features'] = features_lib.depth_features(
        ts.depth, np.swapaxes(_pixels(ts)[:, support], 0, 1))
  if recon.dino:
    if ts.dino_maps is None or ts.frame_size is None:
      raise TrackFileError(f'{ts.name}: the model uses DINO features; field '
                           '"dino_features" [T, h, w, 768] is missing.')
    height, width = ts.frame_size
    norm = preprocess.normalize_pixel_tracks(_pixels(ts)[:, support], width, height)
    feats['dino_features'] = features_lib.sample_feature_maps(
        ts.dino_maps, np.swapaxes(norm, 0, 1))
  return feats


def default_query_frames(ts: TrackSet) -> np.ndarray:
  """[N] the set's query frames, else each track's first visible frame (0 if none)."""
  if ts.query_frames is not None:
    return ts.query_frames
  return np.where(ts.visible.any(axis=0), np.argmax(ts.visible, axis=0), 0)


def reconstruct(recon: Reconstructor, ts: TrackSet, tracks: np.ndarray,
                support: np.ndarray, query: np.ndarray,
                query_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Decodes tracks `query` from tracks `support` (index arrays into N).

  Args:
    tracks: [T, N, C] model units (`model_view`).
    query_frames: [N] query frame of every track.

  Returns:
    pred [T, Q, C] model units and pred_visible [T, Q] bool, T = the video's
    frames (cropped to the model's num_output_frames if longer).
  """
  t_len = min(tracks.shape[0], recon.num_frames)
  tracks = tracks[:t_len]
  visible = ts.visible[:t_len]
  frames = np.clip(query_frames[query], 0, t_len - 1)
  qpos = tracks[frames, query]  # [Q, C]
  query_points = np.concatenate([frames[:, None].astype(np.float32), qpos], -1)
  pred, logits = recon(np.swapaxes(tracks[:, support], 0, 1), visible[:, support].T,
                       query_points, t_len, support_features(recon, ts, support))
  return np.swapaxes(pred[:, :t_len], 0, 1), (logits[:, :t_len] > 0).T


# ----------------------------------------------------------------------------
# Metrics.


def metric_space(ts: TrackSet, coords: str, tracks_model: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(points [T, N, 3], intrinsics [4]) on which the TAPVid-3D metric is run.

  3D: metres with the intrinsics rescaled to a 256-pixel short side. 2D: pixels
  at a 256-pixel short side as (x, y, 1) with unit focal length, so the
  thresholds 1..16 are pixels.
  """
  if coords == 'xyz':
    if ts.intrinsics is None:
      k = np.asarray([DEFAULT_FOCAL_PX, DEFAULT_FOCAL_PX, 128.0, 128.0], np.float32)
    elif ts.frame_size is None:
      k = ts.intrinsics
    else:
      k = tapvid3d.eval_intrinsics(ts.intrinsics, *ts.frame_size, EVAL_SHORT_SIDE)
    return tracks_model, np.asarray(k, np.float32)
  height, width = ts.frame_size
  scale = EVAL_SHORT_SIDE / min(height, width)
  px = (preprocess.denormalize_tracks(tracks_model, width, height) - 0.5) * scale
  ones = np.ones(px.shape[:-1] + (1,), np.float32)
  return np.concatenate([px, ones], -1), np.asarray([1.0, 1.0, 0.0, 0.0], np.float32)


def reconstruction_metrics(gt: np.ndarray, gt_visible: np.ndarray, pred: np.ndarray,
                           pred_visible: np.ndarray, intrinsics: np.ndarray
                           ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Per-video and per-frame TAPVid-3D metrics (scaling 'none') plus mean error.

  Args:
    gt, pred: [T, N, 3] metric-space points; gt_visible, pred_visible [T, N].
    intrinsics: [4] for the thresholds.

  Returns:
    ({metric: float} incl. 'mean_error'), per-frame {'jaccard', 'pts_within',
    'occlusion_accuracy', 'mean_error': [T]} (NaN where a frame has no visible
    ground truth).
  """
  kwargs = dict(intrinsics_params=intrinsics, scaling='none')
  video = metrics_lib.compute_tapvid3d_metrics(
      gt_occluded=~gt_visible, gt_tracks=gt, pred_occluded=~pred_visible,
      pred_tracks=pred, order='t n', **kwargs)
  frame = metrics_lib.compute_tapvid3d_metrics(
      gt_occluded=~gt_visible[..., None], gt_tracks=gt[:, :, None],
      pred_occluded=~pred_visible[..., None], pred_tracks=pred[:, :, None],
      order='b n t', **kwargs)
  err = np.linalg.norm(pred - gt, axis=-1)  # [T, N]
  m = gt_visible.astype(np.float64)
  with np.errstate(invalid='ignore', divide='ignore'):
    frame_err = np.sum(err * m, axis=1) / np.sum(m, axis=1)
  row = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in video.items()}
  row['mean_error'] = float(np.sum(err * m) / max(1.0, np.sum(m)))
  per_frame = {
      'jaccard': np.asarray(frame['average_jaccard'], np.float64),
      'pts_within': np.asarray(frame['average_pts_within_thresh'], np.float64),
      'occlusion_accuracy': np.asarray(frame['occlusion_accuracy'], np.float64),
      'mean_error': frame_err,
  }
  return row, per_frame


def score_track_set(recon: Reconstructor, ts: TrackSet, num_support: int = 2048,
                    num_query: int = 256, seed: int = 0, max_tracks: int | None = None
                    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Held-out reconstruction score of one video (module docstring).

  Returns:
    (row, per_frame): row = {'score', 'average_jaccard', 'occlusion_accuracy',
    'average_pts_within_thresh', 'mean_error', 'num_frames', 'num_tracks', ...};
    per_frame as `reconstruction_metrics`.
  """
  tracks = model_view(ts, recon.coords)  # [T, N, C]
  n = ts.num_tracks
  if n < 2:
    raise TrackFileError(f'{ts.name}: need at least 2 tracks to score, got {n}.')
  rng = np.random.default_rng(seed)
  kept = np.sort(rng.permutation(n)[:max_tracks]) if max_tracks else np.arange(n)
  order = rng.permutation(kept)
  num_folds = max(2, math.ceil(len(order) / max(1, num_query)))
  folds = np.array_split(order, num_folds)
  qframes = default_query_frames(ts)
  t_len = min(ts.num_frames, recon.num_frames)
  pred = np.zeros((t_len, n, tracks.shape[-1]), np.float32)
  pred_vis = np.zeros((t_len, n), bool)
  for fold in folds:
    rest = order[~np.isin(order, fold)][:num_support]
    p, v = reconstruct(recon, ts, tracks, rest, fold, qframes)
    pred[:, fold], pred_vis[:, fold] = p, v
  gt_pts, k = metric_space(ts, recon.coords, tracks[:t_len, kept])
  pred_pts, _ = metric_space(ts, recon.coords, pred[:, kept])
  row, per_frame = reconstruction_metrics(gt_pts, ts.visible[:t_len, kept], pred_pts,
                                          pred_vis[:, kept], k)
  row.update(name=ts.name, score=row['average_jaccard'], num_frames=t_len,
             num_tracks=len(kept),
             error_units='m' if recon.coords == 'xyz' else 'px@256')
  return row, per_frame


# ----------------------------------------------------------------------------
# Checkpoints.


def load_config_arg(arg: str) -> ml_collections.ConfigDict:
  """'configs/spa3d.py:smoke' -> get_config('smoke') of that file."""
  path, _, preset = arg.partition(':')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--config: no such config file {path!r}.')
  spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset or None)


def find_workdir_config(checkpoint: str) -> ml_collections.ConfigDict | None:
  """config.json of the training workdir holding `checkpoint`, if any."""
  path = pathlib.Path(checkpoint).resolve()
  for folder in [path] + list(path.parents)[:4]:
    candidate = folder / 'config.json'
    if candidate.is_file():
      with open(candidate) as f:
        return ml_collections.ConfigDict(json.load(f))
  return None


def load_checkpoint(checkpoint: str, config_arg: str | None = None
                    ) -> tuple[ml_collections.ConfigDict, Any, dict[str, Any]]:
  """(config, model, params) from a training workdir / orbax dir / official npz.

  The model is described by `config_arg` when given, else by the workdir's
  config.json (found next to or above the checkpoint). Parameter names and
  shapes are checked against the model.
  """
  config = load_config_arg(config_arg) if config_arg else find_workdir_config(checkpoint)
  if config is None:
    raise ValueError(f'{checkpoint}: no config.json found in or above it; pass --config '
                     '(e.g. configs/spa3d.py:default for the official 3dspa_ckpt.npz).')
  model = task.build_model_from_config(config)
  params = checkpoint_lib.load_params(checkpoint, model=model)
  return config, model, params


def reconstructor_from_checkpoint(checkpoint: str, config_arg: str | None = None
                                  ) -> tuple[ml_collections.ConfigDict, Reconstructor]:
  config, model, params = load_checkpoint(checkpoint, config_arg)
  feats = {'dino': 'dino_projection' in params, 'depth': 'depth_projection' in params}
  return config, Reconstructor(model, params, task.coords_of(config), feats,
                               config.data.normalize)


# ----------------------------------------------------------------------------
# CLI.


CSV_FIELDS = ('name', 'path', 'score', 'average_jaccard', 'average_pts_within_thresh',
              'occlusion_accuracy', 'mean_error', 'error_units', 'num_frames',
              'num_tracks')


def write_csvs(out: str, rows: list[dict[str, Any]],
               per_frame: list[dict[str, np.ndarray]]) -> str:
  """Writes `out` (one row per video) and `<out stem>_per_frame.csv`; returns the latter."""
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction='ignore')
    writer.writeheader()
    for row in rows:
      writer.writerow(row)
  frame_path = os.path.splitext(out)[0] + '_per_frame.csv'
  with open(frame_path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['name', 'frame', 'jaccard', 'pts_within', 'occlusion_accuracy',
                     'mean_error'])
    for row, pf in zip(rows, per_frame):
      for t in range(len(pf['jaccard'])):
        writer.writerow([row['name'], t] + [f'{pf[k][t]:.6g}' for k in
                                            ('jaccard', 'pts_within', 'occlusion_accuracy',
                                             'mean_error')])
  return frame_path


def plot_scores(path: str, rows: list[dict[str, Any]],
                per_frame: list[dict[str, np.ndarray]]) -> None:
  """Per-frame Jaccard and error of every video (matplotlib, Agg)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, (ax_j, ax_e) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
  for row, pf in zip(rows, per_frame):
    label = f'{row["name"]} ({row["score"]:.3f})'
    ax_j.plot(pf['jaccard'], label=label)
    ax_e.plot(pf['mean_error'], label=label)
  ax_j.set_ylabel('per-frame Jaccard')
  ax_j.set_ylim(0, 1)
  ax_e.set_ylabel(f'mean error [{rows[0]["error_units"]}]' if rows else 'mean error')
  ax_e.set_xlabel('frame')
  if len(rows) <= 12:
    ax_j.legend(fontsize=7)
  ax_j.set_title('Reconstruction score per frame (higher Jaccard = more plausible)')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m trajan3d.score',
      description='Per-video motion realism score from TRAJAN/3DSPA reconstruction.')
  parser.add_argument('--tracks', nargs='+', required=True,
                      help='track files (.npz) and/or directories of them')
  parser.add_argument('--checkpoint', required=True,
                      help='training workdir, orbax checkpoint dir or official .npz')
  parser.add_argument('--config', default=None,
                      help="model config 'file.py:preset' (default: the workdir's "
                           'config.json)')
  parser.add_argument('--out', required=True, help='CSV, one row per video')
  parser.add_argument('--plot', default=None, help='PNG of the per-frame scores')
  parser.add_argument('--num_support', type=int, default=None,
                      help='support tracks per fold (default config.eval.num_support)')
  parser.add_argument('--num_query', type=int, default=None,
                      help='tracks per fold (default config.eval.num_query)')
  parser.add_argument('--max_tracks', type=int, default=2048,
                      help='score at most this many tracks per video (0 = all)')
  parser.add_argument('--seed', type=int, default=0)
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
  args = parse_args(argv)
  paths = expand_paths(args.tracks)
  config, recon = reconstructor_from_checkpoint(args.checkpoint, args.config)
  num_support = args.num_support or int(config.eval.num_support)
  num_query = args.num_query or int(config.eval.num_query)
  rows, frames = [], []
  for path in tqdm.tqdm(paths, desc='scoring', unit='video', file=sys.stderr):
    ts = load_track_file(path)
    row, pf = score_track_set(recon, ts, num_support, num_query, args.seed,
                              args.max_tracks or None)
    row['path'] = path
    rows.append(row)
    frames.append(pf)
  frame_csv = write_csvs(args.out, rows, frames)
  if args.plot:
    plot_scores(args.plot, rows, frames)
  for row in rows:
    print(f'{row["name"]:<32} score {row["score"]:.4f}  mean error {row["mean_error"]:.4f} '
          f'{row["error_units"]}')
  print(f'wrote {args.out} and {frame_csv}' + (f' and {args.plot}' if args.plot else ''))
  return rows


if __name__ == '__main__':
  main()
