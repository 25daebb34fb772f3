"""TracksTo4D evaluators for `config.evals` (tapkit/train/evaluators.py).

    config.evals.eval = {'type': 'tracks4d.held_out', 'every_steps': 5000,
                         'max_frames': 50, 'max_points': 1000}

`held_out`: per held-out clip file (data.eval_dir, or the synthetic held-out
clips of the run), a fixed window of up to `max_frames` frames and up to
`max_points` real points, one forward pass, the official metrics: ATE, RPE,
depth AbsRel / delta_1, pixel reprojection error and the total loss; the
evaluator returns their nan-means over the clips.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import ml_collections

from tapkit.train import evaluators
from tracks4d import task


@evaluators.register('tracks4d.held_out')
def held_out(config: ml_collections.ConfigDict, workdir: str | None, max_frames: int,
             max_points: int) -> evaluators.Evaluator:
  """Mean official metrics of `state.params` on the held-out clips (module docstring)."""
  net = task.build_model(config.model)
  _, eval_paths = task.training_files(config, workdir)
  if not eval_paths:
    raise ValueError('config.evals: the TracksTo4D held-out evaluation needs held-out clips; '
                     'set config.data.eval_dir (or the evaluator\'s every_steps to 0)')
  samples = task.eval_samples(eval_paths, int(max_frames), int(max_points))

  def evaluate(state: Any, step: int, writer: Any = None) -> Mapping[str, float]:
    del step, writer
    return task.evaluate_params(net, jax.device_get(state.params), samples)

  return evaluate
