"""The 3DSPA stage of the quickstart (`python -m tapkit3d.quickstart --stages trajan3d`).

Trains the 3DSPA `smoke` preset (configs/spa3d.py) in the stage's workdir, evaluates the
untrained and the trained model on the quickstart's held-out synthetic TAPVid-3D clips with the
TAPVid-3D metrics (held-out query tracks decoded from disjoint support tracks, `median` depth
scaling), and scores the realism of each clip against a corrupted copy (jitter + teleports).

Every method's demo.py has the same interface, which the quickstart runner iterates over:

  STAGE, DESCRIPTION        the stage name and its one-line description;
  INPUTS                    the earlier stages whose records the stage reads;
  Sizes, FULL, FAST         how much work the stage does (FAST: seconds, numbers meaningless);
  run(workdir, sizes, fast=, log=, inputs=) -> dict
                            trains and evaluates in `workdir`; the dict is JSON-able (it becomes
                            the stage's done.json); `log(text)` reports progress;
  summary(result) -> str    one line for the progress log;
  add_section(report, result, inputs)
                            the stage's section of the quickstart report (tapkit.viz.html.Report).

`inputs` maps each stage of INPUTS to its record. Here: 'data', the quickstart's held-out
synthetic clips {'heldout_dir': their folder, 'files': their paths relative to it}.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
import numpy as np

from tapkit.data import tapvid3d
from tapkit.train import config as config_lib
from tapkit.train import launch
from trajan3d import evaluate_tapvid3d, score, task

STAGE = 'trajan3d'
DESCRIPTION = '3DSPA smoke: train, TAPVid-3D metrics, realism scores'
INPUTS = ('data',)


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Training steps and synthetic training clips of the 3DSPA smoke run."""
  steps: int = 400
  train_clips: int = 48


FULL = Sizes()
FAST = Sizes(steps=4, train_clips=4)


def smoke_config(sizes: Sizes, fast: bool) -> ml_collections.ConfigDict:
  """configs/spa3d.py:smoke for `sizes` (fast: one eval clip, frequent eval / log / save)."""
  config = config_lib.demo_config('configs/spa3d.py:smoke', sizes.steps, fast,
                                  num_train=sizes.train_clips, num_eval=1 if fast else None)
  if fast:
    config.evals.eval.num_clips = 1
  return config


def _float_dict(d: Mapping[str, Any]) -> dict[str, float]:
  return {k: float(v) for k, v in d.items() if isinstance(v, (int, float, np.number))}


