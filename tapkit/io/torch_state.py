"""The one reader of torch `.pt` / `.pth` files (`torch.save` zip containers), with or without
torch.

`read_torch_state(path)` returns the saved object with every tensor as a numpy array and
dicts / OrderedDicts / lists / tuples / numbers / strings as themselves. Two paths give the
same result:

* `use_torch=True`: `torch.load(path, map_location='cpu', weights_only=True)`, torch's own
  restricted loader, run only after the pure reader below has validated the whole file
  (torch trusts the storage sizes in the pickle and the zip's declared record sizes, so a
  lying file could make it allocate or read what it declares); any exception it raises
  becomes a `BadFileError` naming the file.
* by default (and with `use_torch=False`): a pure-Python reader of the zip layout
  (`<archive>/data.pkl` + `<archive>/data/<storage key>` records) that unpickles `data.pkl`
  with the one restricted unpickler (`tapkit.io.unpickle`), allowing only tensor rebuilding,
  storage types, `torch.Size` and `collections.OrderedDict`. Before anything is allocated it
  checks each storage record's declared size against the storage's element count, each
  tensor view (no negative offsets or strides, every element inside its storage), and the
  total bytes against `max_bytes`.

dtype policy (both paths): tensors keep their dtype; bfloat16 tensors become
`ml_dtypes.bfloat16` numpy arrays (numpy has no bfloat16 of its own) unless the caller asks
`widen_bfloat16=True`, which gives float32 (exact: bfloat16 is a truncated float32).
Legacy (pre-1.6, non-zip) torch files are only readable through torch (by default when it
is importable), without the pure reader's checks.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from tapkit.io import archive as archive_lib
from tapkit.io import unpickle
from tapkit.io.errors import BadFileError, UnsafePickleError

# Total bytes of storages plus tensors built from them, unless the caller says otherwise.
MAX_BYTES = 1 << 36  # 64 GiB
# data.pkl holds only the container structure (tensor data live in separate records).
MAX_PICKLE_BYTES = 1 << 28

_STORAGE_DTYPES = {
    'FloatStorage': np.float32,
    'DoubleStorage': np.float64,
    'HalfStorage': np.float16,
    'LongStorage': np.int64,
    'IntStorage': np.int32,
    'ShortStorage': np.int16,
    'CharStorage': np.int8,
    'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}


def bfloat16() -> np.dtype:
  """numpy's bfloat16 dtype (`ml_dtypes`, shipped with jax)."""
  import ml_dtypes  # pylint: disable=g-import-not-at-top
  return np.dtype(ml_dtypes.bfloat16)


@dataclasses.dataclass(frozen=True)
class _StorageType:
  """Stands for `torch.<X>Storage` inside the pickle."""
  name: str

  @property
  def dtype(self) -> np.dtype:
    if self.name == 'BFloat16Storage':
      return bfloat16()
    return np.dtype(_STORAGE_DTYPES[self.name])


def _is_int(x: Any) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


