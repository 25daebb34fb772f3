"""ArrayRecord datasets: record codec, builders, conversion command, sources."""

import importlib.util
import json
import pathlib
import pickle

import grain.python as grain
import numpy as np
import pytest

from tapkit.data import arrayrecord
from tapkit.data import arrayrecord_builders as builders
from tapkit.data import bad_records
from tapkit.data import convert
from tapkit.data import pipeline
from tapkit.data import synthetic
from tapkit.data import tapvid3d
from tapkit.data import tracks4d_format
from tapkit.io import npz as npz_io
from tapkit.io.errors import BadFileError

HERE = pathlib.Path(__file__).resolve().parent


def _io_helpers():
  """The clip fakes of test_tapvid3d_io.py (make_clip, _official_arrays)."""
  spec = importlib.util.spec_from_file_location('tapvid3d_io_helpers',
                                                HERE / 'test_tapvid3d_io.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _fake_official_split(root: pathlib.Path, split: str) -> list[pathlib.Path]:
  """Official-layout files (root/<source>/<name>) for every clip of `split`."""
  helpers = _io_helpers()
  paths = []
  for source in tapvid3d.DATA_SOURCES:
    (root / source).mkdir(parents=True, exist_ok=True)
    for name in tapvid3d.split_files(split, source):
      clip = helpers.make_clip(seed=len(paths))
      official = helpers._official_arrays(clip)  # pylint: disable=protected-access
      np.savez(root / source / name, **official)
      paths.append(root / source / name)
  return paths


# ----------------------------------------------------------------------------
# Records.


def test_record_round_trip_keeps_dtypes_shapes_and_values():
  arrays = {'f': np.arange(6, dtype=np.float32).reshape(2, 3), 'b': np.array([True, False]),
            'i': np.array(7, np.int64), 's': np.array([b'\xff\xd8ab', b'c'], dtype=bytes),
            'e': np.zeros((0, 3), np.float64)}
  name, out = arrayrecord.decode_record(arrayrecord.encode_record(arrays, 'clip_7'), 'x[0]')
  assert name == 'clip_7' and list(out) == list(arrays)
  assert arrayrecord.records_equal(arrays, out)
  assert out['s'].dtype == np.dtype('S4') and out['e'].shape == (0, 3)
  with pytest.raises(ValueError, match="field 'o'"):
    arrayrecord.encode_record({'o': np.array([b'a', None], dtype=object)}, 'obj')


@pytest.mark.parametrize('mutate, match', [
    (lambda b: b'JUNK' + b[4:], 'magic'),
    (lambda b: b[:-3], 'truncated'),
    (lambda b: b + b'\x00', 'trailing'),
    (lambda b: b[:8] + b'[' + b[9:], 'unreadable record header'),
    (lambda b: b[:12], 'truncated record header'),
    (lambda b: b[:6], 'not a tapkit_arrays_v1 record'),
])
def test_damaged_records_raise_bad_file_error_naming_the_record(mutate, match):
  data = arrayrecord.encode_record({'x': np.ones((3, 2), np.float32)}, 'c')
  with pytest.raises(BadFileError, match=match) as info:
    arrayrecord.decode_record(mutate(data), 'shard-00000[4]')
  assert info.value.path == 'shard-00000[4]'


def test_object_dtype_in_a_header_is_refused():
  data = arrayrecord.encode_record({'x': np.ones(2, np.int64)}, 'c')
  forged = data.replace(b'"<i8"', b'"|O8"')
  with pytest.raises(BadFileError, match="field 'x'.*cannot be stored"):
    arrayrecord.decode_record(forged, 'r[0]')


# ----------------------------------------------------------------------------
# TAPVid-3D.


def test_tapvid3d_layout_converts_and_reads_back_equal(tmp_path, capsys):
  files = _fake_official_split(tmp_path / 'tapvid3d', 'minival')
  assert len(files) == 150
  out = tmp_path / 'ar'
  convert.main(['--tapvid3d_dir', str(tmp_path / 'tapvid3d'), '--split', 'minival',
                '--out', str(out), '--records_per_shard', '64'])
  assert 'minival: 150 records in 3 shard(s), 0 skipped' in capsys.readouterr().out
  info = json.loads((out / 'dataset_info.json').read_text())
  assert info['splits']['minival']['shard_lengths'] == [64, 64, 22]
  assert info['splits']['minival']['files'][2] == 'tapvid3d-minival.array_record-00002-of-00003'
  source = arrayrecord.ClipRecordSource(out, 'minival')
  assert len(source) == 150
  for index in (0, 63, 64, 149):  # Both ends of every shard boundary.
    clip, expected = source[index], tapvid3d.load_clip(files[index])
    assert clip.name == str(files[index])
    for field in ('tracks_xyz', 'visibility', 'queries_xyt', 'intrinsics', 'extrinsics_w2c'):
      np.testing.assert_array_equal(getattr(clip, field), getattr(expected, field), field)
      assert getattr(clip, field).dtype == getattr(expected, field).dtype
    assert clip.jpeg_bytes == expected.jpeg_bytes  # JPEG kept verbatim, not re-encoded.
    np.testing.assert_array_equal(clip.frames, expected.frames)
  # The shards are plain ArrayRecord files: grain's own source reads them too.
  shards = grain.ArrayRecordDataSource(arrayrecord.split_files(out, 'minival'))
  assert arrayrecord.decode_record(shards[100], 'r')[0] == str(files[100])
  assert info['splits']['minival']['max_record_bytes'] == max(
      len(shards[i]) for i in range(150))
  # Survives pickling into a grain worker (the reader reopens there).
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(source))[5].tracks_xyz,
                                tapvid3d.load_clip(files[5]).tracks_xyz)


