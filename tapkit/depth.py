r"""Depth for every frame of videos with Video Depth Anything (temporally consistent).

    python -m tapkit.depth --video clip.mp4 --checkpoint video_depth_anything_vits.pth \
        --out runs/depth --viz
    python -m tapkit.depth --video videos/ --checkpoint metric_video_depth_anything_vitl.pth \
        --metric --out runs/depth_metric --max_frames 300

Inputs: `--video` is a video file (mp4, webm, gif, avi, mov, mkv), a folder of frames, a folder
of those (`tapkit.io.video.list_videos`) or a `.npy` array [T, H, W, 3] uint8 RGB. Checkpoints:
the official `video_depth_anything_{vits,vitb,vitl}.pth` (relative: affine-invariant inverse
depth, larger = nearer) or `metric_video_depth_anything_*.pth` with `--metric` (metres); the
encoder is inferred from the file unless `--encoder` is given. Videos run window by window (32
frames, 22-frame stride), at the network size `--input_size` (short side, 518 as released).

Outputs in `--out`, per video `<name>`:
  <name>_depth.npz   `depth` [T, H, W] float32 at the input resolution, `fps`, `metric`
                     (0/1), `random_weights` (0/1)
  <name>_depth.mp4   with `--viz`: input | colour-mapped depth (inferno, near = bright for
                     relative models), side by side
Videos that cannot be read are listed with the reason at the end; the run goes on. Exit
status 2 with one `error:` line on bad arguments or when no video was processed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from tapkit import cli
from tapkit.io import BadFileError, read_npy, write_npz
from tapkit.io import batch as batch_lib
from tapkit.io import video as video_io
from tapkit.track import output_name


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = cli.ArgumentParser(prog='python -m tapkit.depth', description=__doc__.split('\n\n')[0],
                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--video', required=True, nargs='+',
                      help='video file(s), frame folder(s), folder(s) of videos, or .npy arrays')
  parser.add_argument('--checkpoint', help='official video_depth_anything_*.pth file')
  parser.add_argument('--encoder', choices=('vits', 'vitb', 'vitl', 'tiny'),
                      help='encoder size (default: inferred from the checkpoint; tiny: tests)')
  parser.add_argument('--metric', action='store_true',
                      help='metric checkpoint: depth in metres, no scale/shift alignment')
  parser.add_argument('--out', required=True, help='output folder')
  parser.add_argument('--viz', action='store_true', help='also write <name>_depth.mp4')
  parser.add_argument('--input_size', type=int, default=518,
                      help='network short side in pixels (518 as released)')
  parser.add_argument('--max_frames', type=int, help='keep at most this many frames')
  parser.add_argument('--fps', type=float, help='resample videos to this frame rate')
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                      help='compute dtype (bfloat16: faster on accelerators, less exact)')
  parser.add_argument('--random_weights_for_testing', action='store_true',
                      help='TESTING ONLY: random weights instead of a checkpoint; the depth is '
                      'meaningless')
  args = parser.parse_args(argv)
  if args.random_weights_for_testing == bool(args.checkpoint):
    parser.error('give exactly one of --checkpoint and --random_weights_for_testing')
  if args.input_size < 14:
    parser.error(f'--input_size must be >= 14, got {args.input_size}')
  if args.max_frames is not None and args.max_frames < 1:
    parser.error(f'--max_frames must be >= 1, got {args.max_frames}')
  if args.fps is not None and not args.fps > 0:
    parser.error(f'--fps must be > 0, got {args.fps}')
  return args


def _load_model(args: argparse.Namespace):
  """(module, params) from the checkpoint or, for tests, random weights."""
  from tapkit.models.depth import convert, vda  # pylint: disable=g-import-not-at-top
  if args.random_weights_for_testing:
    config = vda.get_vda_config(args.encoder or 'vits', metric=args.metric)
    return vda.VideoDepthAnything(config), vda.init_vda_params(config)
  return convert.load_vda_checkpoint(args.checkpoint, encoder=args.encoder, metric=args.metric)


def _list_inputs(items: Sequence[str]) -> list[str]:
  paths = []
  for item in items:
    paths += [item] if item.lower().endswith('.npy') else video_io.list_videos(item)
  return paths


def read_frames(path: str, max_frames: int | None, fps: float | None) -> video_io.Video:
  """The frames [T, H, W, 3] uint8 of a video file, frame folder or .npy array."""
  if not path.lower().endswith('.npy'):
    return video_io.read_video(path, fps=fps, max_frames=max_frames)
  frames = read_npy(path)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
    raise BadFileError(path, None, f'expected [T, H, W, 3] uint8 RGB frames, got {frames.dtype} '
                       f'{list(frames.shape)}')
  return video_io.Video(frames=frames[:max_frames], fps=video_io.FOLDER_FPS, path=path)


def depth_video(frames: np.ndarray, depth: np.ndarray) -> np.ndarray:
  """[T, H, 2W, 3] uint8: the input beside its depth coloured with inferno (range of the video)."""
  from tapkit.viz._common import map_colors  # pylint: disable=g-import-not-at-top
  return np.concatenate([frames, map_colors(depth, 'inferno')], axis=2)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status (0 ok, 2 bad arguments / nothing done)."""
  args = _parse_args(argv)

  try:
    videos = _list_inputs(args.video)
    module, params = _load_model(args)
  except ValueError as e:  # BadFileError included
    return batch_lib.usage_error(e)
  from tapkit.models.depth import video as vd  # pylint: disable=g-import-not-at-top
  if args.random_weights_for_testing:
    print('WARNING: --random_weights_for_testing: random weights, the depth maps are '
          'meaningless', file=sys.stderr)
  predictor = vd.VideoDepthPredictor(module, params, args.input_size, args.dtype)
  metric = module.config.metric
  os.makedirs(args.out, exist_ok=True)
  taken: set[str] = set()
  batch = batch_lib.BatchRun('video')
  for i, path in enumerate(videos):
    name = output_name(path, taken)
    start = time.perf_counter()
    try:
      video = read_frames(path, args.max_frames, args.fps)
      h, w = video.frames.shape[1:3]
      print(f'[{i + 1}/{len(videos)}] {path}: {video.num_frames} frames {h}x{w}, network '
            f'{"x".join(map(str, predictor.network_size(h, w)))}', flush=True)
      report = lambda k, n: print(f'  window {k}/{n}', flush=True)
      depth = np.stack(list(vd.iter_video_depth(predictor, video.frames, metric, report)))
      written = [os.path.join(args.out, f'{name}_depth.npz')]
      write_npz(written[0], {'depth': depth.astype(np.float32), 'fps': np.float32(video.fps),
                             'metric': np.int8(metric),
                             'random_weights': np.int8(args.random_weights_for_testing)})
      if args.viz:
        written.append(video_io.write_video(os.path.join(args.out, f'{name}_depth.mp4'),
                                            depth_video(video.frames, depth), video.fps))
    except ValueError as e:  # BadFileError included: unreadable or malformed video
      batch.fail(path, batch_lib.describe(e))
      continue
    batch.processed.append(path)
    label = ' [RANDOM WEIGHTS, TESTING ONLY]' if args.random_weights_for_testing else ''
    print(f'{name}: depth {depth.min():.3g}..{depth.max():.3g}'
          f'{" m" if metric else " (relative inverse depth)"}, '
          f'{time.perf_counter() - start:.1f} s -> {", ".join(written)}{label}', flush=True)
  return batch.finish()


if __name__ == '__main__':
  sys.exit(cli.run(main))
