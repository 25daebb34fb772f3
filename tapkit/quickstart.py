r"""The default job: all three methods on synthetic data, one report.

    python -m tapkit.quickstart --workdir runs/quickstart
    python -m tapkit.quickstart --workdir runs/quickstart --stages trajan3d,report --force
    python -m tapkit.quickstart --workdir /tmp/qs --fast        # seconds-sized (tests)

Stages (each can run on its own; later stages read earlier stages' outputs):

  data      held-out synthetic TAPVid-3D clips (<workdir>/data/heldout) for 3DSPA.
  trajan3d  trains the 3DSPA `smoke` preset (configs/spa3d.py) in <workdir>/trajan3d,
            evaluates untrained vs trained on the held-out clips with the TAPVid-3D
            metrics (held-out query tracks, `median` scaling) and scores the realism of
            clean vs corrupted (jitter + teleports) copies of the clips.
  tracks4d  trains TracksTo4D `smoke` (configs/tracks4d.py) in <workdir>/tracks4d and
            runs inference on its held-out synthetic scenes: untrained, trained, and
            trained + test-time fine-tuning (ATE, RPE, pixel error, depth AbsRel, δ1).
  dpov      3DPoV `smoke` (configs/dpov.py) in <workdir>/dpov: pre-trains the tiny ViT on the
            synthetic frames (dpov_jax/pretrain.py), fine-tunes it with 3DPoV; frame-to-frame
            matching accuracy of the pre-trained start vs the student and EMA teacher.
  report    <workdir>/report.html and report.md: the numbers, training curves and figures.

A finished stage writes <workdir>/<stage>/done.json with its results and is skipped on the
next run (training itself also resumes from its checkpoints); --force redoes the chosen
stages. --fast (or TAPKIT_QUICKSTART_FAST=1) shrinks data and steps to run in about a
minute: the numbers are then meaningless, the plumbing is what it checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

STAGES = ('data', 'trajan3d', 'tracks4d', 'dpov', 'report')
_FAST_ENV = 'TAPKIT_QUICKSTART_FAST'


@dataclasses.dataclass(frozen=True)
class Sizes:
  """How much work each stage does."""
  heldout_clips: int = 10
  heldout_frames: int = 24
  heldout_size: int = 64
  spa3d_steps: int = 400
  spa3d_train_clips: int = 48
  tracks4d_steps: int = 300
  tracks4d_train_clips: int = 12
  tracks4d_eval_clips: int = 6
  finetune_steps: int = 100
  dpov_steps: int = 300
  dpov_train_clips: int = 48
  dpov_eval_clips: int = 32
  dpov_pretrain_steps: int = 600


FULL = Sizes()
FAST = Sizes(heldout_clips=2, heldout_frames=24, heldout_size=64, spa3d_steps=4,
             spa3d_train_clips=4, tracks4d_steps=4, tracks4d_train_clips=2,
             tracks4d_eval_clips=1, finetune_steps=2, dpov_steps=2, dpov_train_clips=4,
             dpov_eval_clips=2, dpov_pretrain_steps=2)


def fast_from_env() -> bool:
  return os.environ.get(_FAST_ENV, '').strip().lower() not in ('', '0', 'false', 'no')


# ----------------------------------------------------------------------- progress


class Progress:
  """One line per stage start / end with elapsed time; stage work logs in between."""

  def __init__(self, stages: Sequence[str], stream=None):
    self._stages = list(stages)
    self._stream = stream
    self._t0 = time.perf_counter()
    self._stage_t0 = self._t0

  def _elapsed(self, since: float) -> str:
    seconds = int(time.perf_counter() - since)
    return f'{seconds // 60}m{seconds % 60:02d}s'

  def stage(self, name: str, what: str) -> None:
    self._stage_t0 = time.perf_counter()
    index = self._stages.index(name) + 1
    self._print(f'[{index}/{len(self._stages)}] {name}: {what}')

  def step(self, text: str) -> None:
    self._print(f'    {text} ({self._elapsed(self._stage_t0)} into the stage)')

  def done(self, name: str, summary: str = '') -> None:
    self._print(f'    {name} done in {self._elapsed(self._stage_t0)}'
                f'{"; " + summary if summary else ""} (total {self._elapsed(self._t0)})')

  def _print(self, text: str) -> None:
    print(f'quickstart | {text}', file=self._stream or sys.stderr, flush=True)


# ------------------------------------------------------------------------ helpers


def _repo_config(spec: str):
  from tapkit.train import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.load_config(spec)


def _train(config, workdir: pathlib.Path, build_method: Callable[..., Any]) -> None:
  """Trains through the engine exactly as the method's train CLI does (resumes)."""
  from tapkit.train import launch, loop  # pylint: disable=g-import-not-at-top
  workdir.mkdir(parents=True, exist_ok=True)
  launch.save_config(config, workdir)
  loop.train(config, workdir, build_method(config))


