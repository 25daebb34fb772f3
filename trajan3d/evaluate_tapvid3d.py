r"""3DSPA on TAPVid-3D: reconstruct query tracks from support tracks, write
predictions, score them with `tapkit.evaluate_tapvid3d`.

    python -m trajan3d.evaluate_tapvid3d --checkpoint WORKDIR_OR_NPZ \
        --tapvid3d_dir DIR [--split minival|full_eval|all | --glob '*/*.npz'] \
        --out PRED_DIR [--protocol heldout|self] [--depth_scalings median,per_trajectory] \
        [--config configs/spa3d.py:default] [--random_init]

For each clip `<source>/<name>.npz` the prediction file `PRED_DIR/<source>/<name>.npz`
holds `tracks_XYZ` [T, Q, 3] (camera metres) and `visibility` [T, Q] bool, the
TAPVid-3D prediction layout (time first; the released 3DSPA evaluation swaps
these axes). Frames past the model's `num_output_frames` are filled with the
last predicted position, marked not visible.

Protocols:
  heldout (default)  per clip, a seeded permutation splits the tracks into
      Q = min(num_query, N // 2) query tracks and up to num_support other
      (support) tracks by the rule of `tapkit.data.pipeline.split_support_query`
      (queries first, support from the end): disjoint, so a track is never
      reconstructed from itself.
      Query points are the clip's own (t from `queries_xyt`, XYZ = tracks_XYZ[t]).
      Only the query tracks are scored: their ground truth is written as clip
      files (same frames and intrinsics, tracks subset) to `--heldout_gt_dir`
      (default `PRED_DIR_heldout_gt`), which becomes the evaluation root.
  self  the released 3DSPA protocol, with its axis bugs fixed: every track is
      support and query (time padded / cropped to num_output_frames, boundary =
      real length), and all tracks are scored against the original clips. An
      autoencoder that copies its input scores perfectly here: it measures
      reconstruction, not prediction.

Results (the `tapkit.evaluate_tapvid3d` dict plus 'protocol' and 'checkpoint')
are printed as a table and written to `--results` (default PRED_DIR/results.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tqdm

from tapkit import cli
from tapkit import evaluate_tapvid3d as tapkit_eval
from tapkit.data import tapvid3d
from tapkit.io import batch as batch_lib

if TYPE_CHECKING:
  from trajan3d import evaluators
# The model side (JAX, Flax, grain) is imported where it is used, after argument parsing:
# `--help` and argument errors stay fast.

PROTOCOLS = ('heldout', 'self')


def split_heldout(num_tracks: int, num_support: int, num_query: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(support, query) disjoint sorted track indices for the held-out protocol:
  `split_support_query` of one permutation with min(num_query, N // 2) queries."""
  if num_tracks < 2:
    raise ValueError(f'held-out protocol needs at least 2 tracks, got {num_tracks}.')
  nq = max(1, min(num_query, num_tracks // 2))
  from tapkit.data import pipeline  # pylint: disable=g-import-not-at-top
  support, query = pipeline.split_support_query(rng.permutation(num_tracks), num_support, nq)
  return np.sort(support), np.sort(query)


def fill_frames(pred: np.ndarray, visible: np.ndarray, num_frames: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """[T', Q, 3], [T', Q] -> [num_frames, ...]: extra frames repeat the last
  position and are not visible."""
  extra = num_frames - pred.shape[0]
  if extra <= 0:
    return pred[:num_frames], visible[:num_frames]
  pred = np.concatenate([pred, np.repeat(pred[-1:], extra, axis=0)], axis=0)
  visible = np.concatenate([visible, np.zeros((extra,) + visible.shape[1:], bool)], 0)
  return pred, visible


def predict_clip(recon: evaluators.Reconstructor, clip: tapvid3d.Clip, protocol: str,
                 num_support: int, num_query: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Predictions of one clip.

  Returns:
    (tracks_XYZ [T, Q, 3] float32, visibility [T, Q] bool, query track indices [Q]).
  """
  from trajan3d import evaluators, input_pipeline  # pylint: disable=g-import-not-at-top,redefined-outer-name
  clip = input_pipeline.track_clip(clip)
  tracks = input_pipeline.model_tracks(clip, recon.coords)  # [T, N, 3]
  if protocol == 'heldout':
    support, query = split_heldout(clip.num_tracks, num_support, num_query, rng)
  else:
    support = query = np.arange(clip.num_tracks)
  pred, visible = evaluators.reconstruct(recon, clip, tracks, support, query,
                                         clip.query_frames)
  pred, visible = fill_frames(pred, visible, clip.num_frames)
  return pred.astype(np.float32), visible, query


def subset_clip(clip: tapvid3d.Clip, query: np.ndarray) -> tapvid3d.Clip:
  """The clip restricted to tracks `query` (frames, intrinsics, poses kept;
  depth / normals / extras dropped)."""
  pick = lambda x: None if x is None else np.asarray(x)[query]
  return dataclasses.replace(
      clip, tracks_xyz=clip.tracks_xyz[:, query], visibility=clip.visibility[:, query],
      queries_xyt=clip.queries_xyt[query], object_ids=pick(clip.object_ids),
      dynamic_mask=pick(clip.dynamic_mask), depth=None, normals=None, extras={})


def random_reconstructor(config, seed: int = 0) -> evaluators.Reconstructor:
  """An untrained model (Flax default init from `seed`): the baseline."""
  import jax  # pylint: disable=g-import-not-at-top

  from tapkit.models import jitted  # pylint: disable=g-import-not-at-top
  from trajan3d import evaluators, input_pipeline  # pylint: disable=g-import-not-at-top,redefined-outer-name
  from trajan3d import model as model_lib  # pylint: disable=g-import-not-at-top

  model = model_lib.build_model_from_config(config)
  inputs = model_lib.example_inputs(model, dino=bool(config.features.dino),
                                    depth=bool(config.features.depth))
  # The jitted init of the training run (trajan3d.task): compiled once per process.
  params = jitted.jitted_init(model)(jax.random.PRNGKey(seed), inputs)['params']
  return evaluators.Reconstructor(model, jax.device_get(params),
                                  input_pipeline.coords_of(config), config.features,
                                  config.data.normalize)


def run(checkpoint: str | None, tapvid3d_dir: str, out: str, protocol: str = 'heldout',
        split: str = 'minival', data_sources: Sequence[str] | None = None,
        glob: str | None = None, depth_scalings: Sequence[str] = ('median',),
        config_arg: str | None = None, random_init: bool = False,
        num_support: int | None = None, num_query: int | None = None, seed: int = 0,
        heldout_gt_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
  """Writes predictions for every clip and evaluates them (module docstring)."""
  from trajan3d import score as score_lib  # pylint: disable=g-import-not-at-top
  if protocol not in PROTOCOLS:
    raise ValueError(f'--protocol must be one of {PROTOCOLS}, got {protocol!r}.')
  if random_init:
    config = (score_lib.load_config_arg(config_arg) if config_arg
              else score_lib.find_workdir_config(checkpoint or '.'))
    if config is None:
      raise ValueError('--random_init needs --config (or a --checkpoint workdir).')
    recon = random_reconstructor(config, seed)
  else:
    if not checkpoint:
      raise ValueError('--checkpoint is required (or --random_init for a baseline).')
    config, recon = score_lib.reconstructor_from_checkpoint(checkpoint, config_arg)
  if recon.coords != 'xyz':
    raise ValueError(f'{checkpoint}: TAPVid-3D evaluation needs a 3D model (3DSPA, '
                     f'config.model.kind 3dspa*); got kind {config.model.kind!r}.')
  num_support = num_support or int(config.evals.eval.num_support)
  num_query = num_query or int(config.evals.eval.num_query)
  gt_root = tapvid3d_dir
  if protocol == 'heldout':
    gt_root = heldout_gt_dir or out.rstrip('/') + '_heldout_gt'

  lists = tapkit_eval._file_lists(tapvid3d_dir, split, data_sources, glob)  # pylint: disable=protected-access
  rels = [rel for files in lists.values() for rel in files]
  batch = batch_lib.BatchRun('clip')

  def predict(index: int, rel: str) -> None:
    clip = tapvid3d.load_clip(os.path.join(tapvid3d_dir, rel))
    pred, visible, query = predict_clip(recon, clip, protocol, num_support, num_query,
                                        np.random.default_rng((seed, index)))
    os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
    tapvid3d.save_predictions(os.path.join(out, rel), pred, visible)
    if protocol == 'heldout':
      os.makedirs(os.path.dirname(os.path.join(gt_root, rel)), exist_ok=True)
      tapvid3d.save_clip(os.path.join(gt_root, rel), subset_clip(clip, query))

  for index, rel in enumerate(tqdm.tqdm(rels, desc=f'3DSPA {protocol}', unit='clip',
                                        disable=not progress, file=sys.stderr)):
    path = os.path.join(tapvid3d_dir, rel)
    if not os.path.isfile(path):
      logging.warning('%s: missing, scored 0.', path)
      continue
    written = [os.path.join(out, rel)]
    if protocol == 'heldout':
      written.append(os.path.join(gt_root, rel))
    for stale in written:  # Never score a previous run's output for a clip that fails now.
      if os.path.isfile(stale):
        os.remove(stale)
    batch.run(rel, lambda index=index, rel=rel: predict(index, rel))

  results = tapkit_eval.evaluate_directory(
      gt_root, out, split=split, data_sources=data_sources or None,
      depth_scalings=depth_scalings, glob=glob, progress=progress)
  for rel, reason in batch.failures:  # The reader's reason, not 'prediction missing'.
    if rel not in results['failure_reasons']:
      results['failed_files'].append(rel)
    results['failure_reasons'][rel] = {'clip': reason}
  results.update(protocol=protocol, checkpoint=checkpoint if not random_init else
                 f'random_init(seed={seed})', ground_truth_dir=gt_root,
                 num_support=num_support, num_query=num_query)
  return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = cli.ArgumentParser(
      prog='python -m trajan3d.evaluate_tapvid3d',
      description='3DSPA reconstruction on TAPVid-3D clips, scored with the official metric.')
  parser.add_argument('--checkpoint', default=None,
                      help='training workdir, orbax checkpoint dir or official .npz')
  parser.add_argument('--config', default=None,
                      help="model config 'file.py:preset' (default: workdir config.json)")
  parser.add_argument('--random_init', action='store_true',
                      help='untrained model from the config (baseline)')
  parser.add_argument('--tapvid3d_dir', required=True)
  parser.add_argument('--split', choices=tapvid3d.SPLITS, default='minival')
  parser.add_argument('--data_sources', default=None,
                      help='comma-separated (default drivetrack,adt,pstudio)')
  parser.add_argument('--glob', default=None, help="e.g. '*/*.npz' instead of a split")
  parser.add_argument('--out', required=True, help='prediction directory')
  parser.add_argument('--protocol', choices=PROTOCOLS, default='heldout')
  parser.add_argument('--depth_scalings', default='median')
  parser.add_argument('--num_support', type=int, default=None)
  parser.add_argument('--num_query', type=int, default=None)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--heldout_gt_dir', default=None)
  parser.add_argument('--results', default=None, help='JSON (default OUT/results.json)')
  parser.add_argument('--no_progress', action='store_true')
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the CLI; returns the results. A missing or empty --tapvid3d_dir exits with one
  `error:` line and status 2; a run that scores no clip exits with status 1 after
  listing the failed files."""
  args = parse_args(argv)
  split_list = lambda s: [x for x in (s or '').split(',') if x]
  try:
    batch_lib.require_dir(args.tapvid3d_dir, '--tapvid3d_dir')
    results = run(args.checkpoint, args.tapvid3d_dir, args.out, args.protocol, args.split,
                  split_list(args.data_sources) or None, args.glob,
                  split_list(args.depth_scalings), args.config, args.random_init,
                  args.num_support, args.num_query, args.seed, args.heldout_gt_dir,
                  progress=not args.no_progress)
  except batch_lib.InputError as e:
    raise SystemExit(batch_lib.usage_error(e)) from None
  print(tapkit_eval.format_table(results))
  path = args.results or os.path.join(args.out, 'results.json')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    json.dump(results, f, indent=2)
  os.replace(path + '.tmp', path)
  print(f'protocol {args.protocol}: predictions in {args.out}, results in {path}')
  if tapkit_eval.exit_status(results):
    raise SystemExit(tapkit_eval.exit_status(results))
  return results


if __name__ == '__main__':
  cli.run(main)
