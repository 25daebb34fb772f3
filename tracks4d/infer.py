"""TracksTo4D inference (optionally with test-time fine-tuning) on clip files.

    python -m tracks4d.infer --checkpoint CKPT --input FILE_OR_DIR --out DIR \
        [--finetune_steps 500] [--max_frames 50] [--max_points 1000]
    python -m tracks4d.infer --checkpoint CKPT --video VIDEO_OR_DIR --out DIR \
        [--tracker lk|cotracker3 --tracker_checkpoint scaled_offline.pth]

CKPT is one of
  * an official checkpoint: `.pt` (torch.save dict or bare state dict) or a flat `.npz`
    state dict (read by `tracks4d.checkpoint`, never unpickling arbitrary objects). The
    network is the paper's (`TracksTo4D()`; `--predict_focal_length` for the variant
    that predicts a focal correction); fine-tuning continues from the checkpoint's Adam
    state when it has one (official).
  * an engine workdir (`python -m tracks4d.train --workdir W`), or one of its orbax
    checkpoints `W/checkpoints/<step>`: the params (and the Adam moments, reused by
    fine-tuning) are read with `tapkit.train.workdir.load_state`, and the model
    config is recovered from `W/config.json` (`model` entry, see `task.build_model`);
    without `--step` the latest checkpoint is used.

Input: TracksTo4D `.npz` files or TAPVid-3D clip files (converted with
`tapkit.data.tracks4d_format.clip_to_tracks4d`), one file or every `*.npz` of a folder.
With --video, each video (file, frame folder, or a folder of them) is first tracked as the
official preprocessing does (`tracks4d.from_video`: 15 x 15 grids at frames 0, 20, 40, ...
and at the last frame, backward tracking) into <out>/tracks/<name>.npz, and read with the
generic intrinsics. Each video is read as the official inference does: fixed window of the
first min(max_frames, T) frames, up to max_points eligible tracks (shuffled with a
seeded generator), normalised by the inverse intrinsics (the file's `Ks_all`, else the
generic K: focal (mx + my) / 2 and principal point (mx / 2, my / 2) from the per-axis
maxima mx, my of the visible track positions).

Outputs in --out, per video `<name>`:
  <name>.npz   points_world [F, N, 3]   dynamic 3D points per frame (predicted world frame)
               points_static [N, 3]     static (basis 0) points
               points_camera [F, N, 3]  dynamic points in each camera's frame
               depths [F, N]            camera z of the dynamic points
               w2c [F, 4, 4]            world-to-camera poses;  c2w [F, 4, 4] their inverses
               intrinsics [F, 3, 3]     pixels, the K used for normalisation
               focal_factor [F]         predicted focal correction (1 when not predicted)
               motion_level [N]         per-point NR (> 0; large = moving / badly static)
               visible [F, N] bool      input visibility
               tracks_normalised [F, N, 2]  network input x, y (normalised image coords)
               track_indices [N] int64  indices of the tracks in the file
               frame_start [] int64     first frame of the window (0)
  <name>.html  offline interactive 3D view: dynamic points coloured by motion level
               (plasma map of log NR: dark = static, yellow = moving), camera frusta,
               time slider (`tapkit.viz.tracks3d.interactive_html`)
  metrics.json per-video metrics when GT is present (pixel reprojection error px; depth
               AbsRel and delta_1 after per-frame median scaling; ATE / RPE in GT units
               and degrees after Sim(3) alignment; NaN where GT is missing), the
               pre-fine-tuning metrics too when fine-tuning, timings (forward_seconds
               includes compilation the first time a track count N is seen), and means.
               The same table is printed.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import flags
from etils import epy

from tapkit import cli
from tapkit import track as track_cli
from tapkit import tracking
from tapkit.data import geometry
from tapkit.io import batch as batch_lib
from tapkit.io import video as video_io
from tapkit.train import launch
from tapkit.train import workdir as workdir_lib
from tracks4d import checkpoint as t4d_checkpoint
from tracks4d import data as data_lib
from tracks4d import from_video

# Loaded on first use, so `--help` and flag mistakes answer without importing JAX.
with epy.lazy_imports():
  import jax
  import jax.numpy as jnp
  from tracks4d import finetune as finetune_lib
  from tracks4d import model as model_lib
  from tracks4d import task

OUTPUT_KEYS = ('points_world', 'points_static', 'points_camera', 'depths', 'w2c', 'c2w',
               'intrinsics', 'focal_factor', 'motion_level', 'visible', 'tracks_normalised',
               'track_indices', 'frame_start')
METRIC_COLUMNS = (('ate', 'ATE'), ('rpe_trans', 'RPE_t'), ('rpe_rot', 'RPE_r deg'),
                  ('pixel_error', 'px err'), ('abs_rel', 'AbsRel'), ('delta_1', 'd1'))


# --------------------------------------------------------------------- checkpoints


class LoadedModel:
  """A network, its params and (optionally) the Adam moments to fine-tune from."""

  def __init__(self, net: model_lib.TracksTo4D, params: Any,
               adam: t4d_checkpoint.AdamMoments | None, source: str):
    self.net, self.params, self.adam, self.source = net, params, adam, source


def _find_adam(tree: Any) -> dict[str, Any] | None:
  """The first {count, mu, nu} node of a restored optax state (nested dicts/lists)."""
  if isinstance(tree, Mapping):
    if {'count', 'mu', 'nu'} <= set(tree):
      return dict(tree)
    children = tree.values()
  elif isinstance(tree, (list, tuple)):
    children = tree
  else:
    return None
  for child in children:
    found = _find_adam(child)
    if found is not None:
      return found
  return None


def _resolve_workdir(path: pathlib.Path) -> tuple[pathlib.Path, int | None]:
  """(workdir, step) for a workdir, `W/checkpoints/<step>` or `W/checkpoints/<step>/state`."""
  return workdir_lib.find_workdir(path)


def load_model(checkpoint: str | os.PathLike, step: int | None = None,
               predict_focal_length: bool = False) -> LoadedModel:
  """Loads an official checkpoint or an engine workdir / orbax checkpoint (module doc)."""
  path = pathlib.Path(checkpoint)
  if path.is_file():
    ckpt = t4d_checkpoint.load_torch_checkpoint(path)
    net = model_lib.TracksTo4D(predict_focal_length=predict_focal_length)
    adam = ckpt.adam_state() if ckpt.optimizer_state is not None else None
    return LoadedModel(net, ckpt.params, adam, str(path))
  if not path.is_dir():
    raise FileNotFoundError(f'{path}: checkpoint not found')
  workdir, dir_step = _resolve_workdir(path)
  config = workdir_lib.load_config(workdir, required=('model',), method='tracks4d')
  net = task.build_model(config['model'])
  step = dir_step if step is None else step
  got_step, state = workdir_lib.load_state(workdir, step)
  params = state['params']
  found = _find_adam(state.get('opt_state'))
  adam = None
  if found is not None:
    opt = config.get('optimizer', {})
    adam = t4d_checkpoint.AdamMoments(
        mu=found['mu'], nu=found['nu'], count=int(found['count']),
        lr=float(opt.get('lr', finetune_lib.LEARNING_RATE)),
        betas=(float(opt.get('b1', 0.9)), float(opt.get('b2', 0.999))),
        eps=float(opt.get('eps', 1e-8)))
  return LoadedModel(net, params, adam, f'{workdir} (step {got_step})')


# ------------------------------------------------------------------------ outputs


def _c2w_and_w2c(c2w_rot: np.ndarray, c2w_trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[F, 4, 4] float32 c2w and w2c from float64 rotations [F, 3, 3] and centres [F, 3]."""
  c2w = geometry.rigid_matrix(c2w_rot, c2w_trans)
  return c2w.astype(np.float32), geometry.invert_pose(c2w).astype(np.float32)