def _done_path(workdir: pathlib.Path, stage: str) -> pathlib.Path:
  return workdir / stage / 'done.json'


def read_done(workdir: str | os.PathLike, stage: str) -> dict[str, Any]:
  """The results a finished stage recorded; a clear error if it has not run."""
  path = _done_path(pathlib.Path(workdir), stage)
  if not path.is_file():
    raise FileNotFoundError(f'{path}: missing; run `python -m tapkit.quickstart --workdir '
                            f'{workdir} --stages {stage}` first')
  with open(path) as f:
    return json.load(f)


def _write_done(workdir: pathlib.Path, stage: str, result: Mapping[str, Any]) -> None:
  path = _done_path(workdir, stage)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix('.tmp')
  with open(tmp, 'w') as f:
    json.dump(result, f, indent=2, default=_json_default)
  os.replace(tmp, path)  # Atomic: a killed run never leaves a half-written done.json.


def _json_default(value: Any) -> Any:
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f'not JSON serialisable: {type(value)}')


def _float_dict(d: Mapping[str, Any]) -> dict[str, float]:
  return {k: float(v) for k, v in d.items() if isinstance(v, (int, float, np.number))}


# ------------------------------------------------------------------------- stages


def stage_data(workdir: pathlib.Path, sizes: Sizes, progress: Progress) -> dict[str, Any]:
  from tapkit.data import synthetic  # pylint: disable=g-import-not-at-top
  out = workdir / 'data' / 'heldout'
  progress.step(f'rendering {sizes.heldout_clips} held-out clips into {out}')
  synthetic.main(['--out', str(out), '--num_clips', str(sizes.heldout_clips), '--seed', '777',
                  '--num_frames', str(sizes.heldout_frames), '--height',
                  str(sizes.heldout_size), '--width', str(sizes.heldout_size)])
  files = sorted(str(p.relative_to(out)) for p in out.glob('*/*.npz'))
  if len(files) != sizes.heldout_clips:
    raise RuntimeError(f'{out}: expected {sizes.heldout_clips} clips, found {len(files)}')
  return {'heldout_dir': str(out), 'files': files}


def _smoke_config(spec: str, steps: int, fast: bool):
  """A method's smoke preset for `steps` steps; in fast mode eval/log/save every step or two."""
  config = _repo_config(spec)
  config.total_steps = steps
  if fast:
    for section in config.evals.values():
      section.every_steps = 2
    if 'eval' in config:  # trajan3d's own eval hook
      config.eval.every_steps = 2
    config.log_every = 1
    config.checkpoint.every_steps = 2
    if config.optimizer.get('warmup_steps', 0) > 1:
      config.optimizer.warmup_steps = 1  # the cosine schedule needs steps > warm-up
  return config


def _spa3d_config(sizes: Sizes, fast: bool):
  config = _smoke_config('configs/spa3d.py:smoke', sizes.spa3d_steps, fast)
  config.data.synthetic.num_train = sizes.spa3d_train_clips
  if fast:
    config.eval.num_clips = 1
    config.data.synthetic.num_eval = 1
  return config


