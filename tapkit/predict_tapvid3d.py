r"""TAPVid-3D predictions from a 2D point tracker and per-frame depth (the baseline recipe).

    python -m tapkit.predict_tapvid3d --tapvid3d_dir tapvid3d_dataset --split minival \
        --tracker cotracker3 --tracker_checkpoint scaled_offline.pth \
        --depth vda --depth_checkpoint metric_video_depth_anything_vitl.pth --metric_depth \
        --out tapvid3d_predictions
    python -m tapkit.predict_tapvid3d --tapvid3d_dir synthetic --glob '*/*.npz' --tracker lk \
        --depth gt --out preds
    python -m tapkit.evaluate_tapvid3d --tapvid3d_dir synthetic --predictions_dir preds \
        --glob '*/*.npz'

For every clip: its queries (`queries_xyt`, as (t, x, y) rows, t rounded like the metric) are
tracked in 2D through the clip's frames, also backwards from each query frame; the depth of
every frame is sampled bilinearly at the 2D tracks (`tapkit.models.depth.lift.sample_depth`);
the points are lifted to the camera frame with the clip's intrinsics
(`tapkit.data.geometry.unproject`). The prediction file `<out>/<same relative path>` holds
`tracks_XYZ` [T, N, 3] metres and `visibility` [T, N] (the tracker's), the layout
`python -m tapkit.evaluate_tapvid3d --predictions_dir <out>` reads.

Trackers (`--tracker`): 'lk' (no weights), 'cotracker3' (`--tracker_checkpoint`), 'exact'
(the ground truth: `tracks_XYZ` projected with the intrinsics and `visibility`; a plumbing
check, not a method).

Depth (`--depth`):
  gt         the clip's own depth maps (`depth` [T, H, W], e.g. synthetic clips) sampled at
             the 2D tracks; a clip without depth maps falls back to `gt_points`.
  gt_points  the ground-truth depth z of each track point itself (an oracle: only the 2D
             tracks are estimated).
  vda        Video Depth Anything (`--depth_checkpoint`). A relative checkpoint gives an
             affine-invariant *inverse* depth d (larger = nearer); the points are lifted at
             Z = 1 / d, which is right only up to an unknown scale (and shift) per video, so
             score them with the metric's depth scaling (`evaluate_tapvid3d
             --depth_scalings median`, the default). Pixels with d <= 0 (no depth, e.g. the
             sky) get the farthest valid depth of the clip and are predicted occluded. A
             metric checkpoint (`metric_video_depth_anything_*.pth`, `--metric_depth`) gives
             metres directly. `--random_weights_for_testing` uses the untrained 'tiny'
             network instead of a checkpoint: the depth is meaningless (tests only).

Clips that cannot be read or predicted are listed with the reason at the end; the run goes
on. Exit status 2 with one `error:` line on bad arguments or when no clip was predicted.
"""

from __future__ import annotations

import argparse
import glob as glob_lib
import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from tapkit import cli
from tapkit import tracking
from tapkit.data import geometry
from tapkit.data import tapvid3d
from tapkit.io import batch as batch_lib
from tapkit.models.depth import lift

TRACKERS = ('exact', 'lk', 'cotracker3')
DEPTHS = ('gt', 'gt_points', 'vda')
# Pixels nearer than this (metres) count as behind the camera when projecting ground truth.
_NEAR = 1e-6

DepthFn = Callable[[np.ndarray], np.ndarray]  # frames [T, H, W, 3] -> depth [T, H, W]


def clip_files(tapvid3d_dir: str, split: str | None = None,
               data_sources: Sequence[str] | None = None,
               glob: str | None = None) -> list[str]:
  """Paths of the clips to predict, relative to `tapvid3d_dir` ('/'-separated).

  With `glob`, every file matching it under `tapvid3d_dir`; otherwise the official file list
  of `split` for each data source (files need not exist: missing ones fail when read).

  Raises:
    batch_lib.InputError: `glob` matches nothing.
  """
  if glob is not None:
    matches = sorted(os.path.relpath(p, tapvid3d_dir).replace(os.sep, '/')
                     for p in glob_lib.glob(os.path.join(tapvid3d_dir, glob), recursive=True)
                     if os.path.isfile(p))
    if not matches:
      raise batch_lib.InputError(f'{tapvid3d_dir}: no clip matches --glob={glob!r}')
    return matches
  sources = data_sources or tapvid3d.DATA_SOURCES
  return [f'{source}/{name}' for source in sources
          for name in tapvid3d.split_files(split or 'minival', source)]


def query_rows(clip: tapvid3d.Clip) -> np.ndarray:
  """[N, 3] float32 (t, x, y) tracker queries from `queries_xyt`; t rounded half-to-even, the
  frame the metric reads."""
  queries = np.asarray(clip.queries_xyt, np.float64)
  return np.stack([np.round(queries[:, 2]), queries[:, 0], queries[:, 1]],
                  -1).astype(np.float32)