def prediction_arrays(out: model_lib.TracksTo4DOutput, sample: Mapping[str, Any]
                      ) -> dict[str, np.ndarray]:
  """The per-video output arrays (see the module docstring) of one forward pass."""
  g = lambda x: np.asarray(x, np.float64)[0]
  rot, trans = g(out.rotations), g(out.translations)
  c2w, w2c = _c2w_and_w2c(rot, trans)
  return {
      'points_world': np.transpose(g(out.points3d), (0, 2, 1)).astype(np.float32),
      'points_static': g(out.bases)[:, :, 0].astype(np.float32),
      'points_camera': np.transpose(g(out.points3d_camera), (0, 2, 1)).astype(np.float32),
      'depths': g(out.depths).astype(np.float32),
      'w2c': w2c, 'c2w': c2w,
      'intrinsics': np.asarray(sample['GT_Ks'], np.float32),
      'focal_factor': g(out.focal)[:, 0].astype(np.float32),
      'motion_level': g(out.nr).astype(np.float32),
      'visible': np.asarray(sample['tracks_vis'], bool),
      'tracks_normalised': np.transpose(np.asarray(sample['tracks'])[:, :2, :], (2, 0, 1)
                                        ).astype(np.float32),
      'track_indices': np.asarray(sample['selected_inds'], np.int64),
      'frame_start': np.asarray(sample['start_ind'], np.int64),
  }


