"""Engine defaults; a method's config file starts from `engine_config()`.

Every key here is read by the engine (see tapkit/train/README.md); methods add
their own sub-configs (e.g. `config.model`, `config.data`) next to them.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def engine_config() -> ml_collections.ConfigDict:
  """Defaults for the engine's keys."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Fixes init, data order, per-record transforms and per-step rngs.
  c.total_steps = 1000
  c.batch_size = 32  # Global batch (all devices of all processes).
  c.log_every = 50

  c.mesh = ml_collections.ConfigDict({'data': -1, 'fsdp': 1})  # -1 = the rest
  c.sharding = ml_collections.ConfigDict({'fsdp_min_size': 2**16})  # elements

  c.optimizer = ml_collections.ConfigDict({
      'name': 'adamw', 'lr': 1e-3, 'b1': 0.9, 'b2': 0.999, 'eps': 1e-8,
      'weight_decay': 0.0, 'clip_norm': 1.0,
      'schedule': 'cosine', 'warmup_steps': 0, 'end_lr_factor': 0.0,
      'groups': (),  # ((regex, lr_mult), ...); lr_mult 0 = frozen
  })
  # EMA of the params (e.g. a teacher): None = off.
  c.ema = ml_collections.ConfigDict({'momentum': config_dict.placeholder(float)})
  c.guard = ml_collections.ConfigDict({'max_consecutive_bad': 10})
  c.checkpoint = ml_collections.ConfigDict({
      'every_steps': 500, 'keep': 3, 'async_save': True,
      'best_metric': '', 'best_mode': 'min', 'keep_best': 1,
  })
  c.data = ml_collections.ConfigDict({'worker_count': 0})
  # clu Profile hook: first_step 0 = off.
  c.profile = ml_collections.ConfigDict({'first_step': 0, 'num_steps': 5})
  # Multi-host: also on when the env var TAPKIT_DISTRIBUTED=1 is set. Empty /
  # None fields let jax.distributed.initialize() auto-detect (SLURM, TPU, ...).
  c.distributed = ml_collections.ConfigDict({
      'initialize': False,
      'coordinator_address': '',
      'num_processes': config_dict.placeholder(int),
      'process_id': config_dict.placeholder(int),
  })
  return c


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads `path/to/config.py[:arg]` the way `--config` does, for CLIs without absl.

  A relative path that does not exist from the working directory is looked up
  from the repository root, so `configs/x.py` works from anywhere in an editable
  install.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top

  path_text, _, arg = spec.partition(':')
  path = pathlib.Path(path_text)
  if not path.is_absolute() and not path.exists():
    path = pathlib.Path(__file__).resolve().parents[2] / path
  if not path.is_file():
    raise FileNotFoundError(f'config file not found: {path_text}')
  module_spec = importlib.util.spec_from_file_location(f'_config_{path.stem}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def demo_config(spec: str, total_steps: int, fast: bool = False) -> ml_collections.ConfigDict:
  """A preset (`load_config(spec)`) shortened to `total_steps`, for demos (quickstart, notebooks).

  With `fast` (plumbing checks of a few steps) it also evaluates and saves every 2 steps, logs
  every step, and caps a learning-rate warm-up at 1 step (the cosine schedule needs more steps
  than warm-up).
  """
  config = load_config(spec)
  config.total_steps = total_steps
  if fast:
    config.eval.every_steps = 2
    config.log_every = 1
    config.checkpoint.every_steps = 2
    if config.optimizer.get('warmup_steps', 0) > 1:
      config.optimizer.warmup_steps = 1
  return config
