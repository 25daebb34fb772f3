"""TracksTo4D as a training-engine `Method`: data, sampling, loss phases, evaluation.

    python -m tracks4d.train --config configs/tracks4d.py:smoke --workdir /tmp/t4d

Pieces (the official reader's sampling, train.py's losses and schedule, inference.py's metrics):
  * `Tracks4DFileSource`: grain source over clip files, each either an official
    TracksTo4D `.npz` or a TAPVid-3D clip (converted with `clip_to_tracks4d`).
  * `SampleWindows`: per-record window / point sampling (see `tracks4d.data`) producing
    fixed, padded shapes so that records stack into batches:
      fixed/tracks [N, 3, F1] f32   fixed window from frame 0, F1 = first_phase_frames
      fixed/visible [F1, N] bool    (False on padded frames and points)
      fixed/point_mask [N] bool, fixed/frame_mask [F1] bool
      random/...  the same with F2 = max_cameras - 1 frames (random window, only when
                  random windows are enabled)
    N = data.max_points. Padded points are copies of the file's track 0 (official) and
    are masked out of attention keys, the camera pooling and every loss term; padded
    frames (random windows shorter than F2, files shorter than F1) repeat the last real
    frame's positions with visibility 0 and are masked out of the losses (they still
    take part in the frame attention and the circular camera convolution: the model
    has no frame mask).
  * `loss_fn`: the camera-initialisation loss (`losses.camera_init_loss`) while
    step < camera_init_until_epoch * steps_per_epoch and until it first falls below
    1e-4 (a flag in `state.extra`); afterwards the total loss (`losses.loss_terms`), clamped at 100
    from clamp_from_epoch on; fixed windows before random_window_from_epoch, random
    windows after (selected with `lax.cond`, so only one branch runs). Epochs are
    passes over the training files (steps_per_epoch = ceil(files / batch_size)).
  * evaluation (`tracks4d.held_out` in tracks4d/evaluators.py, run by the engine
    from `config.evals`): `eval_samples` / `evaluate_params` below, the official
    metrics of one forward pass per held-out file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import grain.python as grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from tapkit.data import arrayrecord
from tapkit.data import pipeline
from tapkit.data import synthetic
from tapkit.models import jitted
from tapkit.train import accumulation
from tapkit.train import config as config_lib
from tapkit.train import loop
from tapkit.train import precision as precision_lib
from tracks4d import data as data_lib
from tracks4d import evaluation
from tracks4d import losses
from tracks4d import model as model_lib

# The config file whose base preset lists every key this method reads.
CONFIG_FILE = 'configs/tracks4d.py'
_PRECISIONS = {'highest': jax.lax.Precision.HIGHEST, 'high': jax.lax.Precision.HIGH,
               'default': jax.lax.Precision.DEFAULT}
MODEL_FIELDS = ('width', 'num_layers', 'num_heads', 'head_dim', 'mlp_dim', 'positional_dim',
                'num_bases', 'camera_kernel_size', 'predict_focal_length')


# ------------------------------------------------------------------------- model


def build_model(model_config: Mapping[str, Any], *, dtype: Any = jnp.float32,
                remat: str = 'none') -> model_lib.TracksTo4D:
  """`TracksTo4D` from `config.model` (missing keys keep the paper sizes).

  Keys: width, num_layers, num_heads, head_dim, mlp_dim, positional_dim, num_bases,
  camera_kernel_size, predict_focal_length, precision ('highest' | 'high' | 'default').
  `dtype` (compute dtype, from config.precision) and `remat` (config.remat) are the
  training-time settings of tapkit/train/precision.py.
  """
  config_lib.check_keys(model_config, (*MODEL_FIELDS, 'precision'), 'model')
  cfg = dict(model_config)
  precision = cfg.pop('precision', 'highest')
  if precision not in _PRECISIONS:
    raise ValueError(f'config.model.precision must be one of {sorted(_PRECISIONS)}, '
                     f'got {precision!r}')
  return model_lib.TracksTo4D(precision=_PRECISIONS[precision], dtype=dtype, remat=remat, **cfg)


# -------------------------------------------------------------------------- files


def load_clip_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Official TracksTo4D arrays of a clip file (TracksTo4D `.npz` or TAPVid-3D clip).

  The kind is recognised by its fields (`pred_tracks` vs `tracks_XYZ`); both readers
  validate and refuse pickles.

  Raises:
    ValueError naming the file when it is neither kind.
  """
  from tapkit.data import tapvid3d, tracks4d_format  # pylint: disable=g-import-not-at-top
  name = os.fspath(path)
  from tapkit.io import npz as npz_io  # pylint: disable=g-import-not-at-top
  fields = set(npz_io.list_fields(name))
  if 'pred_tracks' in fields:
    return tracks4d_format.load_tracks4d_npz(name)
  if tapvid3d.TRACKS in fields:
    return tracks4d_format.clip_to_tracks4d(tapvid3d.load_clip(name))
  raise ValueError(f'{name}: neither a TracksTo4D file (field pred_tracks) nor a TAPVid-3D '
                   f'clip (field {tapvid3d.TRACKS}); fields: {sorted(fields)}')