def write_html(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], title: str) -> str:
  """Interactive 3D view: dynamic points coloured by log motion level, camera frusta."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  from tapkit.viz import tracks3d  # pylint: disable=g-import-not-at-top
  k = arrays['intrinsics'][0]
  level = np.log(arrays['motion_level'].astype(np.float64))  # [N]
  span = max(float(level.max() - level.min()), 1e-12)
  colors = colormaps['plasma']((level - level.min()) / span)[:, :3]  # [N, 3] in [0, 1]
  image_size = (int(round(2 * k[1, 2])), int(round(2 * k[0, 2])))
  return tracks3d.interactive_html(
      path, arrays['points_world'], colors, arrays['w2c'],
      (float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])),
      title, visible=arrays['visible'], image_size=image_size)


# ----------------------------------------------------------------------- pipeline


def infer_video(model: LoadedModel, path: str, out_dir: str | os.PathLike, *,
                finetune_steps: int = 0, finetune_lr: float | None = None,
                max_frames: int = data_lib.INFERENCE_MAX_CAMERAS,
                max_points: int = data_lib.INFERENCE_MAX_POINTS, seed: int = 0,
                generic_intrinsics: bool = False, html: bool = True) -> dict[str, Any]:
  """Runs one video; writes `<name>.npz` (and `.html`); returns its metrics row."""
  name = pathlib.Path(path).stem
  target = pathlib.Path(out_dir) / f'{name}.npz'
  if target.exists() and target.resolve() == pathlib.Path(path).resolve():
    raise ValueError(f'{path}: the output {target} would overwrite the input; choose another '
                     '--out folder')
  arrays_in = task.load_clip_arrays(path)
  sample = data_lib.sample_clip(arrays_in, max_cameras=max_frames, max_points=max_points,
                                rng=np.random.default_rng(seed),
                                predict_focal_length=generic_intrinsics, source=path)
  if sample['num_actual_tracklets'] == 0:
    raise ValueError(f'{path}: no track is eligible in the first {sample["camera_num"]} '
                     'frames (queried inside the window and visible in more than 10 frames)')
  sample = data_lib.truncate_to_real(sample)
  tracks = jnp.asarray(sample['tracks'][None])  # [1, N, 3, F]
  row: dict[str, Any] = {'video': name, 'num_frames': int(sample['camera_num']),
                         'num_points': int(sample['num_actual_tracklets'])}
  params = model.params
  if finetune_steps > 0:
    before = task.forward(model.net, params, tracks)
    row['before_finetune'] = task.evaluate_output(before, sample)
    t0 = time.perf_counter()
    result = finetune_lib.finetune(
        params, tracks, jnp.asarray(sample['tracks_vis'][None]), finetune_steps,
        net=model.net, adam_moments=model.adam,
        learning_rate=finetune_lib.LEARNING_RATE if finetune_lr is None else finetune_lr)
    jax.block_until_ready(result.params)
    row['finetune_seconds'] = time.perf_counter() - t0
    row['finetune_best_step'] = result.best_step
    row['finetune_loss_first'] = float(result.loss_history[0, 0])
    row['finetune_loss_best'] = result.best_loss
    params = result.params
  t0 = time.perf_counter()
  out = jax.block_until_ready(task.forward(model.net, params, tracks))
  row['forward_seconds'] = time.perf_counter() - t0
  row.update(task.evaluate_output(out, sample))
  arrays = prediction_arrays(out, sample)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(out_dir / f'{name}.npz', **arrays)
  if html:
    write_html(out_dir / f'{name}.html', arrays, f'TracksTo4D: {name}')
  return row


def _fmt(v: Any) -> str:
  return 'nan' if v is None or not np.isfinite(v) else f'{v:.4g}'


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
  """Plain-text table of the per-video metrics and their means."""
  header = ['video'] + [label for _, label in METRIC_COLUMNS]
  lines = [header]
  for r in rows:
    lines.append([r['video']] + [_fmt(r.get(k)) for k, _ in METRIC_COLUMNS])
    if 'before_finetune' in r:
      lines.append(['  (before ft)'] + [_fmt(r['before_finetune'].get(k))
                                        for k, _ in METRIC_COLUMNS])
  means = summarize(rows)
  lines.append(['mean'] + [_fmt(means.get(k)) for k, _ in METRIC_COLUMNS])
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  return '\n'.join('  '.join(c.ljust(w) for c, w in zip(line, widths)) for line in lines)


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """Means over videos of the metric columns (NaN entries ignored)."""
  out = {}
  for key, _ in METRIC_COLUMNS:
    vals = np.array([r.get(key, np.nan) for r in rows], np.float64)
    out[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float('nan')
  return out


def run(checkpoint: str, inputs: Sequence[str], out_dir: str, *, finetune_steps: int = 0,
        step: int | None = None, predict_focal_length: bool = False, **kwargs
        ) -> dict[str, Any]:
  """Loads the model once, runs every input, writes metrics.json; returns its content.

  A clip that cannot be read or processed does not stop the run: it is listed with its
  reason under 'failed' ([{'video': path, 'reason': message}]).
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  model = load_model(checkpoint, step, predict_focal_length)
  batch = batch_lib.BatchRun('video')
  rows = []
  for path in tqdm(inputs, desc='videos', unit='video', disable=len(inputs) < 2):
    row = batch.run(path, lambda path=path: infer_video(
        model, path, out_dir, finetune_steps=finetune_steps, **kwargs))
    if row is not None:
      rows.append(row)
  result = {'checkpoint': model.source, 'finetune_steps': finetune_steps, 'videos': rows,
            'mean': summarize(rows),
            'failed': [{'video': k, 'reason': r} for k, r in batch.failures]}
  if finetune_steps > 0:
    result['mean_before_finetune'] = summarize([r['before_finetune'] for r in rows])
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
    json.dump(result, f, indent=2, default=lambda o: None if o is None else float(o))
  return result


