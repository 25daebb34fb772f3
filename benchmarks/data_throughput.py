r"""Clips/s of one data worker: a folder of clip `.npz` files vs an ArrayRecord dataset.

    python benchmarks/data_throughput.py --num_clips 32 --repeats 5

The same synthetic clips (seed 0) are written both ways: a folder as the training cache
writes it (`tapvid3d.save_clip`, JPEG frames) and ArrayRecord splits
(`python -m tapkit.data.convert --synthetic`, zstd-compressed and uncompressed records).
One worker's work per clip is timed in this process, in a shuffled order, for two decodes:

  tracks  the record read and validated into a `Clip` (what 3DSPA / TRAJAN training reads:
          tracks, no frames)
  frames  the same plus every JPEG frame decoded to [T, H, W, 3] uint8

Repeats alternate folder and ArrayRecord (interleaved, so machine load hits both alike);
the table gives the best and median clips/s (wall clock) of each, the median clips per CPU
second of this process (less sensitive to other processes' load) and the ratios to the folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tapkit.data import arrayrecord  # pylint: disable=g-import-not-at-top,wrong-import-position
from tapkit.data import arrayrecord_builders  # pylint: disable=wrong-import-position
from tapkit.data import synthetic  # pylint: disable=wrong-import-position
from tapkit.data import tapvid3d  # pylint: disable=wrong-import-position


def _folder_reader(paths):
  return lambda i: tapvid3d.load_clip(paths[i])


def _records_reader(dataset_dir):
  source = arrayrecord.ClipRecordSource(dataset_dir, 'train')
  return lambda i: source[i]


def _clips_per_s(read, order, frames: bool) -> tuple[float, float]:
  """(clips per wall-clock second, clips per CPU second of this process)."""
  start, start_cpu = time.perf_counter(), time.process_time()
  for i in order:
    clip = read(int(i))
    if frames:
      clip.frames  # pylint: disable=pointless-statement
  return (len(order) / (time.perf_counter() - start),
          len(order) / (time.process_time() - start_cpu))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--num_clips', type=int, default=32)
  parser.add_argument('--num_frames', type=int, default=24)
  parser.add_argument('--size', type=int, default=128, help='frame height = width')
  parser.add_argument('--num_tracks', type=int, default=1024)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--workdir', default='', help='where to write the data (default: tmp)')
  args = parser.parse_args(argv)

  root = args.workdir or tempfile.mkdtemp(prefix='data_throughput_')
  params = {'num_frames': args.num_frames, 'height': args.size, 'width': args.size,
            'num_tracks': args.num_tracks}
  folder = synthetic.ensure_clips(
      os.path.join(root, 'folder'), args.num_clips, 0, record_format='tapvid3d_npz',
      writer=lambda clip, d, name: tapvid3d.save_clip(d / f'{name}.npz', clip), **params)
  paths = [str(folder / f'clip_{i:04d}.npz') for i in range(args.num_clips)]
  readers = {'folder': _folder_reader(paths)}
  sizes = {'folder': sum(os.path.getsize(p) for p in paths)}
  for compression in ('zstd', 'none'):
    name = f'arrayrecord/{compression}'
    records = os.path.join(root, f'arrayrecord_{compression}')
    if not os.path.exists(os.path.join(records, arrayrecord.INFO_FILE)):
      arrayrecord_builders.build_synthetic(records, args.num_clips, 0, compression=compression,
                                           **params)
    readers[name] = _records_reader(records)
    sizes[name] = sum(os.path.getsize(p) for p in arrayrecord.split_files(records, 'train'))

  rng = np.random.default_rng(0)
  results = {(r, d): [] for r in readers for d in ('tracks', 'frames')}
  for name in readers:  # Warm-up: file cache, imports, first decodes.
    _clips_per_s(readers[name], range(min(4, args.num_clips)), True)
  for _ in range(args.repeats):
    for decode in ('tracks', 'frames'):
      order = rng.permutation(args.num_clips)
      for name in readers:  # Interleaved: folder, arrayrecord/zstd, arrayrecord/none, ...
        results[(name, decode)].append(_clips_per_s(readers[name], order, decode == 'frames'))

  with open('/proc/loadavg') as f:
    load = ' '.join(f.read().split()[:3])
  print(f'{args.num_clips} clips: T={args.num_frames}, {args.size}x{args.size}, '
        f'N={args.num_tracks}; {args.repeats} interleaved repeats; load average {load}')
  print('| reader | MB on disk | decode | clips/s per worker, wall (best / median) '
        '| clips per CPU-s (median) | ratio to folder (wall / CPU medians) |')
  print('|---|---|---|---|---|---|')
  for decode in ('tracks', 'frames'):
    base = [statistics.median(r[j] for r in results[('folder', decode)]) for j in (0, 1)]
    for name in readers:
      wall = [r[0] for r in results[(name, decode)]]
      cpu = statistics.median(r[1] for r in results[(name, decode)])
      print(f'| {name} | {sizes[name] / 1e6:.2f} | {decode} | {max(wall):.1f} / '
            f'{statistics.median(wall):.1f} | {cpu:.1f} | '
            f'{statistics.median(wall) / base[0]:.2f} / {cpu / base[1]:.2f} |')


if __name__ == '__main__':
  main()