def list_clip_files(path: str | os.PathLike, pattern: str = '*.npz') -> list[str]:
  """A file, or the sorted files matching `pattern` in a directory."""
  p = pathlib.Path(path)
  if p.is_file():
    return [str(p)]
  if not p.is_dir():
    raise FileNotFoundError(f'{p}: no such file or directory')
  files = sorted(str(f) for f in p.glob(pattern) if f.is_file())
  if not files:
    raise FileNotFoundError(f'{p}: no files matching {pattern!r}')
  return files


class Tracks4DFileSource(grain.RandomAccessDataSource):
  """Random access over clip files -> official TracksTo4D array dicts (cached)."""

  def __init__(self, paths: Sequence[str], name: str = 'tracks4d'):
    if not paths:
      raise ValueError(f'{name}: no clip files')
    self._paths = list(paths)
    self._name = name
    self._cache: dict[int, dict[str, np.ndarray]] = {}

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if index not in self._cache:
      self._cache[index] = load_clip_arrays(self._paths[index])
    return {'arrays': self._cache[index], 'path': self._paths[index]}

  @property
  def paths(self) -> list[str]:
    return list(self._paths)

  def __repr__(self) -> str:
    return f'Tracks4DFileSource(name={self._name!r}, files={len(self._paths)}, first={os.path.abspath(self._paths[0])!r})'


def ensure_synthetic_data(directory: str | os.PathLike, num_clips: int, seed: int,
                          num_frames: int, height: int, width: int, num_tracks: int,
                          desc: str = 'synthetic clips') -> list[str]:
  """Renders dynamic synthetic clips (tapkit.data.synthetic) as TracksTo4D files.

  Clip i uses seed (seed, i) and is written to `directory/clip_<i>.npz`; the files are
  reused while the generator parameters match (`synthetic.ensure_clips`), so a resumed
  run reuses them. Returns the sorted paths.
  """
  from tapkit.data import tracks4d_format  # pylint: disable=g-import-not-at-top

  def write(clip, root: pathlib.Path, name: str) -> None:
    tracks4d_format.save_tracks4d_npz(root / f'{name}.npz', tracks4d_format.clip_to_tracks4d(clip))

  synthetic.ensure_clips(directory, num_clips, seed, writer=write, record_format='tracks4d_npz',
                         description=desc, num_frames=num_frames, height=height, width=width,
                         num_tracks=num_tracks, dynamic=True)
  directory = pathlib.Path(directory)
  return [str(directory / f'clip_{i:04d}.npz') for i in range(num_clips)]


# ----------------------------------------------------------------------- sampling


def pad_sample(sample: Mapping[str, Any], num_frames: int) -> dict[str, np.ndarray]:
  """Pads one `data.sample_clip` output to `num_frames` frames (fixed shapes).

  Returns:
    tracks [N, 3, num_frames] f32 (padded frames repeat the last real frame, with
    visibility 0), visible [num_frames, N] bool, point_mask [N] bool, frame_mask
    [num_frames] bool.
  """
  tracks = np.asarray(sample['tracks'], np.float32)  # [N, 3, F]
  vis = np.asarray(sample['tracks_vis'], bool)  # [F, N]
  f = tracks.shape[-1]
  if f > num_frames:
    raise ValueError(f'sample has {f} frames, more than the padded size {num_frames}')
  pad = num_frames - f
  if pad:
    tracks = np.concatenate([tracks, np.repeat(tracks[..., -1:], pad, axis=-1)], axis=-1)
    tracks[:, 2, f:] = 0.0
    vis = np.concatenate([vis, np.zeros((pad, vis.shape[1]), bool)], axis=0)
  return {'tracks': tracks, 'visible': vis & sample['point_mask'][None, :],
          'point_mask': np.asarray(sample['point_mask'], bool),
          'frame_mask': np.arange(num_frames) < f}


