"""Toy MLP regression for the engine's tests and benchmark.

    python -m tapkit.train.toy --config configs/toy.py:smoke --workdir /tmp/toy
"""

import ml_collections

from tapkit.train.config import engine_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Presets: 'smoke' (20 steps, seconds on CPU) and 'default'."""
  preset = arg or 'default'
  if preset not in ('smoke', 'default'):
    raise ValueError(f"Unknown preset {preset!r}; use 'smoke' or 'default'.")
  config = engine_config()
  config.toy = ml_collections.ConfigDict({
      'num_records': 512, 'dim_in': 16, 'dim_out': 4, 'data_seed': 1234,
      'noise_std': 0.05, 'nan_steps': (), 'delay_s': 0.0,
      'eval_every': 0,  # 0 = no eval hook
      'masked_loss': False,  # MSE over positive targets / their batch count (a SumsLoss)
  })
  config.model = ml_collections.ConfigDict({'hidden': (64, 64), 'dropout': 0.1})
  config.optimizer.lr = 3e-3
  config.optimizer.warmup_steps = 5
  if preset == 'smoke':
    config.total_steps = 20
    config.batch_size = 16
    config.log_every = 1
    config.checkpoint.every_steps = 5
    config.sharding.fsdp_min_size = 256
  else:
    config.total_steps = 2000
    config.batch_size = 64
    config.log_every = 100
    config.checkpoint.every_steps = 500
    config.model.hidden = (256, 256)
    config.optimizer.warmup_steps = 100
  return config
