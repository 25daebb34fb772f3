"""Pickle-free reading of `.npz` archives and `.npy` files, sizes checked before allocating.

`np.load(..., allow_pickle=True)` hands a user file to a general unpickler, which can
run arbitrary code; `np.load` also allocates whatever a header declares. This module does
neither:

* The zip archive is opened with `zipfile`; each member's declared size is checked against
  what it can hold (`tapkit.io.archive`: stored size, or compressed size x 1032 for
  deflate) and every `<field>.npy` member's header is parsed here (magic, version,
  `ast.literal_eval` of the header dict — a literal parser, not `eval`). The declared
  shape x itemsize must fit in the member and stay under `max_array_bytes`
  (`MAX_ARRAY_BYTES` by default) before a byte of data is read. Plain dtypes are then
  rebuilt with `np.frombuffer` from the raw bytes after checking the byte count, so a
  truncated or padded member is caught.
* Object-dtype members (`|O`) are refused unless the caller names the field in
  `object_fields`. Such a member is read with the one restricted unpickler
  (`tapkit.io.unpickle`) and an allow-list of the three globals a pickled 1-D numpy object
  array needs (numpy's array `_reconstruct`, `ndarray`, `dtype`); everything else is
  rejected *before* anything is called. Even those three resolve to inert stand-ins that
  just record their arguments, so neither numpy's C reconstruction nor anything else runs
  on untrusted state; the record must describe a 1-D plain-object array whose items are all
  `bytes`, and the array is then built here.

Every failure raises `NpzFieldError` (= `tapkit.io.BadFileError`, a `ValueError`) whose
message starts with the file name and names the field (or `<archive>` for archive-level
problems).
"""

from __future__ import annotations

import ast
import io
import math
import os
import pickle
import threading
import zipfile
from collections.abc import Iterable, Mapping

import numpy as np

from tapkit.io import archive as archive_lib
from tapkit.io import unpickle
from tapkit.io.errors import BadFileError

_AST_LOCK = threading.Lock()

ARCHIVE = archive_lib.ARCHIVE

_MAGIC = b'\x93NUMPY'
# Largest header we accept; numpy itself caps headers at 10 kB unless told otherwise.
_MAX_HEADER_LEN = 10_000
# Largest array (declared shape x itemsize) read from one member unless the caller says
# otherwise: far above any clip or checkpoint array we read, far below what would exhaust
# a machine when a header lies.
MAX_ARRAY_BYTES = 1 << 34  # 16 GiB

# A malformed `.npz` / `.npy` file or field; `.path` and `.field` name where.
NpzFieldError = BadFileError


class _NdarrayClass:
  """Stands for `numpy.ndarray` inside a pickle; inert (not callable)."""


_NDARRAY = _NdarrayClass()


class _ArrayStub:
  """Records what `ndarray.__setstate__` would receive; numpy never sees it."""

  def __init__(self):
    self.state = None

  def __setstate__(self, state):
    self.state = state


class _DtypeStub:
  """Records `numpy.dtype(*args)` and its `__setstate__` without building a dtype."""

  def __init__(self, *args):
    self.args = args
    self.state = None

  def __setstate__(self, state):
    self.state = state


def _reconstruct_stub(subtype, shape, typecode):
  """Stand-in for numpy's `_reconstruct(ndarray, (0,), b'b')`."""
  del shape, typecode  # Always the placeholder (0,), b'b'; the real ones come in BUILD.
  if subtype is not _NDARRAY:
    raise pickle.UnpicklingError('_reconstruct may only build numpy.ndarray')
  return _ArrayStub()


# Exactly the globals `pickle.dumps(np.array([b'..'], dtype=object))` references, under
# the module names numpy 1.x and 2.x write. They resolve to inert stand-ins that only
# record their arguments: no numpy (or any other) code runs on the pickle's data. The
# recorded structure is checked and the array built afterwards, in `_stub_to_array`.
_BYTES_ARRAY_GLOBALS = {
    ('numpy._core.multiarray', '_reconstruct'): _reconstruct_stub,
    ('numpy.core.multiarray', '_reconstruct'): _reconstruct_stub,
    ('numpy', 'ndarray'): _NDARRAY,
    ('numpy', 'dtype'): _DtypeStub,
}


