"""ArrayRecord datasets: the record codec, the dataset folder and grain random-access sources.

A dataset folder holds, like a TFDS `array_record` dataset folder,

  dataset_info.json                                   name, kind, version, splits, parameters
  <name>-<split>.array_record-<shard>-of-<shards>     ArrayRecord shards of each split

and is written by `tapkit.data.arrayrecord_builders` (`python -m tapkit.data.convert`).
A split is a grain random-access source (`RecordSource`: global record index over the shards
of the split, in shard order, read with `array_record`'s reader as
`grain.ArrayRecordDataSource` does, but with a file buffer sized to the largest record), so
the training loader shuffles and shards it per host exactly as it does a folder of clip
files: record i of a split is file i of the sorted folder it was converted from. The shards
are also readable as they are by `grain.ArrayRecordDataSource(split_files(dir, split))`.

Record format (`encode_record` / `decode_record`), pickle-free and compact:

  b'TKAR'  uint32 little-endian header length  JSON header  payload
  header = {"name": <source file or clip name>, "fields": [[name, dtype.str, shape], ...]}
  payload = the C-order bytes of every field, in header order.

Arrays keep their dtypes; frames stay encoded (JPEG / PNG bytes: a fixed-width `|S` array
or a uint8 blob with offsets, the fields of a clip `.npz`), so they are decoded where the
record is read: in the grain worker processes. The header is parsed with `json`, which is
safe to use from grain's reader threads.

Every problem with a record raises `tapkit.io.BadFileError` naming `<shard file>[<position>]`
(the record's source name in the message), a `ValueError`: the engine's `SkipBadRecords`
skips such records up to `data.max_bad_fraction`.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain.python as grain
import numpy as np

from tapkit.data import clip as clip_lib
from tapkit.data import tapvid3d
from tapkit.data import tracks4d_format
from tapkit.io.errors import BadFileError

RECORD_MAGIC = b'TKAR'
RECORD_FORMAT = 'tapkit_arrays_v1'
INFO_FILE = 'dataset_info.json'
# Record kinds: what the arrays of a record are.
KIND_CLIP = 'tapvid3d_clip'  # the fields of a TAPVid-3D clip `.npz` (tapkit.data.tapvid3d)
KIND_TRACKS4D = 'tracks4d'  # the fields of a TracksTo4D `.npz` (tapkit.data.tracks4d_format)
KINDS = (KIND_CLIP, KIND_TRACKS4D)
# dtype kinds a record may hold: bool, integers, floats, complex, fixed-width bytes.
_DTYPE_KINDS = 'biufcS'
_HEADER = struct.Struct('<I')
# Bounds of the per-shard file buffer of the readers (bytes).
_MIN_BUFFER, _MAX_BUFFER = 1 << 15, 1 << 26


# ----------------------------------------------------------------------------
# Records.


def encode_record(arrays: Mapping[str, np.ndarray], name: str) -> bytes:
  """Serialises named arrays (no object arrays) and a display name into one record."""
  fields, chunks = [], []
  for key, value in arrays.items():
    value = np.asarray(value)
    if value.dtype.kind not in _DTYPE_KINDS or value.dtype.fields is not None:
      raise ValueError(f'{name}: field {key!r}: cannot store dtype {value.dtype} in a record '
                       '(plain numeric or fixed-width bytes arrays only)')
    fields.append([str(key), value.dtype.str, list(value.shape)])
    chunks.append(value.tobytes(order='C'))
  header = json.dumps({'name': str(name), 'fields': fields}, separators=(',', ':')).encode()
  return b''.join([RECORD_MAGIC, _HEADER.pack(len(header)), header, *chunks])


def decode_record(data: bytes, where: str) -> tuple[str, dict[str, np.ndarray]]:
  """(name, arrays) of a record; `where` names the record in errors.

  Raises:
    BadFileError: a record that is not in this format, is truncated or has trailing bytes,
      or declares a dtype or shape that cannot be stored.
  """
  if not isinstance(data, (bytes, bytearray, memoryview)):
    raise BadFileError(where, None, f'expected record bytes, got {type(data).__name__}')
  data = memoryview(data)
  start = len(RECORD_MAGIC) + _HEADER.size
  if len(data) < start or bytes(data[:len(RECORD_MAGIC)]) != RECORD_MAGIC:
    raise BadFileError(where, None, f'not a {RECORD_FORMAT} record (no {RECORD_MAGIC!r} magic)')
  (header_len,) = _HEADER.unpack(data[len(RECORD_MAGIC):start])
  if start + header_len > len(data):
    raise BadFileError(where, None, f'truncated record header ({len(data)} bytes, header '
                       f'declares {header_len})')
  try:
    header = json.loads(bytes(data[start:start + header_len]).decode())
    name, fields = str(header['name']), header['fields']
  except (ValueError, KeyError, TypeError) as e:
    raise BadFileError(where, None, f'unreadable record header: {e}') from e
  offset = start + header_len
  arrays: dict[str, np.ndarray] = {}
  for entry in fields:
    try:
      key, dtype_str, shape = str(entry[0]), str(entry[1]), tuple(int(s) for s in entry[2])
      dtype = np.dtype(dtype_str)
    except (ValueError, TypeError, IndexError) as e:
      raise BadFileError(where, None, f'malformed field entry {entry!r} ({name}): {e}') from e
    if dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or min(shape, default=0) < 0:
      raise BadFileError(where, key, f'dtype {dtype_str} / shape {shape} cannot be stored '
                         f'({name})')
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset + size > len(data):
      raise BadFileError(where, key, f'truncated record: field needs {size} bytes, '
                         f'{len(data) - offset} left ({name})')
    arrays[key] = np.frombuffer(data[offset:offset + size], dtype=dtype).reshape(shape).copy()
    offset += size
  if offset != len(data):
    raise BadFileError(where, None, f'{len(data) - offset} trailing bytes after the last '
                       f'field ({name})')
  return name, arrays


# ----------------------------------------------------------------------------
# Dataset folders.


def shard_file_name(dataset: str, split: str, shard: int, num_shards: int) -> str:
  """TFDS's shard naming: `<dataset>-<split>.array_record-00000-of-00004`."""
  return f'{dataset}-{split}.array_record-{shard:05d}-of-{num_shards:05d}'


