r"""Tracks files for 3DPoV training from video frame folders (offline tracking).

    python -m dpov_jax.prepare --frames_root /data/ytvos/train/JPEGImages --layout ytvos \
        --out /data/ytvos_tracks --tracker cotracker3 --checkpoint scaled_offline.pth
    python -m dpov_jax.prepare --frames_root frames/ --layout folder --out tracks/ --tracker lk

For every video of the layout (`dpov_jax.video_clips`: ytvos, co3d, dl3dv, folder) and every
window the released loaders sample (ytvos: --windows_per_video random starts seeded by
(--seed, video name); co3d / dl3dv: the non-overlapping windows of --num_frames frames
--regular_step apart), the window's frames are read, resized to --input_size² (PIL bilinear;
0 = stored size) as the release tracks its resized clips, and a --grid_size² grid queried on
the window's first frame is tracked; visibility is what the tracker reports (CoTracker3
offline: sigmoid(visibility logit) > 0.9), and frame 0 holds the query points, visible.

Output: <out>/<video>/window_<k>.npz in the tracks-file format (`tapkit.data.dpov_tracks`),
read by `config.data.sources.<name>.tracks_root` (or train_dir). Resumable: windows whose
file exists are skipped (files are written atomically). Videos that cannot be read or
tracked are listed in <out>/bad_videos.txt and skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import tqdm

from etils import epy

from dpov_jax import video_windows
from tapkit import cli
from tapkit.data import dpov_tracks

# Loaded on first use, so `--help` and argument mistakes answer without importing JAX.
with epy.lazy_imports():
  from dpov_jax import data
  from dpov_jax import video_clips

BAD_VIDEOS_FILE = 'bad_videos.txt'


def window_path(out: str, video: str, k: int) -> str:
  return os.path.join(out, video, f'window_{k:03d}.npz')


def prepare(frames_root: str, layout: str, out: str, tracker: Any, *, grid_size: int = 16,
            num_frames: int = 4, regular_step: int = 10, input_size: int = 224,
            frames_subdir: str | None = None, windows_per_video: int = 1, seed: int = 0,
            progress: bool = True) -> dict[str, Any]:
  """Tracks every window of every video of `frames_root` into `out` (module docstring).

  Args:
    tracker: a `tapkit.tracking` tracker.
    frames_subdir: the frames folder inside a video (default: the layout's).

  Returns:
    {'videos': number listed, 'written': windows tracked now, 'skipped': windows already
     there, 'bad': [(video, reason)]}.
  """
  if grid_size < 1 or num_frames < 1 or regular_step < 1 or input_size < 0:
    raise ValueError('grid_size, num_frames and regular_step must be >= 1 and input_size '
                     f'>= 0, got {grid_size}, {num_frames}, {regular_step}, {input_size}')
  subdir = video_windows.LAYOUTS[layout][0] if frames_subdir is None else frames_subdir
  videos = video_windows.list_layout_videos(frames_root, layout, subdir)
  if not videos:
    raise FileNotFoundError(f'{frames_root}: no {layout} videos (folders with frames '
                            f'subfolder {subdir!r})')
  written = skipped = 0
  bad: list[tuple[str, str]] = []
  bar = tqdm.tqdm(videos, desc='videos', unit='video', file=sys.stderr, disable=not progress)
  for video in bar:
    frame_dir = os.path.join(frames_root, video, subdir)
    try:
      files = data.list_frames(frame_dir)
      windows = video_windows.video_windows(
          len(files), layout, num_frames, regular_step, seed=seed, video=video,
          windows_per_video=windows_per_video)
      if not windows:
        raise ValueError(f'{len(files)} frames give no window of {num_frames} frames '
                         f'{regular_step} apart')
      for k, window in enumerate(windows):
        path = window_path(out, video, k)
        if os.path.exists(path):
          skipped += 1
          continue
        frames, _ = data.read_clip_frames(files, window, input_size, 'resize', frame_dir)
        tracks, vis = video_clips.track_window(tracker, frames, grid_size)
        dpov_tracks.write_tracks_file(path, tracks, vis, window, frames.shape[1:3])
        written += 1
    except (ValueError, OSError) as e:  # BadFileError / TracksFileError are ValueErrors
      bad.append((video, f'{type(e).__name__}: {e}'))
    bar.set_postfix(written=written, skipped=skipped, bad=len(bad))
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, BAD_VIDEOS_FILE), 'w', encoding='utf-8') as f:
    f.writelines(f'{video}\t{reason}\n' for video, reason in bad)
  return {'videos': len(videos), 'written': written, 'skipped': skipped, 'bad': bad}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = cli.ArgumentParser(
      prog='python -m dpov_jax.prepare',
      description='Track frame-folder videos into 3DPoV tracks files (one per window).')
  parser.add_argument('--frames_root', required=True, help='folder of the videos')
  parser.add_argument('--layout', required=True, choices=sorted(video_windows.LAYOUTS))
  parser.add_argument('--out', required=True, help='tracks_root to write')
  parser.add_argument('--tracker', default='cotracker3',
                      help="'lk', 'cotracker3' or 'cotracker3_online' (tapkit.tracking)")
  parser.add_argument('--checkpoint', default=None, help='weights of a learned tracker')
  parser.add_argument('--window_len', type=int, default=None,
                      help="CoTracker3's model window (frames; default the model's)")
  parser.add_argument('--grid_size', type=int, default=16, help='grid_size² query points')
  parser.add_argument('--num_frames', type=int, default=4, help='frames per clip (T)')
  parser.add_argument('--regular_step', type=int, default=10, help='frames between clip frames')
  parser.add_argument('--input_size', type=int, default=224,
                      help='frames resized to this square before tracking (0 = stored size)')
  parser.add_argument('--frames_subdir', default=None,
                      help="frames folder inside a video (default: the layout's)")
  parser.add_argument('--windows_per_video', type=int, default=1,
                      help='ytvos: random windows per video')
  parser.add_argument('--seed', type=int, default=0, help='seeds the ytvos windows')
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  from tapkit import tracking  # pylint: disable=g-import-not-at-top
  options = {} if args.window_len is None else {'window_len': args.window_len}
  tracker = tracking.make_tracker(args.tracker, args.checkpoint, **options)
  result = prepare(args.frames_root, args.layout, args.out, tracker,
                   grid_size=args.grid_size, num_frames=args.num_frames,
                   regular_step=args.regular_step, input_size=args.input_size,
                   frames_subdir=args.frames_subdir, windows_per_video=args.windows_per_video,
                   seed=args.seed)
  print(f'{result["videos"]} videos: {result["written"]} windows tracked, '
        f'{result["skipped"]} already there, {len(result["bad"])} bad videos skipped '
        f'(listed in {os.path.join(args.out, BAD_VIDEOS_FILE)})')
  for video, reason in result['bad']:
    print(f'  bad: {video}: {reason}')
  return result


if __name__ == '__main__':
  sys.exit(cli.run(main))
