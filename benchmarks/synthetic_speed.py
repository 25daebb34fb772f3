"""Speed of the synthetic clip generator on one CPU core.

Claim: a 24-frame 256x256 clip with 2048 tracks renders in under 5 s on one core.

  python benchmarks/synthetic_speed.py [--repeats 3] [--frames 24] [--size 256] [--tracks 2048]

Threads are limited to one (BLAS / OpenMP environment variables, set before numpy
is imported, and the process is pinned to one core where the OS allows it). The
texture bank is loaded once before timing (reported separately as "cold start").
There is no peer implementation; the ratio column compares with the 5 s budget.
"""

import os

for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS',
             'VECLIB_MAXIMUM_THREADS', 'NUMEXPR_NUM_THREADS'):
  os.environ[_var] = '1'

import argparse  # pylint: disable=g-import-not-at-top,wrong-import-position
import pathlib
import sys
import time

import numpy as np

# Run as a script from anywhere: the repository root holds the packages.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tapkit.data import synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position

BUDGET_S = 5.0


def _timed(fn, repeats: int) -> list[float]:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--frames', type=int, default=24)
  parser.add_argument('--size', type=int, default=256)
  parser.add_argument('--tracks', type=int, default=2048)
  args = parser.parse_args()
  if hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

  start = time.perf_counter()
  texture_size = synthetic.SceneConfig().texture_size
  synthetic.scene._texture_bank(texture_size)  # pylint: disable=protected-access
  cold = time.perf_counter() - start

  t, size, n = args.frames, args.size, args.tracks
  seeds = iter(range(10_000))
  full = _timed(lambda: synthetic.synthesize_clip(next(seeds), t, size, size, n), args.repeats)
  grid = _timed(lambda: synthetic.synthesize_clip(next(seeds), t, size, size,
                                                  query_mode='grid', grid_size=16), args.repeats)

  # Rendering alone (the per-pixel part) on one clip's scene and cameras.
  rng = np.random.default_rng(0)
  config = synthetic.SceneConfig()
  scene = synthetic.make_scene(rng, config)
  path = synthetic.make_camera_path(rng, config)
  intrinsics = synthetic.make_intrinsics(size, size, 55.0).astype(np.float64)
  render = _timed(lambda: [scene.render(path.w2c(i), intrinsics, i, size, size)
                           for i in range(t)], args.repeats)

  rows = [
      (f'clip {t}x{size}x{size}, {n} random tracks', full),
      (f'clip {t}x{size}x{size}, 16x16 grid tracks', grid),
      (f'render only, {t} frames {size}x{size}', render),
  ]
  print(f'threads: 1 (pinned: {hasattr(os, "sched_setaffinity")}), repeats: {args.repeats}, '
        f'texture bank cold start: {cold:.2f} s')
  print(f'| {"case":<42} | median s | min s | budget s | median / budget |')
  print(f'|{"-" * 44}|----------|-------|----------|-----------------|')
  for name, times in rows:
    median = float(np.median(times))
    print(f'| {name:<42} | {median:8.2f} | {min(times):5.2f} | {BUDGET_S:8.1f} | '
          f'{median / BUDGET_S:15.2f} |')


if __name__ == '__main__':
  main()
