r"""CPU seconds per step of the quickstart's 3DPoV runs (the `dpov` stage's budget).

    python benchmarks/dpov_smoke_steps.py --phase finetune --steps 11
    python benchmarks/dpov_smoke_steps.py --phase pretrain --steps 21

Runs the engine (`tapkit.train.loop.train`) on the quickstart's full-size 3DPoV `smoke` config
(dpov_jax/demo.py FULL: batch 8 clips x 4 frames at 112 px, 5 references, grid 8) with fewer
synthetic clips (--clips) and steps, evaluation and checkpoints off, and prints the train
step's compile time and the CPU seconds (all threads of this process: what the step costs on
a shared machine) and wall seconds per step after the first (the final checkpoint save
included). The quickstart's stage costs about pretrain.steps (600) and total_steps (300)
times these, plus the compilations, the rendering of 48 + 32 clips and the matching
evaluations. The fine-tuning steps here run at
the curriculum value of every step after the first (frames 2-3 compared with frame 0), as
299 of the stage's 300 steps do. Prints the load average with the numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import jax

from dpov_jax import demo, pretrain, task
from tapkit.train import loop


class _TimedStep:
  """The compiled train step; records CPU / wall clocks around its first call."""

  def __init__(self, compiled: Any, marks: dict[str, tuple[float, float]]):
    self._compiled, self._marks, self._calls = compiled, marks, 0

  def __getattr__(self, name: str) -> Any:
    return getattr(self._compiled, name)  # memory_analysis, cost_analysis, ...

  def __call__(self, *args):
    self._calls += 1
    out = self._compiled(*args)
    if self._calls == 1:
      jax.block_until_ready(out)
      self._marks['after_first'] = (time.process_time(), time.perf_counter())
    return out


def _instrument(marks: dict[str, tuple[float, float]]) -> None:
  """Wraps loop.compile_step so that the compile and the first step are timed."""
  original = loop.compile_step

  class _Jitted:

    def __init__(self, jitted):
      self._jitted = jitted

    def lower(self, *args, **kwargs):
      lowered = self._jitted.lower(*args, **kwargs)

      class _Lowered:

        def compile(self):
          cpu, wall = time.process_time(), time.perf_counter()
          compiled = lowered.compile()
          marks['compile'] = (time.process_time() - cpu, time.perf_counter() - wall)
          return _TimedStep(compiled, marks)

      return _Lowered()

  def compile_step(*args, **kwargs):
    jitted, new_metrics = original(*args, **kwargs)
    return _Jitted(jitted), new_metrics

  loop.compile_step = compile_step


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--phase', choices=('finetune', 'pretrain'), default='finetune')
  parser.add_argument('--steps', type=int, default=11, help='steps to run (>= 2)')
  parser.add_argument('--clips', type=int, default=8, help='synthetic training / held-out clips')
  parser.add_argument('--workdir', default='', help='default: a temporary folder')
  args = parser.parse_args(argv)
  if args.steps < 2:
    parser.error(f'--steps must be >= 2, got {args.steps}')
  workdir = args.workdir or tempfile.mkdtemp(prefix='dpov_steps_')
  config = demo.smoke_config(demo.FULL, False)
  config.data.synthetic.update({'num_train': args.clips, 'num_eval': args.clips})
  config.evals.eval.update({'num_clips': args.clips, 'every_steps': 0})
  if args.phase == 'pretrain':
    config.pretrain.steps = args.steps
    run_config = pretrain.pretrain_config(config)
    method = pretrain.build_method(config, workdir)
  else:
    config.pretrain.steps = 0  # Random init: the step's cost does not depend on the weights.
    config.total_steps = args.steps
    run_config = config
    method = task.build_method(config, workdir)
  run_config.checkpoint.every_steps = 10 * args.steps
  run_config.log_every = 10 * args.steps
  marks: dict[str, tuple[float, float]] = {}
  _instrument(marks)
  state = loop.train(run_config, os.path.join(workdir, 'run'), method)
  jax.block_until_ready(state)
  cpu_end, wall_end = time.process_time(), time.perf_counter()
  cpu_first, wall_first = marks['after_first']
  n = args.steps - 1
  out = {'compile_cpu_s': marks['compile'][0], 'compile_wall_s': marks['compile'][1],
         'cpu_s_per_step': (cpu_end - cpu_first) / n, 'wall_s_per_step': (wall_end - wall_first) / n,
         'load_average': os.getloadavg()[0]}
  print(f'{args.phase}: train step compiled in {out["compile_cpu_s"]:.1f} CPU-s '
        f'({out["compile_wall_s"]:.1f} s wall); {out["cpu_s_per_step"]:.3f} CPU-s and '
        f'{out["wall_s_per_step"]:.3f} s wall per step over {n} steps '
        f'(load average {" ".join(f"{x:.2f}" for x in os.getloadavg())}, '
        f'{os.cpu_count()} cores)')
  return out


if __name__ == '__main__':
  main()
