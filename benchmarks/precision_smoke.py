"""Final metrics of the three smoke presets trained in float32 vs bfloat16 compute.

    python benchmarks/precision_smoke.py [--steps 60] [--out /tmp/precision_smoke]
    python benchmarks/precision_smoke.py --methods spa3d --steps 40

Each method's `smoke` preset is shortened to --steps steps (warm-up: a quarter of them)
and trained twice from the
same seed, with `precision.compute_dtype` float32 and bfloat16 (float32 parameters in
both), the two runs interleaved method by method. The table lists, per method, the
last logged training loss and the held-out metrics the engine evaluates at the last
step, for both dtypes, their difference relative to float32 (|bf16 - f32| / |f32|),
and the dtypes of the parameters and Adam moments found in the bfloat16 run's final
checkpoint (float32 master weights). A row passes when the relative difference is at
most --tolerance, or the absolute difference at most --atol (for metrics near 0).
3DPoV starts from the random backbone (`pretrain.steps=0`) to skip its pre-training
stage.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNS = {
    'spa3d': ('trajan3d.train', 'configs/spa3d.py:smoke', ()),
    'tracks4d': ('tracks4d.train', 'configs/tracks4d.py:smoke', ()),
    'dpov': ('dpov_jax.train', 'configs/dpov.py:smoke', ('--config.pretrain.steps=0',)),
}
# Scalars compared: the last logged training loss and every held-out metric.
SKIPPED_PREFIXES = ('perf/', 'train/grad_norm', 'train/skipped_steps',
                    'train/consecutive_bad', 'steps_per_sec', 'uptime')


def last_metrics(workdir: pathlib.Path) -> dict[str, float]:
  """The last value of every scalar in <workdir>/metrics.jsonl."""
  out = {}
  for line in (workdir / 'metrics.jsonl').read_text().splitlines():
    out.update({k: v for k, v in json.loads(line).items() if k != 'step'})
  return out


def checkpoint_dtypes(workdir: pathlib.Path) -> str:
  """Dtypes of the floating params and optimiser state in the final checkpoint."""
  sys.path.insert(0, str(REPO))
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tapkit.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  _, state = workdir_lib.load_state(workdir)
  dtypes = set()
  for key in ('params', 'opt_state'):
    stack = [state[key]]
    while stack:
      node = stack.pop()
      if isinstance(node, dict):
        stack.extend(node.values())
      elif isinstance(node, (list, tuple)):
        stack.extend(node)
      elif isinstance(node, np.ndarray) and np.issubdtype(node.dtype, np.floating):
        dtypes.add(str(node.dtype))
  return '+'.join(sorted(dtypes))


def compared(metrics: dict[str, float]) -> dict[str, float]:
  return {k: v for k, v in metrics.items()
          if not k.startswith(SKIPPED_PREFIXES) and isinstance(v, (int, float))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=60)
  parser.add_argument('--methods', default=','.join(RUNS))
  parser.add_argument('--log_every', type=int, default=10,
                      help='the training loss is the mean over the last log_every steps')
  parser.add_argument('--out', default='/tmp/precision_smoke')
  parser.add_argument('--tolerance', type=float, default=0.1,
                      help='relative difference allowed between bf16 and f32 metrics')
  parser.add_argument('--atol', type=float, default=0.02,
                      help='absolute difference allowed (metrics near 0)')
  args = parser.parse_args()
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
  rows = []
  for name in args.methods.split(','):
    module, spec, extra = RUNS[name]
    results, seconds = {}, {}
    for dtype in ('float32', 'bfloat16'):
      workdir = pathlib.Path(args.out) / f'{name}_{dtype}'
      cmd = [sys.executable, '-m', module, f'--config={spec}', f'--workdir={workdir}',
             f'--config.total_steps={args.steps}', f'--config.log_every={min(args.log_every, args.steps)}',
             f'--config.optimizer.warmup_steps={args.steps // 4}',
             f'--config.precision.compute_dtype={dtype}', *extra]
      start = time.perf_counter()
      proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
      seconds[dtype] = time.perf_counter() - start
      if proc.returncode:
        print(f'{name} {dtype}: failed\n{proc.stderr[-2000:]}', flush=True)
        break
      results[dtype] = compared(last_metrics(workdir))
      print(name, dtype, f'{seconds[dtype]:.0f} s', json.dumps(results[dtype]), flush=True)
    if len(results) < 2:
      continue
    stored = checkpoint_dtypes(pathlib.Path(args.out) / f'{name}_bfloat16')
    for key in sorted(set(results['float32']) & set(results['bfloat16'])):
      a, b = float(results['float32'][key]), float(results['bfloat16'][key])
      rel = abs(b - a) / max(abs(a), 1e-12)
      ok = rel <= args.tolerance or abs(b - a) <= args.atol
      rows.append((name, key, a, b, rel, 'yes' if ok else 'NO', stored))

  print(f'\n{args.steps} steps per run; pass: relative difference <= {args.tolerance} '
        f'or absolute <= {args.atol}; load average {open("/proc/loadavg").read().split()[:3]}')
  print('| method | metric | float32 | bfloat16 | rel. diff | pass | bf16 checkpoint dtypes |')
  print('|---|---|---|---|---|---|---|')
  for name, key, a, b, rel, ok, stored in rows:
    print(f'| {name} | {key} | {a:.5g} | {b:.5g} | {rel:.3g} | {ok} | {stored} |')


if __name__ == '__main__':
  main()
