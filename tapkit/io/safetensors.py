"""`.safetensors` files, read by parsing the header here (no safetensors package needed).

Layout: 8 bytes little-endian header length n, n bytes of JSON, then the data area. The JSON
maps each tensor name to {"dtype": "F32" | ..., "shape": [...], "data_offsets": [begin, end]}
(offsets relative to the data area) plus an optional "__metadata__" of strings.

Before any tensor is allocated: the header length must fit in the file (and under
`MAX_HEADER_BYTES`), every entry's dtype must be known, its shape a list of non-negative
integers, its offsets inside the data area and not overlapping another tensor, its byte length
exactly prod(shape) x itemsize, and the total under `max_bytes`. bfloat16 tensors come back as
`ml_dtypes.bfloat16` arrays (numpy has no bfloat16 of its own), float8 ones as the ml_dtypes
float8 types.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable

import numpy as np

from tapkit.io.errors import BadFileError

# The safetensors format caps its header at 100 MB.
MAX_HEADER_BYTES = 100_000_000
MAX_BYTES = 1 << 36  # 64 GiB of tensors in one file unless the caller says otherwise.
HEADER = '<header>'
METADATA = '__metadata__'


def _dtypes() -> dict[str, np.dtype]:
  import ml_dtypes  # pylint: disable=g-import-not-at-top  (shipped with jax)
  return {
      'F64': np.dtype('<f8'), 'F32': np.dtype('<f4'), 'F16': np.dtype('<f2'),
      'BF16': np.dtype(ml_dtypes.bfloat16), 'F8_E4M3': np.dtype(ml_dtypes.float8_e4m3fn),
      'F8_E5M2': np.dtype(ml_dtypes.float8_e5m2),
      'I64': np.dtype('<i8'), 'I32': np.dtype('<i4'), 'I16': np.dtype('<i2'),
      'I8': np.dtype('i1'), 'U64': np.dtype('<u8'), 'U32': np.dtype('<u4'),
      'U16': np.dtype('<u2'), 'U8': np.dtype('u1'), 'BOOL': np.dtype('?'),
  }


def _is_int(x: Any) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def read_header(f, path: str, file_size: int) -> tuple[dict[str, tuple[np.dtype, tuple[int, ...],
                                                                       int, int]], int]:
  """Parses and checks the header: ({name: (dtype, shape, begin, end)}, data area start)."""
  raw = f.read(8)
  if len(raw) != 8:
    raise BadFileError(path, HEADER, f'file of {file_size} bytes is too short for a '
                       'safetensors header')
  n = int.from_bytes(raw, 'little')
  if n > MAX_HEADER_BYTES or 8 + n > file_size:
    raise BadFileError(path, HEADER, f'header length {n} does not fit in the file of '
                       f'{file_size} bytes (limit {MAX_HEADER_BYTES})')
  try:
    header = json.loads(f.read(n).decode('utf-8'))
  except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
    raise BadFileError(path, HEADER, f'header is not valid JSON ({e})') from None
  if not isinstance(header, dict):
    raise BadFileError(path, HEADER, 'header is not a JSON object')
  data_start = 8 + n
  data_size = file_size - data_start
  dtypes = _dtypes()
  entries = {}
  for name, entry in header.items():
    if name == METADATA:
      if not isinstance(entry, dict) or not all(
          isinstance(v, str) for v in entry.values()):
        raise BadFileError(path, METADATA, 'expected a map of strings')
      continue
    if not isinstance(entry, dict) or set(entry) != {'dtype', 'shape', 'data_offsets'}:
      raise BadFileError(path, name, 'expected {"dtype", "shape", "data_offsets"}, got '
                         f'{entry!r:.200}')
    dtype = dtypes.get(entry['dtype']) if isinstance(entry['dtype'], str) else None
    if dtype is None:
      raise BadFileError(path, name, f'unknown dtype {entry["dtype"]!r:.40} (expected one of '
                         f'{sorted(dtypes)})')
    shape = entry['shape']
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
      raise BadFileError(path, name, f'shape must be a list of non-negative integers, got '
                         f'{shape!r:.200}')
    offsets = entry['data_offsets']
    if (not isinstance(offsets, list) or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)):
      raise BadFileError(path, name, f'data_offsets must be [begin, end], got {offsets!r:.200}')
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
      raise BadFileError(path, name, f'data_offsets [{begin}, {end}] outside the data area of '
                         f'{data_size} bytes')
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow.
    if end - begin != nbytes:
      raise BadFileError(path, name, f'shape {tuple(shape)} of {entry["dtype"]} needs {nbytes} '
                         f'bytes but data_offsets span {end - begin}')
    entries[name] = (dtype, tuple(shape), begin, end)
  spans = sorted((b, e, k) for k, (_, _, b, e) in entries.items() if e > b)
  for (_, e0, k0), (b1, _, k1) in zip(spans, spans[1:]):
    if b1 < e0:
      raise BadFileError(path, k1, f'data overlaps tensor {k0!r}')
  return entries, data_start


def read_safetensors(path: str | os.PathLike[str], names: Iterable[str] | None = None,
                     max_bytes: int = MAX_BYTES) -> dict[str, np.ndarray]:
  """Reads tensors of a `.safetensors` file as numpy arrays, in header order.

  Args:
    path: the file.
    names: tensors to read; None reads all (absent names are skipped).
    max_bytes: limit on the total bytes read.

  Raises:
    BadFileError (a ValueError) naming the file and the tensor (or `<header>`).
  """
  path = os.fspath(path)
  try:
    f = open(path, 'rb')
  except FileNotFoundError:
    raise BadFileError(path, None, 'file not found') from None
  except OSError as e:
    raise BadFileError(path, None, f'cannot read ({e})') from None
  with f:
    file_size = os.fstat(f.fileno()).st_size
    entries, data_start = read_header(f, path, file_size)
    wanted = None if names is None else frozenset(names)
    if wanted is not None:
      entries = {k: v for k, v in entries.items() if k in wanted}
    total = sum(end - begin for _, _, begin, end in entries.values())
    if total > max_bytes:
      raise BadFileError(path, None, f'{total} bytes of tensors exceed the limit of '
                         f'{max_bytes} bytes')
    out = {}
    for name, (dtype, shape, begin, end) in entries.items():
      array = np.empty(shape, dtype)
      if end > begin:
        f.seek(data_start + begin)
        got = f.readinto(array.reshape(-1).view(np.uint8))
        if got != end - begin:
          raise BadFileError(path, name, f'truncated data: {got} of {end - begin} bytes')
      out[name] = array
  return out
