"""3DPoV evaluators for `config.evals` (tapkit/train/evaluators.py).

    config.evals.eval = {'type': 'dpov_jax.match', 'every_steps': 1000, 'num_clips': 16,
                         'threshold_px': 14.0, 'batch_size': 8}

`match`: nearest-feature point matching between frame 0 and frame T - 1 of `num_clips` held-out
synthetic clips (dpov_jax/matcher.py). Returns the student's accuracy within `threshold_px`
input pixels and mean error (match_acc, match_err_px), the same for the EMA teacher when the run
has one (teacher_match_*), and, for scale, the run's starting backbone (start_match_*) and the
"nothing moved" guess (static_acc); the last two are computed once per evaluator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import ml_collections

from dpov_jax import matcher as matcher_lib
from dpov_jax import task
from tapkit.train import evaluators


@evaluators.register('dpov_jax.match')
def match(config: ml_collections.ConfigDict, workdir: str | None, num_clips: int,
          threshold_px: float, batch_size: int) -> evaluators.Evaluator:
  """Point-matching accuracy of the student, teacher and start backbones (module docstring)."""
  if not workdir:
    raise ValueError('config.evals: the 3DPoV matching evaluation renders its held-out clips '
                     'into the workdir, but none was given')
  module = task.build_backbone(config)
  matcher = matcher_lib.Matcher(module, task.eval_clips(config, workdir, int(num_clips)),
                               threshold_px, int(batch_size))
  start = task.initial_backbone_params(config, workdir)
  baseline = {}

  def evaluate(state: Any, step: int, writer: Any = None) -> Mapping[str, float]:
    del step, writer
    if not baseline:
      baseline.update({'start_' + k: v for k, v in matcher(start).items()})
      baseline['static_acc'] = matcher.static_baseline()['acc']
    student = matcher(jax.device_get(state.params['backbone']))
    out = {'match_acc': student['acc'], 'match_err_px': student['err_px'],
           'start_match_acc': baseline['start_acc'],
           'start_match_err_px': baseline['start_err_px'],
           'static_acc': baseline['static_acc']}
    if state.ema_params is not None:
      teacher = matcher(jax.device_get(state.ema_params['backbone']))
      out.update({'teacher_match_acc': teacher['acc'],
                  'teacher_match_err_px': teacher['err_px']})
    return out

  return evaluate
