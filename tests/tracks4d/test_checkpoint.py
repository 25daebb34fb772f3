"""Checkpoint loading: npz state dicts, torch zip files (with and without torch), errors."""

import collections
import pickle
import zipfile

import numpy as np
import pytest

from tapkit.io import torch_state
from tracks4d import checkpoint


def test_npz_state_dict_maps_to_flax(golden_state_dict, t4d_golden):
  keys = [str(k) for k in np.load(t4d_golden / 'param_keys.npy')]
  assert list(golden_state_dict) == keys == list(checkpoint.TORCH_PARAM_KEYS)
  ckpt = checkpoint.load_torch_checkpoint(t4d_golden / 'params.npz')
  p = ckpt.params
  w = golden_state_dict['transformer_my.transformer_points.1.layers.0.0.to_qkv.weight']
  np.testing.assert_array_equal(p['point_transformer_1']['attention']['qkv']['kernel'], w.T)
  conv = golden_state_dict['conv_final.weight']  # [24, 256, 31]
  assert p['camera_head']['kernel'].shape == (31, 256, 24)
  np.testing.assert_array_equal(p['camera_head']['kernel'][5, 7, 3], conv[3, 7, 5])
  np.testing.assert_array_equal(p['embed_norm_in']['scale'],
                                golden_state_dict['transformer_my.to_patch_embedding.0.weight'])
  n = sum(v.size for v in golden_state_dict.values())
  assert n == 12_826_325
  back = checkpoint.flax_params_to_torch_state_dict(p)
  assert list(back) == keys
  for k in keys:
    np.testing.assert_array_equal(back[k], golden_state_dict[k])


def test_flax_tree_matches_model_init(golden_params):
  import jax
  import jax.numpy as jnp
  from tracks4d import model
  init = jax.eval_shape(model.TracksTo4D().init, jax.random.PRNGKey(0),
                        jnp.zeros((1, 3, 3, 16)))['params']
  shapes = jax.tree_util.tree_map(lambda a: a.shape, init)
  ours = jax.tree_util.tree_map(lambda a: a.shape, golden_params)
  assert shapes == ours


def test_mapping_errors_name_the_file_and_fields(golden_state_dict):
  sd = dict(golden_state_dict)
  del sd['fc1.bias']
  sd['fc2.weight'] = np.zeros(3, np.float32)
  sd['conv_final.weight'] = np.zeros((24, 256, 15), np.float32)
  with pytest.raises(ValueError) as e:
    checkpoint.torch_state_dict_to_flax(sd, source='my.pt')
  msg = str(e.value)
  assert 'my.pt' in msg and 'fc1.bias' in msg and 'fc2.weight' in msg
  assert 'conv_final.weight: got (24, 256, 15), expected (24, 256, 31)' in msg


def _save_official_like(tmp_path, golden_state_dict, bare=False):
  torch = pytest.importorskip('torch')
  sd = collections.OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in
                               golden_state_dict.items())
  if bare:
    obj = sd
  else:
    params = [torch.nn.Parameter(v.clone()) for v in sd.values()]
    opt = torch.optim.Adam(params, lr=1e-4)
    for p in params:
      p.grad = torch.full_like(p, 0.5)
    opt.step()
    opt.step()
    obj = {'epoch': 700, 'model_state_dict': sd, 'optimizer_state_dict': opt.state_dict(),
           'loss': 1.25}
  path = tmp_path / ('bare.pt' if bare else 'ckpt.pt')
  torch.save(obj, path)
  return path


@pytest.mark.parametrize('use_torch', [True, False])
def test_torch_checkpoint_roundtrip(tmp_path, golden_state_dict, use_torch):
  path = _save_official_like(tmp_path, golden_state_dict)
  ckpt = checkpoint.load_torch_checkpoint(path, use_torch=use_torch)
  assert ckpt.epoch == 700 and ckpt.loss == 1.25
  for k, v in golden_state_dict.items():
    np.testing.assert_array_equal(ckpt.state_dict[k], v)
  moments = ckpt.adam_state()
  assert moments.count == 2 and moments.lr == 1e-4 and moments.betas == (0.9, 0.999)
  # After two steps with constant gradient 0.5: m = 0.5 (1 - 0.9^2), v = 0.25 (1 - 0.999^2).
  np.testing.assert_allclose(moments.mu['point_head']['kernel'], 0.5 * (1 - 0.81), rtol=1e-6)
  np.testing.assert_allclose(moments.nu['camera_head']['bias'], 0.25 * (1 - 0.999**2), rtol=1e-5)

  import optax
  state = moments.to_optax(optax.adam(1e-4).init(ckpt.params))
  assert int(state[0].count) == 2
  np.testing.assert_allclose(state[0].mu['embed_dense']['bias'], 0.5 * (1 - 0.81), rtol=1e-6)


