"""Command line of the synthetic generator: writes clip files, TracksTo4D files, videos.

    python -m tapkit.data.synthetic --out runs/synthetic --num_clips 8 --seed 0 --tracks4d --video

Per clip `clip_<i>` (4 digits) in `--out`:
  <source>/clip_<i>.npz       the TAPVid-3D clip file (frames, exact 3D tracks, camera ...)
  tracks4d/clip_<i>.npz       with `--tracks4d`: the TracksTo4D training file
  video/clip_<i>.mp4          with `--video`: the rendered frames as they are (H.264,
                              `VIDEO_FPS` frames per second), the input of
                              `python -m tapkit.track --video OUT/video`; frame t of the video
                              is frame t of the clip, so the clip's exact tracks are ground
                              truth for tracks computed on it
  viz/clip_<i>_tracks.mp4     with `--viz`: the frames with the visible exact tracks painted
                              (moving objects' points red, static points green)
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import numpy as np

from tapkit import cli as tapkit_cli
from tapkit.data import geometry
from tapkit.data.clip import Clip
from tapkit.data.synthetic.render import generate_clip
from tapkit.data.synthetic.scene import _NEAR
from tapkit.io import video as video_io

# Frame rate of the written videos (frames per second).
VIDEO_FPS = 10.0


def _draw_tracks(frames: np.ndarray, clip: Clip) -> np.ndarray:
  """Frames [T, H, W, 3] with visible track points painted as 3x3 dots."""
  out = frames.copy()
  xy = geometry.project(clip.tracks_xyz, clip.intrinsics, behind='principal', min_depth=_NEAR)
  x, y = np.floor(xy[..., 0] + 0.5).astype(np.int64), np.floor(xy[..., 1] + 0.5).astype(np.int64)
  colours = np.where(clip.dynamic_mask[:, None], [[255, 60, 60]], [[60, 255, 60]]).astype(np.uint8)
  h, w = frames.shape[1:3]
  for t in range(frames.shape[0]):
    vis = np.flatnonzero(clip.visibility[t])
    for dy in (-1, 0, 1):
      for dx in (-1, 0, 1):
        yy = np.clip(y[t, vis] + dy, 0, h - 1)
        xx = np.clip(x[t, vis] + dx, 0, w - 1)
        out[t, yy, xx] = colours[vis]
  return out


def write_clip_videos(out_dir: str, name: str, frames: np.ndarray, clip: Clip, *,
                      video: bool = True, viz: bool = False) -> list[str]:
  """Writes a clip's videos; returns the paths written.

  Args:
    out_dir: the generator's output folder.
    name: the clip's file stem.
    frames: [T, H, W, 3] uint8 rendered frames.
    clip: the clip (its exact tracks are painted with `viz`).
    video: write `out_dir/video/<name>.mp4`, the frames unchanged.
    viz: write `out_dir/viz/<name>_tracks.mp4`, the frames with the tracks painted.
  """
  written = []
  if video:
    written.append(video_io.write_video(os.path.join(out_dir, 'video', name + '.mp4'),
                                        frames, VIDEO_FPS))
  if viz:
    written.append(video_io.write_video(os.path.join(out_dir, 'viz', name + '_tracks.mp4'),
                                        _draw_tracks(frames, clip), VIDEO_FPS))
  return written


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = tapkit_cli.ArgumentParser(
      prog='python -m tapkit.data.synthetic',
      description='Render synthetic TAPVid-3D clips (and optionally TracksTo4D files).')
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument('--num_clips', type=int, default=8)
  parser.add_argument('--seed', type=int, default=0, help='clip i uses seed (seed, i)')
  parser.add_argument('--num_frames', type=int, default=24)
  parser.add_argument('--height', type=int, default=256)
  parser.add_argument('--width', type=int, default=256)
  parser.add_argument('--num_tracks', type=int, default=256,
                      help='tracks per clip in random mode (grid mode: grid_size^2)')
  parser.add_argument('--source', default='synthetic', help='subfolder name of the clips')
  parser.add_argument('--frames_format', default='jpeg_bytes',
                      choices=('jpeg_bytes', 'raw', 'png_blob'))
  parser.add_argument('--compress', action='store_true',
                      help='deflate clip files (depth and normals are ~100 bytes/pixel)')
  parser.add_argument('--tracks4d', action='store_true',
                      help='also write TracksTo4D files to OUT/tracks4d/')
  parser.add_argument('--video', action='store_true',
                      help='also write the frames of each clip as OUT/video/<clip>.mp4 '
                           '(input for python -m tapkit.track)')
  parser.add_argument('--viz', action='store_true',
                      help='also write OUT/viz/<clip>_tracks.mp4 with the exact tracks painted')
  parser.add_argument('--query_mode', default='random', choices=('random', 'grid'))
  parser.add_argument('--grid_size', type=int, default=16)
  parser.add_argument('--static_only', action='store_true', help='no object motion')
  args = parser.parse_args(argv)
  if args.num_clips < 1:
    parser.error(f'--num_clips must be >= 1, got {args.num_clips}')
  if args.seed < 0:
    parser.error(f'--seed must be >= 0, got {args.seed}')
  if not args.source or os.sep in args.source:
    parser.error(f'--source must be a plain folder name, got {args.source!r}')
  return args


def main(argv: Sequence[str] | None = None) -> None:
  args = _parse_args(argv)
  from tqdm import tqdm
  from tapkit.data import tapvid3d  # Local import: only the CLI writes clip files.

  clip_dir = os.path.join(args.out, args.source)
  os.makedirs(clip_dir, exist_ok=True)
  if args.tracks4d:
    from tapkit.data import tracks4d_format

    os.makedirs(os.path.join(args.out, 'tracks4d'), exist_ok=True)
  for i in tqdm(range(args.num_clips), desc='synthetic clips', unit='clip'):
    clip = generate_clip((args.seed, i), args.num_frames, args.height, args.width,
                         args.num_tracks, query_mode=args.query_mode,
                         grid_size=args.grid_size, dynamic=not args.static_only)
    name = f'clip_{i:04d}'
    tapvid3d.save_clip(os.path.join(clip_dir, name + '.npz'), clip,
                       frames_format=args.frames_format, compress=args.compress)
    if args.tracks4d:
      tracks4d_format.save_tracks4d_npz(os.path.join(args.out, 'tracks4d', name + '.npz'),
                                        tracks4d_format.clip_to_tracks4d(clip))
    if args.video or args.viz:
      write_clip_videos(args.out, name, clip.frames, clip, video=args.video, viz=args.viz)

