"""tapkit.io.safetensors: the header is checked before any tensor is allocated."""

import json
import struct

import ml_dtypes
import numpy as np
import pytest

from tapkit.io import BadFileError
from tapkit.io import safetensors as st


def _write(path, header: dict, data: bytes) -> str:
  raw = json.dumps(header).encode()
  with open(path, 'wb') as f:
    f.write(struct.pack('<Q', len(raw)) + raw + data)
  return str(path)


def test_reads_what_the_safetensors_package_writes(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  arrays = {'w': np.arange(12, dtype=np.float32).reshape(3, 4),
            'h': np.array([0.5, -1.25], np.float16), 'i': np.array([[7]], np.int64),
            'b': np.array([True, False]), 'empty': np.zeros((0, 5), np.float32)}
  path = str(tmp_path / 'a.safetensors')
  save_file(arrays, path, metadata={'format': 'np'})
  out = st.read_safetensors(path)
  assert sorted(out) == sorted(arrays)
  for k, v in arrays.items():
    assert out[k].dtype == v.dtype and out[k].shape == v.shape, k
    np.testing.assert_array_equal(out[k], v)
  assert list(st.read_safetensors(path, names=['h'])) == ['h']


def test_bfloat16_kept_as_ml_dtypes(tmp_path):
  values = np.array([1.5, -2.0, 3.140625], ml_dtypes.bfloat16)
  path = _write(tmp_path / 'bf.safetensors',
                {'x': {'dtype': 'BF16', 'shape': [3], 'data_offsets': [0, 6]}},
                values.tobytes())
  out = st.read_safetensors(path)['x']
  assert out.dtype == np.dtype(ml_dtypes.bfloat16)
  assert out.astype(np.float32).tolist() == [1.5, -2.0, 3.140625]


def test_absurd_shape_fails_fast_without_allocating(tmp_path, run_limited):
  path = _write(tmp_path / 'huge.safetensors',
                {'x': {'dtype': 'F32', 'shape': [10**6, 10**6], 'data_offsets': [0, 16]}},
                b'\0' * 16)
  record, seconds = run_limited('tapkit.io.safetensors', 'read_safetensors', path)
  assert record['type'] == 'BadFileError' and 'ValueError' in record['mro'], record
  assert record['message'] == (f"{path}: field 'x': shape (1000000, 1000000) of F32 needs "
                               '4000000000000 bytes but data_offsets span 16'), record
  assert seconds < 30


@pytest.mark.parametrize('entry,message', [
    ({'dtype': 'F32', 'shape': [4], 'data_offsets': [0, 10**12]},
     r'data_offsets \[0, 1000000000000\] outside the data area of 16 bytes'),
    ({'dtype': 'F32', 'shape': [4], 'data_offsets': [-16, 0]},
     r'data_offsets \[-16, 0\] outside the data area'),
    ({'dtype': 'F32', 'shape': [4], 'data_offsets': [8, 24]},
     r'data_offsets \[8, 24\] outside the data area'),
    ({'dtype': 'F32', 'shape': [-4], 'data_offsets': [0, 16]},
     r'shape must be a list of non-negative integers'),
    ({'dtype': 'Q99', 'shape': [4], 'data_offsets': [0, 16]}, r"unknown dtype 'Q99'"),
    ({'dtype': 'F32', 'shape': [4]}, r'expected \{"dtype", "shape", "data_offsets"\}'),
])
def test_bad_entries_name_the_file_and_tensor(tmp_path, entry, message):
  path = _write(tmp_path / 'bad.safetensors', {'t': entry}, b'\0' * 16)
  with pytest.raises(BadFileError, match=rf"bad\.safetensors: field 't': {message}") as e:
    st.read_safetensors(path)
  assert e.value.field == 't'


def test_header_length_and_overlap(tmp_path):
  path = tmp_path / 'long.safetensors'
  path.write_bytes(struct.pack('<Q', 10**15) + b'{}')
  with pytest.raises(BadFileError, match=r"long\.safetensors: field '<header>': header length "
                     r'1000000000000000 does not fit in the file of 10 bytes'):
    st.read_safetensors(path)
  two = {'a': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]},
         'b': {'dtype': 'F32', 'shape': [2], 'data_offsets': [4, 12]}}
  path = _write(tmp_path / 'overlap.safetensors', two, b'\0' * 12)
  with pytest.raises(BadFileError, match=r"field 'b': data overlaps tensor 'a'"):
    st.read_safetensors(path)
