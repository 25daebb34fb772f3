"""Training sources that skip a bad record instead of stopping, up to a fraction.

One malformed clip or frame among thousands should not end a training run, but a folder of
garbage should end it quickly. `SkipBadRecords` wraps any random-access source: when reading
record `i` raises a reader error (`ValueError`, which includes `tapkit.io.BadFileError`, or
`OSError`), it logs a warning naming the record and the reason, counts it, and returns the
next good record instead (i+1, i+2, ... modulo the length: deterministic for a given set of
bad records). Once more than `max_bad_fraction` of the source's records have failed, it
raises `TooManyBadRecords` listing the first ones. The engine wraps every method's training
source with it (`config.data.max_bad_fraction`, default 0.01).

`BadRecordBudget` is the counter alone, for sources that read every file up front.
Counts are per process (grain workers each keep their own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grain.python as grain

from tapkit.io import batch as batch_lib

T = TypeVar('T')
# Errors a reader raises on a bad file; anything else is a bug and propagates.
READ_ERRORS = (ValueError, OSError)
# How many bad records the final error lists.
_LISTED = 5


class TooManyBadRecords(RuntimeError):
  """More records of a training source failed to read than `data.max_bad_fraction` allows."""


class BadRecordBudget:
  """Counts the bad records of a source of `total` records and stops past the fraction.

  Attributes:
    bad: record key -> reason, in the order they failed.
  """

  def __init__(self, name: str, total: int, max_bad_fraction: float):
    if not 0.0 <= float(max_bad_fraction) <= 1.0:
      raise ValueError(f'data.max_bad_fraction must be in [0, 1], got {max_bad_fraction}')
    self.name = name
    self.total = int(total)
    self.max_bad_fraction = float(max_bad_fraction)
    self.bad: dict[Any, str] = {}

  @property
  def count(self) -> int:
    return len(self.bad)

  def record(self, key: Any, error: BaseException) -> None:
    """Logs and counts one bad record; raises TooManyBadRecords past the fraction."""
    reason = batch_lib.describe(error)
    self.bad[key] = reason
    logging.warning('%s: skipping bad record %s (%d bad of %d so far): %s', self.name, key,
                    self.count, self.total, reason)
    if self.count > self.max_bad_fraction * self.total:
      listed = '; '.join(f'{k}: {r}' for k, r in list(self.bad.items())[:_LISTED])
      raise TooManyBadRecords(
          f'{self.name}: {self.count} of {self.total} records could not be read, more than '
          f'data.max_bad_fraction = {self.max_bad_fraction:g} allows. First: {listed}')


def read_all(items: Sequence[T], read: Callable[[T], Any], name: str,
             max_bad_fraction: float, key: Callable[[T], Any] = str) -> list[Any]:
  """`read(item)` for every item, skipping (and counting) the ones that fail to read.

  Raises:
    TooManyBadRecords: more than `max_bad_fraction` of the items failed.
  """
  budget = BadRecordBudget(name, len(items), max_bad_fraction)
  out = []
  for item in items:
    try:
      out.append(read(item))
    except READ_ERRORS as e:
      budget.record(key(item), e)
  return out


class SkipBadRecords(grain.RandomAccessDataSource):
  """A random-access source whose unreadable records are replaced by the next good one."""

  def __init__(self, source: grain.RandomAccessDataSource, max_bad_fraction: float,
               name: str | None = None):
    self._source = source
    self._budget = BadRecordBudget(name or type(source).__name__, len(source),
                                   max_bad_fraction)

  @property
  def source(self) -> grain.RandomAccessDataSource:
    return self._source

  @property
  def bad_records(self) -> dict[Any, str]:
    """index -> reason of the records skipped so far (in this process)."""
    return dict(self._budget.bad)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> Any:
    n = len(self._source)
    for step in range(n):
      i = (int(index) + step) % n
      if i in self._budget.bad:
        continue
      try:
        return self._source[i]
      except READ_ERRORS as e:
        self._budget.record(i, e)
    raise TooManyBadRecords(f'{self._budget.name}: no record of {n} could be read')

  def __getattr__(self, name: str) -> Any:
    # Attributes of the wrapped source (e.g. `files`, `names`) stay reachable.
    if name.startswith('_'):
      raise AttributeError(name)
    return getattr(self._source, name)

  def __repr__(self) -> str:
    # grain checks a restored iterator against repr(source): skipping is not part of it.
    return repr(self._source)


def skip_bad_records(source: grain.RandomAccessDataSource, max_bad_fraction: float
                     ) -> grain.RandomAccessDataSource:
  """`source` wrapped in `SkipBadRecords` (sources already wrapped are returned as they are)."""
  if isinstance(source, SkipBadRecords):
    return source
  return SkipBadRecords(source, max_bad_fraction)