def ground_truth_2d(clip: tapvid3d.Clip) -> np.ndarray:
  """[T, N, 2] float32 pixels of the ground-truth points (points behind the camera, always
  occluded, at the principal point)."""
  xy = geometry.project(np.asarray(clip.tracks_xyz, np.float64), clip.intrinsics,
                        behind='principal', min_depth=_NEAR)
  return xy.astype(np.float32)


def track_clip(clip: tapvid3d.Clip, tracker_name: str,
               tracker: tracking.Tracker | None) -> tracking.TrackResult:
  """2D tracks of the clip's queries, forwards and backwards from each query frame.

  Args:
    clip: a clip with frames.
    tracker_name: 'exact' builds the ground-truth tracker for this clip; others use
      `tracker`.
    tracker: the tracker for names other than 'exact'.
  """
  if not clip.has_frames:
    raise ValueError(f'{clip.path}: the clip has no frames to track')
  queries = query_rows(clip)
  if tracker_name == 'exact':
    tracker = tracking.make_tracker('exact', tracks=ground_truth_2d(clip),
                                    visible=clip.visibility, queries=queries)
  return tracker.track(clip.frames, queries, backward=True)


def lift_tracks(tracks_2d: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
  """[T, N, 3] camera-frame points from 2D tracks [T, N, 2] and depth z [T, N] (metres)."""
  return geometry.unproject(np.asarray(tracks_2d, np.float64), np.asarray(depth, np.float64),
                            np.asarray(intrinsics, np.float64)).astype(np.float32)


def depth_at_tracks(depth_maps: np.ndarray, tracks_2d: np.ndarray) -> np.ndarray:
  """Bilinear depth [T, N] of maps [T, H, W] at tracks [T, N, 2] (x, y pixels; outside the
  image the border is read)."""
  return lift.sample_depth(depth_maps, np.swapaxes(tracks_2d, 0, 1)).T


def inverse_to_depth(disparity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(Z [T, N] = 1 / d, valid [T, N]) from a relative inverse depth d [T, N].

  Where d <= 0 (no depth) Z is the farthest valid depth of the clip (1 if none is valid), so
  the file stays finite; `valid` is False there.
  """
  disparity = np.asarray(disparity, np.float64)
  valid = np.isfinite(disparity) & (disparity > 0)
  z = np.ones_like(disparity)
  z[valid] = 1.0 / disparity[valid]
  if np.any(valid):
    z[~valid] = z[valid].max()
  return z, valid


def predict_clip(clip: tapvid3d.Clip, tracker_name: str, tracker: tracking.Tracker | None,
                 depth: str, depth_fn: DepthFn | None = None,
                 metric_depth: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """(tracks_XYZ [T, N, 3] float32 metres, visibility [T, N] bool) of one clip.

  Args:
    clip: the clip (frames, queries, intrinsics; ground truth for 'exact' / 'gt*').
    tracker_name, tracker: see `track_clip`.
    depth: 'gt', 'gt_points' or 'vda' (module docstring).
    depth_fn: for 'vda': frames [T, H, W, 3] uint8 -> depth [T, H, W] at frame resolution.
    metric_depth: `depth_fn` gives metres (else relative inverse depth).
  """
  result = track_clip(clip, tracker_name, tracker)
  visible = result.visible.copy()
  if depth == 'gt_points' or (depth == 'gt' and clip.depth is None):
    z = np.asarray(clip.tracks_xyz, np.float64)[..., 2]
  elif depth == 'gt':
    z = depth_at_tracks(clip.depth, result.tracks)
  elif depth == 'vda':
    if depth_fn is None:
      raise ValueError("depth='vda' needs depth_fn")
    sampled = depth_at_tracks(depth_fn(clip.frames), result.tracks)
    if metric_depth:
      z = sampled
    else:
      z, valid = inverse_to_depth(sampled)
      visible &= valid
  else:
    raise ValueError(f'depth must be one of {DEPTHS}, got {depth!r}')
  return lift_tracks(result.tracks, z, clip.intrinsics), visible


def vda_depth_fn(checkpoint: str | None, encoder: str | None = None, metric: bool = False,
                 input_size: int = 518, random_weights: bool = False) -> DepthFn:
  """Video Depth Anything as a `DepthFn`: from an official checkpoint or, with
  `random_weights` (tests only), an untrained network (`encoder`, default 'tiny')."""
  from tapkit.models.depth import convert, vda, video  # pylint: disable=g-import-not-at-top

  if random_weights:
    config = vda.get_vda_config(encoder or 'tiny', metric=metric)
    module, params = vda.VideoDepthAnything(config), vda.init_vda_params(config)
  else:
    module, params = convert.load_vda_checkpoint(checkpoint, encoder=encoder, metric=metric)

  def depth_fn(frames: np.ndarray) -> np.ndarray:
    return video.infer_video_depth(module, params, frames, input_size=input_size,
                                   metric=metric)
  return depth_fn


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = cli.ArgumentParser(prog='python -m tapkit.predict_tapvid3d',
                              description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--tapvid3d_dir', required=True,
                      help='clips, with adt/ pstudio/ drivetrack/ subfolders (or any with --glob)')
  parser.add_argument('--split', choices=tapvid3d.SPLITS, default=None,
                      help='official file list (default minival); not with --glob')
  parser.add_argument('--data_sources', default=None,
                      help='comma-separated sources of the split (default all)')
  parser.add_argument('--glob', default=None,
                      help="predict every clip matching this pattern, e.g. '*/*.npz'")
  parser.add_argument('--tracker', required=True, choices=TRACKERS)
  parser.add_argument('--tracker_checkpoint', help='CoTracker3 weights (.pth)')
  parser.add_argument('--depth', required=True, choices=DEPTHS)
  parser.add_argument('--depth_checkpoint', help='video_depth_anything_*.pth')
  parser.add_argument('--depth_encoder', choices=('vits', 'vitb', 'vitl', 'tiny'),
                      help='VDA encoder (default: from the checkpoint; tiny with random weights)')
  parser.add_argument('--metric_depth', action='store_true',
                      help='the VDA checkpoint gives metres (metric_video_depth_anything_*)')
  parser.add_argument('--depth_input_size', type=int, default=518,
                      help='VDA network short side in pixels (518 as released)')
  parser.add_argument('--random_weights_for_testing', action='store_true',
                      help='TESTING ONLY: untrained VDA instead of --depth_checkpoint; the '
                      'predictions are meaningless')
  parser.add_argument('--out', required=True, help='prediction folder')
  args = parser.parse_args(argv)
  if args.glob is not None and (args.split is not None or args.data_sources is not None):
    parser.error('give --glob or --split / --data_sources, not both')
  if args.data_sources is not None:
    args.data_sources = [s for s in args.data_sources.split(',') if s]
    unknown = sorted(set(args.data_sources) - set(tapvid3d.DATA_SOURCES))
    if unknown:
      parser.error(f'unknown --data_sources {unknown}; known: {list(tapvid3d.DATA_SOURCES)}')
  if args.tracker == 'cotracker3' and not args.tracker_checkpoint:
    parser.error('--tracker cotracker3 needs --tracker_checkpoint')
  if args.tracker != 'cotracker3' and args.tracker_checkpoint:
    parser.error(f'--tracker {args.tracker} takes no --tracker_checkpoint')
  vda_flags = [f for f, on in (('--depth_checkpoint', args.depth_checkpoint),
                               ('--random_weights_for_testing', args.random_weights_for_testing),
                               ('--metric_depth', args.metric_depth),
                               ('--depth_encoder', args.depth_encoder)) if on]
  if args.depth == 'vda':
    if args.random_weights_for_testing == bool(args.depth_checkpoint):
      parser.error('--depth vda needs exactly one of --depth_checkpoint and '
                   '--random_weights_for_testing')
  elif vda_flags:
    parser.error(f'{", ".join(vda_flags)} only go with --depth vda')
  if args.depth_input_size < 14:
    parser.error(f'--depth_input_size must be >= 14, got {args.depth_input_size}')
  return args


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns 0, or raises `cli.UserError` when nothing was predicted."""
  args = _parse_args(argv)
  batch_lib.require_dir(args.tapvid3d_dir, '--tapvid3d_dir')
  files = clip_files(args.tapvid3d_dir, args.split, args.data_sources, args.glob)
  tracker = None
  if args.tracker != 'exact':
    tracker = tracking.make_tracker(args.tracker, args.tracker_checkpoint)
  depth_fn = None
  if args.depth == 'vda':
    if args.random_weights_for_testing:
      print('WARNING: --random_weights_for_testing: untrained depth network, the predictions '
            'are meaningless', file=sys.stderr)
    depth_fn = vda_depth_fn(args.depth_checkpoint, args.depth_encoder, args.metric_depth,
                            args.depth_input_size, args.random_weights_for_testing)
  elif args.depth == 'gt':
    print('depth: the clips\' ground-truth depth maps where present, else the ground-truth '
          'depth of each track point')
  batch = batch_lib.BatchRun('clip')

  def predict(rel: str) -> str:
    start = time.perf_counter()
    clip = tapvid3d.load_clip(os.path.join(args.tapvid3d_dir, rel))
    tracks_xyz, visible = predict_clip(clip, args.tracker, tracker, args.depth, depth_fn,
                                       args.metric_depth)
    path = os.path.join(args.out, rel)
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tapvid3d.save_predictions(path, tracks_xyz, visible)
    return (f'{rel}: {clip.num_frames} frames, {clip.num_tracks} tracks, {visible.mean():.0%} '
            f'predicted visible, {time.perf_counter() - start:.1f} s -> {path}')

  for i, rel in enumerate(files):
    line = batch.run(rel, lambda rel=rel: predict(rel))
    if line is not None:
      print(f'[{i + 1}/{len(files)}] {line}', flush=True)
  print(batch.summary(), file=sys.stderr if batch.failures else sys.stdout)
  if not batch.processed:
    raise cli.UserError(f'no clip could be predicted ({len(batch.failures)} failed, listed above)')
  return 0


if __name__ == '__main__':
  sys.exit(cli.run(main))
