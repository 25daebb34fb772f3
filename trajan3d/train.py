r"""Trains TRAJAN or 3DSPA with the shared engine.

    python -m trajan3d.train --config configs/spa3d.py:smoke --workdir /tmp/spa3d
    python -m trajan3d.train --config configs/trajan.py:smoke --workdir /tmp/trajan

Re-running the same command resumes from the latest checkpoint in --workdir.
TensorBoard scalars (train/*, eval/*) and metrics.jsonl go to --workdir. The
task (data, transforms, loss) is `trajan3d.task.build_method`; the held-out
evaluation is `config.evals.eval` (`trajan3d.held_out`, trajan3d/evaluators.py).
"""

from tapkit.train import launch

if __name__ == '__main__':
  launch.run('trajan3d.task')  # imported once the flags are parsed
