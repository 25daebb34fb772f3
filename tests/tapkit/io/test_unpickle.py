"""tapkit.io.unpickle: the one allow-list unpickler, with bounded work."""

import collections
import os
import pickle
import time

import numpy as np
import pytest

from tapkit.io import BadFileError, UnsafePickleError
from tapkit.io import unpickle


class _RunsCode:

  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def test_billion_laughs_refused_within_a_second():
  laughs = ['lol']
  for _ in range(60):  # 2^60 leaves once expanded; ~1 kB on disk.
    laughs = [laughs, laughs]
  payload = pickle.dumps(laughs, protocol=4)
  assert len(payload) < 2000
  start = time.monotonic()
  with pytest.raises(UnsafePickleError, match=r'laughs\.pkl: structure expands to more than '
                     rf'{unpickle.MAX_NODES} objects'):
    unpickle.load(payload, {}, source='laughs.pkl')
  assert time.monotonic() - start < 1.0
  # The same shape with few repetitions is fine, and comes back equal.
  small = ['lol']
  for _ in range(5):
    small = [small, small]
  assert unpickle.load(pickle.dumps(small), {}, source='ok.pkl') == small


def test_depth_cycles_and_limits():
  deep = []
  for _ in range(100):
    deep = [deep]
  with pytest.raises(UnsafePickleError, match='nested deeper than 64 levels'):
    unpickle.load(pickle.dumps(deep), {}, source='deep.pkl')
  assert unpickle.load(pickle.dumps(deep), {}, source='deep.pkl', max_depth=200) == deep
  cyclic = []
  cyclic.append(cyclic)
  with pytest.raises(UnsafePickleError, match='self-referencing structure'):
    unpickle.load(pickle.dumps(cyclic), {}, source='cyc.pkl')
  with pytest.raises(UnsafePickleError, match='more than 10 bytes of payload'):
    unpickle.load(pickle.dumps(b'x' * 11), {}, source='b.pkl', max_bytes=10)
  with pytest.raises(UnsafePickleError, match='more than 100 objects'):
    unpickle.load(pickle.dumps(list(range(200))), {}, source='n.pkl', max_nodes=100)


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_forbidden_global_refused_and_never_run(tmp_path, protocol):
  marker = tmp_path / 'ran'
  payload = pickle.dumps({'x': _RunsCode(f'touch {marker}')}, protocol=protocol)
  with pytest.raises(UnsafePickleError, match=r"evil\.pkl: field 'data': refusing to load "
                     r'global posix\.system') as e:
    unpickle.load(payload, unpickle.numpy_array_globals(), source='evil.pkl', field='data')
  assert isinstance(e.value, ValueError) and isinstance(e.value, pickle.UnpicklingError)
  assert not marker.exists()
  pickle.loads(payload)  # Sanity: a general unpickler does run it.
  assert marker.exists()


def test_declared_lengths_beyond_the_data_do_not_allocate():
  # BINBYTES8 declaring a terabyte, followed by two bytes.
  payload = b'\x80\x04\x8e' + (10**12).to_bytes(8, 'little') + b'xx'
  with pytest.raises(BadFileError, match=r't\.pkl: truncated pickle: an argument declares '
                     r'1000000000000 bytes but only 2 remain'):
    unpickle.load(payload, {}, source='t.pkl')


def test_numpy_arrays_allow_list_round_trips(tmp_path):
  data = {'depths': np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
          'names': [np.array(['kitchen']), np.array(['office'])], 'n': np.int64(7),
          'order': collections.OrderedDict(a=1)}
  path = tmp_path / 'd.pkl'
  with open(path, 'wb') as f:
    pickle.dump({k: v for k, v in data.items() if k != 'order'}, f, protocol=4)
  with open(path, 'rb') as f:
    out = unpickle.load(f, unpickle.numpy_array_globals(), source=path)
  np.testing.assert_array_equal(out['depths'], data['depths'])
  assert out['depths'].dtype == np.float32 and out['n'] == 7
  assert [str(x[0]) for x in out['names']] == ['kitchen', 'office']
  # OrderedDict is not in the numpy allow-list.
  with pytest.raises(UnsafePickleError, match='collections.OrderedDict'):
    unpickle.load(pickle.dumps(data), unpickle.numpy_array_globals(), source='o.pkl')


def test_reconstruct_placeholder_must_be_empty():
  """numpy's `_reconstruct` would allocate its shape argument: only (0,) is accepted."""
  payload = (b'\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n'
             b'J\x00\xca\x9a\x3b\x85C\x01b\x87R.')  # _reconstruct(ndarray, (10**9,), b'b')
  with pytest.raises(BadFileError, match=r'placeholder shape must be \(0,\), got '
                     r'\(1000000000,\)'):
    unpickle.load(payload, unpickle.numpy_array_globals(), source='r.pkl')