def test_bad_tapvid3d_file_stops_or_is_skipped_within_the_fraction(tmp_path):
  files = _fake_official_split(tmp_path / 'tapvid3d', 'minival')
  files[3].write_bytes(b'not a zip archive')
  with pytest.raises(BadFileError) as info:
    builders.build_tapvid3d(tmp_path / 'tapvid3d', 'minival', tmp_path / 'ar')
  assert info.value.path == str(files[3])
  assert not list((tmp_path / 'ar').glob('*'))  # Nothing half-written is left.
  files[7].unlink()
  with pytest.raises(bad_records.TooManyBadRecords):
    builders.build_tapvid3d(tmp_path / 'tapvid3d', 'minival', tmp_path / 'ar', 0.01)
  entry = builders.build_tapvid3d(tmp_path / 'tapvid3d', 'minival', tmp_path / 'ar', 0.02)
  assert entry['num_examples'] == 148
  assert sorted(entry['skipped']) == sorted([str(files[3]), str(files[7])])
  assert 'missing' in entry['skipped'][str(files[7])]
  with pytest.raises(FileNotFoundError, match='adt/, drivetrack/, pstudio/'):
    builders.build_tapvid3d(tmp_path, 'minival', tmp_path / 'ar2')


# ----------------------------------------------------------------------------
# Synthetic clips and TracksTo4D files.

_SYN = {'num_frames': 6, 'height': 24, 'width': 32, 'num_tracks': 16}


def test_synthetic_records_equal_the_folder_cache_files(tmp_path):
  builders.build_synthetic(tmp_path / 'ar', 3, seed=5, num_eval=1, **_SYN)
  folder = synthetic.ensure_clips(
      tmp_path / 'folder', 3, 5, record_format='tapvid3d_npz',
      writer=lambda clip, root, name: tapvid3d.save_clip(root / f'{name}.npz', clip), **_SYN)
  source = arrayrecord.RecordSource(tmp_path / 'ar', 'train')
  assert len(source) == 3
  for i in range(3):
    element = source[i]
    assert element['name'] == f'clip_{i:04d}'
    stored = npz_io.read_npz(folder / f'clip_{i:04d}.npz')
    assert arrayrecord.records_equal(element['arrays'], stored)
  held_out = arrayrecord.ClipRecordSource(tmp_path / 'ar', 'eval')[0]
  expected = synthetic.generate_clip((synthetic.heldout_seed(5), 0), **_SYN)
  np.testing.assert_array_equal(held_out.tracks_xyz, expected.tracks_xyz)


