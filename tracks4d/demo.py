"""The TracksTo4D stage of the quickstart (`python -m tapkit3d.quickstart --stages tracks4d`).

Trains TracksTo4D `smoke` (configs/tracks4d.py) in the stage's workdir and runs inference on its
held-out synthetic scenes: untrained, trained, and trained + test-time fine-tuning (ATE, RPE,
pixel error, depth AbsRel, δ1). "Video in": the held-out scenes' frames (rendered again from
the synthetic cache) are tracked with Lucas-Kanade from the exact tracks' query points, and
the trained / fine-tuned model runs on those tracks too (rows '... (LK tracks)'), next to the
TAP-Vid 2D metrics of the LK tracks against the exact ones. The interface (STAGE, DESCRIPTION, INPUTS, Sizes, FULL, FAST,
run, summary, add_section) is the one every method's demo.py has: trajan3d/demo.py documents it.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from tapkit import tracking
from tapkit.data import geometry, synthetic, tracks4d_format
from tapkit.io import npz as npz_io
from tapkit.train import config as config_lib
from tapkit.train import launch
from tapkit.train import precision
from tapkit.tracking import evaluate as track_eval
from tracks4d import from_video, infer, task

STAGE = 'tracks4d'
DESCRIPTION = 'TracksTo4D smoke: train, infer, test-time fine-tuning'
INPUTS = ()


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Training steps, synthetic train / held-out scenes and test-time fine-tuning steps."""
  steps: int = 300
  train_clips: int = 12
  eval_clips: int = 6
  finetune_steps: int = 100


FULL = Sizes()
FAST = Sizes(steps=4, train_clips=2, eval_clips=1, finetune_steps=2)


def smoke_config(sizes: Sizes, fast: bool) -> ml_collections.ConfigDict:
  """configs/tracks4d.py:smoke for `sizes` (fast: frequent eval / log / save)."""
  return config_lib.demo_config('configs/tracks4d.py:smoke', sizes.steps, fast,
                                num_train=sizes.train_clips, num_eval=sizes.eval_clips)


def lk_inputs(eval_dir: pathlib.Path, paths: list[str], out_dir: pathlib.Path
              ) -> tuple[list[str], dict[str, float]]:
  """LK-tracked copies of the held-out TracksTo4D files `paths` (clip_<i>.npz of `eval_dir`).

  Each scene's frames are rendered again from the cache manifest (`synthetic.cached_clip`),
  tracked with LK from the exact tracks' query frames and positions (`from_video.retrack`:
  cameras, intrinsics and ground-truth depth are kept) and written to `out_dir`.

  Returns:
    (the new files, mean TAP-Vid AJ / delta_avg / OA of the LK tracks against the exact
    ones, every frame but each track's query frame scored).
  """
  tracker = tracking.make_tracker('lk')
  out_paths, scores = [], []
  for path in paths:
    path = pathlib.Path(path)
    clip = synthetic.cached_clip(eval_dir, int(path.stem.split('_')[-1]))
    exact = tracks4d_format.load_tracks4d_npz(path)
    lk = from_video.retrack(tracker, clip.frames, exact)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracks4d_format.save_tracks4d_npz(out_dir / path.name, lk)
    out_paths.append(str(out_dir / path.name))
    result = tracking.TrackResult(tracks=lk['pred_tracks'][0], visible=lk['pred_visibility'][0],
                                  queries=from_video.track_queries(exact))
    scores.append(track_eval.score(result, exact['pred_tracks'][0], exact['pred_visibility'][0],
                                   np.arange(result.num_tracks), 'strided',
                                   clip.frames.shape[1:3]))
  return out_paths, {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}