def _stub_to_array(stub, shape, path, field) -> np.ndarray:
  """Checks the recorded pickle is a 1-D object array of bytes and builds it."""
  if not isinstance(stub, _ArrayStub) or not isinstance(stub.state, tuple):
    raise NpzFieldError(path, field, f'object field holds {type(stub).__name__}, '
                        'not a numpy array')
  if len(stub.state) != 5:
    raise NpzFieldError(path, field, 'unexpected numpy array pickle state')
  _, array_shape, dtype, _, items = stub.state
  if (not isinstance(dtype, _DtypeStub) or not dtype.args
      or dtype.args[0] not in ('O8', 'O4')
      or (dtype.state is not None and (
          not isinstance(dtype.state, tuple) or len(dtype.state) < 5
          or dtype.state[3] is not None or dtype.state[4] is not None))):
    raise NpzFieldError(path, field, 'pickled array is not of plain object dtype')
  if array_shape != tuple(shape) or len(shape) != 1:
    raise NpzFieldError(path, field, f'expected a 1-D object array of shape {shape}, '
                        f'pickle says {array_shape!r}')
  if not isinstance(items, list) or len(items) != shape[0]:
    raise NpzFieldError(path, field, 'pickled array items are not a list of the right '
                        'length')
  for i, item in enumerate(items):
    if type(item) is not bytes:  # pylint: disable=unidiomatic-typecheck
      raise NpzFieldError(path, field, f'item {i} is {type(item).__name__}, not bytes')
  array = np.empty(len(items), dtype=object)
  array[:] = items
  return array


