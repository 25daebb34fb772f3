"""Checks on the arrays a checkpoint loader returns: float dtypes and finite values.

A downloaded checkpoint can hold integer, boolean, string or object arrays where weights are
expected (a cast would silently turn `'1.5'` or `3` into a weight), or NaN / ±Inf values that
poison every output. `check_float_tensors` refuses both, naming every offending entry:
non-float dtypes always, non-finite values unless the caller passes `allow_nonfinite=True`
(for forensic use: inspecting a diverged run's weights or Adam moments).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from tapkit.io.errors import BadFileError

# How many offending names are spelled out in one message before '... and N more'.
_MAX_LISTED = 20


def is_float_dtype(dtype: np.dtype) -> bool:
  """float16/32/64 and bfloat16 (`ml_dtypes`), nothing else."""
  dtype = np.dtype(dtype)
  return bool(np.issubdtype(dtype, np.floating)) or dtype.name == 'bfloat16'


def _listed(items: list[str]) -> str:
  shown = '; '.join(items[:_MAX_LISTED])
  if len(items) > _MAX_LISTED:
    shown += f'; ... and {len(items) - _MAX_LISTED} more'
  return shown


def check_float_tensors(path: str | os.PathLike[str],
                        named_arrays: Mapping[str, Any] | Iterable[tuple[str, Any]],
                        allow_nonfinite: bool = False, what: str = 'parameter') -> None:
  """Refuses non-float arrays and (unless allowed) non-finite values among `named_arrays`.

  Args:
    path: the file the arrays come from (named in the error).
    named_arrays: name -> array (numpy arrays, or anything `np.asarray` accepts without
      copying data from a device), or an iterable of (name, array) pairs.
    allow_nonfinite: accept NaN / ±Inf values (dtypes are still checked).
    what: what the arrays are, for the message ('parameter', 'Adam moment', ...).

  Raises:
    BadFileError (a ValueError) naming the file, and as its field the first offending name
    (or the only one); the message lists every offending name with its dtype or its count of
    non-finite values.
  """
  items = named_arrays.items() if isinstance(named_arrays, Mapping) else named_arrays
  bad_dtype: list[tuple[str, str]] = []
  nonfinite: list[tuple[str, str]] = []
  for name, value in items:
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    if not is_float_dtype(array.dtype):
      bad_dtype.append((str(name), f'{name} ({array.dtype})'))
      continue
    if allow_nonfinite or not array.size:
      continue
    wide = array.astype(np.float32) if array.dtype.name == 'bfloat16' else array
    count = int(array.size - np.count_nonzero(np.isfinite(wide)))
    if count:
      nonfinite.append((str(name), f'{name} ({count} of {array.size})'))
  if bad_dtype:
    field = bad_dtype[0][0] if len(bad_dtype) == 1 else None
    raise BadFileError(path, field, f'{len(bad_dtype)} {what}(s) are not float arrays '
                       f'(float16/bfloat16/float32/float64 expected): '
                       f'{_listed([d for _, d in bad_dtype])}')
  if nonfinite:
    field = nonfinite[0][0] if len(nonfinite) == 1 else None
    raise BadFileError(path, field, f'{len(nonfinite)} {what}(s) hold NaN or Inf values '
                       f'(bad values of total): {_listed([d for _, d in nonfinite])}; pass '
                       'allow_nonfinite=True to load them anyway')