def run(workdir: pathlib.Path, sizes: Sizes, *, fast: bool, log: Callable[[str], None],
        inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """Trains TracksTo4D smoke in `workdir`; infers on its held-out scenes before / after training.

  Returns:
    {'workdir', 'steps', 'finetune_steps', 'metrics': {'untrained'|'trained'|'fine-tuned':
    {'ate', 'rpe_trans', 'rpe_rot', 'pixel_error', 'abs_rel', 'delta_1', ...}} (also
    'trained (LK tracks)' / 'fine-tuned (LK tracks)'), 'lk_tapvid': {'average_jaccard',
    'average_pts_within_thresh', 'occlusion_accuracy'} of the LK tracks, 'num_scenes',
    'views': interactive 3D pages relative to workdir, 'predictions': fine-tuned .npz files,
    'inputs': the held-out scene files}.
  """
  del inputs
  config = smoke_config(sizes, fast)
  log(f'training TracksTo4D smoke for {config.total_steps} steps in {workdir}')
  launch.train(config, workdir, task.build_method)
  eval_paths = task.list_clip_files(workdir / 'synthetic' / 'eval')

  log(f'inference on {len(eval_paths)} held-out scenes: untrained model')
  trained = infer.load_model(str(workdir))
  # Initialised by the program that initialised the training run (the net as training built
  # it, equal to trained.net): nothing to compile.
  net = task.build_model(config.model, dtype=precision.compute_dtype(config),
                         remat=config.remat)
  init_params = task.init_params(net, jax.random.PRNGKey(1))
  untrained = infer.LoadedModel(trained.net, init_params, None, 'untrained')
  rows = [infer.infer_video(untrained, p, workdir / 'pred_untrained', html=False)
          for p in eval_paths]
  results = {'untrained': infer.summarize(rows)}

  log(f'inference with the trained model, then {sizes.finetune_steps} steps of test-time '
      'fine-tuning per scene')
  res = infer.run(str(workdir), eval_paths, str(workdir / 'pred'),
                  finetune_steps=sizes.finetune_steps)
  results['trained'] = res['mean_before_finetune']
  results['fine-tuned'] = res['mean']

  log('video in: LK tracks of the held-out scenes from the exact query points, then the '
      'trained and fine-tuned model on them')
  lk_paths, lk_tapvid = lk_inputs(workdir / 'synthetic' / 'eval', eval_paths,
                                  workdir / 'lk_tracks')
  res_lk = infer.run(str(workdir), lk_paths, str(workdir / 'pred_lk'),
                     finetune_steps=sizes.finetune_steps)
  results['trained (LK tracks)'] = res_lk['mean_before_finetune']
  results['fine-tuned (LK tracks)'] = res_lk['mean']
  videos = [r['video'] for r in res['videos']]
  return {'workdir': str(workdir), 'steps': int(config.total_steps),
          'finetune_steps': sizes.finetune_steps, 'metrics': results,
          'lk_tapvid': lk_tapvid, 'num_scenes': len(eval_paths), 'views': [f'pred/{v}.html' for v in videos],
          'predictions': [str(workdir / 'pred' / f'{v}.npz') for v in videos],
          'inputs': list(eval_paths)}


def summary(result: Mapping[str, Any]) -> str:
  return 'ATE / AbsRel: ' + ', '.join(f'{k} {v["ate"]:.3f} / {v["abs_rel"]:.3f}'
                                      for k, v in result['metrics'].items())


def static_camera_rpe(paths: list[str]) -> float | None:
  """RPE translation (m) that cameras which never move would score, mean over the scenes.

  With a constant predicted pose the relative-pose error of consecutive frames is the true
  relative motion, so this is the RMS of the ground-truth frame-to-frame camera translation
  (`tapkit.metrics.pose`); None when no file has ground-truth poses (`Ms_all`).
  """
  per_scene = []
  for path in paths:
    data = tracks4d_format.load_tracks4d_npz(path)
    if 'Ms_all' not in data or data['Ms_all'].shape[0] < 2:
      continue
    centres = geometry.invert_pose(np.asarray(data['Ms_all'], np.float64))[:, :3, 3]  # [T, 3]
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=-1)
    per_scene.append(float(np.sqrt(np.mean(steps**2))))
  return float(np.mean(per_scene)) if per_scene else None


