"""Video Depth Anything forward, head and motion modules against the original code's goldens."""

import json

import jax
import numpy as np
import pytest

from tapkit.io import BadFileError
from tapkit.models.depth import convert, dpt, motion, vda

ATOL = 1e-4  # the goldens README: float32 reimplementation vs the original float32 code


@pytest.fixture(scope='module')
def vits_params(vda_state_dict):
  return convert.params_from_vda_state_dict(vda_state_dict('vits'), vda.get_vda_config('vits'))


def test_expected_names_match_the_official_tree(shared):
  for encoder in ('vits', 'vitb', 'vitl'):
    tree = json.loads((shared / 'data' / 'param_trees' / f'vda_{encoder}.json').read_text())
    official = {e['name']: tuple(e['shape']) for e in tree['state_dict']}
    assert convert.expected_shapes(vda.get_vda_config(encoder)) == official


@pytest.mark.parametrize('name,index,channels', [
    ('motion_module_vits_mm0_b1t4_5x7', 0, 192), ('motion_module_vits_mm3_b2t6_4x6', 3, 64)])
def test_motion_module(vda_case, vits_params, name, index, channels):
  case = vda_case(name)
  module = motion.TemporalModule(channels)
  x = np.transpose(case['x'], (0, 2, 3, 4, 1))  # [B, C, T, h, w] -> [B, T, h, w, C]
  y = module.apply({'params': vits_params['head'][f'motion_modules_{index}']}, x)
  np.testing.assert_allclose(np.transpose(np.asarray(y), (0, 4, 1, 2, 3)), case['y'], rtol=0,
                             atol=ATOL)


def test_head(vda_case, vits_params):
  case = vda_case('head_vits_b1t4_5x7')
  head = dpt.DPTHead(64, (48, 96, 192, 384), temporal=True)
  out = head.apply({'params': vits_params['head']}, [case[f'feat{i}'] for i in range(4)], (5, 7),
                   num_frames=4)
  assert out.shape == (4, 70, 98, 1)
  np.testing.assert_allclose(np.asarray(out)[..., 0], case['out'][:, 0], rtol=0, atol=ATOL)


def _forward(params, config, x, **kwargs):
  module = vda.VideoDepthAnything(config)
  return module.apply({'params': params}, np.transpose(x, (0, 1, 3, 4, 2)), **kwargs)


def test_forward_with_intermediates(vda_case, vits_params):
  case = vda_case('forward_vits_t4_70x98')
  module = vda.VideoDepthAnything(vda.get_vda_config('vits'))
  is_mm = lambda mdl, _: isinstance(mdl, motion.TemporalModule)
  out, state = module.apply({'params': vits_params}, np.transpose(case['x'], (0, 1, 3, 4, 2)),
                            return_intermediates=True, capture_intermediates=is_mm)
  for i in range(4):
    np.testing.assert_allclose(np.asarray(out['tokens'][i]), case[f'feat{i}'], rtol=0, atol=ATOL)
  mms = state['intermediates']['head']
  for i in range(4):
    got = np.asarray(mms[f'motion_modules_{i}']['__call__'][0])  # [B, T, h, w, C]
    np.testing.assert_allclose(np.transpose(got, (0, 4, 1, 2, 3)), case[f'mm{i}_out'], rtol=0,
                               atol=ATOL)
  np.testing.assert_allclose(np.asarray(out['head'])[..., 0], case['head_out'][:, 0], rtol=0,
                             atol=ATOL)
  np.testing.assert_allclose(np.asarray(out['depth']), case['depth'], rtol=0, atol=ATOL)
  assert float(np.abs(case['depth']).max()) > 0.5  # the comparison is not vacuous


@pytest.mark.parametrize('name', ['forward_vits_b2t3_56x84', 'forward_vits_t8_112x140',
                                  'forward_vits_t2_518x518'])
def test_forward_vits(vda_case, vits_params, name):
  case = vda_case(name)
  depth = _forward(vits_params, vda.get_vda_config('vits'), case['x'])
  np.testing.assert_allclose(np.asarray(depth), case['depth'], rtol=0, atol=ATOL)