def _metric_order(metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
  """The three headline TAPVid-3D numbers; per-threshold values stay in the stage's done.json."""
  first = next(iter(metrics.values()), {})
  preferred = ['average_jaccard', 'average_pts_within_thresh', 'occlusion_accuracy']
  return [k for k in preferred if k in first]


def run(workdir: pathlib.Path, sizes: Sizes, *, fast: bool, log: Callable[[str], None],
        inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """Trains 3DSPA smoke in `workdir`, evaluates and scores it on the held-out clips.

  Returns:
    {'workdir', 'steps', 'metrics': {'untrained'|'trained': {TAPVid-3D metric: value}},
    'scores': [{'clip', 'clean', 'corrupted'}] realism scores per held-out clip,
    'clean_above_corrupted': count, 'per_frame_scores': per-frame Jaccard of the first clip,
    'metric_names': the headline metrics}.
  """
  config = smoke_config(sizes, fast)
  log(f'training 3DSPA smoke for {config.total_steps} steps in {workdir}')
  launch.train(config, workdir, task.build_method)

  heldout = inputs['data']
  heldout_dir = heldout['heldout_dir']
  metrics = {}
  for name, random_init in (('untrained', True), ('trained', False)):
    log(f'TAPVid-3D evaluation of the {name} model on {len(heldout["files"])} clips')
    res = evaluate_tapvid3d.run(str(workdir), heldout_dir, str(workdir / f'pred_{name}'),
                                protocol='heldout', glob='*/*.npz', depth_scalings=('median',),
                                random_init=random_init, progress=False)
    metrics[name] = _float_dict(res['overall']['median'])

  log('realism scores of clean vs corrupted clips')
  _, recon = score.reconstructor_from_checkpoint(str(workdir))
  num_support, num_query = int(config.evals.eval.num_support), int(config.evals.eval.num_query)
  scores, per_frame = [], {}
  for i, rel in enumerate(heldout['files']):
    clip = tapvid3d.load_clip(os.path.join(heldout_dir, rel))
    clean = score.track_set_from_clip(clip)
    corrupted = score.corrupt_track_set(clean, seed=i)
    # The CLI's defaults, so `python -m trajan3d.score` prints the same score for the clip.
    kwargs = {'seed': score.DEFAULT_SEED, 'max_tracks': score.DEFAULT_MAX_TRACKS}
    row_clean, pf_clean = score.score_track_set(recon, clean, num_support, num_query, **kwargs)
    row_bad, pf_bad = score.score_track_set(recon, corrupted, num_support, num_query, **kwargs)
    scores.append({'clip': clean.name, 'clean': row_clean['score'],
                   'corrupted': row_bad['score']})
    if i == 0:
      per_frame = {'clip': rel, 'clean': pf_clean['jaccard'].tolist(),
                   'corrupted': pf_bad['jaccard'].tolist()}
  ranked = sum(s['clean'] > s['corrupted'] for s in scores)
  return {'workdir': str(workdir), 'steps': int(config.total_steps), 'metrics': metrics,
          'scores': scores, 'clean_above_corrupted': int(ranked),
          'per_frame_scores': per_frame, 'metric_names': _metric_order(metrics)}


def summary(result: Mapping[str, Any]) -> str:
  m = result['metrics']
  return ('average Jaccard untrained {:.4f} -> trained {:.4f}'.format(
      m['untrained'].get('average_jaccard', float('nan')),
      m['trained'].get('average_jaccard', float('nan'))))


def add_section(report: Any, result: Mapping[str, Any],
                inputs: Mapping[str, Mapping[str, Any]]) -> None:
  """The 3DSPA section: metric table, realism scores, per-frame curve, tracks, training curves."""
  from tapkit.viz import plots, tables, tracks2d, tracks3d  # pylint: disable=g-import-not-at-top

  heldout = inputs['data']
  report.add_section('3DSPA (trajan3d): reconstruction of held-out 3D tracks')
  report.add_text(
      f'3DSPA `smoke` preset trained for {result["steps"]} steps on synthetic clips; '
      f'{len(heldout["files"])} held-out clips (seed 777); each clip\'s query tracks are '
      'decoded from disjoint support tracks and scored with the TAPVid-3D metrics '
      '(`median` depth scaling).')
  names = result['metric_names']
  report.add_table([{'model': m, **{k: result['metrics'][m].get(k, float('nan')) for k in names}}
                    for m in result['metrics']], columns=['model'] + names)
  report.add_text(
      f'Realism score (average Jaccard of the held-out reconstruction; higher = more '
      f'plausible motion): clean clip above its corrupted copy on '
      f'{result["clean_above_corrupted"]} of {len(result["scores"])} clips. The clean '
      'column is the score `python -m trajan3d.score --tracks <clip> --checkpoint '
      f'<workdir>/{STAGE}` prints for the clip (same folds: seed {score.DEFAULT_SEED}, at most '
      f'{score.DEFAULT_MAX_TRACKS} tracks), to the same 4 decimals.')
  score_column = tables.COLUMNS['score']
  report.add_table(result['scores'], columns=['clip', 'clean', 'corrupted'], specs={
      'clean': dataclasses.replace(score_column, label='realism score, clean clip'),
      'corrupted': dataclasses.replace(score_column, label='realism score, corrupted copy')})
  pf = result['per_frame_scores']
  if pf:
    fig = plots.plot_score_curves({'clean': pf['clean'], 'corrupted': pf['corrupted']},
                                  title=f'per-frame realism score: {pf["clip"]}',
                                  ylabel='Jaccard', ylim=(0.0, 1.0))
    report.add_image(fig, caption='Per-frame realism score, clean vs corrupted',
                     name='trajan3d_per_frame')
    clip = tapvid3d.load_clip(os.path.join(heldout['heldout_dir'], pf['clip']))
    t = clip.num_frames
    # Small synthetic frames: painted 4x larger (nearest neighbour) so the tracks are legible.
    painted = tracks2d.paint_clip(clip, color_by='rainbow', scale=4, radius=4.0, line_width=2)
    gap = np.full((painted.shape[1], 8, 3), 255, np.uint8)
    strip = np.concatenate([painted[0], gap, painted[t // 2], gap, painted[t - 1]], axis=1)
    report.add_image(strip, caption=f'`{pf["clip"]}`: ground-truth tracks painted on frames '
                     f'0, {t // 2}, {t - 1}', name='trajan3d_tracks2d')
    fig = tracks3d.plot_clip(clip, color_by='track', figsize=(8.0, 7.0))
    report.add_image(fig, caption=f'`{pf["clip"]}`: 3D tracks and cameras (world frame, '
                     'metres)', name='trajan3d_tracks3d')
  metrics_path = pathlib.Path(result['workdir']) / 'metrics.jsonl'
  report.add_training_curves(metrics_path, '3DSPA')
  note = certainty_note(metrics_path)
  if note:
    report.add_text(note)


def certainty_note(metrics_path: str | os.PathLike) -> str:
  """A sentence on `train/loss_certainty` when the run logged it constant at ln 2, else ''.

  3DSPA has no certainty head: its certainty logits are zeros, so the logged binary cross-
  entropy is ln 2 at every step, and the term has weight 0 (configs/spa3d.py), as in the
  released model, which never trains certainty.
  """
  from tapkit.viz import plots  # pylint: disable=g-import-not-at-top

  if not os.path.isfile(metrics_path):
    return ''
  series = plots.load_jsonl_scalars(metrics_path).get('train/loss_certainty')
  if series is None or not len(series[1]):
    return ''
  values = series[1]
  if not np.all(np.abs(values - np.log(2.0)) < 1e-4):
    return ''
  return (f'`loss_certainty` stays at ln 2 = {np.log(2.0):.4f} over all {len(values)} logged '
          'steps: 3DSPA has no certainty head (its certainty logits are zeros, so the binary '
          'cross-entropy is that of a constant 0.5 prediction) and the term has weight 0. The '
          'released 3DSPA never trains certainty either; the curve is logged, not learned.')