def _parse_header(stream: io.BufferedIOBase, path, field
                  ) -> tuple[np.dtype, tuple[int, ...], bool, int]:
  """Reads and validates a .npy header; returns (dtype, shape, fortran_order, header bytes)."""
  magic = stream.read(8)
  if len(magic) != 8 or magic[:6] != _MAGIC:
    raise NpzFieldError(path, field, 'not a .npy member (bad magic bytes)')
  major, minor = magic[6], magic[7]
  if (major, minor) == (1, 0):
    size_bytes, encoding = 2, 'latin1'
  elif (major, minor) in ((2, 0), (3, 0)):
    size_bytes, encoding = 4, 'latin1' if major == 2 else 'utf8'
  else:
    raise NpzFieldError(path, field, f'unsupported .npy format version {major}.{minor}')
  raw_len = stream.read(size_bytes)
  if len(raw_len) != size_bytes:
    raise NpzFieldError(path, field, 'truncated .npy header')
  header_len = int.from_bytes(raw_len, 'little')
  if header_len > _MAX_HEADER_LEN:
    raise NpzFieldError(path, field, f'.npy header too long ({header_len} bytes)')
  raw_header = stream.read(header_len)
  if len(raw_header) != header_len:
    raise NpzFieldError(path, field, 'truncated .npy header')
  try:
    # ast in CPython 3.11 is not thread-safe (grain reads records from threads:
    # 'AST constructor recursion depth mismatch'), so header parsing is serialised.
    with _AST_LOCK:
      header = ast.literal_eval(raw_header.decode(encoding))
  except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as e:
    raise NpzFieldError(path, field, f'unparsable .npy header ({e})') from None
  if not isinstance(header, dict) or set(header) != {'descr', 'fortran_order', 'shape'}:
    raise NpzFieldError(path, field, f'bad .npy header {header!r}')
  descr, fortran, shape = header['descr'], header['fortran_order'], header['shape']
  # Structured (list) descriptors are not used by any field we read; refusing them keeps
  # the dtype space small.
  if not isinstance(descr, str):
    raise NpzFieldError(path, field, f'unsupported structured dtype {descr!r}')
  try:
    dtype = np.dtype(descr)
  except (TypeError, ValueError) as e:
    raise NpzFieldError(path, field, f'bad dtype {descr!r} ({e})') from None
  if dtype.fields is not None or dtype.subdtype is not None:
    raise NpzFieldError(path, field, f'unsupported dtype {descr!r}')
  if (not isinstance(shape, tuple)
      or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
    raise NpzFieldError(path, field, f'bad shape {shape!r} in .npy header')
  if not isinstance(fortran, bool):
    raise NpzFieldError(path, field, f'bad fortran_order {fortran!r}')
  return dtype, shape, fortran, 8 + size_bytes + header_len


def _check_declared_size(dtype: np.dtype, shape: tuple[int, ...], data_bytes: int,
                         max_bytes: int, path, field) -> int:
  """shape x itemsize (Python ints: no overflow) against the member's data and the cap."""
  nbytes = math.prod(shape) * dtype.itemsize
  if nbytes > data_bytes:
    raise NpzFieldError(path, field, f'header declares shape {shape} of {dtype} '
                        f'({nbytes} bytes) but the member holds {data_bytes} bytes of data')
  if nbytes > max_bytes:
    raise NpzFieldError(path, field, f'array of {nbytes} bytes (shape {shape}) exceeds the '
                        f'limit of {max_bytes} bytes')
  return nbytes


def _read_plain(stream, dtype, shape, fortran, path, field) -> np.ndarray:
  count = math.prod(shape)  # Python ints: no overflow on absurd headers.
  nbytes = count * dtype.itemsize
  data = stream.read(nbytes)
  if len(data) != nbytes:
    raise NpzFieldError(
        path, field, f'truncated data: {len(data)} of {nbytes} bytes for shape {shape}')
  if stream.read(1):
    raise NpzFieldError(path, field, f'trailing bytes after {nbytes} bytes of data')
  array = np.frombuffer(data, dtype=dtype, count=count)
  # Copy so the result is writeable and owns its memory.
  return array.reshape(shape, order='F' if fortran else 'C').copy()


def _read_bytes_object_array(stream, shape, data_bytes, path, field) -> np.ndarray:
  if len(shape) != 1:
    raise NpzFieldError(path, field, f'object array must be 1-D, header says shape {shape}')
  # The pickle is the rest of the member, whose size is already bounded.
  payload = stream.read(data_bytes + 1)
  if len(payload) > data_bytes:
    raise NpzFieldError(path, field, 'member holds more bytes than its header says')
  try:
    stub = unpickle.load(payload, _BYTES_ARRAY_GLOBALS, source=path, field=field)
  except BadFileError as e:
    # Anything the restricted unpickler trips on (refused global, bad opcode, truncated
    # stream, wrong stand-in arguments) is a malformed field.
    raise NpzFieldError(
        path, field, f'object array is not a plain pickle of bytes ({e.detail})') from None
  return _stub_to_array(stub, shape, path, field)


def list_fields(path: str | os.PathLike[str]) -> list[str]:
  """Names of the arrays in an `.npz` archive (member names without `.npy`)."""
  with archive_lib.open_zip(path) as archive:
    return list(_members(archive, path))


def _members(archive: zipfile.ZipFile, path) -> dict[str, zipfile.ZipInfo]:
  members: dict[str, zipfile.ZipInfo] = {}
  for info in archive.infolist():
    if info.is_dir():
      continue
    if not info.filename.endswith('.npy'):
      raise NpzFieldError(path, info.filename, 'unexpected non-.npy member in the archive')
    name = info.filename[:-len('.npy')]
    if name in members:
      raise NpzFieldError(path, name, 'field stored twice in the archive')
    members[name] = info
  return members


def _read_array(stream, member_bytes: int, path, name: str, allow_bytes_objects: bool,
                max_array_bytes: int) -> np.ndarray:
  """One `.npy` stream of `member_bytes` bytes -> array (header checked before the data)."""
  dtype, shape, fortran, header_bytes = _parse_header(stream, path, name)
  data_bytes = member_bytes - header_bytes
  if dtype.hasobject:
    if not allow_bytes_objects:
      raise NpzFieldError(path, name, 'object (pickled) arrays are not allowed in this field')
    return _read_bytes_object_array(stream, shape, data_bytes, path, name)
  _check_declared_size(dtype, shape, data_bytes, max_array_bytes, path, name)
  return _read_plain(stream, dtype, shape, fortran, path, name)


def read_npz(
    path: str | os.PathLike[str],
    fields: Iterable[str] | None = None,
    object_fields: Iterable[str] = (),
    max_array_bytes: int = MAX_ARRAY_BYTES,
) -> dict[str, np.ndarray]:
  """Reads fields of an `.npz` archive without a general unpickler.

  Args:
    path: the `.npz` file (stored or deflated, as `np.savez` / `np.savez_compressed`
      write them).
    fields: names to read; None reads all. Names absent from the archive are skipped
      (callers decide which ones are required).
    object_fields: names that may hold a 1-D object array of `bytes`; read with the
      restricted unpickler. An object array in any other field is an error.
    max_array_bytes: largest member (declared size) read; larger ones raise.

  Returns:
    field name -> array, in archive order.

  Raises:
    NpzFieldError (a ValueError) naming the file and the field.
  """
  allowed_objects = frozenset(object_fields)
  wanted = None if fields is None else frozenset(fields)
  out: dict[str, np.ndarray] = {}
  with archive_lib.open_zip(path) as archive:
    for name, info in _members(archive, path).items():
      if wanted is not None and name not in wanted:
        continue
      # The header is at most _MAX_HEADER_LEN + 12 bytes, so the limit also admits it.
      member_bytes = archive_lib.checked_member_size(
          info, path, name, max_array_bytes + _MAX_HEADER_LEN + 12)
      try:
        with archive.open(info) as raw:
          stream = io.BufferedReader(raw)
          out[name] = _read_array(stream, member_bytes, path, name, name in allowed_objects,
                                  max_array_bytes)
      except NpzFieldError:
        raise
      except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
              RuntimeError) as e:
        # CRC mismatch, truncated deflate stream, unsupported compression, ...
        raise NpzFieldError(path, name, f'corrupt archive member ({e})') from None
  return out


