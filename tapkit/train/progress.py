"""Per-step hooks of the training loop: progress reports and a profiler window.

`hook(step)` is called after every training step. These replace clu's periodic actions,
which import TensorFlow through `clu.metric_writers`.
"""

from __future__ import annotations

import logging
import os
import time

import jax

from tapkit.train import writers as writers_lib


def format_seconds(seconds: float) -> str:
  """'42s', '3m05s' or '2h03m' for a duration in seconds."""
  seconds = max(0, int(round(seconds)))
  if seconds < 60:
    return f'{seconds}s'
  if seconds < 3600:
    return f'{seconds // 60}m{seconds % 60:02d}s'
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'


class ReportProgress:
  """Every `every_steps` steps (and at `num_train_steps`): logs steps/s, percent done and
  ETA, and writes the scalars `steps_per_sec` and `uptime` (seconds since construction).

  The first call only starts the clock; rates are measured between reports.
  """

  def __init__(self, *, num_train_steps: int, writer: writers_lib.MetricWriter | None,
               every_steps: int):
    if every_steps <= 0:
      raise ValueError(f'every_steps must be positive, got {every_steps}')
    self._total = int(num_train_steps)
    self._writer = writer
    self._every = int(every_steps)
    self._t0 = time.monotonic()
    self._last: tuple[int, float] | None = None  # (step, time) of the previous report

  def __call__(self, step: int) -> bool:
    """Returns True when this call reported."""
    now = time.monotonic()
    if self._last is None:
      self._last = (step, now)
      return False
    if step == self._last[0] or not (step % self._every == 0 or step == self._total):
      return False
    steps_per_sec = (step - self._last[0]) / max(now - self._last[1], 1e-9)
    self._last = (step, now)
    message = f'{steps_per_sec:.1f} steps/s'
    if self._total > 0:
      eta = (self._total - step) / max(steps_per_sec, 1e-9)
      message += (f', {100.0 * step / self._total:.1f}% ({step}/{self._total}), '
                  f'ETA: {format_seconds(eta)}')
    logging.info('%s', message)
    if self._writer is not None:
      self._writer.write_scalars(step, {'steps_per_sec': steps_per_sec,
                                        'uptime': now - self._t0})
    return True


class Profile:
  """Records a JAX profiler trace of `num_steps` steps after the first `first_step` in
  `logdir` (view it with TensorBoard's profile plugin or Perfetto)."""

  def __init__(self, *, logdir: str | os.PathLike, first_step: int, num_steps: int):
    self._logdir = os.fspath(logdir)
    self._first = int(first_step)
    self._stop_at = int(first_step) + max(1, int(num_steps))
    self._running = False

  def __call__(self, step: int) -> bool:
    """Starts the trace once `first_step` steps have run and stops it `num_steps` later.

    Returns True when this call started or stopped the trace.
    """
    if not self._running and step == self._first:
      jax.profiler.start_trace(self._logdir)
      self._running = True
      return True
    if self._running and step >= self._stop_at:
      jax.profiler.stop_trace()
      self._running = False
      logging.info('Profile of steps %d-%d written under %s.', self._first + 1,
                   self._stop_at, self._logdir)
      return True
    return False