class _PureReader:
  """State of one pure-Python read: the archive, the byte budget, the storages read so far."""

  def __init__(self, path: str, archive: zipfile.ZipFile, prefix: str, byteorder: str,
               max_bytes: int):
    self.path = path
    self.archive = archive
    self.prefix = prefix
    self.byteorder = '<' if byteorder == 'little' else '>'
    self.budget = max_bytes
    self.max_bytes = max_bytes
    self.storages: dict[str, np.ndarray] = {}

  def charge(self, nbytes: int, field: str) -> None:
    if nbytes > self.budget:
      raise BadFileError(self.path, field, f'{nbytes} more bytes would exceed the limit of '
                         f'{self.max_bytes} bytes for the whole file')
    self.budget -= nbytes

  def persistent_load(self, pid: Any) -> np.ndarray:
    """('storage', storage type, key, location, numel) -> the storage as a 1-D numpy array."""
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'):
      raise UnsafePickleError(self.path, 'data.pkl', f'unexpected persistent id {pid!r}')
    _, storage_type, key, _location, numel = pid
    if not isinstance(storage_type, _StorageType):
      raise UnsafePickleError(self.path, 'data.pkl',
                              f'unsupported storage type {storage_type!r}')
    key = str(key)
    record = f'{self.prefix}data/{key}'
    if key in self.storages:
      return self.storages[key]
    if not _is_int(numel) or numel < 0:
      raise BadFileError(self.path, record, f'storage element count {numel!r} is not a '
                         'non-negative integer')
    try:
      info = self.archive.getinfo(record)
    except KeyError:
      raise BadFileError(self.path, record, f'storage record {record} is missing') from None
    dtype = storage_type.dtype
    size = archive_lib.checked_member_size(info, self.path, record, self.budget)
    if size // dtype.itemsize < numel:
      raise BadFileError(self.path, record, f'storage {record} holds '
                         f'{size // dtype.itemsize} elements, expected {numel}')
    if size % dtype.itemsize:
      raise BadFileError(self.path, record, f'storage of {size} bytes is not a whole number '
                         f'of {dtype.itemsize}-byte {dtype} elements')
    self.charge(size, record)
    try:
      raw = self.archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
      raise BadFileError(self.path, record, f'corrupt storage record ({e})') from None
    stored = dtype.newbyteorder(self.byteorder) if dtype.itemsize > 1 else dtype
    array = np.frombuffer(raw, dtype=stored)
    self.storages[key] = array.astype(dtype.newbyteorder('='), copy=False)
    return self.storages[key]

  def rebuild_tensor(self, storage: Any, storage_offset: Any, size: Any, stride: Any,
                     *unused: Any) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v2`: the strided view, checked, copied to numpy."""
    del unused  # requires_grad, backward hooks, metadata.
    field = 'data.pkl'
    if not isinstance(storage, np.ndarray):
      raise BadFileError(self.path, field, 'tensor without a storage')
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(_is_int(n) for n in size) and all(_is_int(s) for s in stride)):
      raise BadFileError(self.path, field, f'bad tensor size {size!r} / stride {stride!r}')
    if not _is_int(storage_offset) or storage_offset < 0:
      raise BadFileError(self.path, field, f'negative or non-integer storage offset '
                         f'{storage_offset!r}')
    if any(n < 0 for n in size):
      raise BadFileError(self.path, field, f'negative tensor size {size}')
    if any(s < 0 for s in stride):
      raise BadFileError(self.path, field, f'negative stride {stride} (not allowed)')
    count = math.prod(size)
    if count:
      last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
      if last >= storage.size:
        raise BadFileError(self.path, field, f'tensor view (offset {storage_offset}, size '
                           f'{size}, stride {stride}) exceeds its storage of {storage.size} '
                           'elements')
    elif storage_offset > storage.size:
      raise BadFileError(self.path, field, f'storage offset {storage_offset} past the end of '
                         f'its storage of {storage.size} elements')
    self.charge(count * storage.dtype.itemsize, field)
    if not size:
      return np.array(storage[storage_offset])  # 0-d array, as torch's `.numpy()` gives.
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=tuple(s * itemsize for s in stride),
        writeable=False)
    return np.array(view)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, *unused: Any) -> Any:
  del requires_grad, backward_hooks, unused
  return data


def _allow_list(reader: _PureReader) -> dict[tuple[str, str], Any]:
  allowed: dict[tuple[str, str], Any] = {
      ('collections', 'OrderedDict'): collections.OrderedDict,
      ('torch._utils', '_rebuild_tensor_v2'): reader.rebuild_tensor,
      ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
      ('torch', 'Size'): tuple,
  }
  for name in (*_STORAGE_DTYPES, 'BFloat16Storage'):
    allowed[('torch', name)] = _StorageType(name)
  return allowed


def read_torch_zip(path: str | os.PathLike[str], *, widen_bfloat16: bool = False,
                   max_bytes: int = MAX_BYTES) -> Any:
  """Reads a `torch.save` zip file without torch and without executing code.

  Raises:
    BadFileError: not a torch zip file, a missing/short storage record, a tensor view outside
      its storage, more than `max_bytes`.
    UnsafePickleError (a BadFileError and a pickle.UnpicklingError): the pickle references
      anything other than tensors, storages, torch.Size and OrderedDict.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise BadFileError(path, None, 'file not found')
  if not zipfile.is_zipfile(path):
    raise BadFileError(path, None, 'not a torch zip checkpoint (legacy non-zip torch files are '
                       'not supported without torch; re-save with torch >= 1.6)')
  with archive_lib.open_zip(path, 'torch zip checkpoint') as archive:
    names = archive.namelist()
    pkl = [n for n in names if n.endswith('data.pkl') and n.count('/') == 1]
    if len(pkl) != 1:
      raise BadFileError(path, None, f'expected one <archive>/data.pkl record, found {pkl}')
    prefix = pkl[0][:-len('data.pkl')]
    byteorder = 'little'
    if f'{prefix}byteorder' in names:
      byteorder = archive.read(f'{prefix}byteorder')[:16].decode('ascii', 'replace').strip()
      if byteorder not in ('little', 'big'):
        raise BadFileError(path, f'{prefix}byteorder', f'expected little or big, got '
                           f'{byteorder!r}')
    reader = _PureReader(path, archive, prefix, byteorder, max_bytes)
    info = archive.getinfo(pkl[0])
    archive_lib.checked_member_size(info, path, pkl[0], MAX_PICKLE_BYTES)
    data = archive.read(info)
    allowed = _allow_list(reader)
    try:
      obj = unpickle.load(data, allowed, source=path, persistent_load=reader.persistent_load)
    except UnsafePickleError as e:
      if e.detail.startswith('refusing to load global '):  # Say what a checkpoint may hold.
        name = e.detail[len('refusing to load global '):].split(' ')[0]
        raise UnsafePickleError(path, None, f'refusing to load {name} (only tensors, storages '
                                'and OrderedDict are allowed in a checkpoint)') from None
      raise
  return _widen(obj) if widen_bfloat16 else obj


def _widen(obj: Any) -> Any:
  """bfloat16 arrays -> float32, through nested containers."""
  return _map_leaves(obj, lambda v: v.astype(np.float32)
                     if isinstance(v, np.ndarray) and v.dtype == bfloat16() else v)


def _map_leaves(obj: Any, fn) -> Any:
  if isinstance(obj, collections.OrderedDict):
    return collections.OrderedDict((k, _map_leaves(v, fn)) for k, v in obj.items())
  if isinstance(obj, Mapping):
    return {k: _map_leaves(v, fn) for k, v in obj.items()}
  if isinstance(obj, list):
    return [_map_leaves(v, fn) for v in obj]
  if isinstance(obj, tuple):
    return tuple(_map_leaves(v, fn) for v in obj)
  return fn(obj)


def tensor_to_numpy(value: Any, widen_bfloat16: bool = False) -> Any:
  """A torch tensor -> numpy array (bfloat16 as ml_dtypes.bfloat16, or float32 if widened);
  anything else unchanged."""
  if not (hasattr(value, 'detach') and hasattr(value, 'cpu')):
    return value
  value = value.detach().cpu()
  if str(value.dtype) == 'torch.bfloat16':
    if widen_bfloat16:
      return value.float().numpy()
    import torch  # pylint: disable=g-import-not-at-top
    return value.view(torch.int16).numpy().view(bfloat16())
  return value.numpy()


def torch_available() -> bool:
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import  # noqa: F401
  except ImportError:
    return False
  return True


def read_torch_state(path: str | os.PathLike[str], *, use_torch: bool | None = None,
                     widen_bfloat16: bool = False, max_bytes: int = MAX_BYTES) -> Any:
  """Loads a `torch.save` file safely; tensors become numpy arrays (module docstring).

  Args:
    path: the `.pt` / `.pth` file.
    use_torch: True = the pure reader validates the file, then torch.load(weights_only=True)
      reads it (torch must be importable); False = the pure-Python reader; None = the pure
      reader for zip files, torch (when importable) for legacy non-zip files.
    widen_bfloat16: bfloat16 tensors as float32 instead of ml_dtypes.bfloat16.
    max_bytes: limit on storage plus tensor bytes.

  Raises:
    BadFileError (a ValueError) naming the file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise BadFileError(path, None, 'file not found')
  legacy = not zipfile.is_zipfile(path)
  if use_torch is None:
    use_torch = legacy and torch_available()
  if not use_torch or not legacy:
    pure = read_torch_zip(path, widen_bfloat16=widen_bfloat16, max_bytes=max_bytes)
    if not use_torch:
      return pure
  import torch  # pylint: disable=g-import-not-at-top
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-exception-caught
    kind = 'not a torch zip file, and as a legacy torch file ' if legacy else ''
    raise BadFileError(path, None, f'{kind}not loadable with torch.load(weights_only=True) '
                       f'({type(e).__name__}: {e}); only plain state dicts of tensors are '
                       'read, never arbitrary pickles') from None
  return _map_leaves(obj, lambda v: tensor_to_numpy(v, widen_bfloat16))
