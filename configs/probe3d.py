"""Probe3D depth / surface-normal probes on a frozen backbone (dpov_jax/evaluate/probe_task.py).

    python -m dpov_jax.evaluate --task depth --backbones smoke --out /tmp/p3d \
        --config configs/probe3d.py:smoke

Presets:
  smoke    tiny DPT head (hidden 32) on the 'smoke' backbone's 4 probe layers,
           56 px synthetic frames (8 train clips x 4 frames, 2 test clips),
           batch 8, 150 steps at lr 2e-3 (warm-up 15).
  default  the Probe3D protocol's paper settings: DPT head with
           hidden 512 on the blocks L/4-1, L/2-1, 3L/4-1, L-1 with dense-cls
           features (2D channels per layer), 256 depth bins up to the dataset's
           max depth, batch 8, 10 epochs, AdamW lr 5e-4 (wd 0.01, torch
           betas/eps), no clipping, warm-up over 1.5 epochs then cosine to
           0.01 x lr. Data: NYU (GeoNet trainval + the 654-image test pickle)
           or NAVI (multiview trainval / wild_set test) when their paths are
           given, else synthetic 224 px frames.

Differences from the released Probe3D trainer, all in the engine's schedule /
loader: the warm-up starts at 0 (Probe3D: 0.01 x lr); the cosine is the
engine's half cosine (Probe3D: 0.99 cos(pi/2 p) + 0.01); the engine shuffles
the trainval records (Probe3D does not). NAVI's colour-jitter augmentation is
not applied.
"""

import ml_collections

from tapkit.train.config import engine_config

PRESETS = ('smoke', 'default')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Presets 'smoke' and 'default' (module docstring)."""
  preset = arg or 'default'
  if preset not in PRESETS:
    raise ValueError(f'configs/probe3d.py: unknown preset {preset!r}; use one of {PRESETS}.')
  config = engine_config()
  config.seed = 0
  config.batch_size = 8
  config.log_every = 50
  # total_steps <= 0: derived from probe.epochs and the training-set size.
  config.total_steps = -1
  config.optimizer.update({
      'name': 'adamw', 'lr': 5e-4, 'b1': 0.9, 'b2': 0.999, 'eps': 1e-8,
      'weight_decay': 0.01, 'clip_norm': 0.0, 'schedule': 'cosine',
      'end_lr_factor': 0.01,
      # warmup_steps < 0: derived as probe.warmup_epochs epochs.
      'warmup_steps': -1,
      # The frozen backbone (online features) gets no update and no state.
      'groups': ((r'^backbone/', 0.0),),
  })
  config.checkpoint.update({'every_steps': 1000, 'keep': 1, 'async_save': False})

  config.probe = ml_collections.ConfigDict({
      'task': 'depth',          # 'depth' | 'normals'
      'head': 'dpt',            # 'dpt' | 'linear'
      'hidden_dim': 512,        # DPT width
      'linear_kernel': 1,       # k of the linear head's k x k conv
      # 'dense': patch tokens; 'dense-cls': patch tokens concatenated with the
      # CLS token (twice the channels).
      'output': 'dense-cls',
      'multilayer': True,       # 4 blocks (DPT needs them) or the last only
      'num_bins': 256,
      'min_depth': 0.001,
      'max_depth': 10.0,        # metres; NAVI 1.0, NYU 10.0
      'epochs': 10.0,
      'warmup_epochs': 1.5,
      # 'precompute': backbone features computed once per image (frozen
      # backbone, no augmentation: identical to recomputing them);
      # 'online': computed inside the loss under stop_gradient.
      'features': 'precompute',
      'eval_batch_size': 8,
  })
  config.data.update({
      'source': 'synthetic',    # 'synthetic' | 'nyu' | 'navi'
      'image_size': 224,        # square input side (synthetic, NAVI)
      'nyu_train_dir': '',      # GeoNet .mat folder
      'nyu_test': '',           # nyuv2_snorm_all.pkl / .npz
      'nyu_center_crop': False,
      'navi_dir': '',
      'max_train': 0,           # 0 = all records
      'max_test': 0,
  })
  config.data.synthetic = ml_collections.ConfigDict({
      'seed': 0, 'num_train': 64, 'num_eval': 16,
      'frames_per_clip': 8, 'dynamic': False,
  })
  config.viz = ml_collections.ConfigDict({'num_images': 4})

  if preset == 'smoke':
    config.total_steps = 150
    config.optimizer.warmup_steps = 15
    config.optimizer.lr = 2e-3
    config.log_every = 25
    config.probe.hidden_dim = 32
    config.data.image_size = 56
    config.data.synthetic.update({'num_train': 8, 'num_eval': 2,
                                  'frames_per_clip': 4})
    config.viz.num_images = 3
  return config