def read_info(dataset_dir: str | os.PathLike) -> dict[str, Any]:
  """The dataset_info.json of a dataset folder.

  Raises:
    FileNotFoundError: no dataset_info.json in `dataset_dir`.
    BadFileError: it is not a tapkit ArrayRecord dataset description.
  """
  path = pathlib.Path(dataset_dir) / INFO_FILE
  if not path.is_file():
    raise FileNotFoundError(f'{dataset_dir}: no {INFO_FILE}; write the dataset with '
                            '`python -m tapkit.data.convert`')
  try:
    info = json.loads(path.read_text())
  except ValueError as e:
    raise BadFileError(path, None, f'not JSON: {e}') from e
  if not isinstance(info, dict) or info.get('record_format') != RECORD_FORMAT:
    raise BadFileError(path, 'record_format', f'expected {RECORD_FORMAT!r}')
  if info.get('kind') not in KINDS or not isinstance(info.get('splits'), dict):
    raise BadFileError(path, 'kind', f'expected one of {KINDS} and a "splits" table')
  return info


def split_files(dataset_dir: str | os.PathLike, split: str) -> list[str]:
  """The shard files of `split`, in record order (absolute paths)."""
  info = read_info(dataset_dir)
  if split not in info['splits']:
    raise ValueError(f'split {split!r} is not in {dataset_dir} (splits: '
                     f'{sorted(info["splits"])})')
  root = pathlib.Path(dataset_dir).absolute()
  return [str(root / name) for name in info['splits'][split]['files']]


# ----------------------------------------------------------------------------
# Sources.


