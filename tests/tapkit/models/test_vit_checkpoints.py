"""Parity with transformers (random small models, no download) and torch checkpoint files.

For each family our tokens must equal `last_hidden_state` (and block outputs `hidden_states[i + 1]`)
to 1e-4 relative at the native size and at non-square sizes (position-embedding resize / RoPE on a
non-square grid); measured agreement is ~1e-6 (float32 rounding).
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
F = torch.nn.functional

from tapkit.models import vit as bb  # pylint: disable=g-import-not-at-top

RTOL = 1e-4

FAMILIES = {
    'vit': (lambda: transformers.ViTModel(transformers.ViTConfig(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=192,
        image_size=64, patch_size=16, layer_norm_eps=1e-6), add_pooling_layer=False),
            [(64, 64), (48, 80), (50, 70)]),
    'dinov2': (lambda: transformers.Dinov2Model(transformers.Dinov2Config(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=3, image_size=56, patch_size=14)),
               [(56, 56), (42, 70), (98, 98)]),
    'dinov2_reg': (lambda: transformers.Dinov2WithRegistersModel(
        transformers.Dinov2WithRegistersConfig(hidden_size=48, num_hidden_layers=2,
                                               num_attention_heads=3, image_size=56, patch_size=14,
                                               num_register_tokens=4)),
                   [(56, 56), (42, 70), (28, 28)]),
    'dinov3': (lambda: transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=192,
        image_size=64, patch_size=16, num_register_tokens=4)),
               [(64, 64), (48, 80), (33, 70)]),
    'dinov3_gated': (lambda: transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96,
        image_size=64, patch_size=16, num_register_tokens=2, use_gated_mlp=True,
        hidden_act='silu')), [(64, 64), (48, 80)]),
    'dinov3_noreg': (lambda: transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=16, num_register_tokens=0, key_bias=True)), [(48, 32)]),
}


def _randomized(factory, seed=0):
  """A model with random, non-trivial weights (LayerNorm/LayerScale away from 1/0, biases set)."""
  torch.manual_seed(seed)
  model = factory()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 1:
        p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith(('weight', 'lambda1')) else 0.0))
      elif p.ndim == 2:  # linear weights: unit-variance outputs
        p.copy_(torch.randn_like(p) * p.shape[-1] ** -0.5)
      else:
        p.copy_(torch.randn_like(p) * 0.5)
  return model.eval()


def _run_torch(model, x_nhwc, **kwargs):
  x = torch.from_numpy(np.asarray(x_nhwc)).permute(0, 3, 1, 2)
  with torch.no_grad():
    if isinstance(model, transformers.ViTModel):
      kwargs['interpolate_pos_encoding'] = True
    return model(x, output_hidden_states=True, **kwargs)


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_tokens_and_layers_match_transformers(family):
  factory, sizes = FAMILIES[family]
  hf = _randomized(factory)
  module, params = bb.from_transformers(hf)
  apply = jax.jit(module.apply, static_argnames=('return_layers',))
  layers = tuple(range(module.config.num_layers))
  for h, w in sizes:
    x = np.random.default_rng(h * w).standard_normal((2, h, w, 3)).astype(np.float32)
    ref = _run_torch(hf, x)
    out = apply({'params': params}, jnp.asarray(x), return_layers=layers)
    assert out.tokens.shape == tuple(ref.last_hidden_state.shape), (family, h, w)
    assert _rel(out.tokens, ref.last_hidden_state.numpy()) < RTOL, (family, h, w)
    for i in layers:
      assert _rel(out.layers[i], ref.hidden_states[i + 1].numpy()) < RTOL, (family, h, w, i)
    fmap = out.feature_map()
    gh, gw = h // module.config.patch_size, w // module.config.patch_size
    assert fmap.shape == (2, gh, gw, module.config.hidden_size)


def test_task_wrappers_and_pooler_are_accepted():
  """ViTModel's pooler and a task model around the backbone convert to the same backbone."""
  config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, image_size=32, patch_size=16)
  torch.manual_seed(0)
  classifier = transformers.ViTForImageClassification(config).eval()
  module, params = bb.from_transformers(classifier)
  assert module.config.layer_norm_eps == 1e-12  # DINO's transformers configs: taken from config
  pooled = transformers.ViTModel(config).eval()  # add_pooling_layer=True
  pooled.load_state_dict(classifier.vit.state_dict(), strict=False)
  _, params2 = bb.from_transformers(pooled)
  x = np.random.default_rng(0).standard_normal((1, 48, 32, 3)).astype(np.float32)
  ref = _run_torch(classifier.vit, x).last_hidden_state.numpy()
  assert _rel(module.apply({'params': params}, jnp.asarray(x)), ref) < RTOL
  assert _rel(module.apply({'params': params2}, jnp.asarray(x)), ref) < RTOL
  with pytest.raises(ValueError, match='is not one of'):
    bb.from_transformers(torch.nn.Linear(2, 2))


