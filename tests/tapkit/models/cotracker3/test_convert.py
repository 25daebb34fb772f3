"""Official-format CoTracker3 checkpoints (.pth written with torch.save, .npz) -> our parameters."""

import importlib.util

import numpy as np
import pytest

from tapkit import io as tio
from tapkit.models.cotracker3 import convert
from tapkit.models.cotracker3 import model as model_lib


@pytest.fixture(scope='module')
def official_state(shared, require_reference):
  """The golden parameters in the official state_dict layout (offline model, with time_emb)."""
  folder = require_reference('CoTracker3 goldens', shared / 'golden' / 'cotracker3')
  spec = importlib.util.spec_from_file_location('ct3_make_params', folder / 'make_params.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.make_params(shared / 'data' / 'param_trees' / 'cotracker3_offline.json', 0,
                            folder / 'param_overrides.json')


def _flat(tree, prefix=()):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flat(value, prefix + (key,))
    else:
      yield prefix + (key,), value


def _assert_same_tree(a, b):
  fa, fb = dict(_flat(a)), dict(_flat(b))
  assert fa.keys() == fb.keys()
  for key in fa:
    np.testing.assert_array_equal(fa[key], fb[key])


def test_layout_changes(official_state):
  params = convert.params_from_state_dict(official_state)
  w = official_state['fnet.layer2.0.downsample.0.weight']  # [96, 64, 1, 1]
  np.testing.assert_array_equal(params['fnet']['layer2_0']['downsample']['kernel'],
                                w.transpose(2, 3, 1, 0))
  w = official_state['updateformer.space_point2virtual_blocks.1.cross_attn.to_kv.weight']
  np.testing.assert_array_equal(
      params['updateformer']['space_point2virtual_blocks_1']['cross_attn']['to_kv']['kernel'], w.T)
  np.testing.assert_array_equal(
      params['updateformer']['space_virtual2point_blocks_2']['norm_context']['scale'],
      official_state['updateformer.space_virtual2point_blocks.2.norm_context.weight'])
  np.testing.assert_array_equal(params['updateformer']['virual_tracks'],
                                official_state['updateformer.virual_tracks'])
  assert len(list(_flat(params))) == len(official_state) - 1  # time_emb is recomputed.


def test_pth_variants_load_and_reproduce_the_golden(tmp_path, official_state, golden,
                                                    require_reference):
  torch = pytest.importorskip('torch')
  tensors = {k: torch.from_numpy(np.array(v)) for k, v in official_state.items()}
  bare = tmp_path / 'scaled_offline.pth'
  torch.save(tensors, bare)
  wrapped = tmp_path / 'training.pth'
  torch.save({'model': {f'module.{k}': v for k, v in tensors.items()}, 'total_steps': 7}, wrapped)
  direct = convert.params_from_state_dict(official_state)
  from_bare = convert.load_checkpoint(bare)
  _assert_same_tree(from_bare, direct)
  _assert_same_tree(convert.load_checkpoint(wrapped), direct)
  np.savez(tmp_path / 'state.npz', **official_state)
  _assert_same_tree(convert.load_checkpoint(tmp_path / 'state.npz'), direct)

  path = require_reference('CoTracker3 reference', golden / 'cotracker3' /
                           'offline_intermediates.npz')
  with np.load(path) as g:
    out = model_lib.offline_forward(from_bare, g['video'].astype(np.float32), g['queries'],
                                    iters=int(g['iters']))
    np.testing.assert_allclose(out['coords'], g['coords'], atol=2e-3, rtol=0)
    np.testing.assert_allclose(out['vis'], g['vis'], atol=2e-4, rtol=0)
    np.testing.assert_allclose(out['conf'], g['conf'], atol=2e-4, rtol=0)


def test_online_time_emb_and_absent_time_emb(official_state):
  state = dict(official_state)
  state['time_emb'] = state['time_emb'][:, :16]  # An online checkpoint's buffer.
  convert.params_from_state_dict(state)
  del state['time_emb']
  convert.params_from_state_dict(state)


def test_errors_name_the_parameters(tmp_path, official_state):
  state = dict(official_state)
  del state['corr_mlp.fc1.bias']
  state['fnet.extra.weight'] = np.zeros(3, np.float32)
  state['fnet.conv3.weight'] = np.zeros((128, 256), np.float32)
  with pytest.raises(tio.BadFileError) as err:
    convert.params_from_state_dict(state, source='ckpt.pth')
  message = str(err.value)
  for part in ('ckpt.pth', 'missing 1: corr_mlp.fc1.bias', 'unexpected 1: fnet.extra.weight',
               'fnet.conv3.weight (128, 256) (expected (128, 256, 1, 1))'):
    assert part in message

  state = dict(official_state)
  state['corr_mlp.fc2.bias'] = state['corr_mlp.fc2.bias'].astype(np.int64)
  with pytest.raises(tio.BadFileError, match='floating point: corr_mlp.fc2.bias'):
    convert.params_from_state_dict(state)

  state = dict(official_state)
  bad = state['updateformer.flow_head.weight'].copy()
  bad[0, 3] = np.nan
  state['updateformer.flow_head.weight'] = bad
  with pytest.raises(tio.BadFileError, match='non-finite weights in updateformer.flow_head.weight'):
    convert.params_from_state_dict(state)

  state = dict(official_state)
  state['time_emb'] = state['time_emb'] + 0.1
  with pytest.raises(tio.BadFileError, match="field 'time_emb'"):
    convert.params_from_state_dict(state)

  with pytest.raises(tio.BadFileError, match='expected a state dict'):
    convert.params_from_state_dict([1, 2])
  (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
  with pytest.raises(tio.BadFileError, match='junk.pth'):
    convert.load_checkpoint(tmp_path / 'junk.pth')