def test_bare_state_dict_and_restricted_reader_matches_torch(tmp_path, golden_state_dict):
  torch = pytest.importorskip('torch')
  path = _save_official_like(tmp_path, golden_state_dict, bare=True)
  ours = checkpoint.read_torch_zip(path)
  ref = torch.load(path, map_location='cpu', weights_only=True)
  assert isinstance(ours, collections.OrderedDict) and list(ours) == list(ref)
  for k in ref:
    np.testing.assert_array_equal(ours[k], ref[k].numpy())
  assert checkpoint.load_torch_checkpoint(path, use_torch=False).epoch is None


def test_restricted_reader_strided_and_typed_tensors(tmp_path):
  torch = pytest.importorskip('torch')
  base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
  obj = {'t': base.t()[1:], 'slice': base[2:, 1:5], 'i': torch.tensor([1, -2], dtype=torch.int32),
         'b': torch.tensor([True, False]), 'h': torch.ones(3, dtype=torch.float16) / 3,
         'bf': torch.tensor([1.5, -2.0], dtype=torch.bfloat16), 'scalar': torch.tensor(3.0),
         'nested': [1, (2.5, 'x'), {'k': None}]}
  path = tmp_path / 'mixed.pt'
  torch.save(obj, path)
  ours = checkpoint.read_torch_zip(path)
  np.testing.assert_array_equal(ours['t'], base.t()[1:].numpy())
  np.testing.assert_array_equal(ours['slice'], base[2:, 1:5].numpy())
  assert ours['i'].dtype == np.int32 and ours['i'].tolist() == [1, -2]
  assert ours['b'].tolist() == [True, False]
  np.testing.assert_array_equal(ours['h'], obj['h'].numpy())
  np.testing.assert_array_equal(ours['bf'].astype(np.float32), [1.5, -2.0])
  assert ours['scalar'].shape == () and float(ours['scalar']) == 3.0
  assert ours['nested'] == [1, (2.5, 'x'), {'k': None}]


class _Evil:
  def __reduce__(self):
    return (print, ('pwned',))


def test_restricted_reader_refuses_code(tmp_path):
  path = tmp_path / 'evil.pt'
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('evil/data.pkl', pickle.dumps({'x': _Evil()}, protocol=2))
    z.writestr('evil/version', '3\n')
  with pytest.raises(pickle.UnpicklingError, match=r'refusing to load __builtin__\.print'):
    checkpoint.read_torch_zip(path)
  bad = tmp_path / 'not_zip.pt'
  bad.write_bytes(b'\x80\x02}q\x00.')
  with pytest.raises(ValueError, match='not a torch zip'):
    checkpoint.read_torch_zip(bad)


def test_checkpoint_field_errors(tmp_path):
  torch = pytest.importorskip('torch')
  path = tmp_path / 'wrong.pt'
  torch.save({'model_state_dict': [1, 2]}, path)
  with pytest.raises(ValueError, match=r'wrong.pt: field model_state_dict'):
    checkpoint.load_torch_checkpoint(path, use_torch=False)
  path2 = tmp_path / 'partial.pt'
  torch.save({'model_state_dict': {'fc1.weight': torch.zeros(37, 256)}}, path2)
  with pytest.raises(ValueError, match=r'(?s)partial.pt \[model_state_dict\].*missing \(81\)'):
    checkpoint.load_torch_checkpoint(path2)