class SampleWindows(grain.RandomMapTransform):
  """Record {'arrays', 'path'} -> fixed-window (and random-window) padded samples.

  Window and point selection follow the official reader (`tracks4d.data`) with grain's
  per-record rng in place
  of the official unseeded torch randomness. A random window whose sample has fewer
  than `min_points` real tracks is redrawn (up to `max_tries` times), then the
  fixed-window sample stands in.
  """

  def __init__(self, max_points: int, first_phase_frames: int, max_cameras: int,
               random_windows: bool, max_tries: int = 10):
    self._n = int(max_points)
    self._f1 = int(first_phase_frames)
    self._f2 = int(max_cameras) - 1
    self._random = bool(random_windows)
    self._max_tries = int(max_tries)

  def random_map(self, element: Mapping[str, Any], rng: np.random.Generator):
    arrays, path = element['arrays'], element['path']
    fixed = data_lib.sample_clip(arrays, max_cameras=self._f1, max_points=self._n,
                                 sample_cameras=False, rng=rng, source=path)
    out = {f'fixed/{k}': v for k, v in pad_sample(fixed, self._f1).items()}
    out['fixed/num_points'] = np.int32(fixed['num_actual_tracklets'])
    if self._random:
      num_frames = arrays['pred_tracks'].shape[1]
      chosen = None
      for _ in range(self._max_tries):
        if num_frames <= data_lib.MIN_RANDOM_WINDOW:
          break  # Too short for any random window.
        try:
          s = data_lib.sample_clip(arrays, max_cameras=self._f2 + 1, max_points=self._n,
                                   sample_cameras=True, rng=rng, source=path)
        except ValueError:  # The drawn window is not shorter than the video: redraw.
          continue
        if s['num_actual_tracklets'] >= out['fixed/num_points']:
          chosen = s
          break
      if chosen is None:
        chosen = data_lib.sample_clip(arrays, max_cameras=min(self._f2, num_frames),
                                      max_points=self._n, sample_cameras=False, rng=rng,
                                      source=path)
      out.update({f'random/{k}': v for k, v in pad_sample(chosen, self._f2).items()})
      out['random/num_points'] = np.int32(chosen['num_actual_tracklets'])
    return out


class HasEnoughPoints(grain.FilterTransform):
  """Keeps records whose fixed-window sample has >= min_points real tracks (official
  training skips samples with fewer than 100)."""

  def __init__(self, min_points: int):
    self._min = int(min_points)

  def filter(self, element: Mapping[str, Any]) -> bool:
    return bool(element['fixed/num_points'] >= self._min)


# --------------------------------------------------------------------------- loss


@dataclasses.dataclass(frozen=True)
class PhaseSteps:
  """Step boundaries of the official train.py epoch schedule.

  The official schedule: camera-initialisation loss while epoch < 100 (until it first falls
  below 1e-4), random windows from epoch 50, total loss clamped at 100 from epoch 4; the
  epochs are config values here.
  """

  steps_per_epoch: int
  camera_init_until: int  # camera-initialisation loss while step < this (and not done)
  clamp_from: int  # total loss clamped at `loss_clamp` from this step on
  random_window_from: int  # random windows from this step on (-1: never)


def phase_steps(config: ml_collections.ConfigDict, num_files: int) -> PhaseSteps:
  spe = max(1, math.ceil(num_files / int(config.batch_size)))
  s = config.schedule
  random_from = int(s.random_window_from_epoch)
  return PhaseSteps(steps_per_epoch=spe,
                    camera_init_until=int(s.camera_init_until_epoch) * spe,
                    clamp_from=int(s.clamp_from_epoch) * spe,
                    random_window_from=-1 if random_from < 0 else random_from * spe)


