"""Final metrics of the three smoke presets trained in float32 vs bfloat16 compute.

    python benchmarks/precision_smoke.py [--steps 60] [--out /tmp/precision_smoke]

Each method's `smoke` preset is shortened to --steps steps and trained twice from the
same seed, with `precision.compute_dtype` float32 and bfloat16 (float32 parameters in
both); the table lists the last logged training loss and the held-out metrics the
engine evaluates at the last step. 3DPoV starts from the random backbone
(`pretrain.steps=0`) to skip its pre-training stage.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNS = {
    'spa3d': ('trajan3d.train', 'configs/spa3d.py:smoke', ()),
    'tracks4d': ('tracks4d.train', 'configs/tracks4d.py:smoke', ()),
    'dpov': ('dpov_jax.train', 'configs/dpov.py:smoke', ('--config.pretrain.steps=0',)),
}


def last_metrics(workdir: pathlib.Path) -> dict[str, float]:
  """The last value of every scalar in <workdir>/metrics.jsonl."""
  out = {}
  for line in (workdir / 'metrics.jsonl').read_text().splitlines():
    out.update({k: v for k, v in json.loads(line).items() if k != 'step'})
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=60)
  parser.add_argument('--methods', default=','.join(RUNS))
  parser.add_argument('--out', default='/tmp/precision_smoke')
  args = parser.parse_args()
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
  results = {}
  for name in args.methods.split(','):
    module, spec, extra = RUNS[name]
    for dtype in ('float32', 'bfloat16'):
      workdir = pathlib.Path(args.out) / f'{name}_{dtype}'
      cmd = [sys.executable, '-m', module, f'--config={spec}', f'--workdir={workdir}',
             f'--config.total_steps={args.steps}', f'--config.precision.compute_dtype={dtype}',
             *extra]
      proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
      if proc.returncode:
        print(f'{name} {dtype}: failed\n{proc.stderr[-2000:]}')
        continue
      results[(name, dtype)] = last_metrics(workdir)
      print(name, dtype, json.dumps({k: v for k, v in results[(name, dtype)].items()
                                     if not k.startswith('perf/')}), flush=True)


if __name__ == '__main__':
  main()
