"""Command-line entry point shared by every method's train.py.

    # mymethod/train.py
    from tapkit.train import launch
    from mymethod import task

    if __name__ == '__main__':
      launch.run(task.build_method)   # build_method(config, workdir) -> loop.Method

    $ python -m mymethod.train --config configs/mymethod.py:smoke --workdir /tmp/w \
        --config.optimizer.lr=3e-4

Re-running the same command resumes from the latest checkpoint in --workdir.

This is the only module that defines or reads absl flags: library code receives the config and
the run directory as arguments (`build_method(config, workdir)`), and other commands that take
`--config` / `--workdir` go through `run_main(fn)`. `train(config, workdir, build_method)` is
the same training from Python (notebooks, the quickstart).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from tapkit.train import loop
from tapkit.train.state import TrainState


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """jax.distributed.initialize() when config.distributed.initialize or
  TAPKIT_DISTRIBUTED=1 asks for it. Must run before any other JAX call."""
  cfg = config.distributed
  if not (cfg.initialize or os.environ.get('TAPKIT_DISTRIBUTED') == '1'):
    return
  kwargs = {}
  if cfg.coordinator_address:
    kwargs['coordinator_address'] = cfg.coordinator_address
  if cfg.num_processes is not None:
    kwargs['num_processes'] = cfg.num_processes
  if cfg.process_id is not None:
    kwargs['process_id'] = cfg.process_id
  jax.distributed.initialize(**kwargs)
  logging.info('jax.distributed: process %d of %d.', jax.process_index(),
               jax.process_count())


def save_config(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> None:
  """Writes the resolved config as `config.json` and readable `config.txt`.

  A resumed run whose config differs keeps the old files as `config.<k>.json`.
  """
  if jax.process_index() != 0:
    return
  workdir = os.fspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  path = os.path.join(workdir, 'config.json')
  if os.path.exists(path):
    with open(path) as f:
      old = f.read()
    if old == text:
      return
    k = 1
    while os.path.exists(os.path.join(workdir, f'config.{k}.json')):
      k += 1
    os.rename(path, os.path.join(workdir, f'config.{k}.json'))
    logging.warning('Config differs from the previous run in %s (kept as config.%d.json).',
                    workdir, k)
  with open(path, 'w') as f:
    f.write(text)
  with open(os.path.join(workdir, 'config.txt'), 'w') as f:
    f.write(str(config))


class _QuietLibraryInfo(logging.Filter):
  """Drops INFO records from orbax and grain: they log every save step by step."""

  _NOISY = (os.sep + 'orbax' + os.sep, os.sep + 'grain' + os.sep)

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno > logging.INFO:
      return True
    return not any(part in record.pathname for part in self._NOISY)


def quiet_library_info() -> None:
  """Installs the orbax / grain INFO filter on the root and absl log handlers."""
  quiet = _QuietLibraryInfo()
  for handler in logging.getLogger().handlers + logging.getLogger('absl').handlers:
    handler.addFilter(quiet)


BuildMethod = Callable[[ml_collections.ConfigDict, str], loop.Method]


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
          build_method: BuildMethod) -> TrainState:
  """Trains `build_method(config, workdir)` in `workdir` exactly as `run` does.

  Writes the config (`save_config`), builds the method with the run directory (where methods
  render synthetic data and find earlier stages' outputs) and runs the engine, which resumes
  from the latest checkpoint in `workdir`.

  Returns:
    the final TrainState.
  """
  workdir = os.fspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  save_config(config, workdir)
  return loop.train(config, workdir, build_method(config, workdir))


def run_main(fn: Callable[[ml_collections.ConfigDict, str], Any],
             workdir_help: str = 'Checkpoints, metrics and config go here.') -> None:
  """The command line `--config FILE[:arg] [--config.key=value ...] --workdir DIR`.

  Defines the two flags (once per process), parses argv with absl, quiets orbax / grain INFO
  logs, initialises jax.distributed when the config asks for it and calls `fn(config, workdir)`.
  """
  if 'config' not in flags.FLAGS:
    config_flags.DEFINE_config_file(
        'config', None, 'Config file, e.g. configs/toy.py:smoke', lock_config=True)
  if 'workdir' not in flags.FLAGS:
    flags.DEFINE_string('workdir', None, workdir_help)

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
    if config is None or not workdir:
      raise app.UsageError('--config and --workdir are required.')
    quiet_library_info()
    maybe_initialize_distributed(config)
    fn(config, workdir)

  app.run(main)


def run(build_method: BuildMethod) -> None:
  """Parses --config / --workdir (absl + config_flags); trains build_method(config, workdir)."""
  run_main(lambda config, workdir: train(config, workdir, build_method))
