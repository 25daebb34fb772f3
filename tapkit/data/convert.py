"""Writes ArrayRecord datasets for training at scale (`tapkit.data.arrayrecord_builders`).

  # The official TAPVid-3D minival split (D holds the official adt/ drivetrack/ pstudio/):
  python -m tapkit.data.convert --tapvid3d_dir D --split minival --out DIR
  # Synthetic clips rendered from a seed (split 'train', and 'eval' with --num_eval):
  python -m tapkit.data.convert --synthetic 256 --seed 0 --num_frames 24 --height 64 \\
      --width 64 --num_tracks 256 --out DIR
  # TracksTo4D files (or TAPVid-3D clips) of a folder, sorted by name:
  python -m tapkit.data.convert --tracks4d_dir D --pattern '*.npz' --out DIR

Train from DIR with `--config.data.source=arrayrecord --config.data.arrayrecord_folder=DIR`.
A file that cannot be read stops the conversion with an error naming it, unless
`--max_bad_fraction` allows skipping some.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from collections.abc import Sequence

from etils import epy

from tapkit.data import arrayrecord_builders as builders

with epy.lazy_imports():  # grain loads on first use (fast --help)
  from tapkit.data import arrayrecord


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m tapkit.data.convert', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  what = parser.add_mutually_exclusive_group(required=True)
  what.add_argument('--tapvid3d_dir', help='folder with the official adt/ drivetrack/ '
                    'pstudio/ folders (the TFDS manual_dir)')
  what.add_argument('--synthetic', type=int, metavar='N', help='render N training clips')
  what.add_argument('--tracks4d_dir', help='folder of TracksTo4D .npz files')
  parser.add_argument('--out', required=True, help='dataset folder to write')
  parser.add_argument('--split', default=None,
                      help="tapvid3d: 'minival' or 'full_eval'; tracks4d: split name "
                      "(default 'train')")
  parser.add_argument('--pattern', default='*.npz', help='tracks4d: file pattern')
  parser.add_argument('--seed', type=int, default=0, help='synthetic: base seed')
  parser.add_argument('--num_eval', type=int, default=0,
                      help='synthetic: held-out clips (split eval, seed heldout_seed(seed))')
  parser.add_argument('--num_frames', type=int, default=24)
  parser.add_argument('--height', type=int, default=256)
  parser.add_argument('--width', type=int, default=256)
  parser.add_argument('--num_tracks', type=int, default=256)
  parser.add_argument('--max_bad_fraction', type=float, default=0.0,
                      help='skip unreadable files up to this fraction (default 0: stop)')
  parser.add_argument('--records_per_shard', type=int, default=builders.RECORDS_PER_SHARD)
  parser.add_argument('--compression', choices=sorted(builders.WRITER_OPTIONS), default='zstd',
                      help="record compression: 'zstd' (smaller files) or 'none' (faster reads)")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
  args = _parse_args(argv)
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
  if args.tapvid3d_dir:
    if args.split is None:
      raise SystemExit("--tapvid3d_dir needs --split 'minival' or 'full_eval'")
    builders.build_tapvid3d(args.tapvid3d_dir, args.split, args.out, args.max_bad_fraction,
                            args.records_per_shard, args.compression)
  elif args.synthetic is not None:
    builders.build_synthetic(args.out, args.synthetic, args.seed, args.num_eval,
                             num_frames=args.num_frames, height=args.height,
                             width=args.width, num_tracks=args.num_tracks,
                             records_per_shard=args.records_per_shard,
                             compression=args.compression)
  else:
    files = arrayrecord.list_files(args.tracks4d_dir, args.pattern)
    if not files:
      raise SystemExit(f'{args.tracks4d_dir}: no files matching {args.pattern!r}')
    builders.build_tracks4d(files, args.out, args.split or 'train', args.max_bad_fraction,
                            args.records_per_shard, args.compression)
  info = arrayrecord.read_info(args.out)
  for split, entry in sorted(info['splits'].items()):
    print(f'{pathlib.Path(args.out) / split}: {entry["num_examples"]} records in '
          f'{len(entry["files"])} shard(s), {len(entry["skipped"])} skipped')


if __name__ == '__main__':
  try:
    main()
  except (ValueError, OSError) as e:  # BadFileError, missing folders: one clear line.
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
