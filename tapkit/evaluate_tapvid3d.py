r"""TAPVid-3D evaluation: a drop-in for tapnet's `tapvid3d/evaluation/evaluate_model.py`.

Usage:
  python -m tapkit.evaluate_tapvid3d --tapvid3d_dir=tapvid3d_dataset \
      --predictions_dir=tapvid3d_predictions --split=minival \
      --depth_scalings=median,per_trajectory --output=results.json
  python -m tapkit.evaluate_tapvid3d --tapvid3d_dir=synthetic --predictions_dir=preds \
      --glob='*/*.npz'

Same semantics as the official tapnet script:
* Per data source (in `--data_sources` order; default drivetrack, adt, pstudio), the
  split's file list; ground truth `<tapvid3d_dir>/<source>/<file>`, prediction
  `<predictions_dir>/<source>/<file>` with `tracks_XYZ` [T, N, 3], `visibility` [T, N].
* Intrinsics are multiplied by k = 256 / min(H, W) of the first frame, so pixel
  thresholds are measured at a 256-pixel shortest side.
* Metric call per scaling: `gt_occluded = ¬visibility`, `pred_occluded = ¬visibility_pred`
  (any non-zero predicted value counts as visible), `order='t n'`, query points
  `queries_xyt[..., ::-1]` = (t, y, x).
* A missing or unreadable prediction file scores 0 on every metric for every scaling; a
  metric call that raises scores 0 for that scaling. Source score = plain mean over its
  videos; overall = plain mean over sources (each source weighs the same).

Deliberate differences:
* `per_trajectory` and `local_neighborhood` give real values. The official script
  passes query points [N, 3], which its metric rejects for `per_trajectory` (it wants
  [1, N, 3]), and its `local_neighborhood` fails to stack per-video values; both are
  swallowed and reported as 0. `tapkit.metrics.tapvid3d` accepts the [N, 3] queries
  passed here and returns the per-video values.
* Ground-truth files are read with the validating, pickle-free `load_clip`; a broken
  ground-truth file scores 0 and is listed in `failed_files` (the official run aborts).
* Every failure is listed by name (`failed_files`, reasons in `failure_reasons`).
* `--split=all` (minival then full_eval) and `--glob` (any directory of clips; the data
  source is the first path component) exist only here.
"""

from __future__ import annotations

import argparse
import glob as glob_lib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import tqdm

from tapkit import cli
from tapkit.data import tapvid3d
from tapkit.io import batch as batch_lib
from tapkit.metrics import tapvid3d as metrics_lib

DEFAULT_SOURCES = ('drivetrack', 'adt', 'pstudio')  # The official flag's order.
DEFAULT_SCALINGS = ('median',)

MetricDict = dict[str, float]


def zero_metrics() -> dict[str, np.ndarray]:
  """The official failure value: every metric `array([0.0])`."""
  return {key: np.array([0.0]) for key in metrics_lib.METRIC_KEYS}


def _per_video_value(value: np.ndarray, key: str, name: str) -> np.ndarray:
  # Unbatched metrics are [1]; local_neighborhood gives 0-d. Both become [1] so the
  # averages are taken over the same float64 values as upstream.
  value = np.asarray(value, dtype=np.float64).reshape(-1)
  if value.shape != (1,):
    raise ValueError(f'{name}: metric {key} has {value.size} values, expected 1')
  return value


