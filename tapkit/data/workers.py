"""Grain worker processes that never outlive the training process.

grain starts its data workers with multiprocessing's 'spawn' context and stops
them when the iterator is closed or garbage collected. A training process that
is SIGKILLed never gets there: its workers (and multiprocessing's resource
tracker, kept alive by the workers' copy of its pipe) would keep running, each
holding its own copy of the data pipeline, indefinitely.

`ParentWatchedSource` wraps a random-access source. In the main process it is
the source itself (same `len`, records and `repr`, so checkpointed iterator
states do not depend on the wrapper). When grain unpickles it inside a worker
process, it starts a daemon thread that polls the worker's parent pid and ends
the worker with `os._exit` as soon as the parent is gone (a pid watch works
whatever thread of the parent started the worker, which `PR_SET_PDEATHSIG`
does not). Once the workers are gone, the resource tracker sees its pipe close
and exits too.

`close_iterator(it)` stops an iterator's workers right away (the engine calls
it for its iterators on every exit path, including a SIGTERM save-and-exit).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from typing import Any

import grain.python as grain

# Seconds between two checks of the parent pid in a worker.
POLL_S = 0.2


def _watch_parent(parent_pid: int, poll_s: float) -> None:
  while True:
    time.sleep(poll_s)
    if os.getppid() != parent_pid:
      # Re-parented: the training process is gone. _exit skips the atexit
      # handlers that would wait on queues nobody reads any more.
      os._exit(0)  # pylint: disable=protected-access


def start_parent_watch(poll_s: float = POLL_S) -> bool:
  """In a multiprocessing child, exits it when its parent dies; no-op elsewhere.

  Returns whether a watch was started.
  """
  parent = multiprocessing.parent_process()
  if parent is None:
    return False
  # The pid multiprocessing recorded at spawn time, not os.getppid(): a worker whose parent
  # died while it was still starting has already been re-parented (to init or to a
  # sub-reaper, whose pid is not 1 in containers) and must end too.
  parent_pid = parent.pid
  if parent_pid is None or os.getppid() != parent_pid:
    os._exit(0)  # pylint: disable=protected-access
  threading.Thread(target=_watch_parent, args=(parent_pid, poll_s), daemon=True,
                   name='tapkit-parent-watch').start()
  return True


class ParentWatchedSource(grain.RandomAccessDataSource):
  """`source` with a parent-pid watch in every worker process that unpickles it."""

  def __init__(self, source: grain.RandomAccessDataSource):
    self._source = source

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> Any:
    return self._source[index]

  def __repr__(self) -> str:
    return repr(self._source)

  def __getstate__(self) -> dict[str, Any]:
    return {'source': self._source}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self._source = state['source']
    start_parent_watch()


def close_iterator(iterator: Any) -> None:
  """Stops the worker processes of a grain DataLoader iterator (no-op without workers)."""
  inner = getattr(iterator, '_iterator', iterator)
  close = getattr(inner, 'close', None)
  if close is None:
    return
  try:
    close()
  except Exception:  # pylint: disable=broad-except
    logging.exception('Closing the data iterator failed.')