def stage_trajan3d(workdir: pathlib.Path, sizes: Sizes, fast: bool,
                   progress: Progress) -> dict[str, Any]:
  from tapkit.data import tapvid3d  # pylint: disable=g-import-not-at-top
  from trajan3d import evaluate_tapvid3d, score, task  # pylint: disable=g-import-not-at-top

  data = read_done(workdir, 'data')
  wd = workdir / 'trajan3d'
  config = _spa3d_config(sizes, fast)
  progress.step(f'training 3DSPA smoke for {config.total_steps} steps in {wd}')
  _train(config, wd, lambda c: task.build_method(c, workdir=str(wd)))

  heldout = data['heldout_dir']
  metrics = {}
  for name, random_init in (('untrained', True), ('trained', False)):
    progress.step(f'TAPVid-3D evaluation of the {name} model on {len(data["files"])} clips')
    res = evaluate_tapvid3d.run(str(wd), heldout, str(wd / f'pred_{name}'), protocol='heldout',
                                glob='*/*.npz', depth_scalings=('median',),
                                random_init=random_init, progress=False)
    metrics[name] = _float_dict(res['overall']['median'])

  progress.step('realism scores of clean vs corrupted clips')
  _, recon = score.reconstructor_from_checkpoint(str(wd))
  num_support, num_query = int(config.eval.num_support), int(config.eval.num_query)
  scores, per_frame = [], {}
  for i, rel in enumerate(data['files']):
    clip = tapvid3d.load_clip(os.path.join(heldout, rel))
    clean = score.track_set_from_clip(clip)
    corrupted = score.corrupt_track_set(clean, seed=i)
    row_clean, pf_clean = score.score_track_set(recon, clean, num_support, num_query, seed=i)
    row_bad, pf_bad = score.score_track_set(recon, corrupted, num_support, num_query, seed=i)
    scores.append({'clip': clean.name, 'clean': row_clean['score'],
                   'corrupted': row_bad['score']})
    if i == 0:
      per_frame = {'clip': rel, 'clean': pf_clean['jaccard'].tolist(),
                   'corrupted': pf_bad['jaccard'].tolist()}
  ranked = sum(s['clean'] > s['corrupted'] for s in scores)
  return {'workdir': str(wd), 'steps': int(config.total_steps), 'metrics': metrics,
          'scores': scores, 'clean_above_corrupted': int(ranked),
          'per_frame_scores': per_frame, 'metric_names': _tapvid3d_metric_order(metrics)}


