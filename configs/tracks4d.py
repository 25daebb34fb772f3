"""TracksTo4D training (tracks4d/task.py), through the shared engine.

    python -m tracks4d.train --config configs/tracks4d.py:smoke --workdir /tmp/t4d
    python -m tracks4d.train --config configs/tracks4d.py --workdir /tmp/t4d \
        --config.data.train_dir=/data/train_npz --config.data.eval_dir=/data/val_npz

Presets:
  smoke    tiny model (width 64, 1 round, 4 heads), 22-frame windows, 100 points,
           synthetic dynamic clips rendered into <workdir>/synthetic when no
           data.train_dir is given (CPU minutes).
  default  paper sizes and the official epoch schedule: Adam lr 1e-4, batch 1,
           100 points, 22-frame windows for epochs 0-49 then random 20-49-frame
           windows, camera-initialisation loss for epochs < 100 (until it first goes
           below 1e-4), loss clamped at 100 from epoch 4; no gradient clipping.
"""

import ml_collections

from tapkit.train.config import engine_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Presets 'smoke' and 'default'."""
  preset = arg or 'default'
  if preset not in ('smoke', 'default'):
    raise ValueError(f"Unknown preset {preset!r}; use 'smoke' or 'default'.")
  config = engine_config()
  # Transformer blocks: 'none' | 'block' | a jax.checkpoint policy name such as
  # 'dots_saveable' (tapkit/train/precision.py).
  config.remat = 'none'

  # The paper's network: a transformer over (point, frame) tokens alternating point and
  # frame attention, with heads for the per-frame camera and the per-point 3D bases.
  config.model = ml_collections.ConfigDict({
      'width': 256, 'num_layers': 3, 'num_heads': 16, 'head_dim': 64, 'mlp_dim': 2048,
      'positional_dim': 12, 'num_bases': 12, 'camera_kernel_size': 31,
      'predict_focal_length': False, 'precision': 'highest',
  })
  config.loss = ml_collections.ConfigDict({
      'reprojection_dynamic_coeff': 50.0, 'sparsity_dynamic_coeff': 0.001})
  # Official epoch schedule; epochs = passes over the training files.
  config.schedule = ml_collections.ConfigDict({
      'camera_init_until_epoch': 100,
      'clamp_from_epoch': 4,
      'random_window_from_epoch': 50,  # -1: fixed windows only
      'loss_clamp': 100.0,
  })
  config.data.update({
      # 'folder' (train_dir / synthetic clips) or 'arrayrecord' (split arrayrecord_split of
      # the dataset folder arrayrecord_folder, written by `python -m tapkit.data.convert`).
      'source': 'folder', 'arrayrecord_folder': '', 'arrayrecord_split': 'train',
      'train_dir': '',  # clip files (TracksTo4D .npz or TAPVid-3D clips); '' = synthetic
      'eval_dir': '',  # held-out clip files for the eval hook ('' with train_dir: none)
      'pattern': '*.npz',
      'max_points': 100,
      'min_points': 100,  # records with fewer real tracks are skipped (official)
      'first_phase_frames': 22,
      'max_cameras': 50,  # random windows draw F from [20, max_cameras)
  })
  config.data.synthetic = ml_collections.ConfigDict({
      'num_train': 64, 'num_eval': 8, 'seed': 0, 'num_frames': 51, 'height': 128,
      'width': 160, 'num_tracks': 600,
  })
  # Held-out evaluation (tracks4d/evaluators.py), also run offline by
  # `python -m tapkit.evaluate --workdir W --eval eval`: per held-out clip, the
  # first max_frames frames and up to max_points real tracks; scalars eval/<metric>.
  config.evals.eval = ml_collections.ConfigDict({
      'type': 'tracks4d.held_out', 'every_steps': 5000, 'max_frames': 50,
      'max_points': 1000})

  config.optimizer.update({
      'name': 'adamw', 'lr': 1e-4, 'weight_decay': 0.0, 'clip_norm': 0.0,
      'schedule': 'constant', 'warmup_steps': 0})
  config.batch_size = 1
  config.total_steps = 1_000_000  # The official loop is open-ended (10^6 epochs).
  config.log_every = 100
  config.checkpoint.every_steps = 5000
  config.checkpoint.keep = 5

  if preset == 'smoke':
    config.model.update({'width': 64, 'num_layers': 1, 'num_heads': 4, 'head_dim': 16,
                         'mlp_dim': 128, 'camera_kernel_size': 9})
    config.data.update({'min_points': 40})
    config.data.synthetic.update({'num_train': 12, 'num_eval': 3, 'num_frames': 24,
                                  'height': 72, 'width': 96, 'num_tracks': 200})
    config.schedule.update({'camera_init_until_epoch': 5, 'clamp_from_epoch': 1,
                            'random_window_from_epoch': -1})
    config.evals.eval.update({'every_steps': 100, 'max_frames': 24, 'max_points': 200})
    config.optimizer.update({'lr': 1e-3, 'schedule': 'cosine', 'warmup_steps': 10,
                             'end_lr_factor': 0.1, 'clip_norm': 1.0})
    config.total_steps = 300
    config.log_every = 25
    config.checkpoint.every_steps = 100
  return config