def evaluate_video(
    gt_path: str, pred_path: str, depth_scalings: Sequence[str],
    short_side: int = tapvid3d.EVAL_SHORT_SIDE,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
  """Metrics of one video for each scaling.

  Returns:
    (scaling -> metric -> [1] float64 array, failures) where `failures` maps a stage
    ('ground_truth', 'prediction', or 'metric:<scaling>') to its error message; failed
    stages score 0 as in the official script.
  """
  failures: dict[str, str] = {}
  try:
    gt = tapvid3d.load_clip(gt_path)
    height, width = gt.frame_size  # Decodes only the first frame, as upstream.
    intrinsics = tapvid3d.eval_intrinsics(gt.intrinsics, height, width, short_side)
  except Exception as e:  # pylint: disable=broad-exception-caught
    failures['ground_truth'] = f'{type(e).__name__}: {e}'
    return {s: zero_metrics() for s in depth_scalings}, failures
  try:
    pred = tapvid3d.load_predictions(pred_path)
  except Exception as e:  # pylint: disable=broad-exception-caught
    failures['prediction'] = f'{type(e).__name__}: {e}'
    return {s: zero_metrics() for s in depth_scalings}, failures

  # (x, y, t) -> (t, y, x): the metric's query layout.
  query_points = gt.queries_xyt[..., ::-1]
  results = {}
  for scaling in depth_scalings:
    try:
      values = metrics_lib.compute_tapvid3d_metrics(
          gt_occluded=np.logical_not(gt.visibility),
          gt_tracks=gt.tracks_xyz,
          pred_occluded=np.logical_not(pred.visibility),
          pred_tracks=pred.tracks_xyz,
          intrinsics_params=intrinsics,
          scaling=scaling,
          query_points=query_points,
          order='t n',
      )
      results[scaling] = {k: _per_video_value(v, k, gt_path) for k, v in values.items()}
    except Exception as e:  # pylint: disable=broad-exception-caught
      failures[f'metric:{scaling}'] = f'{type(e).__name__}: {e}'
      results[scaling] = zero_metrics()
  return results, failures


def _average(per_item: list[dict[str, dict[str, Any]]]) -> dict[str, MetricDict]:
  """Plain mean over items for each scaling and metric (upstream's np.mean)."""
  first = per_item[0]
  return {
      scaling: {
          key: float(np.mean([item[scaling][key] for item in per_item]))
          for key in first[scaling]
      }
      for scaling in first
  }


def _file_lists(tapvid3d_dir: str, split: str, data_sources: Sequence[str] | None,
                glob: str | None) -> dict[str, list[str]]:
  """source -> paths relative to the ground-truth / prediction roots."""
  if glob is None:
    sources = list(data_sources or DEFAULT_SOURCES)
    return {s: [f'{s}/{name}' for name in tapvid3d.split_files(split, s)] for s in sources}
  matches = sorted(
      os.path.relpath(p, tapvid3d_dir)
      for p in glob_lib.glob(os.path.join(tapvid3d_dir, glob), recursive=True)
      if os.path.isfile(p))
  lists: dict[str, list[str]] = {}
  for rel in matches:
    parts = rel.split(os.sep)
    source = parts[0] if len(parts) > 1 else '.'
    lists.setdefault(source, []).append(rel.replace(os.sep, '/'))
  if data_sources:
    lists = {s: lists.get(s, []) for s in data_sources}
  empty = [s for s, files in lists.items() if not files]
  if not lists or empty:
    raise batch_lib.InputError(f'{tapvid3d_dir}: no clips match --glob={glob!r}'
                     + (f' for sources {empty}' if empty else ''))
  return lists


def evaluate_directory(
    tapvid3d_dir: str,
    predictions_dir: str,
    split: str = 'minival',
    data_sources: Sequence[str] | None = None,
    depth_scalings: Sequence[str] = DEFAULT_SCALINGS,
    glob: str | None = None,
    debug: bool = False,
    short_side: int = tapvid3d.EVAL_SHORT_SIDE,
    progress: bool = True,
) -> dict[str, Any]:
  """Evaluates a directory of predictions against TAPVid-3D ground truth.

  Args:
    tapvid3d_dir: ground truth root with one folder per data source.
    predictions_dir: same layout and file names, `tracks_XYZ` / `visibility` files.
    split: 'minival', 'full_eval' or 'all' (ignored with `glob`).
    data_sources: sources in evaluation order; default drivetrack, adt, pstudio (with
      `glob`: every first-level folder found, sorted).
    depth_scalings: scalings passed to the metric ('median', 'per_trajectory', ...).
    glob: pattern relative to `tapvid3d_dir` (e.g. '*/*.npz') instead of a split.
    debug: stop after the first video of each source (upstream `--debug`).
    short_side: evaluation resolution (shortest side, pixels) for the intrinsics.
    progress: show a tqdm bar per source (stderr).

  Returns:
    {'overall': {scaling: {metric: float}}, 'per_source': {source: {scaling: {metric:
    float}}}, 'failed_files': [relative paths], 'failure_reasons': {relative path:
    {stage: message}}, 'num_videos': {source: int}}.
  """
  for scaling in depth_scalings:
    if scaling not in metrics_lib.SCALINGS:
      raise ValueError(f'unknown depth scaling {scaling!r}; known: {metrics_lib.SCALINGS}')
  lists = _file_lists(tapvid3d_dir, split, data_sources, glob)
  per_source: dict[str, dict[str, MetricDict]] = {}
  num_videos: dict[str, int] = {}
  reasons: dict[str, dict[str, str]] = {}
  for source, files in lists.items():
    if debug:
      files = files[:1]
    per_video = []
    for rel in tqdm.tqdm(files, desc=source, disable=not progress, file=sys.stderr):
      result, failures = evaluate_video(
          os.path.join(tapvid3d_dir, rel), os.path.join(predictions_dir, rel),
          depth_scalings, short_side)
      per_video.append(result)
      if failures:
        reasons[rel] = failures
    per_source[source] = _average(per_video)
    num_videos[source] = len(per_video)
  overall = _average(list(per_source.values()))
  return {
      'overall': overall,
      'per_source': per_source,
      'failed_files': list(reasons),
      'failure_reasons': reasons,
      'num_videos': num_videos,
  }


def num_scored(results: dict[str, Any]) -> int:
  """How many videos were scored without failure."""
  return sum(results['num_videos'].values()) - len(results['failed_files'])


def exit_status(results: dict[str, Any]) -> int:
  """0 when at least one video was scored, else 1 (`tapkit.io.batch` convention)."""
  return batch_lib.EXIT_OK if num_scored(results) else batch_lib.EXIT_NOTHING_PROCESSED


def format_table(results: dict[str, Any]) -> str:
  """One table per scaling: rows = metrics, columns = sources and the overall mean."""
  lines = []
  sources = list(results['per_source'])
  columns = sources + ['overall']
  width = max(12, *(len(c) + 2 for c in columns))
  for scaling, overall in results['overall'].items():
    lines.append(f'depth scaling: {scaling}')
    lines.append(f'{"metric":<28}' + ''.join(f'{c:>{width}}' for c in columns))
    for key, value in overall.items():
      cells = [results['per_source'][s][scaling][key] for s in sources] + [value]
      lines.append(f'{key:<28}' + ''.join(f'{v:>{width}.4f}' for v in cells))
    lines.append('')
  counts = ', '.join(f'{s}: {n}' for s, n in results['num_videos'].items())
  lines.append(f'videos per source: {counts}')
  failed = results['failed_files']
  lines.append(f'failed files ({len(failed)}, scored 0):' if failed else 'failed files: none')
  for rel in failed:
    for stage, message in results['failure_reasons'][rel].items():
      lines.append(f'  {rel} [{stage}] {message}')
  return '\n'.join(lines)


def _comma_list(text: str) -> list[str]:
  return [item for item in text.split(',') if item]


def _bool(text: str) -> bool:
  if text.lower() in ('1', 'true', 'yes'):
    return True
  if text.lower() in ('0', 'false', 'no'):
    return False
  raise argparse.ArgumentTypeError(f'expected true/false, got {text!r}')


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = cli.ArgumentParser(
      prog='python -m tapkit.evaluate_tapvid3d',
      description='TAPVid-3D metrics on a directory of predictions.')
  parser.add_argument('--tapvid3d_dir', default='tapvid3d_dataset/',
                      help='ground truth, with adt/ pstudio/ drivetrack/ subfolders')
  parser.add_argument('--predictions_dir', '--tapvid3d_predictions',
                      dest='predictions_dir', default='tapvid3d_predictions/',
                      help='predictions, same layout and file names')
  parser.add_argument('--split', choices=tapvid3d.SPLITS, default=None,
                      help='file list (default minival)')
  parser.add_argument('--use_minival', type=_bool, nargs='?', const=True, default=None,
                      help='upstream spelling: true = minival, false = full_eval')
  parser.add_argument('--nouse_minival', dest='use_minival', action='store_false',
                      help='upstream spelling of --split=full_eval')
  parser.add_argument('--data_sources', '--data_sources_to_evaluate',
                      dest='data_sources', type=_comma_list, default=None,
                      help='comma-separated, default drivetrack,adt,pstudio')
  parser.add_argument('--depth_scalings', type=_comma_list,
                      default=list(DEFAULT_SCALINGS), help='comma-separated scalings')
  parser.add_argument('--glob', default=None,
                      help="evaluate every clip matching this pattern, e.g. '*/*.npz'")
  parser.add_argument('--output', default=None, help='write results as JSON here')
  parser.add_argument('--debug', type=_bool, nargs='?', const=True, default=False,
                      help='only the first video of each source')
  parser.add_argument('--short_side', type=int, default=tapvid3d.EVAL_SHORT_SIDE)
  parser.add_argument('--no_progress', action='store_true')
  args = parser.parse_args(argv)
  if args.split is None:
    args.split = 'full_eval' if args.use_minival is False else 'minival'
  elif args.use_minival is not None:
    parser.error('give --split or --use_minival, not both')
  return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the CLI; returns the results. A missing or empty input folder exits with one
  `error:` line and status 2; a run where no video could be scored exits with status 1
  (after printing the table and the failed files)."""
  args = parse_args(argv)
  try:
    batch_lib.require_dir(args.tapvid3d_dir, '--tapvid3d_dir')
    batch_lib.require_dir(args.predictions_dir, '--predictions_dir')
    results = evaluate_directory(
        args.tapvid3d_dir, args.predictions_dir, split=args.split,
        data_sources=args.data_sources, depth_scalings=args.depth_scalings,
        glob=args.glob, debug=args.debug, short_side=args.short_side,
        progress=not args.no_progress)
  except batch_lib.InputError as e:
    raise SystemExit(batch_lib.usage_error(e)) from None
  print(format_table(results))
  if args.output:
    folder = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(folder, exist_ok=True)
    tmp = args.output + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(results, f, indent=2)
    os.replace(tmp, args.output)
  if exit_status(results):
    raise SystemExit(exit_status(results))
  return results


if __name__ == '__main__':
  cli.run(main, debug_flag=None)  # its --debug is upstream's one-video-per-source mode