def test_masks_match_transformers_bool_masked_pos():
  hf = _randomized(FAMILIES['dinov2_reg'][0])
  with torch.no_grad():
    hf.embeddings.mask_token.copy_(torch.randn_like(hf.embeddings.mask_token))
  module, params = bb.from_transformers(hf)
  x = np.random.default_rng(0).standard_normal((2, 42, 70, 3)).astype(np.float32)
  masks = np.zeros((2, 15), bool)
  masks[0, [1, 7]] = True
  masks[1, 14] = True
  ref = _run_torch(hf, x, bool_masked_pos=torch.from_numpy(masks)).last_hidden_state.numpy()
  ours = module.apply({'params': params}, jnp.asarray(x), masks=jnp.asarray(masks))
  assert _rel(ours, ref) < RTOL


@pytest.mark.parametrize('kwargs', [
    dict(size=(16, 16), antialias=False), dict(size=(16, 16), antialias=True),
    dict(size=(12, 20), antialias=True), dict(size=(40, 45), antialias=False),
    dict(size=(40, 45), antialias=True),
    dict(scale_factor=(16.1 / 37, 16.1 / 37), antialias=False),
    dict(scale_factor=(12.1 / 37, 20.1 / 37), antialias=False),
    dict(scale_factor=(37.1 / 37, 38.1 / 37), antialias=False),
    dict(scale_factor=(37.1 / 37, 38.1 / 37), antialias=True)])
def test_bicubic_resize_matches_torch_interpolate(kwargs):
  x = np.random.default_rng(0).standard_normal((37, 37, 8)).astype(np.float32)
  ref = F.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], mode='bicubic',
                      align_corners=False, **kwargs)[0].permute(1, 2, 0).numpy()
  ours = np.asarray(bb.resize_bicubic_hwc(jnp.asarray(x), **kwargs))
  assert ours.shape == ref.shape
  np.testing.assert_allclose(ours, ref, atol=2e-5, rtol=0)  # float32 rounding of ~3-sized values


@pytest.mark.parametrize('family', ['vit', 'dinov2_reg', 'dinov3', 'dinov3_gated', 'dinov3_noreg'])
def test_export_round_trip_into_transformers(family):
  factory, sizes = FAMILIES[family]
  hf = _randomized(factory, seed=1)
  module, params = bb.from_transformers(hf)
  fresh = _randomized(factory, seed=2)
  sd = bb.export_transformers_state_dict(params, module.config)
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
  for k, v in hf.state_dict().items():
    if k in sd:
      np.testing.assert_array_equal(fresh.state_dict()[k].numpy(), v.numpy(), err_msg=k)
  h, w = sizes[-1]
  x = np.random.default_rng(3).standard_normal((1, h, w, 3)).astype(np.float32)
  a = _run_torch(hf, x).last_hidden_state.numpy()
  b = _run_torch(fresh, x).last_hidden_state.numpy()
  np.testing.assert_array_equal(a, b)