def test_forward_vitb(vda_case, vda_state_dict):
  config = vda.get_vda_config('vitb')
  params = convert.params_from_vda_state_dict(vda_state_dict('vitb'), config)
  case = vda_case('forward_vitb_t4_70x98')
  out = _forward(params, config, case['x'], return_intermediates=True)
  np.testing.assert_allclose(np.asarray(out['head'])[..., 0], case['head_out'][:, 0], rtol=0,
                             atol=ATOL)
  np.testing.assert_allclose(np.asarray(out['depth']), case['depth'], rtol=0, atol=ATOL)


def test_vitl_tree_converts_and_exports(vda_state_dict):
  config = vda.get_vda_config('vitl')
  sd = vda_state_dict('vitl')
  params = convert.params_from_vda_state_dict(sd, config)
  shapes = jax.eval_shape(lambda: vda.init_vda_params(config))
  assert jax.tree.map(lambda a: a.shape, params) == jax.tree.map(lambda a: a.shape, shapes)
  back = convert.export_vda_state_dict(params, config)
  assert set(back) == set(sd)
  for name in ('pretrained.blocks.23.attn.qkv.weight', 'head.resize_layers.0.weight',
               'head.motion_modules.1.temporal_transformer.transformer_blocks.0.'
               'attention_blocks.1.pos_encoder.pe', 'head.scratch.layer4_rn.weight'):
    np.testing.assert_array_equal(back[name], sd[name])


def _save(tmp_path, sd, name='video_depth_anything_vits.pth'):
  import torch  # pylint: disable=g-import-not-at-top
  path = tmp_path / name
  torch.save({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, path)
  return path


def test_pth_checkpoint_reproduces_forward(tmp_path, vda_case, vda_state_dict):
  pytest.importorskip('torch')
  path = _save(tmp_path, vda_state_dict('vits'))
  module, params = convert.load_vda_checkpoint(path)  # encoder inferred from the width
  assert module.config.name == 'vits' and not module.config.metric
  case = vda_case('forward_vits_b2t3_56x84')
  depth = module.apply({'params': params}, np.transpose(case['x'], (0, 1, 3, 4, 2)))
  np.testing.assert_allclose(np.asarray(depth), case['depth'], rtol=0, atol=ATOL)


def test_bad_checkpoints_are_listed(tmp_path, vda_state_dict):
  pytest.importorskip('torch')
  sd = dict(vda_state_dict('vits'))
  del sd['head.scratch.layer1_rn.weight']
  sd['head.extra.weight'] = np.zeros(3, np.float32)
  sd['head.projects.0.bias'] = np.zeros(7, np.float32)
  sd['head.projects.1.bias'] = np.zeros(96, np.int64)
  nan = sd['head.projects.2.bias'].copy()
  nan[3] = np.nan
  sd['head.projects.2.bias'] = nan
  path = _save(tmp_path, sd)
  with pytest.raises(BadFileError) as err:
    convert.load_vda_checkpoint(path, encoder='vits')
  msg = str(err.value)
  for part in ('missing 1: head.scratch.layer1_rn.weight', 'unexpected 1: head.extra.weight',
               'head.projects.0.bias (7,) (expected (64,))'.replace('64', '48'),
               'not floating point 1: head.projects.1.bias', 'not finite 1: head.projects.2.bias',
               str(path)):
    assert part in msg, (part, msg)
  import torch  # pylint: disable=g-import-not-at-top
  torch.save([1, 2], tmp_path / 'list.pth')
  with pytest.raises(BadFileError, match='expected a state dict'):
    convert.load_vda_checkpoint(tmp_path / 'list.pth')


def test_bfloat16_params_keep_the_last_convs_float32(vits_params):
  cast = vda.cast_params(vits_params, jax.numpy.bfloat16)
  assert cast['head']['output_conv2_2']['kernel'].dtype == np.float32
  assert cast['head']['projects_0']['kernel'].dtype == jax.numpy.bfloat16
  assert cast['pretrained']['block_0']['attn']['q_proj']['kernel'].dtype == jax.numpy.bfloat16


def test_input_checks(vits_params):
  module = vda.VideoDepthAnything(vda.get_vda_config('vits'))
  with pytest.raises(ValueError, match='multiple of 14'):
    module.apply({'params': vits_params}, np.zeros((1, 2, 28, 30, 3), np.float32))
  with pytest.raises(ValueError, match='exceed 32'):
    module.apply({'params': vits_params}, np.zeros((1, 33, 28, 28, 3), np.float32))
