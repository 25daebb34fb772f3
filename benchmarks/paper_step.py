"""Runs real 3DSPA training steps at the paper's sizes and measures memory and time.

    python benchmarks/paper_step.py [--row spa3d_f32_remat] [--steps 2] [--min_free_gb 14]

The row is one of `memory_table.py`'s (default `spa3d_f32_remat`: 3DSPA with DINO
and depth features, 512 support / 128 query tracks, T = 150, per-device batch 1,
AdamW, remat per block, float32; `spa3d_bf16_remat` computes in bfloat16). Unlike
`memory_table.py`, which only compiles, this initialises the parameters and the
optimiser state for real and executes `--steps` compiled training steps
(`tapkit.train.memory.run_steps`) on synthetic inputs of the paper's shapes, then
prints XLA's plan next to the process's measured peak resident memory
(sampled every 50 ms, and the kernel's `ru_maxrss`), the seconds per step and
the load average of the machine before and after.

It refuses to start when the machine has less than --min_free_gb GiB available
(`MemAvailable`, polled every 10 s for up to --wait_s seconds): the float32 step
needs more than 12 GiB of resident memory and the machine may be shared (on a
loaded 24 GiB machine the kernel's OOM killer ended a run at 12.2 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import memory_table  # pylint: disable=g-import-not-at-top,wrong-import-position


def _load() -> str:
  with open('/proc/loadavg') as f:
    return ' '.join(f.read().split()[:3])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--row', default='spa3d_f32_remat', choices=sorted(memory_table.ROWS))
  parser.add_argument('--steps', type=int, default=2)
  parser.add_argument('--min_free_gb', type=float, default=14.0)
  parser.add_argument('--wait_s', type=float, default=0.0,
                      help='wait up to this long for --min_free_gb to become available')
  parser.add_argument('--json', action='store_true', help='also print the result as JSON')
  args = parser.parse_args()
  import psutil  # pylint: disable=g-import-not-at-top
  deadline = time.time() + args.wait_s
  available = psutil.virtual_memory().available / 2**30
  while available < args.min_free_gb and time.time() < deadline:
    time.sleep(10)
    available = psutil.virtual_memory().available / 2**30
  if available < args.min_free_gb:
    sys.exit(f'only {available:.1f} GiB available (< --min_free_gb {args.min_free_gb:g}); '
             'not starting.')
  from tapkit.train import memory  # pylint: disable=g-import-not-at-top
  load_before = _load()
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as workdir:
    config, method, example = memory_table.build_row(args.row, workdir)
    # XLA's plan of the compiled step comes with the measurements (one compilation).
    measured = plan = memory.run_steps(config, method, example, args.steps)
  total = time.perf_counter() - start
  maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
  gib = lambda b: f'{b / 2**30:.2f} GiB'
  times = measured['step_seconds']
  print(f'row {args.row}: {plan["num_params"]:,} parameters, {plan["compute_dtype"]} compute, '
        f'remat {config.remat}, batch {plan["batch_size"]}, {plan["devices"]} device(s)')
  print(f'  XLA plan: temporaries {gib(plan["temp_bytes"])}, peak {gib(plan["peak_bytes"])}, '
        f'{plan["flops_per_example"] / 1e9:.1f} GFLOP / example')
  print(f'  measured: peak RSS {gib(measured["peak_rss_bytes"])} (sampled), ru_maxrss '
        f'{gib(maxrss)}, RSS after init {gib(measured["rss_before_bytes"])}')
  print(f'  step seconds: {", ".join(f"{t:.1f}" for t in times)} (min {min(times):.1f}); '
        f'loss {measured["loss"]:.5g}; total wall {total:.0f} s')
  print(f'  load average before: {available:.1f} GiB available, {load_before}; after: {_load()}')
  if args.json:
    print(json.dumps({'row': args.row, **measured, 'ru_maxrss_bytes': maxrss,
                      'load_before': load_before, 'load_after': _load()}))


if __name__ == '__main__':
  main()
