"""Fine-tunes a DINO-family ViT with the 3DPoV objective through the shared engine.

    python -m dpov_jax.pretrain --config configs/dpov.py:smoke --workdir /tmp/dpov   # smoke only
    python -m dpov_jax.train --config configs/dpov.py:smoke --workdir /tmp/dpov
    tensorboard --logdir /tmp/dpov

A config that pre-trains its starting backbone (`pretrain.steps > 0` and no
`backbone.init_checkpoint`, like `smoke`) needs the first command first: it writes
<workdir>/pretrain/backbone.safetensors, and training stops with an error naming that command
when the file is missing (training never pre-trains by itself). Re-running the same command
resumes from the latest checkpoint in --workdir. Without real data sources, grid-tracked
synthetic clips are rendered into <workdir>/synthetic/{train,eval} first (kept for resumes).
Then:

    python -m dpov_jax.match_eval --workdir /tmp/dpov     # start vs fine-tuned matching accuracy
    python -m dpov_jax.export --workdir /tmp/dpov --out /tmp/dpov/backbone.safetensors
"""

from tapkit.train import launch

if __name__ == '__main__':
  launch.run('dpov_jax.task')  # imported once the flags are parsed