class RecordSource(grain.RandomAccessDataSource):
  """Random access over the records of one split of a dataset folder.

  `source[i]` reads record i (shard readers opened lazily in each process, so the source
  pickles into grain workers as its file list) and returns
  `self.element(name, arrays, where)`: here `{'name', 'arrays'}`; subclasses build their
  own element. Decoding therefore happens in the process that reads the record.
  """

  kind: str | None = None

  def __init__(self, dataset_dir: str | os.PathLike, split: str = 'train'):
    info = read_info(dataset_dir)
    if self.kind is not None and info['kind'] != self.kind:
      raise ValueError(f'{dataset_dir}: holds {info["kind"]!r} records, {type(self).__name__} '
                       f'reads {self.kind!r}')
    self._dir = os.path.abspath(os.fspath(dataset_dir))
    self._split = split
    self._files = split_files(dataset_dir, split)
    self._length = int(info['splits'][split]['num_examples'])
    self._shard_lengths = [int(n) for n in info['splits'][split]['shard_lengths']]
    if sum(self._shard_lengths) != self._length or len(self._shard_lengths) != len(self._files):
      raise BadFileError(pathlib.Path(dataset_dir) / INFO_FILE, 'splits',
                         f'{split}: shard_lengths {self._shard_lengths} do not match '
                         f'{len(self._files)} files of {self._length} records')
    # A file buffer that holds the largest record: reading a record of several MB through
    # ArrayRecord's default 32 KiB buffer costs ~3x the CPU time.
    largest = int(info['splits'][split].get('max_record_bytes', 0))
    self._buffer_bytes = int(min(max(largest + 4096, _MIN_BUFFER), _MAX_BUFFER))
    missing = [f for f in self._files if not os.path.isfile(f)]
    if missing:
      raise FileNotFoundError(f'{dataset_dir}: shard files of split {split!r} are missing: '
                              f'{missing[:3]}')
    self._readers: list[Any] = [None] * len(self._files)
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return self._length

  @property
  def files(self) -> list[str]:
    return list(self._files)

  def _where(self, index: int) -> str:
    """'<shard file>[<position in it>]' of global record `index`."""
    shard, position = self._position(index)
    return f'{self._files[shard]}[{position}]'

  def _position(self, index: int) -> tuple[int, int]:
    """(shard, position in it) of global record `index`."""
    for shard, count in enumerate(self._shard_lengths):
      if index < count:
        return shard, index
      index -= count
    raise IndexError(f'record outside [0, {self._length})')

  def read_bytes(self, index: int) -> bytes:
    """The raw bytes of record `index`.

    Raises:
      BadFileError: the shard cannot be opened or the record's chunk is damaged.
    """
    shard, position = self._position(int(index))
    try:
      if self._readers[shard] is None:
        with self._lock:
          if self._readers[shard] is None:
            from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
            self._readers[shard] = array_record_module.ArrayRecordReader(
                self._files[shard], 'readahead_buffer_size:0',
                file_reader_buffer_size=self._buffer_bytes)
      return self._readers[shard].read([position])[0]
    except (RuntimeError, ValueError, OSError) as e:  # Errors of the C++ reader.
      raise BadFileError(f'{self._files[shard]}[{position}]', None,
                         f'unreadable ArrayRecord record: {e}') from e

  def __getitem__(self, index: int) -> Any:
    index = int(index)
    if not 0 <= index < self._length:
      raise IndexError(f'record {index} outside [0, {self._length})')
    where = self._where(index)
    name, arrays = decode_record(self.read_bytes(index), where)
    return self.element(name, arrays, where)

  def element(self, name: str, arrays: dict[str, np.ndarray], where: str) -> Any:
    del where
    return {'name': name, 'arrays': arrays}

  def __getstate__(self) -> dict[str, Any]:
    state = dict(self.__dict__)
    state['_readers'] = [None] * len(self._files)
    state['_lock'] = None
    return state

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def __repr__(self) -> str:
    # grain checks a restored iterator state against repr(source).
    return (f'{type(self).__name__}(dir={self._dir!r}, split={self._split!r}, '
            f'len={self._length})')


class ClipRecordSource(RecordSource):
  """TAPVid-3D clips of an ArrayRecord split -> `Clip`s, then `to_element(clip)`.

  The clip is validated by the clip-file checks (`tapvid3d.clip_from_arrays`); its JPEG /
  PNG frames are decoded on first use of `clip.frames`, in the reading process.
  `to_element` (e.g. a method's `ClipToExample.map`) must pickle into grain workers.
  """

  kind = KIND_CLIP

  def __init__(self, dataset_dir: str | os.PathLike, split: str = 'train',
               to_element: Callable[[clip_lib.Clip], Any] | None = None):
    super().__init__(dataset_dir, split)
    self._to_element = to_element

  def element(self, name: str, arrays: dict[str, np.ndarray], where: str) -> Any:
    clip = tapvid3d.clip_from_arrays(arrays, f'{where} ({name})')
    clip.name = name
    return clip if self._to_element is None else self._to_element(clip)


class Tracks4DRecordSource(RecordSource):
  """TracksTo4D arrays of an ArrayRecord split -> `{'arrays', 'path'}`, the element of the
  folder source `tracks4d.task.Tracks4DFileSource` (validated by `validate_tracks4d`)."""

  kind = KIND_TRACKS4D

  def element(self, name: str, arrays: dict[str, np.ndarray], where: str) -> Any:
    try:
      checked = tracks4d_format.validate_tracks4d(arrays, f'{where} ({name})')
    except ValueError as e:
      raise BadFileError(where, None, str(e)) from e
    return {'arrays': checked, 'path': name}


def open_source(dataset_dir: str | os.PathLike, split: str,
                to_element: Callable[[Any], Any] | None = None) -> RecordSource:
  """The source matching the kind of records of `dataset_dir` (clips or TracksTo4D arrays)."""
  kind = read_info(dataset_dir)['kind']
  if kind == KIND_CLIP:
    return ClipRecordSource(dataset_dir, split, to_element)
  if to_element is not None:
    raise ValueError(f'{dataset_dir}: to_element applies to {KIND_CLIP} records only')
  return Tracks4DRecordSource(dataset_dir, split)


def records_equal(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
  """Whether two array dicts hold the same keys, dtypes, shapes and values."""
  return a.keys() == b.keys() and all(
      np.asarray(a[k]).dtype == np.asarray(b[k]).dtype and np.array_equal(a[k], b[k])
      for k in a)


def list_files(directory: str | os.PathLike, pattern: str) -> Sequence[str]:
  """The sorted files matching `pattern` in `directory` (the folder sources' order)."""
  return sorted(str(p) for p in pathlib.Path(directory).glob(pattern) if p.is_file())
