"""Trains TracksTo4D through the shared engine.

    python -m tracks4d.train --config configs/tracks4d.py:smoke --workdir /tmp/t4d

Re-running the same command resumes from the latest checkpoint in --workdir. Without
`config.data.train_dir`, dynamic synthetic clips are rendered into
<workdir>/synthetic/{train,eval} first (kept for resumes). TensorBoard scalars,
metrics.jsonl and config.json land in --workdir; the model config that
`tracks4d.infer` needs is read back from that config.json.
"""

from tapkit.train import launch

if __name__ == '__main__':
  launch.run('tracks4d.task')  # imported once the flags are parsed