# ---------------------------------------------------------------------------- CLI

_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Official .pt / .npz, or an engine '
                                  'workdir or W/checkpoints/<step>.')
_INPUT = flags.DEFINE_string('input', None, 'Clip file or folder of *.npz clip files '
                             '(TracksTo4D or TAPVid-3D).')
_OUT = flags.DEFINE_string('out', None, 'Output folder.')
_FINETUNE_STEPS = flags.DEFINE_integer('finetune_steps', 0, 'Test-time fine-tuning Adam '
                                       'steps per video (README of the paper: 500).')
_FINETUNE_LR = flags.DEFINE_float('finetune_lr', None, 'Fine-tuning learning rate (default: '
                                  'the official 1e-4, tracks4d.finetune.LEARNING_RATE).')
_STEP = flags.DEFINE_integer('step', None, 'Engine checkpoint step (default: latest).')
_MAX_FRAMES = flags.DEFINE_integer('max_frames', data_lib.INFERENCE_MAX_CAMERAS,
                                   'Frames of the fixed window (official 50).')
_MAX_POINTS = flags.DEFINE_integer('max_points', data_lib.INFERENCE_MAX_POINTS,
                                   'Most tracks per video (official 1000).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seeds the track shuffle.')
_PFL = flags.DEFINE_bool('predict_focal_length', False, 'Official checkpoints only: the '
                         'network variant predicting a focal correction.')
