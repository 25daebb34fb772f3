"""Dataset builders that write ArrayRecord dataset folders (`tapkit.data.arrayrecord`).

Three builders, in the role of TFDS `GeneratorBasedBuilder`s with
`file_format='array_record'`:

  * `build_tapvid3d(manual_dir, split, out_dir)`: the official TAPVid-3D clips;
    `manual_dir` holds the official `adt/ drivetrack/ pstudio/` folders, `split` is the
    official 'minival' or 'full_eval' list (records in the official order: adt, drivetrack,
    pstudio). JPEG frames are kept as they are (no re-encoding).
  * `build_synthetic(out_dir, num_train, seed, ...)`: clips rendered here by
    `tapkit.data.synthetic.generate_clip`, clip i from the seed (seed, i), split 'train'
    (and 'eval' from `heldout_seed(seed)`), with exactly the fields the folder cache of the
    training pipelines writes (`tapvid3d.save_clip` defaults: JPEG frames), so record i
    equals file clip_<i>.npz of a synthetic folder of the same seed and parameters.
  * `build_tracks4d(files, out_dir, split)`: TracksTo4D `.npz` files (or TAPVid-3D clips,
    converted with `tracks4d_format.clip_to_tracks4d`), records in the given order.

Why not TFDS's builder classes: TFDS stores every example as a `tf.train.Example` of its
feature types (our variable-shape float tensors need its bytes encodings, frames would be
re-encoded) and its readers decode through TFDS features. Writing the records ourselves keeps
TensorFlow and TFDS out of both the conversion and the training import paths, stores the
arrays exactly as the clip files hold them, and keeps the TFDS folder layout (a
dataset_info.json and `<name>-<split>.array_record-NNNNN-of-NNNNN` shards), which
`grain.ArrayRecordDataSource` reads with random access.

Bad input: every example is read and validated by the clip-file readers before it is
written; an unreadable one raises `tapkit.io.BadFileError` naming the file, unless
`max_bad_fraction` > 0, in which case it is skipped (logged, listed in dataset_info.json)
up to that fraction (`bad_records.BadRecordBudget`).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import tqdm
from etils import epy

from tapkit.data import tapvid3d
from tapkit.data import tracks4d_format
from tapkit.io import npz as npz_io
from tapkit.io.errors import BadFileError

# grain loads on first use, so `python -m tapkit.data.convert --help` starts in a second.
with epy.lazy_imports():
  from tapkit.data import arrayrecord
  from tapkit.data import bad_records

VERSION = '1.0.0'
# Records per shard file: a few hundred MB of clips at the official sizes.
RECORDS_PER_SHARD = 512
# ArrayRecord writer options by compression: one record per chunk (the layout for random
# access); 'zstd' (ArrayRecord's default codec) makes the files ~2-3x smaller, 'none'
# skips decompression on read.
WRITER_OPTIONS = {'zstd': 'group_size:1,zstd:3', 'none': 'group_size:1,uncompressed'}

# (name, read): `read()` returns the arrays of one example or raises a reader error.
Example = tuple[str, Callable[[], dict[str, np.ndarray]]]


def _write_json(path: pathlib.Path, data: dict[str, Any]) -> None:
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
  os.replace(tmp, path)


def _as_bad_file(error: Exception, path: str) -> BadFileError:
  if isinstance(error, BadFileError):
    return error
  detail = str(error)
  if detail.startswith(f'{path}: '):
    detail = detail[len(path) + 2:]
  return BadFileError(path, None, detail or type(error).__name__)


class DatasetWriter:
  """Writes splits into one dataset folder; each split ends by updating dataset_info.json.

  Splits already in the folder (another call, e.g. 'minival' then 'full_eval') are kept;
  writing a split again replaces its shards.
  """

  def __init__(self, out_dir: str | os.PathLike, name: str, kind: str,
               params: dict[str, Any] | None = None,
               records_per_shard: int = RECORDS_PER_SHARD, compression: str = 'zstd'):
    if compression not in WRITER_OPTIONS:
      raise ValueError(f'compression must be one of {sorted(WRITER_OPTIONS)}, got '
                       f'{compression!r}')
    if kind not in arrayrecord.KINDS:
      raise ValueError(f'kind must be one of {arrayrecord.KINDS}, got {kind!r}')
    if records_per_shard <= 0:
      raise ValueError(f'records_per_shard must be positive, got {records_per_shard}')
    self.out_dir = pathlib.Path(out_dir).absolute()
    self.name, self.kind = name, kind
    self.params = dict(params or {})
    self.records_per_shard = int(records_per_shard)
    self.options = WRITER_OPTIONS[compression]

  def _info(self) -> dict[str, Any]:
    path = self.out_dir / arrayrecord.INFO_FILE
    if path.is_file():
      info = arrayrecord.read_info(self.out_dir)
      if (info['name'], info['kind']) != (self.name, self.kind):
        raise ValueError(f'{self.out_dir} holds dataset {info["name"]!r} ({info["kind"]}); '
                         f'write {self.name!r} into another folder')
      return info
    return {'name': self.name, 'kind': self.kind, 'version': VERSION,
            'record_format': arrayrecord.RECORD_FORMAT, 'splits': {}}

  def write_split(self, split: str, examples: Iterable[Example], total: int,
                  max_bad_fraction: float = 0.0) -> dict[str, Any]:
    """Writes `examples` (`total` of them) as `split`; returns its dataset_info entry.

    Raises:
      BadFileError: an example failed to read and `max_bad_fraction` is 0.
      TooManyBadRecords: more than `max_bad_fraction` of the examples failed.
    """
    from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

    self.out_dir.mkdir(parents=True, exist_ok=True)
    info = self._info()
    budget = bad_records.BadRecordBudget(f'{self.name}/{split}', total, max_bad_fraction)
    staged: list[tuple[pathlib.Path, int]] = []  # (temporary shard path, records)
    writer = None
    written = largest = 0
    try:
      for name, read in tqdm.tqdm(examples, total=total, desc=f'{self.name} {split}',
                                  unit='clip'):
        try:
          record = arrayrecord.encode_record(read(), name)
        except bad_records.READ_ERRORS as e:
          if max_bad_fraction <= 0:
            raise _as_bad_file(e, name) from e
          budget.record(name, e)
          continue
        if writer is None or staged[-1][1] == self.records_per_shard:
          if writer is not None:
            writer.close()
          staged.append((self.out_dir / f'.{self.name}-{split}.shard{len(staged)}.tmp', 0))
          writer = array_record_module.ArrayRecordWriter(str(staged[-1][0]), self.options)
        writer.write(record)
        largest = max(largest, len(record))
        staged[-1] = (staged[-1][0], staged[-1][1] + 1)
        written += 1
    except BaseException:
      if writer is not None:
        writer.close()
      for path, _ in staged:
        path.unlink(missing_ok=True)
      raise
    if writer is not None:
      writer.close()
    if not written:
      raise bad_records.TooManyBadRecords(f'{self.name}/{split}: no example could be read')
    for old in info['splits'].get(split, {}).get('files', []):
      (self.out_dir / old).unlink(missing_ok=True)
    files = []
    for shard, (path, _) in enumerate(staged):
      files.append(arrayrecord.shard_file_name(self.name, split, shard, len(staged)))
      os.replace(path, self.out_dir / files[-1])
    entry = {'num_examples': written, 'files': files,
             'shard_lengths': [count for _, count in staged], 'max_record_bytes': largest,
             'skipped': dict(budget.bad), 'params': self.params,
             'writer_options': self.options}
    info['splits'][split] = entry
    _write_json(self.out_dir / arrayrecord.INFO_FILE, info)
    logging.info('%s: wrote %d %s records of split %r in %d shard(s) (%d skipped).',
                 self.out_dir, written, self.kind, split, len(files), budget.count)
    return entry


# ----------------------------------------------------------------------------
# TAPVid-3D.


def _read_tapvid3d(path: pathlib.Path) -> dict[str, np.ndarray]:
  if not path.is_file():
    raise BadFileError(path, None, 'missing: listed in the official split but not found')
  # Validated by the clip reader; JPEG frames kept verbatim (pickle-free blob).
  return tapvid3d.clip_arrays(tapvid3d.load_clip(path), 'png_blob')


def tapvid3d_examples(manual_dir: str | os.PathLike, split: str) -> list[Example]:
  """The examples of an official split, `manual_dir/<source>/<file>` in the official order.

  Raises:
    FileNotFoundError: `manual_dir` has none of the folders adt/, drivetrack/, pstudio/.
  """
  if split not in ('minival', 'full_eval'):
    raise ValueError(f"split must be 'minival' or 'full_eval', got {split!r}")
  root = pathlib.Path(manual_dir)
  if not any((root / source).is_dir() for source in tapvid3d.DATA_SOURCES):
    raise FileNotFoundError(f'{root}: not a TAPVid-3D folder (expected the official '
                            f'{"/, ".join(tapvid3d.DATA_SOURCES)}/ folders in it)')
  examples = []
  for source in tapvid3d.DATA_SOURCES:
    for name in tapvid3d.split_files(split, source):
      path = root / source / name
      examples.append((str(path), lambda p=path: _read_tapvid3d(p)))
  return examples


def build_tapvid3d(manual_dir: str | os.PathLike, split: str, out_dir: str | os.PathLike,
                   max_bad_fraction: float = 0.0,
                   records_per_shard: int = RECORDS_PER_SHARD,
                   compression: str = 'zstd') -> dict[str, Any]:
  """Converts an official TAPVid-3D split into `out_dir` (dataset 'tapvid3d')."""
  examples = tapvid3d_examples(manual_dir, split)
  writer = DatasetWriter(out_dir, 'tapvid3d', arrayrecord.KIND_CLIP,
                         {'manual_dir': os.path.abspath(manual_dir)}, records_per_shard,
                         compression)
  return writer.write_split(split, examples, len(examples), max_bad_fraction)


# ----------------------------------------------------------------------------
# Synthetic clips.


def synthetic_examples(num_clips: int, seed: int, **params: Any) -> list[Example]:
  """Clips (seed, 0..num_clips-1) of `generate_clip(**params)`, with the fields of
  `tapvid3d.save_clip`'s defaults (as the training folders' synthetic cache writes them)."""
  from tapkit.data import synthetic  # pylint: disable=g-import-not-at-top

  def read(i: int) -> dict[str, np.ndarray]:
    clip = synthetic.generate_clip((int(seed), i), **params)
    return tapvid3d.clip_arrays(clip, 'jpeg_bytes')

  return [(f'clip_{i:04d}', lambda i=i: read(i)) for i in range(int(num_clips))]


def build_synthetic(out_dir: str | os.PathLike, num_train: int, seed: int, num_eval: int = 0,
                    *, num_frames: int = 24, height: int = 256, width: int = 256,
                    num_tracks: int = 256, records_per_shard: int = RECORDS_PER_SHARD,
                    compression: str = 'zstd') -> dict[str, Any]:
  """Renders synthetic clips into `out_dir` (dataset 'synthetic'): split 'train' from `seed`,
  split 'eval' (if `num_eval` > 0) from `synthetic.heldout_seed(seed)`. Returns the info."""
  from tapkit.data import synthetic  # pylint: disable=g-import-not-at-top

  if num_train <= 0 or num_eval < 0:
    raise ValueError(f'num_train must be positive and num_eval >= 0, got {num_train}, '
                     f'{num_eval}')
  params = {'num_frames': int(num_frames), 'height': int(height), 'width': int(width),
            'num_tracks': int(num_tracks)}
  for split, count, split_seed in (('train', num_train, seed),
                                   ('eval', num_eval, synthetic.heldout_seed(seed))):
    if count:
      writer = DatasetWriter(out_dir, 'synthetic', arrayrecord.KIND_CLIP,
                             {**params, 'seed': int(split_seed)}, records_per_shard,
                             compression)
      writer.write_split(split, synthetic_examples(count, split_seed, **params), count)
  return arrayrecord.read_info(out_dir)


# ----------------------------------------------------------------------------
# TracksTo4D files.


def _read_tracks4d(path: str) -> dict[str, np.ndarray]:
  if tapvid3d.TRACKS in npz_io.list_fields(path):
    return tracks4d_format.clip_to_tracks4d(tapvid3d.load_clip(path))
  return tracks4d_format.load_tracks4d_npz(path)


def build_tracks4d(files: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                   split: str = 'train', max_bad_fraction: float = 0.0,
                   records_per_shard: int = RECORDS_PER_SHARD,
                   compression: str = 'zstd') -> dict[str, Any]:
  """Converts TracksTo4D `.npz` files (or TAPVid-3D clips) into `out_dir` (dataset
  'tracks4d'), one record per file in the given order."""
  if not files:
    raise ValueError('files: no TracksTo4D file to convert')
  examples = [(os.fspath(f), lambda f=os.fspath(f): _read_tracks4d(f)) for f in files]
  writer = DatasetWriter(out_dir, 'tracks4d', arrayrecord.KIND_TRACKS4D, {}, records_per_shard,
                         compression)
  return writer.write_split(split, examples, len(examples), max_bad_fraction)