def make_loss_fn(net: model_lib.TracksTo4D, phases: PhaseSteps, coeffs: Mapping[str, float],
                 loss_clamp: float, random_windows: bool) -> accumulation.SumsLoss:
  """loss_fn(params, batch, rng, state) -> (loss, (aux, new_extra)) for the engine.

  An `accumulation.SumsLoss`: the network runs in `sums` (sums over the batch's points,
  frames and samples), the ratios, the clamp and the phase switch in `combine`, so that
  `config.accumulate_steps` micro-batches give the loss, metrics and camera-initialisation
  flag of the whole batch.
  """

  def sample_sums(params, batch, prefix):
    tracks = batch[f'{prefix}/tracks']  # [B, N, 3, F]
    pmask = batch[f'{prefix}/point_mask']  # [B, N]
    fmask = batch[f'{prefix}/frame_mask']  # [B, F]
    vis = batch[f'{prefix}/visible'] & fmask[:, :, None]  # [B, F, N]
    out = net.apply({'params': params}, tracks, pmask, fmask)
    totals, weights = losses.loss_sums(out, tracks, vis, pmask)
    # Padded frames contribute nothing to the camera-initialisation loss.
    cam_totals, cam_weights = losses.camera_init_sums(out.translations, out.rotations, fmask)
    return {**totals, **cam_totals}, {**weights, **cam_weights}

  def use_random_windows(step):
    if random_windows and phases.random_window_from >= 0:
      return step >= phases.random_window_from
    return jnp.zeros((), bool)

  def sums(params, batch, rng, state):
    del rng  # Deterministic forward (no dropout).
    if random_windows and phases.random_window_from >= 0:
      return jax.lax.cond(use_random_windows(state.step),
                          lambda: sample_sums(params, batch, 'random'),
                          lambda: sample_sums(params, batch, 'fixed'))
    return sample_sums(params, batch, 'fixed')

  def combine(totals, weights, state):
    step = state.step
    init_done = state.extra['camera_init_done'] > 0
    terms = losses.combine_loss_terms(totals, weights, coeffs)
    terms['loss_camera_init'] = losses.combine_camera_init(totals, weights)
    in_init = (step < phases.camera_init_until) & ~init_done
    total = terms['loss_total']
    trained = jnp.where(step >= phases.clamp_from,
                        losses.clamp_training_loss(total, loss_clamp), total)
    loss = jnp.where(in_init, terms['loss_camera_init'], trained)
    done = init_done | (in_init & (terms['loss_camera_init'] < losses.CAMERA_INIT_EXIT_THRESHOLD))
    aux = dict(terms)
    aux['camera_init_phase'] = in_init.astype(jnp.float32)
    aux['random_window'] = jnp.asarray(use_random_windows(step), jnp.float32)
    return loss, (aux, {'camera_init_done': done.astype(jnp.int32)})

  return accumulation.SumsLoss(sums, combine)


# --------------------------------------------------------------------- evaluation


def forward(net: model_lib.TracksTo4D, params: Any, tracks: np.ndarray
            ) -> model_lib.TracksTo4DOutput:
  """One jitted forward pass on tracks [1, N, 3, F] (compiled once per shape)."""
  return jitted.jitted_apply(net)(params, jnp.asarray(tracks))


# Tracks [1, N, 3, F] the parameters are initialised on: their shapes and values do not depend
# on N, F or the point mask (tests/tracks4d/test_init_shared.py).
INIT_TRACKS_SHAPE = (1, 8, 3, 8)


def init_params(net: model_lib.TracksTo4D, rng: jax.Array) -> Any:
  """`net.init(rng, zero tracks INIT_TRACKS_SHAPE)['params']`.

  The jitted init is shared per net (`tapkit.models.jitted`), so the training run's
  initialisation (build_method, `init_outside_jit`) and the untrained baseline of the
  quickstart (tracks4d.demo) compile it once per process.
  """
  return jitted.jitted_init(net)(rng, jnp.zeros(INIT_TRACKS_SHAPE, jnp.float32))['params']


def evaluate_output(out: model_lib.TracksTo4DOutput, sample: Mapping[str, Any]
                    ) -> dict[str, float]:
  """Official per-video metrics (inference.py `evaluate_model`) of one forward pass, flat names.

  Returns:
    ate, rpe_trans (GT units), rpe_rot (deg), pixel_error (px), abs_rel, delta_1
    (all points), abs_rel_dynamic, delta_1_dynamic; pose metrics are NaN without GT
    poses and depth metrics NaN without GT depth / mask (the official reports 0).
  """
  ev = evaluation.evaluate_video(
      projections=np.asarray(out.projections), tracks=sample['tracks'][None],
      tracks_vis=sample['tracks_vis'], depths=np.asarray(out.depths),
      rotations=np.asarray(out.rotations), translations=np.asarray(out.translations),
      gt_ks=sample['GT_Ks'], gt_poses=sample.get('GT_poses'),
      gt_depth=sample.get('GT_depth'), gt_mask=sample.get('GT_mask'))
  has_pose = 'GT_poses' in sample
  has_depth = 'GT_depth' in sample and 'GT_mask' in sample
  nan = float('nan')
  return {
      'ate': float(ev.ate) if has_pose else nan,
      'rpe_trans': float(ev.rpe_trans) if has_pose else nan,
      'rpe_rot': float(ev.rpe_rot) if has_pose else nan,
      'pixel_error': float(ev.pixel_reprojection_error),
      'abs_rel': float(ev.depth_all[3]) if has_depth else nan,
      'delta_1': float(ev.depth_all[0]) if has_depth else nan,
      'abs_rel_dynamic': float(ev.depth_dynamic[3]) if has_depth else nan,
      'delta_1_dynamic': float(ev.depth_dynamic[0]) if has_depth else nan,
  }