def _hand_written_torch_zip(path, tensors):
  """Writes {name: float32/int64 array} in torch's zip layout with raw pickle opcodes,
  so the restricted reader is exercised even where torch is not installed."""
  import struct

  def text(s):
    b = s.encode()
    return b'X' + struct.pack('<I', len(b)) + b

  def int_(i):
    return b'J' + struct.pack('<i', i)

  def tup(items):
    return b'(' + b''.join(items) + b't'

  storage_names = {np.dtype(np.float32): 'FloatStorage', np.dtype(np.int64): 'LongStorage'}
  body = b'\x80\x02' + b'ccollections\nOrderedDict\n)R'
  records = {}
  for i, (name, arr) in enumerate(tensors.items()):
    arr = np.ascontiguousarray(arr)
    records[f'archive/data/{i}'] = arr.astype(arr.dtype.newbyteorder('<')).tobytes()
    stride = [s // arr.itemsize for s in arr.strides]
    storage = tup([text('storage'), f'ctorch\n{storage_names[arr.dtype]}\n'.encode(), text(str(i)),
                   text('cpu'), int_(arr.size)]) + b'Q'
    tensor = (b'ctorch._utils\n_rebuild_tensor_v2\n' +
              tup([storage, int_(0), tup([int_(n) for n in arr.shape]),
                   tup([int_(s) for s in stride]), b'\x89', b'ccollections\nOrderedDict\n)R']) +
              b'R')
    body += text(name) + tensor + b's'
  body += b'.'
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', body)
    z.writestr('archive/byteorder', 'little')
    for name, raw in records.items():
      z.writestr(name, raw)
    z.writestr('archive/version', '3\n')


def test_restricted_reader_without_torch(tmp_path, golden_state_dict):
  path = tmp_path / 'best_model_temp.pt'
  _hand_written_torch_zip(path, golden_state_dict)
  ckpt = checkpoint.load_torch_checkpoint(path, use_torch=False)
  for k, v in golden_state_dict.items():
    np.testing.assert_array_equal(ckpt.state_dict[k], v)
  small = tmp_path / 'small.pt'
  _hand_written_torch_zip(small, {'a': np.arange(6, dtype=np.int64).reshape(2, 3)})
  out = checkpoint.read_torch_zip(small)
  assert list(out) == ['a'] and out['a'].dtype == np.int64
  np.testing.assert_array_equal(out['a'], [[0, 1, 2], [3, 4, 5]])
  # A storage record cut short is reported with the file and record.
  with zipfile.ZipFile(small) as z:
    entries = {n: z.read(n) for n in z.namelist()}
  entries['archive/data/0'] = entries['archive/data/0'][:8]
  broken = tmp_path / 'broken.pt'
  with zipfile.ZipFile(broken, 'w') as z:
    for n, raw in entries.items():
      z.writestr(n, raw)
  with pytest.raises(ValueError,
                     match=r"broken.pt: field 'archive/data/0': storage archive/data/0 holds 1 el"):
    checkpoint.read_torch_zip(broken)


def test_nonfinite_adam_moments_refused_unless_allowed(tmp_path, golden_state_dict):
  path = _save_official_like(tmp_path, golden_state_dict)
  obj = torch_state.read_torch_state(path, use_torch=False)
  moment = obj['optimizer_state_dict']['state'][3]['exp_avg_sq']
  moment[:2] = np.nan
  obj['optimizer_state_dict']['param_groups'] = [{'lr': 1e-4}]
  import torch  # pylint: disable=g-import-not-at-top
  to_torch = lambda v: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
  torch.save({'epoch': 3, 'model_state_dict': {k: to_torch(v) for k, v in
                                               obj['model_state_dict'].items()},
              'optimizer_state_dict': {
                  'state': {i: {k: to_torch(v) for k, v in e.items()}
                            for i, e in obj['optimizer_state_dict']['state'].items()},
                  'param_groups': [{'lr': 1e-4, 'params': list(range(82))}]}},
             tmp_path / 'nan_adam.pt')
  with pytest.raises(ValueError, match=r"nan_adam\.pt: field 'optimizer_state_dict\.state\[3\]"
                     r"\.exp_avg_sq': 1 tensor\(s\) hold NaN or Inf values .*\(2 of "):
    checkpoint.load_torch_checkpoint(tmp_path / 'nan_adam.pt')
  ckpt = checkpoint.load_torch_checkpoint(tmp_path / 'nan_adam.pt', allow_nonfinite=True)
  moments = ckpt.adam_state()
  _, flax_path, _ = checkpoint.NAME_TABLE[3]
  node = moments.nu
  for key in flax_path:
    node = node[key]
  assert np.isnan(node).sum() == 2 and moments.count == 2
