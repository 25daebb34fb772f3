"""tapkit.io.torch_state: one `.pt` reader, same arrays with and without torch; views checked."""

import collections
import struct
import zipfile

import ml_dtypes
import numpy as np
import pytest

from tapkit.io import BadFileError, UnsafePickleError
from tapkit.io import torch_state


def _text(s: str) -> bytes:
  b = s.encode()
  return b'X' + struct.pack('<I', len(b)) + b


def _int(i: int) -> bytes:
  return b'\x8a\x08' + i.to_bytes(8, 'little', signed=True)  # LONG1: any 64-bit value


def _tuple(items) -> bytes:
  return b'(' + b''.join(items) + b't'


def _torch_zip(path, storage: np.ndarray, offset: int, size, stride, numel=None,
               storage_type='FloatStorage') -> str:
  """A `torch.save`-layout zip of {'w': tensor view of `storage`}, written without torch."""
  numel = storage.size if numel is None else numel
  pid = _tuple([_text('storage'), f'ctorch\n{storage_type}\n'.encode(), _text('0'),
                _text('cpu'), _int(numel)]) + b'Q'
  tensor = (b'ctorch._utils\n_rebuild_tensor_v2\n' +
            _tuple([pid, _int(offset), _tuple([_int(n) for n in size]),
                    _tuple([_int(s) for s in stride]), b'\x89',
                    b'ccollections\nOrderedDict\n)R']) + b'R')
  body = b'\x80\x02ccollections\nOrderedDict\n)R' + _text('w') + tensor + b's.'
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', body)
    z.writestr('archive/byteorder', 'little')
    z.writestr('archive/data/0', storage.astype(storage.dtype.newbyteorder('<')).tobytes())
    z.writestr('archive/version', '3\n')
  return str(path)


STORAGE = np.arange(12, dtype=np.float32)


def test_pure_reader_builds_valid_views(tmp_path):
  path = _torch_zip(tmp_path / 'ok.pt', STORAGE, offset=1, size=(2, 3), stride=(4, 2))
  out = torch_state.read_torch_state(path, use_torch=False)
  assert isinstance(out, collections.OrderedDict) and list(out) == ['w']
  np.testing.assert_array_equal(out['w'], [[1, 3, 5], [5, 7, 9]])


@pytest.mark.parametrize('offset,size,stride,numel,message', [
    (2, (2, 3), (3, -1), None, r'negative stride \(3, -1\)'),
    (-1, (2, 3), (3, 1), None, r'negative or non-integer storage offset -1'),
    (7, (2, 3), (3, 1), None, r'tensor view \(offset 7, size \(2, 3\), stride \(3, 1\)\) '
     r'exceeds its storage of 12 elements'),
    (0, (4, 4), (4, 1), None, r'exceeds its storage of 12 elements'),
    (0, (2, -3), (3, 1), None, r'negative tensor size'),
    (0, (12,), (1,), 10**12, r'holds 12 elements, expected 1000000000000'),
])
def test_bad_views_and_storages_refused(tmp_path, offset, size, stride, numel, message):
  path = _torch_zip(tmp_path / 'bad.pt', STORAGE, offset, size, stride, numel)
  with pytest.raises(BadFileError, match=r'bad\.pt: ' + r".*" + message) as e:
    torch_state.read_torch_state(path, use_torch=False)
  assert isinstance(e.value, ValueError)


def test_broadcast_view_over_budget_refused_before_copying(tmp_path, run_limited):
  # Stride 0 makes a 1-element storage look like 10^12 elements (4 TB once copied).
  path = _torch_zip(tmp_path / 'wide.pt', STORAGE[:1], 0, (10**6, 10**6), (0, 0))
  with pytest.raises(BadFileError, match=r"wide\.pt: field 'data.pkl': 4000000000000 more "
                     r'bytes would exceed the limit'):
    torch_state.read_torch_zip(path)
  record, seconds = run_limited('tapkit.io.torch_state', 'read_torch_zip', path)
  assert record['type'] == 'BadFileError', record
  assert seconds < 30


def test_forbidden_global_in_a_checkpoint(tmp_path):
  marker = tmp_path / 'ran'
  body = (b'\x80\x02cposix\nsystem\n' + _text(f'touch {marker}') + b'\x85R.')
  path = tmp_path / 'evil.pt'
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', body)
  with pytest.raises(UnsafePickleError, match=r'evil\.pt: refusing to load posix\.system '
                     r'\(only tensors, storages and OrderedDict'):
    torch_state.read_torch_state(path, use_torch=False)
  assert not marker.exists()


def test_torch_saved_state_dicts_read_identically_with_and_without_torch(tmp_path):
  torch = pytest.importorskip('torch')
  gen = torch.Generator().manual_seed(0)
  base = torch.randn(4, 6, generator=gen)
  sd = collections.OrderedDict(
      fp32=base, fp16=base.half(), bf16=base.to(torch.bfloat16), strided=base.t()[1:],
      ints=torch.arange(5, dtype=torch.int64), flags=torch.tensor([True, False]),
      scalar=torch.tensor(2.5))
  path = tmp_path / 'sd.pt'
  torch.save({'model': sd, 'epoch': 3, 'meta': [1, (2.5, 'x')]}, path)
  with_torch = torch_state.read_torch_state(path, use_torch=True)
  pure = torch_state.read_torch_state(path, use_torch=False)
  assert with_torch['epoch'] == pure['epoch'] == 3
  assert with_torch['meta'] == pure['meta'] == [1, (2.5, 'x')]
  assert list(with_torch['model']) == list(pure['model']) == list(sd)
  for name, tensor in sd.items():
    a, b = with_torch['model'][name], pure['model'][name]
    assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), name
    assert a.dtype == b.dtype and a.shape == b.shape == tuple(tensor.shape), name
    ref = tensor.float().numpy() if name == 'bf16' else tensor.numpy()
    np.testing.assert_array_equal(a.astype(ref.dtype), ref, err_msg=name)
    np.testing.assert_array_equal(b.astype(ref.dtype), ref, err_msg=name)
  assert pure['model']['bf16'].dtype == np.dtype(ml_dtypes.bfloat16)
  assert pure['model']['fp16'].dtype == np.float16
  widened = [torch_state.read_torch_state(path, use_torch=u, widen_bfloat16=True)
             for u in (True, False)]
  for w in widened:
    assert w['model']['bf16'].dtype == np.float32
    np.testing.assert_array_equal(w['model']['bf16'], sd['bf16'].float().numpy())


def test_torch_errors_are_wrapped(tmp_path):
  torch = pytest.importorskip('torch')
  import argparse  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'pickled.pt'
  torch.save({'args': argparse.Namespace(lr=1)}, path)
  # torch only ever sees a file the pure reader validated: the refusal is the same.
  with pytest.raises(UnsafePickleError, match=r'pickled\.pt: refusing to load '
                     r'argparse\.Namespace'):
    torch_state.read_torch_state(path, use_torch=True)
  with pytest.raises(UnsafePickleError, match=r'refusing to load argparse\.Namespace'):
    torch_state.read_torch_state(path, use_torch=False)
