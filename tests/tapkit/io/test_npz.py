"""tapkit.io.npz: headers checked against member sizes and caps before anything is allocated."""

import io
import os
import zipfile

import numpy as np
import pytest

from tapkit.io import BadFileError
from tapkit.io import archive
from tapkit.io import npz


def _npy(descr: str, shape: tuple, payload: bytes) -> bytes:
  header = repr({'descr': descr, 'fortran_order': False, 'shape': shape}).encode()
  header += b' ' * (63 - (len(header) + 10) % 64) + b'\n'
  return b'\x93NUMPY\x01\x00' + len(header).to_bytes(2, 'little') + header + payload


def _zip(path, members, compression=zipfile.ZIP_STORED):
  with zipfile.ZipFile(path, 'w', compression=compression) as z:
    for name, data in members.items():
      z.writestr(name, data)
  return str(path)


@pytest.mark.parametrize('compression', [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_absurd_declared_shape_fails_fast_without_allocating(tmp_path, compression,
                                                            run_limited):
  # A 1 kB archive whose member declares 10^12 float64 elements (8 TB).
  path = _zip(tmp_path / 'huge.npz', {'tracks.npy': _npy('<f8', (10**6, 10**6), b'\0' * 64)},
              compression)
  assert os.path.getsize(path) < 1024
  record, seconds = run_limited('tapkit.io.npz', 'read_npz', path)
  assert record['type'] == 'BadFileError' and 'ValueError' in record['mro'], record
  assert record['message'].startswith(f"{path}: field 'tracks': header declares shape "
                                      '(1000000, 1000000)'), record
  assert seconds < 30
  # Same in-process, with the exact numbers.
  with pytest.raises(ValueError, match=r'\(8000000000000 bytes\) but the member holds 64 bytes'):
    npz.read_npz(path)


def test_cap_is_configurable(tmp_path):
  path = str(tmp_path / 'a.npz')
  np.savez(path, x=np.arange(100, dtype=np.float32))  # 400 bytes of data
  np.testing.assert_array_equal(npz.read_npz(path)['x'], np.arange(100))
  with pytest.raises(BadFileError, match=r"a\.npz: field 'x': .*limit of 399 bytes") as e:
    npz.read_npz(path, max_array_bytes=399)
  assert e.value.field == 'x'
  np.testing.assert_array_equal(npz.read_npz(path, max_array_bytes=400)['x'], np.arange(100))


def test_deflated_member_declaring_more_than_deflate_can_expand(tmp_path):
  path = _zip(tmp_path / 'bomb.npz', {'x.npy': _npy('<f4', (4,), b'\0' * 16)},
              zipfile.ZIP_DEFLATED)
  data = bytearray(open(path, 'rb').read())
  info = zipfile.ZipFile(path).getinfo('x.npy')
  fake = (info.compress_size * archive.DEFLATE_MAX_RATIO + archive.DEFLATE_MARGIN + 1)
  # Patch the uncompressed size in the local header (offset 22) and the central directory.
  data[info.header_offset + 22:info.header_offset + 26] = fake.to_bytes(4, 'little')
  central = data.rfind(b'PK\x01\x02')
  data[central + 24:central + 28] = fake.to_bytes(4, 'little')
  open(path, 'wb').write(bytes(data))
  with pytest.raises(BadFileError, match=rf"bomb\.npz: field 'x': member declares {fake} bytes"):
    npz.read_npz(path)


def test_object_arrays_refused_and_truncated_zip_named(tmp_path):
  path = str(tmp_path / 'obj.npz')
  buf = io.BytesIO()
  np.save(buf, np.array([b'a', None], dtype=object), allow_pickle=True)
  _zip(path, {'names.npy': buf.getvalue()})
  with pytest.raises(BadFileError, match=r"obj\.npz: field 'names': object \(pickled\) arrays"):
    npz.read_npz(path)
  good = str(tmp_path / 'good.npz')
  np.savez(good, a=np.ones(1000))
  cut = tmp_path / 'cut.npz'
  cut.write_bytes(open(good, 'rb').read()[:300])
  with pytest.raises(BadFileError, match=r"cut\.npz: field '<archive>': not a readable"):
    npz.read_npz(cut)


def test_bare_npy(tmp_path):
  path = str(tmp_path / 'keys.npy')
  np.save(path, np.array(['a.weight', 'b.bias']))
  assert npz.read_npy(path).tolist() == ['a.weight', 'b.bias']
  assert npz.is_npy(path)
  lying = tmp_path / 'lying.npy'
  lying.write_bytes(_npy('<f8', (10**12,), b'\0' * 8))
  with pytest.raises(BadFileError, match=r"lying\.npy: field '<array>': header declares"):
    npz.read_npy(lying)


def test_npz_fields_reads_lazily(tmp_path):
  path = str(tmp_path / 'f.npz')
  np.savez(path, a=np.arange(3), b=np.eye(2))
  with npz.NpzFields(path) as f:
    assert f.files == ['a', 'b']
    np.testing.assert_array_equal(f['b'], np.eye(2))
    with pytest.raises(KeyError):
      f['c']  # pylint: disable=pointless-statement