def _hub_state_dict_by_hand(hf_sd, family, d):
  """The official hub layout of a transformers state dict, written out in the test."""
  layer = {'vit': 'layers.', 'dinov2': 'encoder.layer.', 'dinov3': 'model.layer.'}[family]
  out = {'cls_token': hf_sd['embeddings.cls_token']}
  if family == 'dinov3':
    out['storage_tokens'] = hf_sd['embeddings.register_tokens']
    out['mask_token'] = hf_sd['embeddings.mask_token'][0]
    out['patch_embed.proj.weight'] = hf_sd['embeddings.patch_embeddings.weight']
    out['patch_embed.proj.bias'] = hf_sd['embeddings.patch_embeddings.bias']
    out['rope_embed.periods'] = torch.tensor(100.0) ** (torch.arange(4.0) / 4.0)
    out['norm.weight'], out['norm.bias'] = hf_sd['norm.weight'], hf_sd['norm.bias']
  else:
    out['pos_embed'] = hf_sd['embeddings.position_embeddings']
    if family == 'dinov2':
      out['mask_token'] = hf_sd['embeddings.mask_token']
      out['register_tokens'] = hf_sd['embeddings.register_tokens']
    out['patch_embed.proj.weight'] = hf_sd['embeddings.patch_embeddings.projection.weight']
    out['patch_embed.proj.bias'] = hf_sd['embeddings.patch_embeddings.projection.bias']
    out['norm.weight'], out['norm.bias'] = hf_sd['layernorm.weight'], hf_sd['layernorm.bias']
  for i in range(2):
    p = f'{layer}{i}.'
    n1, n2 = ('layernorm_before', 'layernorm_after') if family == 'vit' else ('norm1', 'norm2')
    for ours, theirs in (('norm1', n1), ('norm2', n2)):
      out[f'blocks.{i}.{ours}.weight'] = hf_sd[f'{p}{theirs}.weight']
      out[f'blocks.{i}.{ours}.bias'] = hf_sd[f'{p}{theirs}.bias']
    out[f'blocks.{i}.attn.qkv.weight'] = torch.cat(
        [hf_sd[f'{p}attention.{c}_proj.weight'] for c in 'qkv'])
    k_bias = (hf_sd[f'{p}attention.k_proj.bias'] if family != 'dinov3'
              else torch.full((d,), 7.0))  # garbage that the official bias_mask removes
    out[f'blocks.{i}.attn.qkv.bias'] = torch.cat(
        [hf_sd[f'{p}attention.q_proj.bias'], k_bias, hf_sd[f'{p}attention.v_proj.bias']])
    if family == 'dinov3':
      out[f'blocks.{i}.attn.qkv.bias_mask'] = torch.cat(
          [torch.ones(d), torch.zeros(d), torch.ones(d)])
    out[f'blocks.{i}.attn.proj.weight'] = hf_sd[f'{p}attention.o_proj.weight']
    out[f'blocks.{i}.attn.proj.bias'] = hf_sd[f'{p}attention.o_proj.bias']
    if family != 'vit':
      out[f'blocks.{i}.ls1.gamma'] = hf_sd[f'{p}layer_scale1.lambda1']
      out[f'blocks.{i}.ls2.gamma'] = hf_sd[f'{p}layer_scale2.lambda1']
    fc1, fc2 = ('up_proj', 'down_proj') if family == 'dinov3' else ('fc1', 'fc2')
    for ours, theirs in (('fc1', fc1), ('fc2', fc2)):
      out[f'blocks.{i}.mlp.{ours}.weight'] = hf_sd[f'{p}mlp.{theirs}.weight']
      out[f'blocks.{i}.mlp.{ours}.bias'] = hf_sd[f'{p}mlp.{theirs}.bias']
  return out


@pytest.mark.parametrize('family,hf_family', [('vit', 'vit'), ('dinov2_reg', 'dinov2'),
                                              ('dinov3', 'dinov3')])
def test_official_pth_load_and_hub_export(tmp_path, family, hf_family):
  factory, sizes = FAMILIES[family]
  hf = _randomized(factory, seed=4)
  ref_module, ref_params = bb.from_transformers(hf)
  cfg = ref_module.config
  hub = _hub_state_dict_by_hand(hf.state_dict(), hf_family, cfg.hidden_size)
  path = tmp_path / 'official_pretrain.pth'
  if family == 'vit':  # DINO training-checkpoint style: teacher dict, backbone prefix, head weights
    wrapped = {'backbone.' + k: v for k, v in hub.items()}
    wrapped['head.last_layer.weight'] = torch.zeros(5, 3)
    torch.save({'teacher': wrapped, 'epoch': torch.tensor(3)}, path)
  else:  # DDP-style prefix
    torch.save({'module.' + k: v for k, v in hub.items()}, path)
  module, params = bb.load_checkpoint(path, arch=cfg)
  with pytest.raises(bb.CheckpointError, match='no preset matches'):
    bb.load_checkpoint(path)  # tiny widths are no preset: the error asks for a config
  h, w = sizes[0]  # native size: no position-embedding resize, so hub == transformers semantics
  x = np.random.default_rng(5).standard_normal((2, h, w, 3)).astype(np.float32)
  assert _rel(module.apply({'params': params}, jnp.asarray(x)),
              _run_torch(hf, x).last_hidden_state.numpy()) < RTOL
  # Exporting to the hub layout gives back the file (DINOv3: a zero k bias under the mask).
  exported = bb.export_hub_state_dict(params, cfg)
  assert set(exported) == set(hub)
  for k, v in hub.items():
    v = v.numpy()
    if k.endswith('attn.qkv.bias') and family == 'dinov3':
      v = v * hub[k + '_mask'].numpy()
    np.testing.assert_allclose(exported[k], v, rtol=1e-7, atol=0, err_msg=k)


