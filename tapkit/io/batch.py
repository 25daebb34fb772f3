"""Directory-level runs that go on past a bad file and say which files failed, and why.

A command over a folder (inference, scoring, evaluation) should not stop at the first
malformed clip: it processes every file, collects `(file, reason)` for the ones that fail,
prints them after its results, and exits non-zero only when nothing could be processed.
A missing or empty input folder is a usage error: one `error:` line and exit status 2.

  batch = BatchRun('clip')
  for path in files:
    row = batch.run(path, lambda: process(path))   # None when it failed
  print(batch.summary())
  return batch.exit_status()
"""

from __future__ import annotations

import glob as glob_lib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar('T')

# Exit statuses of directory-level commands.
EXIT_OK = 0
EXIT_NOTHING_PROCESSED = 1
EXIT_USAGE = 2


class InputError(ValueError):
  """The input of a directory-level command is missing or holds no file to process."""


def describe(error: BaseException) -> str:
  """One line for a failure: the message (which names the file for our readers) and, for
  exceptions that are not ValueErrors, the type."""
  text = ' '.join(str(error).split()) or '(no message)'
  if isinstance(error, ValueError):
    return text
  return f'{type(error).__name__}: {text}'


class BatchRun:
  """Processes items one by one, recording the ones that fail instead of stopping.

  Attributes:
    what: what an item is, for the summary ('clip', 'file', 'video').
    processed: keys of the items that succeeded, in order.
    failures: (key, reason) of the items that failed, in order.
  """

  def __init__(self, what: str = 'file'):
    self.what = what
    self.processed: list[str] = []
    self.failures: list[tuple[str, str]] = []

  def run(self, key: str | os.PathLike[str], fn: Callable[[], T]) -> T | None:
    """`fn()`, or None (and the failure recorded under `key`) if it raises an Exception."""
    key = os.fspath(key)
    try:
      result = fn()
    except Exception as e:  # pylint: disable=broad-exception-caught  # Listed, not fatal.
      self.fail(key, describe(e))
      return None
    self.processed.append(key)
    return result

  def fail(self, key: str | os.PathLike[str], reason: str) -> None:
    """Records a failure found without `run` (e.g. a file rejected by a later stage)."""
    key = os.fspath(key)
    if key in self.processed:
      self.processed.remove(key)
    self.failures.append((key, reason))

  def summary(self) -> str:
    """'processed N of M <what>s' and one line per failed item with its reason."""
    total = len(self.processed) + len(self.failures)
    lines = [f'processed {len(self.processed)} of {total} {self.what}(s); '
             f'{len(self.failures)} failed' + (':' if self.failures else '')]
    lines += [f'  {key}: {reason}' for key, reason in self.failures]
    return '\n'.join(lines)

  def exit_status(self) -> int:
    """0 when at least one item was processed, else 1."""
    return EXIT_OK if self.processed else EXIT_NOTHING_PROCESSED

  def finish(self) -> int:
    """Ends a command: the failures (if any) on stderr; 0 when at least one item was
    processed, else one `error:` line and `EXIT_USAGE`."""
    if self.failures:
      print(self.summary(), file=sys.stderr)
    if not self.processed:
      return usage_error(f'no {self.what} could be processed ({len(self.failures)} failed)')
    return EXIT_OK


def input_files(path: str | os.PathLike[str], patterns: Sequence[str] = ('*.npz',),
                what: str = 'input') -> list[str]:
  """The files to process: `path` itself if it is a file, else the sorted matches of
  `patterns` (non-recursive globs) in the folder.

  Raises:
    InputError (a ValueError): `path` does not exist, or the folder has no matching file.
  """
  path = os.fspath(path)
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise InputError(f'{what} {path} does not exist')
  files = sorted({p for pattern in patterns for p in glob_lib.glob(os.path.join(path, pattern))
                  if os.path.isfile(p)})
  if not files:
    raise InputError(f'{what} folder {path} holds no {" / ".join(patterns)} file')
  return files


def require_dir(path: str | os.PathLike[str], what: str) -> str:
  """`path` if it is a non-empty folder.

  Raises:
    InputError (a ValueError) naming `what` and the path.
  """
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise InputError(f'{what} {path} does not exist or is not a folder')
  if not any(os.scandir(path)):
    raise InputError(f'{what} {path} is empty')
  return path


def usage_error(message: str | BaseException, stream=None) -> int:
  """Prints one `error: ...` line (stderr by default) and returns `EXIT_USAGE`."""
  print(f'error: {message}', file=stream or sys.stderr)
  return EXIT_USAGE


def run_all(items: Iterable[T], fn: Callable[[T], object], what: str = 'file',
            key: Callable[[T], str] = str) -> tuple[list[object], BatchRun]:
  """Applies `fn` to every item; returns (the successful results in order, the BatchRun)."""
  batch = BatchRun(what)
  results = []
  for item in items:
    done = len(batch.processed)
    out = batch.run(key(item), lambda item=item: fn(item))
    if len(batch.processed) > done:
      results.append(out)
  return results, batch
