r"""Tracks points through videos and writes one tracks file per video.

    python -m tapkit.track --video clip.mp4 --tracker lk --grid_size 20 --out runs/tracks --viz
    python -m tapkit.track --video videos/ --tracker cotracker3 --checkpoint scaled_offline.pth \
        --backward --format tracks4d --out runs/tracks4d_in
    python -m tapkit.track --video frames_dir/ --tracker lk --queries queries.txt --out runs/q

Inputs: `--video` is a video file (mp4, webm, gif, avi, mov, mkv), a folder of frames
(*.jpg / *.jpeg / *.png, sorted by name), or a folder of those (see
`tapkit.io.video.list_videos`); `--fps`, `--stride`, `--max_frames`, `--resize H,W` pick and
resize frames while reading (`tapkit.io.video.read_video`). Points: a `--grid_size` x
`--grid_size` grid at frame `--grid_query_frame` (CoTracker's grid), or the same `--queries`
for every video: a `.npy`, a `.npz` (field `queries`) or a text file (`.txt` / `.csv`, one
`t, x, y` row per point, pixels of the frames after resizing).

Outputs in `--out`, per video `<name>` (the file or folder name without suffix):
  <name>.npz          in `--format` (the table `FORMATS`):
                        tapvid3d  2D tracks in the TAPVid-3D naming (`tracks` [T, N, 2] px,
                                  `visibility`, `queries_xyt`, `query_frames`, `frame_size`,
                                  `fps`; `tapkit.data.tapvid3d.save_tracks2d`), read by
                                  `python -m trajan3d.score --tracks`
                        tracks4d  the TracksTo4D input file (`pred_tracks`,
                                  `pred_visibility`, `started_at`), read by
                                  `python -m tracks4d.infer --input`
                        dpov      `<name>/window_000.npz`: the 3DPoV tracks file of the whole
                                  video as one window (`tapkit.data.dpov_tracks`; queries on
                                  frame 0; frame_indices 0..T-1 index the frames as read, so
                                  give frame folders without --fps / --stride), a
                                  `tracks_root` for dpov_jax training
  <name>_tracks.mp4   with `--viz`: the video with the tracks painted (occluded = rings)
Videos that cannot be read or tracked are listed with the reason at the end; the run goes
on. Exit status 2 with one `error:` line on bad arguments or when no video was processed.

Several processes split the videos: process i of n tracks videos i, i + n, i + 2n, ... of
the sorted list (output names are made unique over the whole list, so the processes never
write the same file). i and n come from `--process_index` / `--process_count` (e.g. a job
array), or from `jax.distributed` when TAPKIT_DISTRIBUTED=1 (the engine's convention; the
usual coordinator variables apply). Within a process, CoTracker3 splits each video's
queries over the local devices (`tapkit.tracking.cotracker`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from tapkit import cli
from tapkit import tracking
from tapkit.data import dpov_tracks
from tapkit.data import tapvid3d
from tapkit.data import tracks4d_format
from tapkit.io import BadFileError
from tapkit.io import npz as npz_io
from tapkit.io import batch as batch_lib
from tapkit.io import video as video_io


@dataclasses.dataclass(frozen=True)
class OutputFormat:
  """One way of writing tracks: `write(path, result, video)` writes `<name><suffix>`."""

  suffix: str
  write: Callable[[str, tracking.TrackResult, video_io.Video], None]
  help: str


def _write_tapvid3d(path: str, result: tracking.TrackResult, video: video_io.Video) -> None:
  queries_xyt = result.queries[:, [1, 2, 0]]  # (t, x, y) -> (x, y, t)
  tapvid3d.save_tracks2d(path, result.tracks, result.visible, queries_xyt,
                         video.frames.shape[1:3], fps=video.fps)


def _write_tracks4d(path: str, result: tracking.TrackResult, video: video_io.Video) -> None:
  del video
  started = result.query_frames.astype(np.float32)[None, None]  # [1, 1, N]
  tracks4d_format.save_tracks4d_npz(path, {'pred_tracks': result.tracks[None],
                                           'pred_visibility': result.visible[None],
                                           'started_at': started})


def _write_dpov(path: str, result: tracking.TrackResult, video: video_io.Video) -> None:
  if np.any(result.query_frames != 0):
    raise ValueError(f'{video.path}: --format dpov needs every query on frame 0 (the window\'s '
                     f'first frame), got query frames up to {int(result.query_frames.max())}')
  dpov_tracks.write_tracks_file(path, result.tracks, result.visible,
                                np.arange(result.num_frames), video.frames.shape[1:3])


# Output formats by `--format` name; add an entry to support another consumer.
FORMATS: dict[str, OutputFormat] = {
    'tapvid3d': OutputFormat('.npz', _write_tapvid3d,
                             '2D tracks in TAPVid-3D naming (trajan3d.score --tracks)'),
    'tracks4d': OutputFormat('.npz', _write_tracks4d,
                             'TracksTo4D input file (tracks4d.infer --input)'),
    'dpov': OutputFormat(os.sep + 'window_000.npz', _write_dpov,
                         '3DPoV tracks file <name>/window_000.npz, queries on frame 0 '
                         '(dpov_jax data.sources.<name>.tracks_root)'),
}


def read_queries(path: str) -> np.ndarray:
  """[N, 3] float32 (t, x, y) queries from a .npy, an .npz (field `queries`) or a text file.

  Raises:
    BadFileError: naming the file when it cannot be read or is not [N, 3] finite numbers.
  """
  lower = path.lower()
  if lower.endswith('.npy'):
    queries = npz_io.read_npy(path)
  elif lower.endswith('.npz'):
    arrays = npz_io.read_npz(path)
    if 'queries' not in arrays:
      raise BadFileError(path, 'queries', f'missing (fields: {sorted(arrays)})')
    queries = arrays['queries']
  else:
    if not os.path.isfile(path):
      raise BadFileError(path, None, 'no such file')
    try:
      with open(path) as f:
        rows = [line.replace(',', ' ').split() for line in f
                if line.strip() and not line.lstrip().startswith('#')]
      queries = np.array([[float(v) for v in row] for row in rows], np.float64)
    except (ValueError, UnicodeDecodeError) as e:
      raise BadFileError(path, None, f'not a text table of numbers: {e}') from None
  queries = np.asarray(queries)
  if (queries.ndim != 2 or queries.shape[1] != 3 or queries.shape[0] < 1 or
      not np.issubdtype(queries.dtype, np.number) or not np.all(np.isfinite(queries))):
    raise BadFileError(path, None, f'queries must be [N, 3] finite (t, x, y) numbers, got '
                       f'{queries.dtype} {list(queries.shape)}')
  return queries.astype(np.float32)


def output_name(video_path: str, taken: set[str]) -> str:
  """The file stem of a video (folder name for frame folders), made unique in `taken`."""
  base = os.path.basename(os.path.normpath(video_path))
  stem, suffix = os.path.splitext(base)
  if os.path.isdir(video_path):
    stem, suffix = base, ''
  name = stem
  if name in taken:
    name = f'{stem}_{suffix.lstrip(".")}' if suffix else f'{stem}_dir'
  k = 2
  while name in taken:
    name, k = f'{stem}_{k}', k + 1
  taken.add(name)
  return name


def process_videos(videos: Sequence[str], index: int, count: int) -> list[tuple[str, str]]:
  """(video, output name) pairs process `index` of `count` handles: every count-th video
  from the index-th; names are unique over all `videos` (`output_name`)."""
  if not 0 <= index < count:
    raise ValueError(f'process index must lie in [0, {count}), got {index}')
  taken: set[str] = set()
  named = [(path, output_name(path, taken)) for path in videos]
  return named[index::count]


def process_slot(args: argparse.Namespace) -> tuple[int, int]:
  """(index, count) of this process among those splitting the videos (module docstring)."""
  if args.process_count is not None:
    return args.process_index or 0, args.process_count
  if os.environ.get('TAPKIT_DISTRIBUTED') == '1':
    import jax  # pylint: disable=g-import-not-at-top

    jax.distributed.initialize()
    return jax.process_index(), jax.process_count()
  return 0, 1


def track_video(tracker: tracking.Tracker, video: video_io.Video, queries: np.ndarray | None,
                args: argparse.Namespace) -> tracking.TrackResult:
  """Runs the tracker on one video with the command line's point options."""
  return tracker.track(video.frames, queries, grid_size=args.grid_size,
                       grid_query_frame=args.grid_query_frame, backward=args.backward)


