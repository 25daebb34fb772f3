"""The 3DPoV stage of the quickstart (`python -m tapkit3d.quickstart --stages dpov`).

3DPoV `smoke` (configs/dpov.py) in the stage's workdir, in the two explicit steps of the command
line: pre-train the tiny ViT on the synthetic frames (`python -m dpov_jax.pretrain`, into
<workdir>/pretrain), then fine-tune it with 3DPoV (`python -m dpov_jax.train`); finally the
frame-to-frame matching accuracy of the pre-trained start vs the student and the EMA teacher
(`python -m dpov_jax.match_eval`). The interface (STAGE, DESCRIPTION, INPUTS, Sizes, FULL, FAST,
run, summary, add_section) is the one every method's demo.py has: trajan3d/demo.py documents it.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from dpov_jax import data as dpov_data
from dpov_jax import match_eval, matcher, pretrain, task
from tapkit.models import jitted
from tapkit.models.vit import tokens_to_feature_map
from tapkit.train import config as config_lib
from tapkit.train import launch
from tapkit.train import workdir as workdir_lib

STAGE = 'dpov'
DESCRIPTION = '3DPoV smoke: pre-train, fine-tune, matching before/after'
INPUTS = ()


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Fine-tuning steps, synthetic train / held-out clips and pre-training steps.

  The default job fine-tunes for 150 steps, half the `smoke` preset's 300: on 2 cores the
  3DPoV stage was the job's long pole (about 1.2 CPU-s per fine-tuning step, mostly the
  differentiable sorts), and 150 steps keep the whole job within about 10 minutes.
  """
  steps: int = 150
  train_clips: int = 48
  eval_clips: int = 32
  pretrain_steps: int = 600


FULL = Sizes()
FAST = Sizes(steps=2, train_clips=4, eval_clips=2, pretrain_steps=2)


def smoke_config(sizes: Sizes, fast: bool) -> ml_collections.ConfigDict:
  """configs/dpov.py:smoke for `sizes` (fast: batch 2, frequent eval / log / save)."""
  config = config_lib.demo_config('configs/dpov.py:smoke', sizes.steps, fast,
                                  num_train=sizes.train_clips, num_eval=sizes.eval_clips)
  config.evals.eval.num_clips = sizes.eval_clips
  config.pretrain.steps = sizes.pretrain_steps
  if fast:
    config.batch_size = 2
    config.pretrain.batch_size = 2
  return config