def test_pth_with_pickled_objects_is_refused(tmp_path):
  import argparse  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'training_checkpoint.pth'
  torch.save({'teacher': {'cls_token': torch.zeros(1, 1, 32)}, 'args': argparse.Namespace(lr=1)},
             path)
  with pytest.raises(bb.CheckpointError,
                     match=r'training_checkpoint\.pth: refusing to load argparse\.Namespace'):
    bb.load_checkpoint(path, arch='smoke')


def test_legacy_hub_safetensors_names(tmp_path):
  """Older Hub safetensors (pre-5.0 names) load through the same reader."""
  from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
  hf = _randomized(FAMILIES['dinov2'][0], seed=6)
  legacy = {}
  for k, v in hf.state_dict().items():
    for new, old in (('attention.q_proj', 'attention.attention.query'),
                     ('attention.k_proj', 'attention.attention.key'),
                     ('attention.v_proj', 'attention.attention.value'),
                     ('attention.o_proj', 'attention.output.dense')):
      k = k.replace(new, old)
    legacy[k] = v.contiguous()
  path = tmp_path / 'model.safetensors'
  save_file(legacy, str(path))
  module, params = bb.load_checkpoint(path, arch=bb.config_from_transformers(hf.config))
  x = np.random.default_rng(7).standard_normal((1, 42, 70, 3)).astype(np.float32)
  assert _rel(module.apply({'params': params}, jnp.asarray(x)),
              _run_torch(hf, x).last_hidden_state.numpy()) < RTOL


@pytest.mark.parametrize('json_name,cls_name', [
    ('hf_vit.json', 'ViTModel'), ('hf_dinov2.json', 'Dinov2Model'),
    ('hf_dinov2_reg.json', 'Dinov2WithRegistersModel'), ('hf_dinov3.json', 'DINOv3ViTModel')])
def test_full_size_meta_models_match_our_names(repo_golden, json_name, cls_name):
  """Full-size transformers models on the meta device (no memory, no download) vs our mapping."""
  data = json.loads((repo_golden / 'param_trees' / json_name).read_text())
  cls = getattr(transformers, cls_name)
  for preset, entry in data['official_sizes'].items():
    config_cls = cls.config_class
    config = config_cls(**entry['config_overrides'])
    with torch.device('meta'):
      model = cls(config, **data['constructor_kwargs'])
    theirs = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ours_cfg = bb.config_from_transformers(config)
    assert ours_cfg == bb.get_config(preset, source='transformers').replace(
        name=ours_cfg.name, layerscale_init=ours_cfg.layerscale_init,
        rope_rescale=ours_cfg.rope_rescale, layer_norm_eps=ours_cfg.layer_norm_eps)
    shapes = {p: tuple(s.shape) for p, s in bb.convert._flatten(bb.param_shapes(ours_cfg)).items()}
    ours = {n: bb.convert._shape_to_theirs(shapes[p], k)
            for n, (p, k) in bb.transformers_table(ours_cfg).items()}
    assert ours == theirs, (preset, set(ours) ^ set(theirs))
    assert sum(math.prod(s) for s in theirs.values()) == entry['num_parameters']


def test_pth_reads_the_same_without_torch(tmp_path, monkeypatch):
  """`.pth` files load through `tapkit.io.torch_state`: torch.load or the pure reader alike."""
  import sys  # pylint: disable=g-import-not-at-top
  hf = _randomized(FAMILIES['dinov2_reg'][0], seed=8)
  module, params = bb.from_transformers(hf)
  path = tmp_path / 'hub.pth'
  bb.save_checkpoint(path, params, module.config, layout='hub')
  _, with_torch = bb.load_checkpoint(path, arch=module.config)
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` now raises ImportError
  _, pure = bb.load_checkpoint(path, arch=module.config)
  for (k, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(with_torch),
                            jax.tree_util.tree_leaves_with_path(pure)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(k))
  for (k, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(params),
                            jax.tree_util.tree_leaves_with_path(pure)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(k))