def eval_samples(paths: Sequence[str], max_frames: int, max_points: int,
                 seed: int = 0) -> list[dict[str, Any]]:
  """Deterministic fixed-window inference samples (truncated to real points)."""
  out = []
  for i, path in enumerate(paths):
    sample = data_lib.sample_clip(load_clip_arrays(path), max_cameras=max_frames,
                                  max_points=max_points, rng=np.random.default_rng((seed, i)),
                                  source=path)
    if sample['num_actual_tracklets'] == 0:
      raise ValueError(f'{path}: no track is eligible in the first {max_frames} frames '
                       '(visible in more than 10 frames and queried inside the window)')
    out.append(data_lib.truncate_to_real(sample))
  return out


def evaluate_params(net: model_lib.TracksTo4D, params: Any,
                    samples: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """Mean official metrics (and total loss) of `params` over samples (nan-mean)."""
  rows = []
  for sample in samples:
    out = forward(net, params, sample['tracks'][None])
    row = evaluate_output(out, sample)
    row['loss_total'] = float(losses.loss_terms(
        out, jnp.asarray(sample['tracks'][None]), jnp.asarray(sample['tracks_vis'][None]))[
            'loss_total'])
    rows.append(row)
  return {k: float(np.nanmean([r[k] for r in rows])) if any(np.isfinite(r[k]) for r in rows)
          else float('nan') for k in rows[0]}


# ------------------------------------------------------------------------- method


def training_files(config: ml_collections.ConfigDict, workdir: str | None
                   ) -> tuple[list[str], list[str]]:
  """(train paths, held-out paths) from config.data, or rendered synthetic clips."""
  d = config.data
  if d.train_dir:
    train = list_clip_files(d.train_dir, d.pattern)
    held_out = list_clip_files(d.eval_dir, d.pattern) if d.eval_dir else []
    return train, held_out
  if not workdir:
    raise ValueError('config.data.train_dir is empty and no workdir was given for the '
                     'on-the-fly synthetic data')
  syn = d.synthetic
  root = pathlib.Path(workdir) / 'synthetic'
  sizes = dict(num_frames=syn.num_frames, height=syn.height, width=syn.width,
               num_tracks=syn.num_tracks)
  train = ensure_synthetic_data(root / 'train', syn.num_train, syn.seed, desc='train clips',
                                **sizes)
  held_out = ensure_synthetic_data(root / 'eval', syn.num_eval, synthetic.heldout_seed(syn.seed),
                                   desc='held-out clips', **sizes)
  return train, held_out


def build_method(config: ml_collections.ConfigDict, workdir: str) -> loop.Method:
  """The TracksTo4D training task (see the module docstring).

  `workdir` is the run directory: without config.data.train_dir, synthetic clips are rendered
  into <workdir>/synthetic/{train,eval}.

  Raises:
    ValueError: naming the full key when `config` holds a key that configs/tracks4d.py does
      not define.
  """
  config_lib.check_config(config, config_lib.method_reference(CONFIG_FILE))
  net = build_model(config.model, dtype=precision_lib.compute_dtype(config), remat=config.remat)
  if pipeline.data_source(config.data) == 'arrayrecord':
    source = arrayrecord.Tracks4DRecordSource(config.data.arrayrecord_folder,
                                              config.data.arrayrecord_split)
  else:
    source = Tracks4DFileSource(training_files(config, workdir)[0], 'train')
  phases = phase_steps(config, len(source))
  random_windows = int(config.schedule.random_window_from_epoch) >= 0
  coeffs = dict(config.loss)
  loss_fn = make_loss_fn(net, phases, coeffs, float(config.schedule.loss_clamp), random_windows)

  def init_fn(rng: jax.Array, batch: Mapping[str, Any]):
    del batch  # The parameters do not depend on the input's shapes (init_params).
    return init_params(net, rng), {'camera_init_done': jnp.zeros((), jnp.int32)}

  transforms: list[grain.Transformation] = [
      SampleWindows(config.data.max_points, config.data.first_phase_frames,
                    config.data.max_cameras, random_windows)]
  if config.data.min_points > 0:
    transforms.append(HasEnoughPoints(config.data.min_points))

  return loop.Method(init_fn=init_fn, loss_fn=loss_fn,
                     train_source=source,
                     train_transforms=transforms, has_extra=True, init_outside_jit=True)
