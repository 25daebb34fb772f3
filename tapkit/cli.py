"""Command-line entry points: user mistakes end in one `error:` line and exit code 2.

    # mytool.py
    from tapkit import cli

    def main(argv=None): ...          # argparse; raises UserError / ValueError / ... on bad input

    if __name__ == '__main__':
      cli.run(main)

A user mistake is reported on stderr as one line `error: <what, which file/key, what to do>`
and the process exits with code 2; a real bug keeps its traceback. User mistakes are:

  * `UserError`, raised by a command for a bad argument combination, and argparse's own
    errors when the command builds its parser with `cli.ArgumentParser`;
  * `ValueError` (including `tapkit.io.BadFileError`) raised by this repository's own code
    (input and config validation); a ValueError raised inside a library (numpy, JAX, ...) is a
    bug and keeps its traceback;
  * `FileNotFoundError` / `NotADirectoryError` / `IsADirectoryError` naming a path (an input
    that is not there).

`--debug` anywhere on the command line (it is removed before parsing) or `TAPKIT_DEBUG=1`
shows the traceback of user mistakes too. absl commands (the trainers, `tracks4d.infer`) go
through `tapkit.train.launch.run_absl`, which applies the same rules to flag and config errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

_T = TypeVar('_T')

EXIT_USER_ERROR = 2
DEBUG_FLAG = '--debug'
# Top-level packages whose ValueErrors are input validation, not bugs.
OWN_PACKAGES = ('tapkit', 'trajan3d', 'tracks4d', 'dpov_jax', 'tapkit3d', 'configs')
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UserError(Exception):
  """A mistake in a command line or its inputs: printed as `error: <message>`, exit code 2.

  The message says what is wrong, which argument / file / key, and what to do.
  """


class ArgumentParser(argparse.ArgumentParser):
  """argparse with command-line mistakes raised as `UserError` (one `error:` line, exit 2,
  under `run`) instead of a usage block followed by `prog: error: ...`."""

  def error(self, message: str) -> NoReturn:
    raise UserError(f'{message} (see {self.prog} --help)')


def split_debug(argv: Sequence[str], debug_flag: str | None = DEBUG_FLAG
                ) -> tuple[list[str], bool]:
  """Removes `debug_flag` from `argv`; returns (rest, debug), debug also from TAPKIT_DEBUG=1.

  `debug_flag=None` for a command whose own `--debug` means something else.
  """
  rest = [a for a in argv if debug_flag is None or a != debug_flag]
  env = os.environ.get('TAPKIT_DEBUG', '').strip().lower() in ('1', 'true', 'yes')
  return rest, env or len(rest) != len(argv)


def _raised_in_own_code(exc: BaseException) -> bool:
  """True when the innermost frame of `exc`'s traceback is a file of this repository."""
  frames = traceback.extract_tb(exc.__traceback__)
  if not frames:
    return False
  path = os.path.abspath(frames[-1].filename)
  if not path.startswith(_REPO_ROOT + os.sep):
    return False
  rel = os.path.relpath(path, _REPO_ROOT)
  return rel.split(os.sep, 1)[0] in OWN_PACKAGES


def one_line(text: str) -> str:
  """`text` with its lines joined by '; ' (error messages must fit one line)."""
  return '; '.join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def describe_user_error(exc: BaseException) -> str | None:
  """The one-line message for a user mistake, or None when `exc` is a bug."""
  if isinstance(exc, UserError):
    return one_line(str(exc))
  if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
    if exc.filename is not None:
      what = {FileNotFoundError: 'no such file or directory',
              NotADirectoryError: 'not a directory',
              IsADirectoryError: 'is a directory, expected a file'}[type(exc)]
      return f'{what}: {exc.filename} (check the path)'
    if exc.args and _raised_in_own_code(exc):
      return one_line(str(exc))
    return None
  if isinstance(exc, ValueError) and _raised_in_own_code(exc):
    return one_line(str(exc))
  return None


def fail(message: str) -> NoReturn:
  """Prints `error: <message>` on stderr and exits with code 2."""
  sys.stdout.flush()
  print(f'error: {one_line(message)}', file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def guard(fn: Callable[..., _T], *args: Any, debug: bool = False) -> _T:
  """`fn(*args)`, turning a user mistake into `fail(...)` unless `debug`; quiets the known
  library noise (`quiet_known_library_noise`)."""
  quiet_known_library_noise()
  try:
    return fn(*args)
  except Exception as exc:  # pylint: disable=broad-except
    message = None if debug else describe_user_error(exc)
    if message is None:
      raise
    fail(message)


def run(main: Callable[[list[str]], _T], argv: Sequence[str] | None = None, *,
        debug_flag: str | None = DEBUG_FLAG) -> _T:
  """Runs an argparse command `main(argv)` with the user-error rules of this module.

  Args:
    main: the command; takes the arguments without the program name.
    argv: defaults to `sys.argv[1:]`; `debug_flag` is removed before `main` sees it.
    debug_flag: the flag asking for tracebacks; None when the command's own `--debug`
      means something else (then only TAPKIT_DEBUG=1 asks for them).

  Returns:
    what `main` returns.
  """
  argv, debug = split_debug(sys.argv[1:] if argv is None else argv, debug_flag)
  return guard(main, argv, debug=debug)


# Library log lines that are expected on every run and say nothing to the user, by logger:
# orbax (through absl logging) when a checkpoint is opened for reading, JAX when it probes
# for a TPU on a machine without one.
_NOISE = {
    'absl': ('Given directory is read only', 'Metadata file does not exist'),
    'jax._src.xla_bridge': ('Unable to initialize backend',),
}


class _DropKnownNoise(logging.Filter):
  """Drops records whose message starts with one of `prefixes` (other records pass)."""

  def __init__(self, prefixes: Sequence[str]):
    super().__init__()
    self._prefixes = tuple(prefixes)

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(self._prefixes)


def quiet_known_library_noise() -> None:
  """Installs (once) filters dropping the `_NOISE` lines; every other warning still shows.

  Called by the command-line entry points only (`run`, `guard`), never at import.
  """
  for name, prefixes in _NOISE.items():
    logger = logging.getLogger(name)
    if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
      logger.addFilter(_DropKnownNoise(prefixes))
