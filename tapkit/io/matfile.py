"""The one reader of MATLAB `.mat` files (GeoNet's NYU split), sizes checked before loading.

`scipy.io.loadmat` raises half a dozen exception types on a corrupt file (MatReadError,
TypeError, ValueError, OSError, zlib errors, NotImplementedError for HDF5-based v7.3 files),
none naming the file. `read_mat` first lists the variables from their headers
(`scipy.io.whosmat`, which streams and decodes no data), refuses requested variables that are
missing, not numeric, or declare more bytes than `max_bytes` or than the file can hold (with
deflate's largest expansion, 1032x, for compressed variables), then loads only those
variables. Every failure is a `BadFileError` (a `ValueError`) naming the file and the
variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import numpy as np

from tapkit.io import archive as archive_lib
from tapkit.io.errors import BadFileError

# Largest variable (declared shape x 8 bytes) loaded unless the caller says otherwise.
MAX_VARIABLE_BYTES = 1 << 30
# MATLAB classes that hold plain numbers (the only ones read).
NUMERIC_CLASSES = frozenset({'double', 'single', 'int8', 'uint8', 'int16', 'uint16', 'int32',
                             'uint32', 'int64', 'uint64', 'logical'})
_FILE = '<file>'


def read_mat(path: str | os.PathLike[str], fields: Iterable[str],
             max_bytes: int = MAX_VARIABLE_BYTES) -> dict[str, np.ndarray]:
  """Reads numeric variables of a `.mat` (v4-v7) file.

  Args:
    path: the file.
    fields: variable names to read; all must be present.
    max_bytes: largest variable, by its declared shape x 8 bytes.

  Returns:
    name -> numpy array.

  Raises:
    BadFileError (a ValueError) naming the file and the variable.
  """
  import scipy.io  # pylint: disable=g-import-not-at-top

  path = os.fspath(path)
  fields = list(fields)
  if not os.path.isfile(path):
    raise BadFileError(path, _FILE, 'file not found')
  file_bytes = os.path.getsize(path)
  try:
    listing = scipy.io.whosmat(path)
  except Exception as e:  # pylint: disable=broad-exception-caught  # scipy raises many types.
    raise BadFileError(path, _FILE, f'not a readable .mat file ({type(e).__name__}: {e})'
                       ) from None
  declared = {}
  for entry in listing:
    if not (isinstance(entry, tuple) and len(entry) == 3):
      raise BadFileError(path, _FILE, 'unexpected variable listing')
    declared[entry[0]] = (entry[1], entry[2])
  bound = file_bytes * archive_lib.DEFLATE_MAX_RATIO + archive_lib.DEFLATE_MARGIN
  for name in fields:
    if name not in declared:
      raise BadFileError(path, name, 'missing')
    shape, kind = declared[name]
    if kind not in NUMERIC_CLASSES:
      raise BadFileError(path, name, f'MATLAB class {kind!r} is not numeric')
    nbytes = math.prod(int(d) for d in shape) * 8
    if nbytes > min(max_bytes, bound):
      raise BadFileError(path, name, f'variable declares shape {tuple(shape)} ({nbytes} '
                         f'bytes), more than the limit ({max_bytes}) or than a file of '
                         f'{file_bytes} bytes can hold')
  try:
    data = scipy.io.loadmat(path, variable_names=fields)
  except (Exception, MemoryError) as e:  # pylint: disable=broad-exception-caught
    raise BadFileError(path, _FILE, f'corrupt .mat file ({type(e).__name__}: {e})') from None
  out = {}
  for name in fields:
    if name not in data:
      raise BadFileError(path, name, 'missing')
    value = data[name]
    if not isinstance(value, np.ndarray) or value.dtype.kind not in 'biuf':
      raise BadFileError(path, name, f'expected a numeric array, got '
                         f'{getattr(value, "dtype", type(value).__name__)}')
    out[name] = value
  return out