def write_outputs(out_dir: str, name: str, result: tracking.TrackResult,
                  video: video_io.Video, fmt: str, viz: bool) -> list[str]:
  """Writes the tracks file (and with `viz` the painted video); returns the paths."""
  spec = FORMATS[fmt]
  path = os.path.join(out_dir, name + spec.suffix)
  spec.write(path, result, video)
  written = [path]
  if viz:
    from tapkit.viz import tracks2d  # pylint: disable=g-import-not-at-top

    painted = tracks2d.paint_tracks(video.frames, result.tracks, result.visible, trail=8)
    written.append(video_io.write_video(os.path.join(out_dir, name + '_tracks.mp4'), painted,
                                        video.fps))
  return written


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = cli.ArgumentParser(prog='python -m tapkit.track', description=__doc__.split('\n\n')[0],
                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--video', required=True, nargs='+',
                      help='video file(s), frame folder(s), or folder(s) of videos')
  parser.add_argument('--tracker', default='lk',
                      choices=[t for t in tracking.TRACKERS if t != 'exact'])
  parser.add_argument('--checkpoint', help='weights of a learned tracker (CoTracker3 .pth)')
  parser.add_argument('--online', action='store_true',
                      help='streaming CoTracker3 (same as --tracker cotracker3_online)')
  points = parser.add_mutually_exclusive_group()
  points.add_argument('--grid_size', type=int, default=tracking.DEFAULT_GRID_SIZE,
                      help='query grid side (grid_size^2 points)')
  points.add_argument('--queries', help='file of (t, x, y) queries, used for every video')
  parser.add_argument('--grid_query_frame', type=int, default=0)
  parser.add_argument('--backward', action='store_true',
                      help='also track backwards in time from each query frame')
  parser.add_argument('--query_chunk', type=int,
                      help='offline CoTracker3: at most this many queries per network call '
                           '(default 1024: memory bounded in the number of points; 0 = all '
                           'in one call, as the official predictor, whose estimates then '
                           'match for any number of points)')
  parser.add_argument('--out', required=True, help='output folder')
  parser.add_argument('--format', default='tapvid3d', choices=sorted(FORMATS),
                      help='; '.join(f'{k}: {v.help}' for k, v in FORMATS.items()))
  parser.add_argument('--viz', action='store_true', help='also write <name>_tracks.mp4')
  parser.add_argument('--fps', type=float, help='resample videos to this frame rate')
  parser.add_argument('--stride', type=int, default=1, help='keep every stride-th frame')
  parser.add_argument('--max_frames', type=int, help='keep at most this many frames')
  parser.add_argument('--resize', help='H,W: resize frames to this size (pixels)')
  parser.add_argument('--process_index', type=int,
                      help='this process tracks videos process_index::process_count')
  parser.add_argument('--process_count', type=int,
                      help='number of processes splitting the videos (default: 1, or '
                           'jax.distributed with TAPKIT_DISTRIBUTED=1)')
  args = parser.parse_args(argv)
  if (args.process_index is None) != (args.process_count is None):
    parser.error('--process_index and --process_count go together')
  if args.process_count is not None and not 0 <= args.process_index < args.process_count:
    parser.error(f'--process_index must lie in [0, --process_count), got '
                 f'{args.process_index} of {args.process_count}')
  if args.online:
    if args.tracker not in ('cotracker3', 'cotracker3_online'):
      parser.error(f'--online needs --tracker cotracker3, got --tracker {args.tracker}')
    args.tracker = 'cotracker3_online'
  if args.query_chunk is not None:
    if args.tracker != 'cotracker3':
      parser.error(f'--query_chunk is for --tracker cotracker3 (offline), got --tracker '
                   f'{args.tracker}')
    if args.query_chunk < 0:
      parser.error(f'--query_chunk must be >= 0, got {args.query_chunk}')
  if args.grid_size < 1:
    parser.error(f'--grid_size must be >= 1, got {args.grid_size}')
  if args.grid_query_frame < 0:
    parser.error(f'--grid_query_frame must be >= 0, got {args.grid_query_frame}')
  if args.fps is not None and not args.fps > 0:
    parser.error(f'--fps must be > 0, got {args.fps}')
  if args.stride < 1:
    parser.error(f'--stride must be >= 1, got {args.stride}')
  if args.max_frames is not None and args.max_frames < 1:
    parser.error(f'--max_frames must be >= 1, got {args.max_frames}')
  if args.resize is not None:
    try:
      args.resize = tuple(int(v) for v in args.resize.replace('x', ',').split(','))
    except ValueError:
      args.resize = ()
    if len(args.resize) != 2 or min(args.resize) < 1:
      parser.error(f'--resize must be H,W (positive integers), got {args.resize!r}')
  return args


