"""Fine-tunes a DINO-family ViT with the 3DPoV objective through the shared engine.

    python -m dpov_jax.train --config configs/dpov.py:smoke --workdir /tmp/dpov
    tensorboard --logdir /tmp/dpov

Re-running the same command resumes from the latest checkpoint in --workdir. Without real data
sources, grid-tracked synthetic clips are rendered into <workdir>/synthetic/{train,eval} first
(kept for resumes). Then:

    python -m dpov_jax.match_eval --workdir /tmp/dpov     # start vs fine-tuned matching accuracy
    python -m dpov_jax.export --workdir /tmp/dpov --out /tmp/dpov/backbone.safetensors
"""

from absl import flags

from dpov_jax import task
from tapkit.train import launch


def build_method(config):
  """task.build_method with the --workdir flag (where synthetic data are rendered)."""
  return task.build_method(config, workdir=flags.FLAGS.workdir)


if __name__ == '__main__':
  launch.run(build_method)