def rpe_note(metrics: Mapping[str, Mapping[str, float]], static_rpe: float | None) -> str:
  """A sentence when RPE translation is worse trained than untrained, else ''."""
  before, after = metrics.get('untrained'), metrics.get('trained')
  if not before or not after or not after['rpe_trans'] > before['rpe_trans']:
    return ''
  tuned = metrics.get('fine-tuned')
  text = (f'RPE translation worsens with training ({before["rpe_trans"]:.3f} → '
          f'{after["rpe_trans"]:.3f} m' +
          (f', {tuned["rpe_trans"]:.3f} m fine-tuned' if tuned else '') +
          f') while RPE rotation goes {before["rpe_rot"]:.2f} → {after["rpe_rot"]:.2f}° '
          f'and ATE {before["ate"]:.3f} → {after["ate"]:.3f} m. RPE compares consecutive '
          'frames after one Sim(3) alignment of the whole trajectory, so it measures the '
          'small per-frame camera steps.')
  if static_rpe is not None:
    text += (f' For scale: cameras that never move would score {static_rpe:.3f} m on these '
             'scenes (the RMS of the true frame-to-frame camera translation)')
    if after['rpe_trans'] > static_rpe:
      text += ('; the trained smoke model\'s frame-to-frame translations are further from '
               'the truth than no motion at all' +
               (', while its rotations improve.' if after['rpe_rot'] < before['rpe_rot']
                else '.'))
    else:
      text += '.'
  return text


def add_section(report: Any, result: Mapping[str, Any],
                inputs: Mapping[str, Mapping[str, Any]]) -> None:
  """The TracksTo4D section: metric table, predicted 3D points, 3D views, training curves."""
  from tapkit.viz import tracks3d  # pylint: disable=g-import-not-at-top

  del inputs
  report.add_section('TracksTo4D (tracks4d): 3D points, cameras and motion from 2D tracks')
  report.add_text(
      f'TracksTo4D `smoke` trained for {result["steps"]} steps on synthetic dynamic scenes; '
      f'{result["num_scenes"]} held-out scenes. Fine-tuned: {result["finetune_steps"]} steps of '
      'test-time fine-tuning per scene. ATE / RPE after Sim(3) alignment; depth AbsRel and '
      'δ<1.25 with per-frame median scaling. (LK tracks): the same model given Lucas-Kanade '
      'tracks of the scenes\' frames, started from the exact tracks\' query points, in place '
      'of the exact tracks (ground-truth cameras and depths; the pixel error is against the '
      'tracks the model is given).')
  lk = result['lk_tapvid']
  report.add_text(
      f'LK tracks against the exact tracks on these scenes (TAP-Vid 2D, every frame but the '
      f'query frame): AJ {lk["average_jaccard"]:.3f}, δ_avg '
      f'{lk["average_pts_within_thresh"]:.3f}, OA {lk["occlusion_accuracy"]:.3f}.')
  cols = ['ate', 'rpe_trans', 'rpe_rot', 'pixel_error', 'abs_rel', 'delta_1']
  report.add_table([{'model': m, **{c: v.get(c, float('nan')) for c in cols}}
                    for m, v in result['metrics'].items()], columns=['model'] + cols)
  note = rpe_note(result['metrics'], static_camera_rpe(result.get('inputs', [])))
  if note:
    report.add_text(note)
  if result['predictions']:
    pred = npz_io.read_npz(result['predictions'][0])
    fig = tracks3d.plot_tracks_3d(pred['points_world'], visible=pred['visible'],
                                  color_by='motion', motion=pred['motion_level'],
                                  w2c=pred['w2c'], intrinsics=None, figsize=(8.0, 7.0),
                                  units='arbitrary units')
    report.add_image(fig, caption='Predicted 3D points (colour = motion level) and cameras, '
                     'first held-out scene after fine-tuning (predicted world frame: the '
                     'scale is arbitrary)', name='tracks4d_points')
    for view in result['views']:
      report.add_link(pathlib.Path(result['workdir']) / view,
                      f'interactive 3D view: {pathlib.Path(view).stem}')
  report.add_training_curves(pathlib.Path(result['workdir']) / 'metrics.jsonl', 'TracksTo4D')