def _progress(items: Sequence[str]) -> tuple[Iterable[str], Callable[[str], None]]:
  """(items wrapped in a progress bar, a print function that keeps the bar intact)."""
  try:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:
    def plain():
      for i, item in enumerate(items):
        print(f'[{i + 1}/{len(items)}] {item}', flush=True)
        yield item
    return plain(), print
  return tqdm(items, desc='videos', unit='video'), tqdm.write


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status (0 ok, 2 bad arguments / nothing done)."""
  args = _parse_args(argv)

  # Before anything else touches JAX (jax.distributed must initialise first).
  index, count = process_slot(args)
  try:
    queries = read_queries(args.queries) if args.queries else None
    videos: list[str] = []
    for item in args.video:
      videos += video_io.list_videos(item)
    options = {} if args.query_chunk is None else {'query_chunk': args.query_chunk}
    tracker = tracking.make_tracker(args.tracker, args.checkpoint, **options)
  except ValueError as e:
    return batch_lib.usage_error(e)
  mine = process_videos(videos, index, count)
  os.makedirs(args.out, exist_ok=True)
  if not mine:
    print(f'process {index} of {count}: no video left for it ({len(videos)} videos)')
    return 0
  batch = batch_lib.BatchRun('video')
  progress, say = _progress([path for path, _ in mine])
  for path, name in zip(progress, [name for _, name in mine]):
    start = time.perf_counter()
    try:
      video = video_io.read_video(path, fps=args.fps, stride=args.stride,
                                  max_frames=args.max_frames, resize=args.resize)
      result = track_video(tracker, video, queries, args)
      written = write_outputs(args.out, name, result, video, args.format, args.viz)
    except ValueError as e:  # BadFileError included: unreadable video, queries outside it
      batch.fail(path, batch_lib.describe(e))
      continue
    batch.processed.append(path)
    say(f'{name}: {result.num_frames} frames, {result.num_tracks} tracks, '
        f'{result.visible.mean():.0%} visible, {time.perf_counter() - start:.1f} s -> '
        f'{", ".join(written)}')
  return batch.finish()


if __name__ == '__main__':
  sys.exit(cli.run(main))
