"""tapkit.io.batch: directory runs that go on past bad files."""

import pytest

from tapkit.io import BadFileError
from tapkit.io import batch


def _read(path: str) -> int:
  if 'bad' in path:
    raise BadFileError(path, 'tracks', 'expected [T, N, 3]')
  if 'bug' in path:
    raise KeyError('x')
  return len(path)


def test_failures_are_collected_and_summarised():
  results, run = batch.run_all(['a.npz', 'bad.npz', 'bug.npz', 'bb.npz'], _read, 'clip')
  assert results == [5, 6]
  assert run.processed == ['a.npz', 'bb.npz']
  assert run.failures == [('bad.npz', "bad.npz: field 'tracks': expected [T, N, 3]"),
                          ('bug.npz', "KeyError: 'x'")]
  assert run.summary().splitlines() == [
      'processed 2 of 4 clip(s); 2 failed:',
      "  bad.npz: bad.npz: field 'tracks': expected [T, N, 3]",
      "  bug.npz: KeyError: 'x'"]
  assert run.exit_status() == 0
  _, none = batch.run_all(['bad.npz'], _read)
  assert none.exit_status() == batch.EXIT_NOTHING_PROCESSED == 1


def test_input_files_and_usage_errors(tmp_path, capsys):
  (tmp_path / 'b.npz').write_bytes(b'')
  (tmp_path / 'a.npz').write_bytes(b'')
  (tmp_path / 'c.txt').write_bytes(b'')
  assert batch.input_files(tmp_path) == [str(tmp_path / 'a.npz'), str(tmp_path / 'b.npz')]
  assert batch.input_files(tmp_path / 'c.txt') == [str(tmp_path / 'c.txt')]
  with pytest.raises(batch.InputError, match='--input .*nowhere does not exist'):
    batch.input_files(tmp_path / 'nowhere', what='--input')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(batch.InputError, match=r'folder .*empty holds no \*\.npz file'):
    batch.input_files(tmp_path / 'empty')
  with pytest.raises(batch.InputError, match='is empty'):
    batch.require_dir(tmp_path / 'empty', '--dir')
  assert batch.usage_error('no clips') == 2
  assert capsys.readouterr().err == 'error: no clips\n'
