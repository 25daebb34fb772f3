"""A corpus of malformed and malicious files, built at test time, and the readers they target.

`build_corpus(root, marker)` writes every file under `root` and returns the cases: (reader
name, file path, expectation). Files that would run code write `marker` if any reader ever
executed their payload. `READERS` names the reader functions (imported lazily in the child
process that runs them, see test_hostile.py). Expectation 'refuse' = a ValueError naming the
file; 'load' = a valid control that must load.

Categories: payload pickles (inside torch zips, NYU pickles, npz object fields), forbidden
globals, truncated / garbage / empty containers, bare .npy for .npz, lying .npy headers
(10^11 elements), lying safetensors headers, negative / huge strides and offsets, expand-style
(stride 0) views, storages claiming 160 GB, billion-laughs and deeply nested pickles, numpy
`_reconstruct` with a huge shape, PNG decompression bombs, truncated / garbage PNG and JPEG
(also as TAPVid-3D frames), NaN / Inf / integer / string / object weights, NaN Adam moments,
deep and non-UTF-8 JSON, broken and lying `.mat` files.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

# reader name -> (module, attribute path, extra positional args). Resolved in the child.
READERS = {
    'trajan_ckpt': ('trajan3d.checkpoint', 'load_params'),
    't4d_ckpt': ('tracks4d.checkpoint', 'load_torch_checkpoint'),
    't4d_data': ('tapkit.data.tracks4d_format', 'load_tracks4d_npz'),
    'dino': ('tapkit.models.vit', 'load_checkpoint'),
    'dpov_tracks': ('dpov_jax.data', 'read_tracks_file'),
    'frame': ('dpov_jax.data', 'read_rgb'),
    'tapvid3d_clip': ('tapkit.data.tapvid3d', 'load_clip'),
    'tapvid3d_pred': ('tapkit.data.tapvid3d', 'load_predictions'),
    'spair_json': ('dpov_jax.evaluate.readers', 'read_spair_pair_annotation'),
    'navi_json': ('dpov_jax.evaluate.readers', 'read_navi_annotations'),
    'navi_depth': ('dpov_jax.evaluate.readers', 'read_navi_depth'),
    'nyu': ('dpov_jax.evaluate.readers', 'read_nyu_test'),
    'geonet': ('dpov_jax.evaluate.readers', 'read_geonet_mat'),
}

NPZ_READERS = ('trajan_ckpt', 't4d_ckpt', 't4d_data', 'dino', 'dpov_tracks', 'tapvid3d_clip',
               'tapvid3d_pred', 'nyu')
TORCH_READERS = ('t4d_ckpt', 'dino')
WEIGHT_NPZ_READERS = ('trajan_ckpt', 't4d_ckpt', 'dino')
IMAGE_READERS = ('frame', 'navi_depth')
JSON_READERS = ('spair_json', 'navi_json')

HUGE = 10**11  # elements: 400 GB of float32


# ------------------------------------------------------------------ pickle assembly


def _text(s: str) -> bytes:
  b = s.encode()
  return b'X' + struct.pack('<I', len(b)) + b


def _int(i: int) -> bytes:
  return b'\x8a\x08' + i.to_bytes(8, 'little', signed=True)  # LONG1


def _tuple(items) -> bytes:
  return b'(' + b''.join(items) + b't'


def _global(module: str, name: str) -> bytes:
  return f'c{module}\n{name}\n'.encode()


def payload_pickle(marker: str) -> bytes:
  """A pickle that runs `touch marker` through os.system when unpickled."""
  return b'\x80\x02' + _global('posix', 'system') + _text(f'touch {marker}') + b'\x85R.'


def eval_pickle(marker: str) -> bytes:
  """A pickle calling builtins.exec on code that creates the marker."""
  code = f'open({marker!r}, "w").close()'
  return b'\x80\x02' + _global('builtins', 'exec') + _text(code) + b'\x85R.'


def billion_laughs_pickle(levels: int = 40) -> bytes:
  """A list of two references to a list of two references ... : 2^levels leaves, < 1 kB."""
  out = b'\x80\x02]q\x00'
  for i in range(1, levels + 1):
    out += b'0(' + b'h' + bytes([i - 1]) + b'h' + bytes([i - 1]) + b'l' + b'q' + bytes([i])
  return out + b'.'


def nested_pickle(depth: int = 100_000) -> bytes:
  """A list nested `depth` deep."""
  return b'\x80\x02' + b'(' * depth + b']' + b'l' * depth + b'.'


def huge_reconstruct_pickle() -> bytes:
  """{'depths': numpy array} whose state claims 10^11 float64 elements from 8 bytes."""
  raw = pickle.dumps({'depths': np.zeros((7,), np.float64)}, protocol=3)  # No frames.
  shape = b'K\x07\x85'
  assert raw.count(shape) == 1, raw
  return raw.replace(shape, b'\x8a\x05' + HUGE.to_bytes(5, 'little') + b'\x85')


# ------------------------------------------------------------------ torch zips


def _storage_pid(storage_type: str, key: str, numel: int) -> bytes:
  return _tuple([_text('storage'), _global('torch', storage_type), _text(key), _text('cpu'),
                 _int(numel)]) + b'Q'


def _tensor(pid: bytes, offset: int, size, stride) -> bytes:
  return (_global('torch._utils', '_rebuild_tensor_v2') +
          _tuple([pid, _int(offset), _tuple([_int(n) for n in size]),
                  _tuple([_int(s) for s in stride]), b'\x89',
                  _global('collections', 'OrderedDict') + b')R']) + b'R')


def torch_zip(path: str, pickle_bytes: bytes, records: dict[str, bytes] | None = None) -> str:
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', pickle_bytes)
    z.writestr('archive/byteorder', 'little')
    for key, data in (records or {}).items():
      z.writestr(f'archive/data/{key}', data)
    z.writestr('archive/version', '3\n')
  return path


def torch_view_zip(path: str, storage: np.ndarray, offset: int, size, stride,
                   numel: int | None = None, storage_type: str = 'FloatStorage') -> str:
  """{'w': a view of `storage`} with the given offset / size / stride (no torch needed)."""
  numel = storage.size if numel is None else numel
  body = (b'\x80\x02' + _global('collections', 'OrderedDict') + b')R' + _text('w') +
          _tensor(_storage_pid(storage_type, '0', numel), offset, size, stride) + b's.')
  return torch_zip(path, body, {'0': storage.tobytes()})


# ------------------------------------------------------------------ npz / npy


def npy_bytes(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  np.save(buffer, array, allow_pickle=True)
  return buffer.getvalue()


def lying_npy(shape=(HUGE,), descr='<f8', data=b'\0' * 64) -> bytes:
  header = repr({'descr': descr, 'fortran_order': False, 'shape': shape}).encode()
  header += b' ' * (-(len(header) + 11) % 64) + b'\n'
  return b'\x93NUMPY\x01\x00' + struct.pack('<H', len(header)) + header + data


def npz_with(path: str, members: dict[str, bytes]) -> str:
  with zipfile.ZipFile(path, 'w') as z:
    for name, data in members.items():
      z.writestr(f'{name}.npy', data)
  return path


def savez(path: str, **arrays) -> str:
  with open(path, 'wb') as f:
    np.savez(f, **arrays)
  return path


class _Payload:
  """Pickles as a call of os.system (never unpickled by a safe reader)."""

  def __init__(self, marker: str):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


# ------------------------------------------------------------------ images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return (struct.pack('>I', len(data)) + kind + data +
          struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
  """A valid-looking PNG header declaring width x height 8-bit RGB pixels (a few hundred
  bytes of zlib data)."""
  ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  row = zlib.compressobj(9)
  data = row.compress(b'\0' * (1 << 20)) + row.flush()
  return (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', ihdr) + _png_chunk(b'IDAT', data) +
          _png_chunk(b'IEND', b''))


def encoded_image(fmt: str, shape=(16, 16, 3)) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(np.full(shape, 120, np.uint8)).save(buffer, format=fmt)
  return buffer.getvalue()


# ------------------------------------------------------------------ corpus


def _write(path: str, data: bytes) -> str:
  with open(path, 'wb') as f:
    f.write(data)
  return path


def _valid_tapvid3d_clip(path: str, frames: list[bytes] | None = None) -> str:
  """A small valid TAPVid-3D clip; `frames` replaces its encoded frames."""
  from tapkit.data import tapvid3d  # pylint: disable=g-import-not-at-top
  t, n = 3, 4
  rng = np.random.default_rng(0)
  clip = tapvid3d.Clip(
      tracks_xyz=(rng.normal(size=(t, n, 3)) + [0, 0, 5]).astype(np.float32),
      visibility=np.ones((t, n), bool),
      queries_xyt=np.zeros((n, 3), np.float32), intrinsics=np.asarray([20, 20, 8, 8],
                                                                      np.float32),
      raw_frames=np.full((t, 16, 16, 3), 100, np.uint8))
  tapvid3d.save_clip(path, clip)
  if frames is not None:
    with np.load(path, allow_pickle=True) as data:  # Our own file, just written.
      arrays = dict(data)
    jpeg = np.empty(len(frames), dtype=object)
    jpeg[:] = frames
    arrays['images_jpeg_bytes'] = jpeg
    savez(path, **arrays)
  return path


def build_corpus(root: str, marker: str) -> list[tuple[str, str, str]]:
  """Writes the corpus under `root`; returns [(reader, path, 'refuse' | 'load')]."""
  os.makedirs(root, exist_ok=True)
  cases: list[tuple[str, str, str]] = []
  p = lambda name: os.path.join(root, name)

  def add(readers, path, expect='refuse'):
    for reader in readers:
      cases.append((reader, path, expect))

  # --- generic npz failures, each written once per reader family's extension (.npz).
  good = savez(p('good_src.npz'), a=np.zeros(4, np.float32))
  data = open(good, 'rb').read()
  add(NPZ_READERS, _write(p('truncated.npz'), data[:len(data) // 2]))
  add(NPZ_READERS, _write(p('garbage.npz'), os.urandom(300)))
  add(NPZ_READERS, _write(p('empty.npz'), b''))
  add(NPZ_READERS, _write(p('bare_npy.npz'), npy_bytes(np.zeros((3, 2), np.float32))))
  for field in ('tracks', 'tracks_XYZ', 'pred_tracks', 'depths', 'a/kernel',
                'cls_token'):
    safe = field.replace('/', '_')
    add(NPZ_READERS, npz_with(p(f'lying_{safe}.npz'), {field: lying_npy()}))
  add(NPZ_READERS, npz_with(p('lying_2d.npz'), {'tracks': lying_npy((HUGE, 2), '<f4')}))
  payload = np.empty(1, dtype=object)
  payload[0] = _Payload(marker)
  for field in ('images_jpeg_bytes', 'tracks', 'depths', 'a'):
    add(NPZ_READERS, npz_with(p(f'payload_{field}.npz'), {field: npy_bytes(payload)}))
  add(NPZ_READERS, npz_with(p('negative_shape.npz'), {'a': lying_npy((-5,))}))
  add(NPZ_READERS, npz_with(p('bad_descr.npz'), {'a': lying_npy((2,), '<x9')}))
  add(NPZ_READERS, savez(p('strings.npz'), tracks=np.asarray(['1.5', 'x'] * 6)))

  # --- weights: NaN / Inf / integer / string / object / bool.
  nan = np.ones((4, 4), np.float32)
  nan[1, 2] = np.nan
  inf = np.ones((4, 4), np.float32)
  inf[0, 0], inf[3, 3] = np.inf, -np.inf
  for name, arrays in {
      'w_nan.npz': {'cls_token': nan[None, :1], 'blocks.0.norm1.weight': nan[0],
                    'a/kernel': nan},
      'w_inf.npz': {'cls_token': inf[None, :1], 'a/kernel': inf},
      'w_int.npz': {'cls_token': np.ones((1, 1, 4), np.int32), 'a/kernel': np.ones((4, 4),
                                                                                   np.int64)},
      'w_str.npz': {'cls_token': np.asarray([['1.5']]), 'a/kernel': np.asarray(['1', '2'])},
      'w_bool.npz': {'cls_token': np.ones((1, 1, 4), bool), 'a/kernel': np.ones(4, bool)},
  }.items():
    add(WEIGHT_NPZ_READERS, savez(p(name), **arrays))
  add(WEIGHT_NPZ_READERS, npz_with(p('w_object.npz'), {'a/kernel': npy_bytes(payload)}))

  # --- torch .pt / .pth files.
  storage = np.arange(12, dtype=np.float32)
  for ext in ('.pt', '.pth'):
    add(TORCH_READERS, torch_zip(p(f'payload{ext}'), payload_pickle(marker)))
    add(TORCH_READERS, torch_zip(p(f'exec{ext}'), eval_pickle(marker)))
    add(TORCH_READERS, torch_zip(p(f'laughs{ext}'), billion_laughs_pickle()))
    add(TORCH_READERS, torch_zip(p(f'nested{ext}'), nested_pickle()))
    add(TORCH_READERS, torch_view_zip(p(f'neg_stride{ext}'), storage, 11, (4,), (-1,)))
    add(TORCH_READERS, torch_view_zip(p(f'huge_neg_stride{ext}'), storage, 0, (2,),
                                      (-(1 << 60),)))
    add(TORCH_READERS, torch_view_zip(p(f'neg_offset{ext}'), storage, -4, (4,), (1,)))
    add(TORCH_READERS, torch_view_zip(p(f'past_end{ext}'), storage, 10, (4,), (1,)))
    add(TORCH_READERS, torch_view_zip(p(f'expand{ext}'), storage[:1], 0,
                                      (200_000, 200_000), (0, 0)))
    add(TORCH_READERS, torch_view_zip(p(f'fp16_160gb{ext}'), storage.astype(np.float16), 0,
                                      (80_000_000_000,), (1,), numel=80_000_000_000,
                                      storage_type='HalfStorage'))
    add(TORCH_READERS, torch_view_zip(p(f'int_storage{ext}'), storage.astype(np.int64), 0,
                                      (12,), (1,), storage_type='LongStorage'))
    add(TORCH_READERS, _torch_missing_record(p(f'missing_record{ext}')))
    raw = open(p(f'neg_stride{ext}'), 'rb').read()
    add(TORCH_READERS, _write(p(f'truncated{ext}'), raw[:len(raw) * 2 // 3]))
    add(TORCH_READERS, _write(p(f'garbage{ext}'), os.urandom(500)))
    add(TORCH_READERS, _write(p(f'legacy_pickle{ext}'), payload_pickle(marker)))
  _torch_weight_cases(root, add, marker)

  # --- safetensors.
  add(('dino',), _safetensors(p('lying.safetensors'), 'F32', [100_000, 100_000],
                              [0, 40_000_000_000], b'\0' * 16))
  add(('dino',), _safetensors(p('overlap.safetensors'), 'F32', [4], [0, 16], b'\0' * 8))
  add(('dino',), _safetensors(p('int.safetensors'), 'I32', [1, 1, 4], [0, 16], b'\0' * 16,
                              name='cls_token'))
  add(('dino',), _safetensors(p('nan.safetensors'), 'F32', [1, 1, 4], [0, 16],
                              np.full(4, np.nan, np.float32).tobytes(), name='cls_token'))
  add(('dino',), _write(p('deep.safetensors'), struct.pack('<Q', 200_000) +
                        b'[' * 100_000 + b']' * 100_000))
  add(('dino',), _write(p('huge_header.safetensors'), struct.pack('<Q', 1 << 62) + b'{}'))
  add(('dino',), _safetensors(p('no_cls.safetensors'), 'F32', [4], [0, 16], b'\0' * 16,
                              name='blocks.0.norm1.weight'))

  # --- images (frames, NAVI depth PNGs).
  png, jpeg = encoded_image('PNG'), encoded_image('JPEG')
  add(IMAGE_READERS, _write(p('bomb.png'), png_bomb()))
  add(IMAGE_READERS, _write(p('bomb_pil.png'), png_bomb(20_000, 20_000)))
  add(IMAGE_READERS, _write(p('truncated.png'), png[:len(png) // 2]))
  add(IMAGE_READERS, _write(p('garbage.png'), os.urandom(400)))
  add(IMAGE_READERS, _write(p('empty.png'), b''))
  add(IMAGE_READERS, _write(p('text.png'), b'hello, not an image\n'))
  add(('frame',), _write(p('truncated.jpg'), jpeg[:len(jpeg) // 2]))
  add(('frame',), _write(p('garbage.jpg'), b'\xff\xd8\xff' + os.urandom(300)))
  add(('navi_depth',), _write(p('rgb_depth.png'), png))  # Wrong kind: RGB, not 16-bit.
  add(('frame',), _write(p('good.png'), png), 'load')
  add(('tapvid3d_clip',), _valid_tapvid3d_clip(p('clip_bomb.npz'), [png_bomb()] * 3))
  add(('tapvid3d_clip',), _valid_tapvid3d_clip(p('clip_trunc.npz'), [jpeg[:40]] * 3))
  add(('tapvid3d_clip',), _valid_tapvid3d_clip(p('clip_mixed.npz'),
                                               [jpeg, encoded_image('PNG', (8, 8, 3)), jpeg]))
  add(('tapvid3d_clip',), _valid_tapvid3d_clip(p('clip_good.npz')), 'load')
  add(('tapvid3d_pred',), _valid_tapvid3d_clip(p('pred_good.npz')), 'load')

  # --- JSON annotations.
  add(JSON_READERS, _write(p('deep.json'), b'[' * 200_000 + b']' * 200_000))
  add(JSON_READERS, _write(p('deep_obj.json'), b'{"a":' * 50_000 + b'1' + b'}' * 50_000))
  add(JSON_READERS, _write(p('latin1.json'), '{"filename": "caf\xe9"}'.encode('latin-1')))
  add(JSON_READERS, _write(p('truncated.json'), b'{"filename": "2-a-b:cat", "cat'))
  add(JSON_READERS, _write(p('binary.json'), os.urandom(200)))
  add(JSON_READERS, _write(p('list.json'), b'[1, 2, 3]'))
  add(JSON_READERS, _write(p('nan.json'), b'{"filename": NaN, "category": Infinity}'))

  # --- NYU pickles.
  add(('nyu',), _write(p('payload.pkl'), pickle.dumps({'depths': _Payload(marker)}, 2)))
  add(('nyu',), _write(p('exec.pkl'), eval_pickle(marker)))
  add(('nyu',), _write(p('laughs.pkl'), billion_laughs_pickle()))
  add(('nyu',), _write(p('nested.pkl'), nested_pickle()))
  add(('nyu',), _write(p('reconstruct_huge.pkl'), huge_reconstruct_pickle()))
  add(('nyu',), _write(p('truncated.pkl'), pickle.dumps({'depths': np.zeros(50)}, 2)[:60]))
  add(('nyu',), _write(p('garbage.pkl'), os.urandom(200)))
  add(('nyu',), _write(p('lying_bytes.pkl'), b'\x80\x02B' + struct.pack('<I', 1 << 31) +
                       b'xx.'))

  # --- GeoNet .mat files.
  _mat_cases(root, add)
  return cases


def _torch_missing_record(path: str) -> str:
  body = (b'\x80\x02' + _global('collections', 'OrderedDict') + b')R' + _text('w') +
          _tensor(_storage_pid('FloatStorage', '7', 4), 0, (4,), (1,)) + b's.')
  return torch_zip(path, body, {})


def _torch_weight_cases(root: str, add, marker: str) -> None:
  """NaN / integer / string weights and NaN Adam moments in torch.save files."""
  del marker
  import torch  # pylint: disable=g-import-not-at-top
  p = lambda name: os.path.join(root, name)
  nan = torch.ones(1, 1, 4)
  nan[0, 0, 1] = float('nan')
  for ext in ('.pt', '.pth'):
    torch.save({'cls_token': nan, 'fc1.weight': torch.full((2, 2), float('inf'))},
               p(f'w_nan{ext}'))
    torch.save({'cls_token': torch.ones(1, 1, 4, dtype=torch.int32),
                'fc1.weight': torch.ones(2, 2, dtype=torch.int64)}, p(f'w_int{ext}'))
    torch.save({'cls_token': torch.ones(1, 1, 4), 'fc1.weight': '1.5'}, p(f'w_str{ext}'))
    torch.save({'cls_token': torch.ones(1, 1, 4, dtype=torch.bool)}, p(f'w_bool{ext}'))
    torch.save({'pos_embed': torch.ones(1, 5, 4), 'blocks.0.norm1.weight': torch.ones(4)},
               p(f'no_cls{ext}'))
    for name in ('w_nan', 'w_int', 'w_str', 'w_bool', 'no_cls'):
      add(TORCH_READERS, p(f'{name}{ext}'))
  opt = {'state': {0: {'step': torch.tensor(3.0), 'exp_avg': torch.zeros(4),
                       'exp_avg_sq': torch.full((4,), float('nan'))}},
         'param_groups': [{'lr': 1e-4, 'betas': (0.9, 0.999), 'eps': 1e-8, 'params': [0]}]}
  torch.save({'epoch': 1, 'model_state_dict': {'fc1.bias': torch.zeros(37)},
              'optimizer_state_dict': opt, 'loss': 0.1}, p('adam_nan.pt'))
  add(('t4d_ckpt',), p('adam_nan.pt'))
  torch.save({'epoch': 1, 'model_state_dict': {'fc1.bias': torch.zeros(37)},
              'optimizer_state_dict': {'state': {}, 'param_groups': []}}, p('adam_empty.pt'))
  add(('t4d_ckpt',), p('adam_empty.pt'))


def _safetensors(path: str, dtype: str, shape, offsets, data: bytes,
                 name: str = 'cls_token') -> str:
  header = json.dumps({name: {'dtype': dtype, 'shape': shape, 'data_offsets': offsets}})
  header = header.encode()
  return _write(path, struct.pack('<Q', len(header)) + header + data)


def _mat_cases(root: str, add) -> None:
  import scipy.io  # pylint: disable=g-import-not-at-top
  p = lambda name: os.path.join(root, name)
  fields = {'img': np.zeros((7, 11, 3)), 'depth': np.zeros((7, 11)),
            'norm': np.zeros((7, 11, 3), np.float32)}
  scipy.io.savemat(p('good_src.mat'), fields, do_compression=False)
  raw = open(p('good_src.mat'), 'rb').read()
  add(('geonet',), _write(p('truncated.mat'), raw[:len(raw) // 2]))
  add(('geonet',), _write(p('garbage.mat'), os.urandom(600)))
  add(('geonet',), _write(p('empty.mat'), b''))
  add(('geonet',), _write(p('hdf5.mat'), b'\x89HDF\r\n\x1a\n' + os.urandom(300)))
  dims = struct.pack('<iii', 7, 11, 3)
  assert raw.count(dims) == 2, raw.count(dims)
  add(('geonet',), _write(p('huge_dims.mat'),
                          raw.replace(dims, struct.pack('<iii', 100_000, 100_000, 3))))
  scipy.io.savemat(p('char.mat'), {**fields, 'img': 'not an image'})
  add(('geonet',), p('char.mat'))
  scipy.io.savemat(p('missing.mat'), {'depth': fields['depth']})
  add(('geonet',), p('missing.mat'))
  scipy.io.savemat(p('compressed_src.mat'), fields, do_compression=True)
  raw = open(p('compressed_src.mat'), 'rb').read()
  add(('geonet',), _write(p('compressed_truncated.mat'), raw[:len(raw) - 40]))