def test_tracks4d_files_convert_and_read_back_equal(tmp_path):
  folder = tmp_path / 'files'
  for i in range(3):
    clip = synthetic.generate_clip((1, i), **_SYN)
    tracks4d_format.save_tracks4d_npz(folder / f'c{i}.npz', tracks4d_format.clip_to_tracks4d(clip))
  convert.main(['--tracks4d_dir', str(folder), '--out', str(tmp_path / 'ar')])
  source = arrayrecord.open_source(tmp_path / 'ar', 'train')
  assert isinstance(source, arrayrecord.Tracks4DRecordSource) and len(source) == 3
  for i in range(3):
    element = source[i]
    assert element['path'] == str(folder / f'c{i}.npz')
    assert arrayrecord.records_equal(element['arrays'],
                                     tracks4d_format.load_tracks4d_npz(folder / f'c{i}.npz'))
  with pytest.raises(ValueError, match="holds 'tracks4d' records"):
    arrayrecord.ClipRecordSource(tmp_path / 'ar', 'train')


# ----------------------------------------------------------------------------
# Sources in the loader.


def _clip_dataset(tmp_path, bad_index=None) -> pathlib.Path:
  """4 synthetic clips; record `bad_index` holds a clip with a NaN track."""
  def read(i):
    arrays = tapvid3d.clip_arrays(synthetic.generate_clip((2, i), **_SYN), 'jpeg_bytes')
    if i == bad_index:
      arrays['tracks_XYZ'][0, 0, 0] = np.nan
    return arrays

  writer = builders.DatasetWriter(tmp_path / 'ar', 'synthetic', arrayrecord.KIND_CLIP)
  writer.write_split('train', [(f'clip_{i}', lambda i=i: read(i)) for i in range(4)], 4)
  return tmp_path / 'ar'


def test_bad_record_is_skipped_up_to_max_bad_fraction(tmp_path):
  source = arrayrecord.ClipRecordSource(_clip_dataset(tmp_path, bad_index=1), 'train')
  with pytest.raises(BadFileError, match=r'synthetic-train.array_record-00000-of-00001\[1\]'):
    source[1]  # pylint: disable=pointless-statement
  skipping = bad_records.SkipBadRecords(source, max_bad_fraction=0.25)
  np.testing.assert_array_equal(skipping[1].tracks_xyz, source[2].tracks_xyz)
  assert list(skipping.bad_records) == [1]
  strict = bad_records.SkipBadRecords(source, max_bad_fraction=0.0)
  with pytest.raises(bad_records.TooManyBadRecords):
    strict[1]  # pylint: disable=pointless-statement


def test_loader_over_records_equals_loader_over_the_same_clips(tmp_path):
  source = arrayrecord.ClipRecordSource(_clip_dataset(tmp_path), 'train',
                                        to_element=lambda clip: clip.tracks_xyz)
  in_memory = pipeline.SequenceSource([source[i] for i in range(len(source))])
  batches = [list(pipeline.make_dataloader(s, batch_size=2, seed=3, num_epochs=2))
             for s in (source, in_memory)]
  assert len(batches[0]) == 4
  for a, b in zip(*batches):
    np.testing.assert_array_equal(a, b)


def test_data_source_config_is_checked():
  assert pipeline.data_source({}) == 'folder'
  config = {'source': 'arrayrecord', 'arrayrecord_folder': '/d'}
  assert pipeline.data_source(config) == 'arrayrecord'
  with pytest.raises(ValueError, match='config.data.source must be one of'):
    pipeline.data_source({'source': 'tfrecord'})
  with pytest.raises(ValueError, match='config.data.arrayrecord_folder'):
    pipeline.data_source({'source': 'arrayrecord', 'arrayrecord_folder': ''})


def test_truncated_shard_raises_bad_file_error_and_missing_shard_is_named(tmp_path):
  dataset = _clip_dataset(tmp_path)
  shard = pathlib.Path(arrayrecord.split_files(dataset, 'train')[0])
  shard.write_bytes(shard.read_bytes()[:-100])  # Truncated, e.g. by an interrupted copy.
  with pytest.raises(BadFileError, match='unreadable ArrayRecord record') as info:
    arrayrecord.ClipRecordSource(dataset, 'train')[0]  # pylint: disable=expression-not-assigned
  assert info.value.path == f'{shard}[0]'
  shard.unlink()
  with pytest.raises(FileNotFoundError, match='shard files of split'):
    arrayrecord.ClipRecordSource(dataset, 'train')