def _tapvid3d_metric_order(metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
  first = next(iter(metrics.values()), {})
  preferred = ['average_jaccard', 'average_pts_within_thresh', 'occlusion_accuracy']
  # The three headline numbers; per-threshold values stay in trajan3d/done.json.
  return [k for k in preferred if k in first]


def _tracks4d_config(sizes: Sizes, fast: bool):
  config = _smoke_config('configs/tracks4d.py:smoke', sizes.tracks4d_steps, fast)
  config.data.synthetic.num_train = sizes.tracks4d_train_clips
  config.data.synthetic.num_eval = sizes.tracks4d_eval_clips
  return config


def stage_tracks4d(workdir: pathlib.Path, sizes: Sizes, fast: bool,
                   progress: Progress) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  from tracks4d import infer, task  # pylint: disable=g-import-not-at-top

  wd = workdir / 'tracks4d'
  config = _tracks4d_config(sizes, fast)
  progress.step(f'training TracksTo4D smoke for {config.total_steps} steps in {wd}')
  _train(config, wd, lambda c: task.build_method(c, workdir=str(wd)))
  eval_paths = task.list_clip_files(wd / 'synthetic' / 'eval')

  progress.step(f'inference on {len(eval_paths)} held-out scenes: untrained model')
  trained = infer.load_model(str(wd))
  first = task.eval_samples(eval_paths[:1], int(config.evals.eval.max_frames),
                            int(config.evals.eval.max_points))[0]
  init_params = jax.jit(trained.net.init)(jax.random.PRNGKey(1),
                                          first['tracks'][None])['params']
  untrained = infer.LoadedModel(trained.net, init_params, None, 'untrained')
  rows = [infer.infer_video(untrained, p, wd / 'pred_untrained', html=False)
          for p in eval_paths]
  results = {'untrained': infer.summarize(rows)}

  progress.step(f'inference with the trained model, then {sizes.finetune_steps} steps of '
                'test-time fine-tuning per scene')
  res = infer.run(str(wd), eval_paths, str(wd / 'pred'), finetune_steps=sizes.finetune_steps)
  results['trained'] = res['mean_before_finetune']
  results['fine-tuned'] = res['mean']
  videos = [r['video'] for r in res['videos']]
  return {'workdir': str(wd), 'steps': int(config.total_steps),
          'finetune_steps': sizes.finetune_steps, 'metrics': results,
          'num_scenes': len(eval_paths), 'views': [f'pred/{v}.html' for v in videos],
          'predictions': [str(wd / 'pred' / f'{v}.npz') for v in videos],
          'inputs': list(eval_paths)}


def _dpov_config(sizes: Sizes, fast: bool):
  config = _smoke_config('configs/dpov.py:smoke', sizes.dpov_steps, fast)
  config.data.synthetic.num_train = sizes.dpov_train_clips
  config.data.synthetic.num_eval = sizes.dpov_eval_clips
  config.evals.eval.num_clips = sizes.dpov_eval_clips
  config.pretrain.steps = sizes.dpov_pretrain_steps
  if fast:
    config.batch_size = 2
    config.pretrain.batch_size = 2
  return config


def stage_dpov(workdir: pathlib.Path, sizes: Sizes, fast: bool,
               progress: Progress) -> dict[str, Any]:
  from dpov_jax import match_eval, task  # pylint: disable=g-import-not-at-top

  wd = workdir / 'dpov'
  config = _dpov_config(sizes, fast)
  progress.step(f'3DPoV smoke: {config.pretrain.steps} pre-training steps, then '
                f'{config.total_steps} fine-tuning steps in {wd}')
  _train(config, wd, lambda c: task.build_method(c, workdir=str(wd)))
  progress.step(f'frame-to-frame matching on {sizes.dpov_eval_clips} held-out clips')
  out = match_eval.main(['--workdir', str(wd)])
  return {'workdir': str(wd), 'steps': int(config.total_steps),
          'threshold_px': out['threshold_px'], 'matching': out['rows']}


# ------------------------------------------------------------------------- report


def _curves(report, metrics_path: pathlib.Path, name: str, out_dir: pathlib.Path) -> None:
  from tapkit.viz import plots  # pylint: disable=g-import-not-at-top
  if not metrics_path.is_file():
    report.add_text(f'(no {metrics_path.name} in {metrics_path.parent})')
    return
  scalars = plots.load_jsonl_scalars(metrics_path)
  train = {k: v for k, v in scalars.items() if k.startswith('train/') and
           any(t in k for t in ('loss', 'ate', 'abs_rel', 'jaccard'))}
  evals = {k: v for k, v in scalars.items() if k.startswith('eval/')}
  chosen = dict(list(train.items())[:3] + list(evals.items())[:3]) or dict(
      list(scalars.items())[:6])
  fig = plots.plot_training_curves(chosen, smoothing=0.6, title=f'{name} training')
  report.add_image(fig, caption=f'{name}: training curves ({metrics_path})',
                   name=f'{name}_curves')


def _trajan3d_section(report, workdir: pathlib.Path) -> None:
  from tapkit.data import tapvid3d  # pylint: disable=g-import-not-at-top
  from tapkit.viz import plots, tracks2d, tracks3d  # pylint: disable=g-import-not-at-top

  res = read_done(workdir, 'trajan3d')
  data = read_done(workdir, 'data')
  report.add_section('3DSPA (trajan3d): reconstruction of held-out 3D tracks')
  report.add_text(
      f'3DSPA `smoke` preset trained for {res["steps"]} steps on synthetic clips; '
      f'{len(data["files"])} held-out clips (seed 777); each clip\'s query tracks are '
      'decoded from disjoint support tracks and scored with the TAPVid-3D metrics '
      '(`median` depth scaling).')
  names = res['metric_names']
  report.add_table([{'model': m, **{k: res['metrics'][m].get(k, float('nan')) for k in names}}
                    for m in res['metrics']], columns=['model'] + names)
  report.add_text(
      f'Realism score (average Jaccard of the held-out reconstruction; higher = more '
      f'plausible motion): clean clip above its corrupted copy on '
      f'{res["clean_above_corrupted"]} of {len(res["scores"])} clips.')
  report.add_table(res['scores'], columns=['clip', 'clean', 'corrupted'])
  pf = res['per_frame_scores']
  if pf:
    fig = plots.plot_score_curves({'clean': pf['clean'], 'corrupted': pf['corrupted']},
                                  title=f'per-frame realism score: {pf["clip"]}',
                                  ylabel='Jaccard', ylim=(0.0, 1.0))
    report.add_image(fig, caption='Per-frame realism score, clean vs corrupted',
                     name='trajan3d_per_frame')
    clip = tapvid3d.load_clip(os.path.join(data['heldout_dir'], pf['clip']))
    painted = tracks2d.paint_clip(clip, color_by='rainbow')
    t = painted.shape[0]
    strip = np.concatenate([painted[i] for i in (0, t // 2, t - 1)], axis=1)
    report.add_image(strip, caption=f'{pf["clip"]}: ground-truth tracks painted on frames '
                     f'0, {t // 2}, {t - 1}', name='trajan3d_tracks2d')
    fig = tracks3d.plot_clip(clip, color_by='track')
    report.add_image(fig, caption=f'{pf["clip"]}: 3D tracks and cameras (world frame)',
                     name='trajan3d_tracks3d')
  _curves(report, pathlib.Path(res['workdir']) / 'metrics.jsonl', '3DSPA',
          workdir)


def _tracks4d_section(report, workdir: pathlib.Path) -> None:
  from tapkit.viz import tracks3d  # pylint: disable=g-import-not-at-top

  res = read_done(workdir, 'tracks4d')
  report.add_section('TracksTo4D (tracks4d): 3D points, cameras and motion from 2D tracks')
  report.add_text(
      f'TracksTo4D `smoke` trained for {res["steps"]} steps on synthetic dynamic scenes; '
      f'{res["num_scenes"]} held-out scenes. Fine-tuned: {res["finetune_steps"]} steps of '
      'test-time fine-tuning per scene. ATE / RPE after Sim(3) alignment; depth AbsRel and '
      'δ<1.25 with per-frame median scaling.')
  cols = ['ate', 'rpe_trans', 'rpe_rot', 'pixel_error', 'abs_rel', 'delta_1']
  report.add_table([{'model': m, **{c: v.get(c, float('nan')) for c in cols}}
                    for m, v in res['metrics'].items()], columns=['model'] + cols)
  if res['predictions']:
    pred = np.load(res['predictions'][0])
    fig = tracks3d.plot_tracks_3d(pred['points_world'], visible=pred['visible'],
                                  color_by='motion', motion=pred['motion_level'],
                                  w2c=pred['w2c'], intrinsics=None)
    report.add_image(fig, caption='Predicted 3D points (colour = motion level) and cameras, '
                     'first held-out scene after fine-tuning', name='tracks4d_points')
    for view in res['views'][:3]:
      report.add_link(pathlib.Path(res['workdir']) / view,
                      f'interactive 3D view: {pathlib.Path(view).stem}')
  _curves(report, pathlib.Path(res['workdir']) / 'metrics.jsonl', 'TracksTo4D', workdir)


def _dpov_section(report, workdir: pathlib.Path) -> None:
  res = read_done(workdir, 'dpov')
  report.add_section('3DPoV (dpov_jax): teacher–student fine-tuning of a ViT')
  report.add_text(
      'The tiny ViT is pre-trained on the synthetic frames (dense crop contrast, '
      '`dpov_jax/pretrain.py`; the stand-in for DINOv2), then fine-tuned with 3DPoV for '
      f'{res["steps"]} steps on grid-tracked synthetic videos. '
      'Matching: each tracked point of frame 0 is matched to the most similar pixel of a '
      f'distant frame of a held-out clip; accuracy = share within {res["threshold_px"]:g} px '
      'of the true position.')
  report.add_table([{'features': k, **{c: v[c] for c in ('acc', 'err_px', 'median_err_px')}}
                    for k, v in res['matching'].items()],
                   columns=['features', 'acc', 'err_px', 'median_err_px'])
  try:
    _dpov_figures(report, pathlib.Path(res['workdir']))
  except Exception as err:  # pylint: disable=broad-except
    # Figures are illustrations; the numbers above stand without them.
    logging.warning('dpov figures skipped: %s', err)
    report.add_text(f'(figures skipped: {err})')
  _curves(report, pathlib.Path(res['workdir']) / 'metrics.jsonl', '3DPoV', workdir)


def _dpov_figures(report, wd: pathlib.Path) -> None:
  """Feature PCA and correspondences of the start backbone vs the fine-tuned student."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top

  from dpov_jax import data as dpov_data  # pylint: disable=g-import-not-at-top
  from dpov_jax import match_eval, task  # pylint: disable=g-import-not-at-top
  from tapkit.models.vit import tokens_to_feature_map  # pylint: disable=g-import-not-at-top
  from tapkit.train import checkpoint as engine_ckpt  # pylint: disable=g-import-not-at-top
  from tapkit.viz import correspondences, features  # pylint: disable=g-import-not-at-top

  with open(wd / 'config.json') as f:
    config = ml_collections.ConfigDict(json.load(f))
  module = task.build_backbone(config)
  clips = task.eval_clips(config, str(wd), 1)
  _, state = engine_ckpt.load_state_numpy(str(wd))
  backbones = {'start': task.initial_backbone_params(config, str(wd)),
               'fine-tuned': state['params']['backbone']}
  frames = clips['frames'][0]  # [2, H, W, 3]
  h, w = frames.shape[1:3]
  grid = module.config.grid_size(h, w)
  maps = {}
  for name, params in backbones.items():
    tokens = module.apply({'params': params}, dpov_data.normalize_frames(frames))
    maps[name] = np.asarray(tokens_to_feature_map(tokens, grid, module.config.num_prefix_tokens))
  images = [frames[0], frames[1], frames[0], frames[1]]
  feats = np.concatenate([maps['start'], maps['fine-tuned']])
  fig = features.pca_figure(images, feats, titles=['start f0', 'start f1', 'tuned f0',
                                                   'tuned f1'])
  report.add_image(fig, caption='Feature PCA (first 3 components as RGB), start vs fine-tuned',
                   name='dpov_pca')
  queries, targets = clips['queries'][0], clips['targets'][0]
  valid = clips['valid'][0]
  thr = float(config.evals.eval.threshold_px)
  for name in backbones:
    pred = np.asarray(jax.jit(lambda a, b, q: match_eval.match_points(a, b, q, (h, w)))(
        maps[name][0], maps[name][1], queries))
    ok = np.linalg.norm(pred - targets, axis=-1) <= thr
    image = correspondences.draw_correspondences(frames[0], frames[1], queries[valid],
                                                 pred[valid], ok[valid], max_matches=64)
    report.add_image(image, caption=f'{name}: matches frame 0 → distant frame '
                     f'(green = within {thr:g} px)', name=f'dpov_matches_{name}')


def stage_report(workdir: pathlib.Path, progress: Progress) -> dict[str, Any]:
  from tapkit.viz import html  # pylint: disable=g-import-not-at-top

  report = html.Report('tapkit quickstart')
  report.add_text(f'Workdir `{workdir}`. Everything runs on synthetic data generated here; '
                  'the presets are the `smoke` ones (tiny models, minutes on a CPU).')
  sections = {'trajan3d': _trajan3d_section, 'tracks4d': _tracks4d_section,
              'dpov': _dpov_section}
  filled = []
  for stage, fn in sections.items():
    if _done_path(workdir, stage).is_file():
      progress.step(f'section {stage}')
      fn(report, workdir)
      filled.append(stage)
    else:
      report.add_section(stage)
      report.add_text(f'Not run: `python -m tapkit.quickstart --workdir {workdir} '
                      f'--stages {stage}`.')
  html_path, md_path = report.write(workdir, 'report')
  return {'html': html_path, 'markdown': md_path, 'sections': filled}


# --------------------------------------------------------------------------- main


def run(workdir: str | os.PathLike, stages: Sequence[str] = STAGES, *, fast: bool = False,
        force: bool = False) -> dict[str, dict[str, Any]]:
  """Runs `stages` in order (skipping finished ones unless `force`); returns their results."""
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise ValueError(f'--stages: unknown {unknown}; choose from {",".join(STAGES)}')
  workdir = pathlib.Path(workdir).resolve()  # orbax wants absolute checkpoint paths
  workdir.mkdir(parents=True, exist_ok=True)
  sizes = FAST if fast else FULL
  ordered = [s for s in STAGES if s in stages]
  progress = Progress(ordered)
  describe = {
      'data': 'held-out synthetic TAPVid-3D clips',
      'trajan3d': '3DSPA smoke: train, TAPVid-3D metrics, realism scores',
      'tracks4d': 'TracksTo4D smoke: train, infer, test-time fine-tuning',
      'dpov': '3DPoV smoke: pre-train, fine-tune, matching before/after',
      'report': 'report.html / report.md',
  }
  results = {}
  for stage in ordered:
    progress.stage(stage, describe[stage])
    if stage != 'report' and not force and _done_path(workdir, stage).is_file():
      results[stage] = read_done(workdir, stage)
      progress.done(stage, 'already finished (done.json; --force to redo)')
      continue
    if stage == 'data':
      result = stage_data(workdir, sizes, progress)
    elif stage == 'trajan3d':
      result = stage_trajan3d(workdir, sizes, fast, progress)
    elif stage == 'tracks4d':
      result = stage_tracks4d(workdir, sizes, fast, progress)
    elif stage == 'dpov':
      result = stage_dpov(workdir, sizes, fast, progress)
    else:
      result = stage_report(workdir, progress)
    result['fast'] = fast
    _write_done(workdir, stage, result)
    results[stage] = result
    progress.done(stage, _summary(stage, result))
  return results


def _summary(stage: str, result: Mapping[str, Any]) -> str:
  if stage == 'trajan3d':
    m = result['metrics']
    return ('average Jaccard untrained {:.4f} -> trained {:.4f}'.format(
        m['untrained'].get('average_jaccard', float('nan')),
        m['trained'].get('average_jaccard', float('nan'))))
  if stage == 'tracks4d':
    m = result['metrics']
    return 'ATE / AbsRel: ' + ', '.join(f'{k} {v["ate"]:.3f} / {v["abs_rel"]:.3f}'
                                        for k, v in m.items())
  if stage == 'dpov':
    return 'matching accuracy: ' + ', '.join(f'{k} {v["acc"]:.3f}'
                                             for k, v in result['matching'].items())
  if stage == 'report':
    return f'wrote {result["html"]} and {result["markdown"]}'
  return ''


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m tapkit.quickstart', description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument('--workdir', default='runs/quickstart')
  parser.add_argument('--stages', default=','.join(STAGES),
                      help=f'comma-separated subset of {",".join(STAGES)}')
  parser.add_argument('--fast', action='store_true',
                      help=f'tiny sizes (also env {_FAST_ENV}=1)')
  parser.add_argument('--force', action='store_true', help='redo finished stages')
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
  args = _parse(argv)
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  from tapkit.train import launch  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.INFO)
  quiet = launch._QuietLibraryInfo()  # pylint: disable=protected-access
  for handler in logging.getLogger().handlers + logging.getLogger('absl').handlers:
    handler.addFilter(quiet)
  stages = [s.strip() for s in args.stages.split(',') if s.strip()]
  results = run(args.workdir, stages, fast=args.fast or fast_from_env(), force=args.force)
  if 'report' in results:
    print(f'report: {results["report"]["html"]}')
  return results


if __name__ == '__main__':
  main(sys.argv[1:])