class NpzFields:
  """Field-by-field access to an `.npz` (like `np.load`'s NpzFile, validating, pickle-free).

  `.files` lists the fields; `fields[name]` reads one with `read_npz`.
  """

  def __init__(self, path: str | os.PathLike[str], max_array_bytes: int = MAX_ARRAY_BYTES):
    self.path = path
    self.max_array_bytes = max_array_bytes
    self.files = list_fields(path)

  def __getitem__(self, field: str) -> np.ndarray:
    if field not in self.files:
      raise KeyError(f'{self.path}: no field {field!r}')
    return read_npz(self.path, fields=(field,), max_array_bytes=self.max_array_bytes)[field]

  def close(self) -> None:
    """Nothing to release: each read opens and closes the archive."""

  def __enter__(self) -> 'NpzFields':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_npy(path: str | os.PathLike[str], max_array_bytes: int = MAX_ARRAY_BYTES
             ) -> np.ndarray:
  """Reads a bare `.npy` file (no object arrays), its header checked against the file size.

  Raises:
    NpzFieldError (a ValueError) naming the file (field `<array>`).
  """
  field = '<array>'
  try:
    with open(path, 'rb') as f:
      size = os.fstat(f.fileno()).st_size
      return _read_array(f, size, path, field, False, max_array_bytes)
  except FileNotFoundError:
    raise NpzFieldError(path, field, 'file not found') from None
  except OSError as e:
    raise NpzFieldError(path, field, f'cannot read ({e})') from None


def is_npy(path: str | os.PathLike[str]) -> bool:
  """Whether the file starts like a bare `.npy` array (not an `.npz` archive)."""
  try:
    with open(path, 'rb') as f:
      return f.read(len(_MAGIC)) == _MAGIC
  except OSError:
    return False


def write_npz(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], compress: bool = False
) -> None:
  """Writes arrays atomically (temporary file in the same folder, then rename).

  Object arrays are refused: everything we write loads with `allow_pickle=False`.
  """
  path = os.fspath(path)
  for name, value in arrays.items():
    if np.asarray(value).dtype.hasobject:
      raise NpzFieldError(path, name, 'refusing to write an object (pickled) array')
  folder = os.path.dirname(os.path.abspath(path))
  tmp = os.path.join(folder, f'.{os.path.basename(path)}.tmp{os.getpid()}')
  try:
    with open(tmp, 'wb') as f:
      (np.savez_compressed if compress else np.savez)(f, **arrays)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