def run(workdir: pathlib.Path, sizes: Sizes, *, fast: bool, log: Callable[[str], None],
        inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """Pre-trains, fine-tunes with 3DPoV and evaluates matching in `workdir`.

  Returns:
    {'workdir', 'steps', 'threshold_px', 'matching': {row name: {'acc', 'err_px',
    'median_err_px', 'num_points'}}} with rows for the static guess, the start backbone, the
    student and the teacher at the last step.
  """
  del inputs
  config = smoke_config(sizes, fast)
  if task.uses_pretraining(config):
    log(f'pre-training the {config.backbone.name} ViT for {config.pretrain.steps} steps in '
        f'{workdir / task.PRETRAIN_DIR}')
    pretrain.ensure_pretrained(config, workdir)
  log(f'3DPoV fine-tuning for {config.total_steps} steps in {workdir}')
  launch.train(config, workdir, task.build_method)
  log(f'frame-to-frame matching on {sizes.eval_clips} held-out clips')
  out = match_eval.main(['--workdir', str(workdir)])
  # The report only draws: computed here, the figures' network passes run in this stage's
  # process (the quickstart's second one), not in the report's.
  np.savez(workdir / FIGURE_DATA, **figure_data(workdir))
  return {'workdir': str(workdir), 'steps': int(config.total_steps),
          'threshold_px': out['threshold_px'], 'matching': out['rows']}


def summary(result: Mapping[str, Any]) -> str:
  return 'matching accuracy: ' + ', '.join(f'{k} {v["acc"]:.3f}'
                                           for k, v in result['matching'].items())


STATIC_ROW = 'static (no motion)'


def static_note(matching: Mapping[str, Mapping[str, float]], threshold_px: float,
                patch_px: int | None) -> str:
  """A sentence when the "nothing moved" guess matches better than every learned feature.

  The static guess predicts each point where it was queried, so its error is the true
  motion of the point: its accuracy is the share of points that move less than the
  threshold between the two frames.
  """
  static = matching.get(STATIC_ROW)
  learned = {k: v for k, v in matching.items() if k != STATIC_ROW}
  if static is None or not learned:
    return ''
  best_name, best = max(learned.items(), key=lambda kv: kv[1]['acc'])
  if best['acc'] >= static['acc']:
    return ''
  text = (f'Matching is below the "nothing moved" guess on these clips ({static["acc"]:.3f} vs '
          f'{best["acc"]:.3f} for the best features, {best_name}): the guess is the query '
          f'position itself, and {static["acc"]:.0%} of the points move less than '
          f'{threshold_px:g} px between the two frames (mean motion {static["err_px"]:.1f} px, '
          f'median {static["median_err_px"]:.1f} px).')
  if patch_px:
    text += (f' The features come from a token grid of one token per {patch_px} px' +
             (', as coarse as the threshold.' if patch_px >= threshold_px else '.'))
  return text + (' What this check measures is the change from the start backbone to the '
                 'fine-tuned one, not tracking quality.')


def add_section(report: Any, result: Mapping[str, Any],
                inputs: Mapping[str, Mapping[str, Any]]) -> None:
  """The 3DPoV section: matching table, feature PCA, correspondences, training curves."""
  del inputs
  wd = pathlib.Path(result['workdir'])
  report.add_section('3DPoV (dpov_jax): teacher–student fine-tuning of a ViT')
  report.add_text(
      'The tiny ViT is pre-trained on the synthetic frames (dense crop contrast, '
      '`dpov_jax/pretrain.py`; the stand-in for DINOv2), then fine-tuned with 3DPoV for '
      f'{result["steps"]} steps on grid-tracked synthetic videos. '
      'Matching: each tracked point of frame 0 is matched to the most similar pixel of a '
      f'distant frame of a held-out clip; accuracy = share within {result["threshold_px"]:g} px '
      'of the true position.')
  report.add_table([{'features': k, **{c: v[c] for c in ('acc', 'err_px', 'median_err_px')}}
                    for k, v in result['matching'].items()],
                   columns=['features', 'acc', 'err_px', 'median_err_px'])
  try:
    patch_px = int(task.build_backbone(workdir_lib.load_config(wd)).config.patch_size)
  except Exception:  # pylint: disable=broad-except
    patch_px = None  # A workdir without its config: the note leaves the token size out.
  note = static_note(result['matching'], float(result['threshold_px']), patch_px)
  if note:
    report.add_text(note)
  try:
    _add_figures(report, wd)
  except Exception as err:  # pylint: disable=broad-except
    # Figures are illustrations; the numbers above stand without them.
    logging.warning('dpov figures skipped: %s', err)
    report.add_text(f'(figures skipped: {err})')
  report.add_training_curves(wd / 'metrics.jsonl', '3DPoV')


def figure_data(wd: pathlib.Path) -> dict[str, np.ndarray]:
  """What the section's figures show, for the first held-out clip of the run in `wd`.

  Returns:
    {'frames' [2, H, W, 3] frame 0 and the distant frame, 'start' / 'fine-tuned' [2, h, w, C]
    their feature maps under the start backbone / the fine-tuned student, 'queries' /
    'targets' [P, 2] tracked points of frame 0 and their true positions in the distant frame
    (x, y pixels), 'valid' [P], 'pred_start' / 'pred_fine-tuned' [P, 2] the matched positions,
    'threshold_px' the accuracy threshold}.
  """
  config = workdir_lib.load_config(wd)
  module = task.build_backbone(config)
  clips = task.eval_clips(config, str(wd), 1)
  _, state = workdir_lib.load_state(wd)
  backbones = {'start': task.initial_backbone_params(config, str(wd)),
               'fine-tuned': state['params']['backbone']}
  frames = clips['frames'][0]  # [2, H, W, 3]
  h, w = frames.shape[1:3]
  grid = module.config.grid_size(h, w)
  queries = clips['queries'][0]
  apply = jitted.jitted_apply(module)
  match = jax.jit(lambda a, b, q: matcher.match_points(a, b, q, (h, w)))
  out = {'frames': np.asarray(frames), 'queries': np.asarray(queries),
         'targets': np.asarray(clips['targets'][0]), 'valid': np.asarray(clips['valid'][0]),
         'threshold_px': np.float32(config.evals.eval.threshold_px)}
  for name, params in backbones.items():
    tokens = apply(params, dpov_data.normalize_frames(frames))
    maps = np.asarray(tokens_to_feature_map(tokens, grid, module.config.num_prefix_tokens))
    out[name] = maps
    out[f'pred_{name}'] = np.asarray(match(maps[0], maps[1], queries))
  return out


FIGURE_DATA = 'figure_data.npz'


def _add_figures(report: Any, wd: pathlib.Path) -> None:
  """Feature PCA and correspondences of the start backbone vs the fine-tuned student."""
  from tapkit.viz import correspondences, features  # pylint: disable=g-import-not-at-top

  path = wd / FIGURE_DATA
  if path.is_file():
    with np.load(path) as f:
      data = dict(f)
  else:  # A workdir from before the stage saved them.
    data = figure_data(wd)
  frames = data['frames']
  images = [frames[0], frames[1], frames[0], frames[1]]
  feats = np.concatenate([data['start'], data['fine-tuned']])
  fig = features.pca_figure(images, feats, titles=['start f0', 'start f1', 'tuned f0',
                                                   'tuned f1'])
  report.add_image(fig, caption='Feature PCA (first 3 components as RGB), start vs fine-tuned',
                   name='dpov_pca')
  queries, targets, valid = data['queries'], data['targets'], data['valid']
  thr = float(data['threshold_px'])
  for name in ('start', 'fine-tuned'):
    pred = data[f'pred_{name}']
    ok = np.linalg.norm(pred - targets, axis=-1) <= thr
    # Small frames: drawn 4x larger (nearest neighbour) so the matches are legible.
    image = correspondences.draw_correspondences(frames[0], frames[1], queries[valid],
                                                 pred[valid], ok[valid], max_matches=64,
                                                 scale=4, radius=5.0, line_width=2, gap=24)
    report.add_image(image, caption=f'{name}: matches frame 0 → distant frame '
                     f'(green = within {thr:g} px)', name=f'dpov_matches_{name}')