_GENERIC_K = flags.DEFINE_bool('generic_intrinsics', False, 'Ignore Ks_all and use the '
                               'generic K from the track extent (max visible x, y as image size).')
_NO_HTML = flags.DEFINE_bool('no_html', False, 'Skip the HTML views.')
_VIDEO = flags.DEFINE_string('video', None, 'Instead of --input: a video file, frame folder or '
                             'folder of videos, tracked first (tracks4d/from_video.py) into '
                             '<out>/tracks/<name>.npz.')
_TRACKER = flags.DEFINE_string('tracker', 'lk', "With --video: 'lk', 'cotracker3' or "
                               "'cotracker3_online' (tapkit.tracking).")
_TRACKER_CKPT = flags.DEFINE_string('tracker_checkpoint', None, 'With --video: weights of a '
                                    'learned tracker (CoTracker3 .pth).')
_GRID_SIZE = flags.DEFINE_integer('grid_size', 15, 'With --video: query grid side per query '
                                  'frame (official 15).')
_QUERY_EVERY = flags.DEFINE_integer('query_every', 20, 'With --video: a grid every this many '
                                    'frames, plus one on the last frame (official 20).')


def track_videos(video: str, out_dir: str) -> list[str]:
  """--video: tracks every video into <out_dir>/tracks/<name>.npz; returns those files
  (videos that cannot be read or tracked are reported and skipped)."""
  tracker = tracking.make_tracker(_TRACKER.value, _TRACKER_CKPT.value)
  files, taken = [], set()
  for path in video_io.list_videos(video):
    target = os.path.join(out_dir, 'tracks', track_cli.output_name(path, taken) + '.npz')
    try:
      files.append(from_video.track_video_file(tracker, path, target, grid_size=_GRID_SIZE.value,
                                               every=_QUERY_EVERY.value))
    except ValueError as e:  # BadFileError included
      print(f'skipped {path}: {e}')
  if not files:
    raise cli.UserError(f'--video {video}: no video could be read and tracked')
  return files


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise cli.UserError(f'unexpected arguments {argv[1:]}; flags are written --name=value '
                        '(see --help)')
  if not (_CHECKPOINT.value and _OUT.value) or bool(_INPUT.value) == bool(_VIDEO.value):
    raise cli.UserError('--checkpoint, --out and one of --input / --video are required '
                        '(see --help).')
  try:
    if _VIDEO.value:
      inputs = track_videos(_VIDEO.value, _OUT.value)
    else:
      inputs = batch_lib.input_files(_INPUT.value, ('*.npz',), what='--input')
  except batch_lib.InputError as e:
    return batch_lib.usage_error(e)
  try:
    result = run(_CHECKPOINT.value, inputs, _OUT.value, finetune_steps=_FINETUNE_STEPS.value,
                 step=_STEP.value, predict_focal_length=_PFL.value,
                 finetune_lr=_FINETUNE_LR.value, max_frames=_MAX_FRAMES.value,
                 max_points=_MAX_POINTS.value, seed=_SEED.value,
                 generic_intrinsics=_GENERIC_K.value or bool(_VIDEO.value),
                 html=not _NO_HTML.value)
  except (ValueError, FileNotFoundError) as e:  # The checkpoint: nothing can run without it.
    return batch_lib.usage_error(batch_lib.describe(e))
  print(f'checkpoint: {result["checkpoint"]}; fine-tuning steps: {_FINETUNE_STEPS.value}')
  if result['videos']:
    print(format_table(result['videos']))
  failed = result['failed']
  print(f'wrote {len(result["videos"])} of {len(inputs)} video(s) and metrics.json to '
        f'{_OUT.value}' + (f'; {len(failed)} failed:' if failed else ''))
  for entry in failed:
    print(f'  {entry["video"]}: {entry["reason"]}')
  return batch_lib.EXIT_OK if result['videos'] else batch_lib.EXIT_NOTHING_PROCESSED


if __name__ == '__main__':
  launch.run_absl(main)
