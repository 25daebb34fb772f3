"""tapkit.data.bad_records: training sources skip unreadable records up to a fraction."""

import pickle

import pytest

from tapkit.data import bad_records
from tapkit.data import pipeline
from tapkit.io import BadFileError


class _Files(pipeline.SequenceSource):
  """Records 'bad*' raise like a reader would on a malformed file."""

  def __getitem__(self, index):
    name = super().__getitem__(index)
    if name.startswith('bad'):
      raise BadFileError(name, None, 'truncated')
    return name


def test_bad_records_are_replaced_by_the_next_good_one(caplog):
  source = bad_records.SkipBadRecords(_Files(['a', 'bad1', 'b', 'bad2'] + ['c'] * 196), 0.01)
  assert len(source) == 200 and repr(source) == repr(source.source)
  assert [source[i] for i in range(4)] == ['a', 'b', 'b', 'c']
  assert source[199] == 'c'
  assert source.bad_records == {1: 'bad1: truncated', 3: 'bad2: truncated'}
  assert 'skipping bad record 3 (2 bad of 200 so far): bad2: truncated' in caplog.text
  assert pickle.loads(pickle.dumps(source))[0] == 'a'  # grain workers pickle sources.


def test_too_many_bad_records_stop_with_a_clear_error():
  source = bad_records.SkipBadRecords(_Files(['a', 'bad1', 'bad2', 'b'] * 25), 0.01,
                                      name='train')
  assert source[0] == 'a'
  with pytest.raises(bad_records.TooManyBadRecords,  # Records 1 and 2 fail: 2 > 0.01 * 100.
                     match=r'train: 2 of 100 records could not be read, more than '
                     r'data.max_bad_fraction = 0.01 allows. First: 1: bad1: truncated; 2: '):
    source[1]
  with pytest.raises(ValueError, match='max_bad_fraction must be in'):
    bad_records.SkipBadRecords(_Files(['a']), 1.5)


def test_read_all_skips_and_counts():
  read = lambda name: _Files([name])[0]
  assert bad_records.read_all(['a', 'bad', 'b'], read, 'clips', 0.5) == ['a', 'b']
  with pytest.raises(bad_records.TooManyBadRecords, match='clips: 1 of 3'):
    bad_records.read_all(['a', 'bad', 'b'], read, 'clips', 0.0)
  with pytest.raises(KeyError):  # Not a reader error: a bug, not skipped.
    bad_records.read_all(['a'], lambda name: {}[name], 'clips', 1.0)
