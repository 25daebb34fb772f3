"""Command-line entry point shared by every method's train.py.

    # mymethod/train.py
    from tapkit.train import launch
    from mymethod import task

    if __name__ == '__main__':
      launch.run(task.build_method)   # build_method(config, workdir) -> loop.Method
      # or launch.run('mymethod.task'): imported after the flags are parsed (fast --help)

    $ python -m mymethod.train --config configs/mymethod.py:smoke --workdir /tmp/w \
        --config.optimizer.lr=3e-4

Re-running the same command resumes from the latest checkpoint in --workdir.

This is the only module that defines or reads absl flags: library code receives the config and
the run directory as arguments (`build_method(config, workdir)`), and other commands that take
`--config` / `--workdir` go through `run_main(fn)`. `train(config, workdir, build_method)` is
the same training from Python (notebooks, the quickstart).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from tapkit import cli

if TYPE_CHECKING:
  from tapkit.train import loop
  from tapkit.train.state import TrainState

# JAX, the engine and the method's model are imported only once the flags are parsed, so
# `--help` and command-line mistakes are answered in about a second.


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """jax.distributed.initialize() when config.distributed.initialize or
  TAPKIT_DISTRIBUTED=1 asks for it. Must run before any other JAX call."""
  cfg = config.distributed
  if not (cfg.initialize or os.environ.get('TAPKIT_DISTRIBUTED') == '1'):
    return
  import jax  # pylint: disable=g-import-not-at-top
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
  import jax  # pylint: disable=g-import-not-at-top
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
  """Drops INFO records from orbax and grain (they log every save step by step) and optax
  (a constant schedule when a cosine schedule has no warm-up)."""

  _NOISY = (os.sep + 'orbax' + os.sep, os.sep + 'grain' + os.sep, os.sep + 'optax' + os.sep)

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno > logging.INFO:
      return True
    return not any(part in record.pathname for part in self._NOISY)


def quiet_library_info() -> None:
  """Installs the orbax / grain INFO filter on the absl logger and the root and absl handlers.

  On the logger itself it also holds for handlers created later (a first module-level
  `logging.info` call creates the root handler).
  """
  quiet = _QuietLibraryInfo()
  absl_logger = logging.getLogger('absl')
  for obj in [absl_logger, *logging.getLogger().handlers, *absl_logger.handlers]:
    if not any(isinstance(f, _QuietLibraryInfo) for f in obj.filters):
      obj.addFilter(quiet)


BuildMethod = Callable[[ml_collections.ConfigDict, str], 'loop.Method']


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
          build_method: BuildMethod) -> TrainState:
  """Trains `build_method(config, workdir)` in `workdir` exactly as `run` does.

  Writes the config (`save_config`), builds the method with the run directory (where methods
  render synthetic data and find earlier stages' outputs) and runs the engine, which resumes
  from the latest checkpoint in `workdir`.

  Returns:
    the final TrainState.
  """
  from tapkit.train import loop  # pylint: disable=g-import-not-at-top
  workdir = os.fspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  save_config(config, workdir)
  return loop.train(config, workdir, build_method(config, workdir))


_HELP_ARGS = ('--help', '-h', '-?', '--helpshort', '--helpfull')


def _usage(full: bool) -> str:
  """The `--help` text: the main module's docstring and the flags of this command.

  absl's own short help lists only flags defined in the `__main__` module; the trainers'
  flags are defined here, so the flags of every module of this repository are listed.
  """
  doc = (getattr(sys.modules.get('__main__'), '__doc__', None) or '').strip()
  if full:
    body = flags.FLAGS.get_help()
  else:
    own = [m for m in flags.FLAGS.flags_by_module_dict()
           if m == sys.argv[0] or m.split('.')[0] in cli.OWN_PACKAGES]
    body = '\n\n'.join(flags.FLAGS.module_help(m) for m in own)
  extra = ('  --debug: show the traceback of user errors too (also TAPKIT_DEBUG=1)\n'
           '  --helpfull: list the flags of every library as well')
  return '\n\n'.join(part for part in (doc, 'flags:', body, extra) if part) + '\n'


def _argument(args: Sequence[str], name: str) -> str | None:
  """The value of `--name=value` / `--name value` in `args` (the last one), else None."""
  value = None
  for i, arg in enumerate(args):
    if arg.startswith(f'--{name}='):
      value = arg.split('=', 1)[1]
    elif arg == f'--{name}' and i + 1 < len(args):
      value = args[i + 1]
  return value


def _config_key_message(args: Sequence[str], exc: BaseException) -> str:
  """One line for an override `--config.a.b=v` whose key is not in the config."""
  text = str(exc.args[0]) if exc.args else str(exc)
  key = re.search(r'instead of "(\w+)"', text) or re.search(r"'(\w+)", text)
  suggestion = re.search(r'Did you mean "(\w+)"', text)
  key = key.group(1) if key else text
  for arg in args:
    match = re.match(r'--(\w+)\.([\w.]+)', arg)
    if match and key in match.group(2).split('.'):
      flag, path = match.groups()
      parent = path.split('.')[:path.split('.').index(key)]
      message = f'unknown config key {path!r} in {arg.split("=", 1)[0]}'
      if suggestion:
        message += f"; did you mean {'.'.join(parent + [suggestion.group(1)])!r}?"
      return message + f' (the keys are those of the --{flag} file)'
  return f'unknown config key {key!r}' + (
      f'; did you mean {suggestion.group(1)!r}?' if suggestion else '')


def _parse_flags(args: list[str]) -> list[str]:
  """absl flag parsing with command-line and config mistakes raised as `cli.UserError`."""
  spec = _argument(args[1:], 'config') if 'config' in flags.FLAGS else None
  if spec is not None and not os.path.isfile(spec.split(':', 1)[0]):
    raise cli.UserError(f'--config: config file not found: {spec.split(":", 1)[0]} (give '
                        'FILE[:preset] relative to the working directory, e.g. '
                        'configs/toy.py:smoke)')
  try:
    return flags.FLAGS(args)
  except (AttributeError, KeyError) as exc:
    raise cli.UserError(_config_key_message(args, exc)) from exc
  except flags.Error as exc:
    text = str(exc)
    if 'Error whilst parsing config file' in text:  # the config file's own error, last line
      lines = [line.strip() for line in text.splitlines() if line.strip()]
      text = f'--config {spec}: {lines[-1]}'
    elif isinstance(exc, flags.UnrecognizedFlagError):
      text += '; see --help for the flags'
    raise cli.UserError(text) from exc


def run_absl(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> None:
  """`absl.app.run(main)` with `tapkit.cli`'s rules for user mistakes.

  `--help` (`-h`, `--helpshort`) prints the command's docstring and the flags of its modules
  and exits 0 (`--helpfull`: every library's flags too); flag and config mistakes (an unknown
  flag or config key, a missing config file, a bad preset or value) and user errors raised by
  `main` print one `error:` line and exit 2. `--debug` / TAPKIT_DEBUG=1 keeps tracebacks.
  """
  argv = list(sys.argv if argv is None else argv)
  rest, debug = cli.split_debug(argv[1:])
  argv = [argv[0], *rest]
  if any(a in _HELP_ARGS for a in rest):
    print(_usage(full='--helpfull' in rest), end='')
    sys.exit(0)
  app.run(lambda args: cli.guard(main, args, debug=debug), argv=argv,
          flags_parser=lambda args: cli.guard(_parse_flags, args, debug=debug))


def run_main(fn: Callable[[ml_collections.ConfigDict, str], Any],
             workdir_help: str = 'Checkpoints, metrics and config go here.') -> None:
  """The command line `--config FILE[:arg] [--config.key=value ...] --workdir DIR`.

  Defines the two flags (once per process), parses argv with absl (`run_absl`), quiets
  orbax / grain INFO logs, initialises jax.distributed when the config asks for it and calls
  `fn(config, workdir)`.
  """
  if 'config' not in flags.FLAGS:
    config_flags.DEFINE_config_file(
        'config', None, 'Config file, e.g. configs/toy.py:smoke', lock_config=True)
  if 'workdir' not in flags.FLAGS:
    flags.DEFINE_string('workdir', None, workdir_help)

  def main(argv):
    if len(argv) > 1:
      raise cli.UserError(f'unexpected arguments {argv[1:]}; flags are written --name=value '
                          '(see --help)')
    config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
    if config is None or not workdir:
      raise cli.UserError('--config and --workdir are required, e.g. '
                          '--config configs/toy.py:smoke --workdir /tmp/run')
    quiet_library_info()
    maybe_initialize_distributed(config)
    fn(config, workdir)

  run_absl(main)


def _resolve(build_method: BuildMethod | str) -> BuildMethod:
  """`build_method` itself, or the `build_method` of the module it names."""
  if callable(build_method):
    return build_method
  return importlib.import_module(build_method).build_method


def run(build_method: BuildMethod | str) -> None:
  """Parses --config / --workdir (absl + config_flags); trains build_method(config, workdir).

  `build_method` may be given as a module name ('trajan3d.task'): its `build_method` is
  imported after the flags are parsed, so `--help` does not load the model code.
  """
  run_main(lambda config, workdir: train(config, workdir, _resolve(build_method)))
