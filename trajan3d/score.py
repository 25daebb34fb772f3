r"""Motion realism / consistency score of point tracks from TRAJAN / 3DSPA reconstruction.

    python -m trajan3d.score --tracks DIR_OR_FILES... --checkpoint CKPT \
        --out scores.csv [--plot scores.png] [--config configs/spa3d.py:default]
    python -m trajan3d.score --video VIDEOS... --checkpoint trajan.npz --out scores.csv \
        [--tracker lk|cotracker3 --tracker_checkpoint scaled_offline.pth] [--grid_size 32]
    python -m trajan3d.score --video VIDEOS... --checkpoint 3dspa_ckpt.npz \
        --config configs/spa3d_video.py --tracker cotracker3 \
        --tracker_checkpoint scaled_offline.pth --depth_checkpoint video_depth_anything_vitb.pth \
        --dino_checkpoint dinov2_base.safetensors [--recipe corrected|released] \
        --out scores.csv [--plot scores.png] [--report report_dir]

Idea (TRAJAN, 3DSPA): an autoencoder trained on real motion reconstructs
held-out tracks of a video from the other tracks well when the motion is
plausible (rigid parts, smooth paths, consistent occlusions) and badly when it
is not (jitter, teleports, non-physical deformation). Per video, the tracks are
split into folds of `num_query` tracks; each fold is decoded from up to
`num_support` of the other tracks (support and query disjoint), so every
track is reconstructed once without having been seen. The score is the average
Jaccard of the reconstruction against the input tracks (TAPVid-3D definition,
`tapkit.metrics.tapvid3d`, scaling 'none': reconstruction is in the input's
own metric frame), in [0, 1], higher = more realistic; computed by
`trajan3d.evaluators.score_clip`, the evaluation used during training. Also reported: mean
position error (metres for 3D, pixels at a 256-pixel short side for 2D),
occlusion accuracy, and per-frame Jaccard / error (CSV `<out>_per_frame.csv`,
plot).

Inputs, per file (`.npz`, read pickle-free with `tapkit.io.npz`):
  * a TAPVid-3D clip (`tracks_XYZ`, `visibility`, `queries_xyt`,
    `fx_fy_cx_cy`, ...), read by `tapkit.data.tapvid3d.load_clip`; or
  * a plain file with `tracks` [T, N, 2|3] (2D: pixels; 3D: camera metres) and
    `visibility` [T, N] (bool / 0-1), optionally `fx_fy_cx_cy` [4] (pixels),
    `depth` [T, H, W] (metres), `frame_size` [2] (height, width) pixels,
    `query_frames` [N] int.
3DSPA (3D model) with 2D tracks needs `depth` and `fx_fy_cx_cy`: the tracks
are lifted with `trajan3d.preprocess.lift_tracks_to_3d`. TRAJAN (2D model)
needs pixel tracks and `frame_size` (or 3D tracks + intrinsics + frame size).
With --video (TRAJAN, 2D models), each video is read (`tapkit.io.video`; at most the
model's frames) and a --grid_size² grid queried on frame 0 is tracked (`track_video_clip`);
those pixel tracks are scored.
With --video and a 3DSPA model reading DINO / depth features (or --mode 3d), the released
3DSPA inference runs first (`trajan3d.video_pipeline`: grid tracking, Video Depth Anything
depth, DINOv2 patch features at the tracks, lifting to 3D, depth features), with
--recipe released (bit for bit, mistakes included) or corrected (default); the checkpoints
come from the flags or from the `video` section of --config (configs/spa3d_video.py).
--random_weights_for_testing replaces every missing network by a small random one (the
scores are then meaningless; CSV, report and output say so).
Every file becomes a `tapkit.data.clip.Clip` (2D tracks in `tracks_uv`); the
model inputs are built by `trajan3d.input_pipeline`. Thresholds: see
`trajan3d.evaluators`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import zipfile
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
import tqdm
from etils import epy

from tapkit import cli
from tapkit import tracking
from tapkit.data import clip as clip_lib
from tapkit.data import tapvid3d
from tapkit.io import BadFileError
from tapkit.io import batch as batch_lib
from tapkit.io import npz as npz_io
from tapkit.io import video as video_io
from tapkit.train import config as config_lib
from tapkit.train import workdir as workdir_lib
from tapkit.viz import tables
from trajan3d import video_pipeline

# Loaded on first use, so `--help` and argument mistakes answer without importing JAX.
with epy.lazy_imports():
  from tapkit.viz import html
  from tapkit.viz import plots
  from trajan3d import checkpoint as checkpoint_lib
  from trajan3d import evaluators
  from trajan3d import input_pipeline
  from trajan3d import model as model_lib


def track_set_from_clip(clip: clip_lib.Clip) -> clip_lib.Clip:
  """The scored tracks of a TAPVid-3D clip (`trajan3d.input_pipeline.track_clip`)."""
  return input_pipeline.track_clip(clip)


def score_track_set(*args, **kwargs):
  """`trajan3d.evaluators.score_clip` under the name the quickstart and notebooks use."""
  return evaluators.score_clip(*args, **kwargs)


def __getattr__(name: str) -> Any:
  # `score.TrackFileError`: the error of unreadable track files, defined with the readers.
  if name == 'TrackFileError':
    return input_pipeline.TrackFileError
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


# ----------------------------------------------------------------------------
# Track files: what is scored.


def _read_field(npz, path: str, field: str) -> np.ndarray:
  try:
    return npz[field]
  except BadFileError as e:
    if 'pickle' in e.detail:  # Object arrays need pickle, which is refused.
      raise input_pipeline.TrackFileError(f'{path}: field {field!r} cannot be read without pickle '
                           f'(object array?); refused: {e.detail}') from None
    raise input_pipeline.TrackFileError(f'{path}: field {field!r} is corrupt: {e.detail}') from None


def _numeric(path: str, field: str, x: np.ndarray) -> np.ndarray:
  if x.dtype == np.bool_:
    return x
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise input_pipeline.TrackFileError(f'{path}: field {field!r} must be numeric, got dtype {x.dtype}.')
  return x


def load_track_file(path: str | os.PathLike) -> clip_lib.Clip:
  """Reads a TAPVid-3D clip or a plain track `.npz` (module docstring).

  Returns:
    The tracks as a Clip: a TAPVid-3D clip as `input_pipeline.track_clip`; a
    plain file with `tracks_xyz` (3D) or `tracks_uv` (2D), `queries_xyt` (x, y:
    the track's pixel at its query frame, NaN where unknown; t: `query_frames`,
    default each track's first visible frame, 0 if none), `intrinsics`,
    `depth` and `image_size` (from `frame_size`) when given.

  Raises:
    TrackFileError (a ValueError) naming the file and the field for: unreadable
    or non-npz files, pickled (object) fields, missing fields, wrong shapes or
    dtypes, non-finite visible points, non-positive focal lengths.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise input_pipeline.TrackFileError(f'{path}: no such file.')
  if not zipfile.is_zipfile(path):
    raise input_pipeline.TrackFileError(f'{path}: not an .npz (zip) archive, or truncated.')
  try:
    npz = npz_io.NpzFields(path)
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise input_pipeline.TrackFileError(f'{path}: unreadable .npz: {type(e).__name__}: {e}') from None
  with npz:
    names = set(npz.files)
    if tapvid3d.TRACKS in names:
      npz.close()
      try:
        clip = tapvid3d.load_clip(path)
      except ValueError as e:
        raise input_pipeline.TrackFileError(str(e)) from None
      return input_pipeline.track_clip(clip)
    for field in ('tracks', 'visibility'):
      if field not in names:
        raise input_pipeline.TrackFileError(
            f'{path}: field {field!r} missing (need tracks [T, N, 2|3] and visibility '
            f'[T, N], or a TAPVid-3D clip with {tapvid3d.TRACKS}); has {sorted(names)}.')
    tracks = _numeric(path, 'tracks', _read_field(npz, path, 'tracks'))
    if tracks.ndim != 3 or tracks.shape[-1] not in (2, 3) or tracks.dtype == np.bool_:
      raise input_pipeline.TrackFileError(f'{path}: field "tracks" must be float [T, N, 2|3], got '
                           f'{tracks.dtype} {list(tracks.shape)}.')
    t_len, n = tracks.shape[:2]
    if t_len < 1 or n < 2:
      raise input_pipeline.TrackFileError(f'{path}: field "tracks" needs T >= 1 frames and N >= 2 '
                           f'tracks, got {list(tracks.shape)}.')
    visible = _numeric(path, 'visibility', _read_field(npz, path, 'visibility'))
    if visible.shape != (t_len, n):
      raise input_pipeline.TrackFileError(f'{path}: field "visibility" must be [{t_len}, {n}] like '
                           f'tracks, got {list(visible.shape)}.')
    visible = visible.astype(bool)
    tracks = tracks.astype(np.float32)
    bad = ~np.all(np.isfinite(tracks), axis=-1) & visible
    if bad.any():
      t, i = np.argwhere(bad)[0]
      raise input_pipeline.TrackFileError(f'{path}: field "tracks" has non-finite values at visible '
                           f'points ({int(bad.sum())}, first at frame {t}, track {i}).')
    tracks = np.where(np.isfinite(tracks), tracks, 0.0).astype(np.float32)
    out = clip_lib.Clip(
        tracks_xyz=tracks if tracks.shape[-1] == 3 else None,
        tracks_uv=tracks if tracks.shape[-1] == 2 else None, visibility=visible,
        queries_xyt=np.zeros((n, 3), np.float32), intrinsics=None,
        name=pathlib.Path(path).stem, path=path)
    query_frames = np.where(visible.any(axis=0), np.argmax(visible, axis=0), 0)
    if 'fx_fy_cx_cy' in names:
      k = _numeric(path, 'fx_fy_cx_cy', _read_field(npz, path, 'fx_fy_cx_cy'))
      k = np.asarray(k, np.float32).reshape(-1)
      if k.shape != (4,) or not np.all(np.isfinite(k)) or k[0] <= 0 or k[1] <= 0:
        raise input_pipeline.TrackFileError(f'{path}: field "fx_fy_cx_cy" must be 4 finite values with '
                             f'positive focal lengths, got {k.tolist()}.')
      out.intrinsics = k
    if 'depth' in names:
      depth = _numeric(path, 'depth', _read_field(npz, path, 'depth'))
      if depth.ndim != 3 or depth.shape[0] != t_len:
        raise input_pipeline.TrackFileError(f'{path}: field "depth" must be [{t_len}, H, W], got '
                             f'{list(depth.shape)}.')
      out.depth = depth.astype(np.float32)
    if 'frame_size' in names:
      size = _numeric(path, 'frame_size', _read_field(npz, path, 'frame_size')).reshape(-1)
      if size.shape != (2,) or np.any(size <= 0):
        raise input_pipeline.TrackFileError(f'{path}: field "frame_size" must be [2] positive (height, '
                             f'width), got {size.tolist()}.')
      out.image_size = (int(size[0]), int(size[1]))
    if 'query_frames' in names:
      q = _numeric(path, 'query_frames', _read_field(npz, path, 'query_frames'))
      q = np.asarray(q).reshape(-1)
      if q.shape != (n,) or np.any(q < 0) or np.any(q >= t_len):
        raise input_pipeline.TrackFileError(f'{path}: field "query_frames" must be [{n}] frames in '
                             f'[0, {t_len}).')
      query_frames = q.astype(np.int64)
  if out.tracks_xyz is None or out.intrinsics is not None:
    xy = input_pipeline.pixel_tracks(out)[query_frames, np.arange(n)]  # [N, 2]
  else:
    xy = np.full((n, 2), np.nan, np.float32)
  out.queries_xyt = np.concatenate(
      [xy, query_frames[:, None].astype(np.float32)], -1).astype(np.float32)
  return out


def expand_paths(items: Sequence[str]) -> list[str]:
  """Files as given; directories -> their `.npz` files (recursive, sorted)."""
  paths = []
  for item in items:
    if os.path.isdir(item):
      found = sorted(str(p) for p in pathlib.Path(item).rglob('*.npz'))
      if not found:
        raise input_pipeline.TrackFileError(f'{item}: directory holds no .npz track files.')
      paths += found
    elif not os.path.exists(item):
      raise input_pipeline.TrackFileError(f'{item}: no such file or directory.')
    else:
      paths.append(item)
  if not paths:
    raise input_pipeline.TrackFileError('no track files given.')
  return paths


def track_video_clip(tracker: Any, path: str, grid_size: int,
                     max_frames: int | None = None) -> clip_lib.Clip:
  """A raw video (file or frame folder, `tapkit.io.video.read_video`) tracked into a 2D Clip.

  A grid_size² grid (CoTracker's margin grid) queried on frame 0 of the first `max_frames`
  frames; `tracks_uv` [T, N, 2] pixels, the tracker's visibility, `image_size` (H, W).

  Raises:
    BadFileError: naming the video when it cannot be read.
  """
  video = video_io.read_video(path, max_frames=max_frames)
  result = tracker.track(video.frames, grid_size=grid_size, grid_query_frame=0)
  name = pathlib.Path(os.path.normpath(path)).name
  return clip_lib.Clip(
      tracks_xyz=None, tracks_uv=result.tracks, visibility=result.visible,
      queries_xyt=result.queries[:, [1, 2, 0]], intrinsics=None,
      image_size=tuple(int(v) for v in video.frames.shape[1:3]),
      name=name if os.path.isdir(path) else os.path.splitext(name)[0], path=path)


# ----------------------------------------------------------------------------
# Corruption (for checking that the score ranks implausible motion lower).


def corrupt_track_set(clip: clip_lib.Clip, seed: int = 0, jitter: float = 0.03,
                      teleport_fraction: float = 0.3, teleport_scale: float = 0.3
                      ) -> clip_lib.Clip:
  """Jitter + teleports: a copy with implausible motion.

  The unit u is the point's depth z for 3D tracks (metres) and the frame's short
  side for 2D tracks (pixels; 256 if unknown). Every point gets i.i.d.
  N(0, (jitter u)^2) noise per coordinate (2D: x, y; 3D: x, y; z keeps its
  sign), and a `teleport_fraction` of the tracks jump at a random frame by
  `teleport_scale * u` in a random direction and stay displaced.
  """
  rng = np.random.default_rng(seed)
  tracks = np.array(clip.tracks, np.float32, copy=True)
  t_len, n, c = tracks.shape
  if c == 3:
    unit = np.abs(tracks[..., 2:3]) + 1e-3  # [T, N, 1]
  else:
    frame_size = input_pipeline.known_frame_size(clip)
    unit = np.full((t_len, n, 1), float(min(frame_size)) if frame_size else 256.0)
  noise = rng.normal(size=(t_len, n, 2)).astype(np.float32)
  tracks[..., :2] += jitter * unit * noise
  jumpers = np.flatnonzero(rng.random(n) < teleport_fraction)
  for i in jumpers:
    t0 = int(rng.integers(0, t_len))
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    tracks[t0:, i, :2] += teleport_scale * unit[t0:, i] * direction.astype(np.float32)
  field = 'tracks_xyz' if clip.tracks_xyz is not None else 'tracks_uv'
  return dataclasses.replace(clip, name=input_pipeline.clip_name(clip) + '_corrupted',
                             **{field: tracks})


# ----------------------------------------------------------------------------
# Checkpoints.


def load_config_arg(arg: str) -> ml_collections.ConfigDict:
  """'configs/spa3d.py:smoke' -> get_config('smoke') of that file."""
  return config_lib.load_config(arg)


def find_workdir_config(checkpoint: str) -> ml_collections.ConfigDict | None:
  """config.json of the training workdir holding `checkpoint`, if any."""
  try:
    return workdir_lib.load_config(workdir_lib.find_workdir(checkpoint)[0])
  except workdir_lib.WorkdirError:
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
  model = model_lib.build_model_from_config(config)
  params = checkpoint_lib.load_params(checkpoint)
  inputs = model_lib.example_inputs(model, depth='depth_projection' in params)
  if 'dino_projection' in params:  # DINO width as stored (768 for DINOv2-base)
    width = np.shape(params['dino_projection'].get('kernel', np.zeros((768, 1))))[0]
    inputs['dino_features'] = np.zeros(inputs['support_tracks'].shape[:3] + (width,),
                                       np.float32)
  checkpoint_lib.check_params(
      params, checkpoint_lib.expected_param_shapes(model, inputs), checkpoint)
  return config, model, params


def reconstructor_from_checkpoint(checkpoint: str | None, config_arg: str | None = None,
                                  random_weights: bool = False
                                  ) -> tuple[ml_collections.ConfigDict,
                                             evaluators.Reconstructor]:
  """(config, Reconstructor) of a checkpoint; with `random_weights` and no checkpoint, a
  randomly initialised 3DSPA reading DINO and depth features (TESTING ONLY) of the
  --config model (default `RANDOM_SPA3D_CONFIG`)."""
  if checkpoint is None and random_weights:
    config = load_config_arg(config_arg or RANDOM_SPA3D_CONFIG)
    config.model.kind = '3dspa'
    model = model_lib.build_model_from_config(config)
    params = video_pipeline.random_spa3d_params(
        model, int(config.model.num_output_frames), video_pipeline.RANDOM_DINO_DIM, True)
  elif checkpoint is None:
    raise ValueError('--checkpoint is required (or a --config whose video section names it, '
                     'or --random_weights_for_testing)')
  else:
    config, model, params = load_checkpoint(checkpoint, config_arg)
  feats = {'dino': 'dino_projection' in params, 'depth': 'depth_projection' in params}
  return config, evaluators.Reconstructor(model, params, input_pipeline.coords_of(config),
                                          feats, config.data.normalize)


def dino_width(recon: evaluators.Reconstructor) -> int | None:
  """Width of the DINO features the model reads (None: it reads none)."""
  if not recon.dino:
    return None
  return int(np.shape(recon.params['dino_projection']['kernel'])[0])


# ----------------------------------------------------------------------------
# CLI.


CSV_FIELDS = ('name', 'path', 'score', 'average_jaccard', 'average_pts_within_thresh',
              'occlusion_accuracy', 'mean_error', 'error_units', 'num_frames',
              'num_tracks')
# Extra columns of 3D (3DSPA) video scoring.
VIDEO_3D_FIELDS = ('recipe', 'depth', 'weights')
RANDOM_LABEL = 'RANDOM (testing only, scores meaningless)'
# The 3DSPA model built by --random_weights_for_testing without --checkpoint / --config.
RANDOM_SPA3D_CONFIG = 'configs/spa3d.py:smoke'


PER_FRAME_FIELDS = ('jaccard', 'pts_within', 'occlusion_accuracy', 'mean_error')

# Default --max_tracks and --seed: the quickstart scores its clips with the same settings,
# so its report and this CLI print the same score for a clip.
DEFAULT_MAX_TRACKS = 2048
DEFAULT_SEED = 0


def write_csvs(out: str, rows: list[dict[str, Any]],
               per_frame: list[dict[str, np.ndarray]],
               fields: Sequence[str] = CSV_FIELDS) -> str:
  """Writes `out` (one row per video) and `<out stem>_per_frame.csv`; returns the latter."""
  tables.write_csv(out, rows, fields)
  frame_rows = [{'name': row['name'], 'frame': t, **{k: pf[k][t] for k in PER_FRAME_FIELDS}}
                for row, pf in zip(rows, per_frame) for t in range(len(pf['jaccard']))]
  return tables.write_csv(os.path.splitext(out)[0] + '_per_frame.csv', frame_rows,
                          ('name', 'frame') + PER_FRAME_FIELDS, fmt='.6g')


def plot_scores(path: str | None, rows: list[dict[str, Any]],
                per_frame: list[dict[str, np.ndarray]]) -> Any:
  """Per-frame Jaccard and error of every video (a Figure; also a PNG at `path` if given)."""
  jaccard, error = {}, {}
  for i, (row, pf) in enumerate(zip(rows, per_frame)):
    label = f'{row["name"]} ({row["score"]:.3f})'
    label = label if label not in jaccard else f'{label} #{i}'
    jaccard[label], error[label] = pf['jaccard'], pf['mean_error']
  units = f'mean error [{rows[0]["error_units"]}]' if rows else 'mean error'
  return plots.plot_score_panels(
      [('per-frame Jaccard', jaccard), (units, error)], ylims=[(0, 1), None],
      title='Reconstruction score per frame (higher Jaccard = more plausible)', path=path)


def write_report(directory: str, rows: list[dict[str, Any]],
                 per_frame: list[dict[str, np.ndarray]], fields: Sequence[str],
                 settings: dict[str, Any], random_weights: bool) -> tuple[str, str]:
  """report.html + report.md in `directory`: settings, scores, per-frame plot and, for 3D
  video scoring, the released-vs-corrected recipe table. Returns their paths."""
  report = html.Report('Motion realism scores (TRAJAN / 3DSPA reconstruction)')
  if random_weights:
    report.add_text(f'WEIGHTS: {RANDOM_LABEL}. Networks were randomly initialised by '
                    '--random_weights_for_testing; these numbers only show that the '
                    'pipeline runs.')
  report.add_section('Settings')
  report.add_table([{'setting': k, 'value': str(v)} for k, v in settings.items()])
  report.add_section('Scores per video')
  report.add_text('score = average Jaccard of the held-out reconstruction (higher = more '
                  'plausible motion).')
  report.add_table(rows, list(fields))
  report.add_image(plot_scores(None, rows, per_frame), caption='Per-frame scores',
                   name='per_frame')
  if 'recipe' in fields:
    report.add_section('Recipes')
    report.add_table([{'step': a, 'released': b, 'corrected': c}
                      for a, b, c in video_pipeline.RECIPE_DIFFERENCES])
  return report.write(directory)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = cli.ArgumentParser(
      prog='python -m trajan3d.score',
      description='Per-video motion realism score from TRAJAN/3DSPA reconstruction.')
  parser.add_argument('--tracks', nargs='+',
                      help='track files (.npz) and/or directories of them')
  parser.add_argument('--video', nargs='+',
                      help='instead of --tracks: videos (files, frame folders, or folders of '
                           'them), grid-tracked first (TRAJAN: 2D; 3DSPA: lifted to 3D)')
  parser.add_argument('--mode', default='auto', choices=('auto', '2d', '3d'),
                      help='with --video: auto = 3D when the model reads DINO / depth features')
  parser.add_argument('--recipe', default=None, choices=video_pipeline.RECIPES,
                      help='3D video scoring: corrected (default) or released (bit for bit, '
                           'mistakes included)')
  parser.add_argument('--tracker', default=None,
                      help="with --video: 'lk' (default), 'cotracker3' or 'cotracker3_online'")
  parser.add_argument('--tracker_checkpoint', default=None,
                      help='with --video: weights of a learned tracker (CoTracker3 .pth)')
  parser.add_argument('--grid_size', type=int, default=None,
                      help='with --video: grid_size² query points on frame 0 (default 32 in '
                           '2D, 64 in 3D as released)')
  parser.add_argument('--depth_checkpoint', default=None,
                      help='3D: Video Depth Anything [metric_]video_depth_anything_*.pth')
  parser.add_argument('--depth_encoder', default=None, choices=('vits', 'vitb', 'vitl'),
                      help='3D: depth encoder (default: inferred from the checkpoint)')
  parser.add_argument('--depth_metric', action='store_true', default=None,
                      help='3D: the depth checkpoint is metric (default: file name starts '
                           'with metric_)')
  parser.add_argument('--depth_input_size', type=int, default=None,
                      help='3D: depth network short side in pixels (518 as released)')
  parser.add_argument('--dino_checkpoint', default=None,
                      help='3D: DINOv2 weights (transformers .safetensors / .npz or hub .pth)')
  parser.add_argument('--focal', type=float, default=None,
                      help='3D, corrected recipe: focal length in pixels (default max(H, W))')
  parser.add_argument('--random_weights_for_testing', action='store_true',
                      help='TESTING ONLY: random tracker / depth / DINO (and 3DSPA without '
                           '--checkpoint) weights; the scores are meaningless')
  parser.add_argument('--checkpoint', default=None,
                      help='training workdir, orbax checkpoint dir or official .npz')
  parser.add_argument('--config', default=None,
                      help="model config 'file.py:preset' (default: the workdir's "
                           'config.json); its optional video section names the 3D checkpoints')
  parser.add_argument('--out', required=True, help='CSV, one row per video')
  parser.add_argument('--plot', default=None, help='PNG of the per-frame scores')
  parser.add_argument('--report', default=None,
                      help='folder for report.html / report.md (scores, plot, settings)')
  parser.add_argument('--num_support', type=int, default=None,
                      help='support tracks per fold (default config.evals.eval.num_support)')
  parser.add_argument('--num_query', type=int, default=None,
                      help='tracks per fold (default config.evals.eval.num_query)')
  parser.add_argument('--max_tracks', type=int, default=DEFAULT_MAX_TRACKS,
                      help='score at most this many tracks per video (0 = all)')
  parser.add_argument('--seed', type=int, default=DEFAULT_SEED)
  args = parser.parse_args(argv)
  if bool(args.tracks) == bool(args.video):
    parser.error('give one of --tracks and --video')
  if args.random_weights_for_testing and not args.video:
    parser.error('--random_weights_for_testing needs --video')
  return args


def video_options(args: argparse.Namespace) -> tuple[str | None, video_pipeline.VideoOptions]:
  """(3DSPA checkpoint, pipeline options): each flag, else the --config file's `video`
  section (configs/spa3d_video.py), else the default."""
  section = {}
  if args.config:
    config = load_config_arg(args.config)
    section = dict(config.get('video', None) or {})
  pick = lambda flag, key, default=None: (
      flag if flag is not None else (section.get(key) if section.get(key) not in ('', None)
                                     else default))
  options = video_pipeline.VideoOptions(
      recipe=pick(args.recipe, 'recipe', 'corrected'),
      tracker=pick(args.tracker, 'tracker', 'lk'),
      tracker_checkpoint=pick(args.tracker_checkpoint, 'tracker_checkpoint'),
      depth_checkpoint=pick(args.depth_checkpoint, 'depth_checkpoint'),
      depth_encoder=pick(args.depth_encoder, 'depth_encoder'),
      depth_metric=pick(args.depth_metric, 'depth_metric'),
      depth_input_size=int(pick(args.depth_input_size, 'depth_input_size', 518)),
      dino_checkpoint=pick(args.dino_checkpoint, 'dino_checkpoint'),
      grid_size=int(pick(args.grid_size, 'grid_size', video_pipeline.RELEASED_GRID_SIZE)),
      focal=pick(args.focal, 'focal'), random_weights=args.random_weights_for_testing)
  video_pipeline.check_recipe(options.recipe)
  if options.depth_input_size < 14:
    raise ValueError(f'--depth_input_size must be >= 14, got {options.depth_input_size}')
  return pick(args.checkpoint, 'checkpoint'), options


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """Runs the CLI; returns one row per scored file. A bad track file is listed with its
  reason and the others are scored; missing inputs or an unreadable checkpoint exit with
  one `error:` line and status 2, a run that scores no file with status 1."""
  args = parse_args(argv)
  mode, models, fields = '2d', None, CSV_FIELDS
  try:
    checkpoint, options = video_options(args) if args.video else (args.checkpoint, None)
    config, recon = reconstructor_from_checkpoint(checkpoint, args.config,
                                                  args.random_weights_for_testing)
    if args.video:
      reads_features = recon.dino or recon.depth
      mode = args.mode if args.mode != 'auto' else ('3d' if reads_features else '2d')
      if mode == '3d':
        if recon.coords != 'xyz':
          raise ValueError(f'--mode 3d scores 3D tracks: {checkpoint} is a 2D (TRAJAN) model')
        models = video_pipeline.load_video_models(options, dino_width(recon))
        fields = CSV_FIELDS + VIDEO_3D_FIELDS
      elif recon.coords != 'uv':
        raise ValueError(f'--video scores 2D tracks: {checkpoint} is a 3D model '
                         f'(coords {recon.coords!r}) without DINO / depth inputs; use a '
                         'TRAJAN checkpoint or --mode 3d')
      else:
        tracker = tracking.make_tracker(options.tracker, options.tracker_checkpoint)
      paths = [p for item in args.video for p in video_io.list_videos(item)]
    else:
      paths = expand_paths(args.tracks)
  except ValueError as e:
    raise cli.UserError(batch_lib.describe(e)) from e
  if args.random_weights_for_testing:
    print(f'WARNING: --random_weights_for_testing: weights {RANDOM_LABEL}', file=sys.stderr)
  num_support = args.num_support or int(config.evals.eval.num_support)
  num_query = args.num_query or int(config.evals.eval.num_query)
  extra = {}
  if models is not None:
    extra = {'recipe': options.recipe,
             'depth': 'metric' if models.depth.metric else 'relative inverse',
             'weights': RANDOM_LABEL if options.random_weights else 'checkpoints'}
    if not models.depth.metric:  # Lifted from relative depth: no metric scale.
      extra['error_units'] = 'scene units'
  rows, frames = [], []
  batch = batch_lib.BatchRun('video' if args.video else 'track file')

  def score_one(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if models is not None:
      clip = video_pipeline.video_clip(models, path, recon.num_frames)
    elif args.video:
      clip = track_video_clip(tracker, path, args.grid_size or 32, recon.num_frames)
    else:
      clip = load_track_file(path)
    return evaluators.score_clip(recon, clip, num_support, num_query, args.seed,
                                 args.max_tracks or None)

  for path in tqdm.tqdm(paths, desc='scoring', unit='video', file=sys.stderr):
    result = batch.run(path, lambda path=path: score_one(path))
    if result is None:
      continue
    row, pf = result
    row.update(path=path, **extra)
    rows.append(row)
    frames.append(pf)
  if not rows:
    print(batch.summary())
    raise SystemExit(batch.exit_status())
  frame_csv = write_csvs(args.out, rows, frames, fields)
  if args.plot:
    plot_scores(args.plot, rows, frames)
  written = [args.out, frame_csv] + ([args.plot] if args.plot else [])
  if args.report:
    settings = {'mode': mode, 'checkpoint': checkpoint or '(random)', **(
        dataclasses.asdict(options) if models is not None else {})}
    written += write_report(args.report, rows, frames, fields, settings,
                            args.random_weights_for_testing)
  label = f'  [weights {RANDOM_LABEL}]' if args.random_weights_for_testing else ''
  for row in rows:
    print(f'{row["name"]:<32} score {row["score"]:.4f}  mean error {row["mean_error"]:.4f} '
          f'{row["error_units"]}{label}')
  print('wrote ' + ' and '.join(written))
  print(batch.summary())
  return rows


if __name__ == '__main__':
  cli.run(main)
