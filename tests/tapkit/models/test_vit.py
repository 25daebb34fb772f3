"""tapkit.models.vit without torch: presets vs the transformers parameter trees, the bicubic
kernel, RoPE tables, forward-pass structure, and checkpoint file round trips (safetensors / npz).
"""

import functools
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.models import vit as bb
from tapkit.models.vit import convert, vit

JSONS = {'hf_vit.json': 'dino', 'hf_dinov2.json': 'dinov2', 'hf_dinov2_reg.json': 'dinov2_reg',
         'hf_dinov3.json': 'dinov3'}


def _expand_official(entry):
  """{name: shape} of a full-size model from the JSON's top_level + per_layer_template."""
  out = {e['name']: tuple(e['shape']) for e in entry['top_level']}
  for i in range(entry['num_layers']):
    for e in entry['per_layer_template']:
      out[e['name'].format(i=i)] = tuple(e['shape'])
  return out


def _our_transformers_shapes(cfg):
  """{transformers name: torch shape} as our converter maps our parameter shapes."""
  shapes = {p: tuple(s.shape) for p, s in convert._flatten(bb.param_shapes(cfg)).items()}
  return {name: convert._shape_to_theirs(shapes[path], kind)
          for name, (path, kind) in bb.transformers_table(cfg).items()}


@pytest.mark.parametrize('json_name', sorted(JSONS))
def test_full_size_presets_match_transformers_parameter_trees(repo_golden, json_name):
  data = json.loads((repo_golden / 'param_trees' / json_name).read_text())
  for preset, entry in data['official_sizes'].items():
    cfg = bb.get_config(preset, source='transformers')
    expected = _expand_official(entry)
    ours = _our_transformers_shapes(cfg)
    assert ours == expected, (preset, set(ours) ^ set(expected))
    n_params = sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(bb.param_shapes(cfg)))
    assert n_params == entry['num_parameters'], preset
    # The hub flavour has the same tree; only resize semantics / eps differ.
    assert _our_transformers_shapes(bb.get_config(preset)) == expected


def test_small_json_configs_match(repo_golden):
  """The small random models recorded in the JSONs map name-for-name onto our small configs."""
  for json_name in JSONS:
    data = json.loads((repo_golden / 'param_trees' / json_name).read_text())
    small = data['small_config']
    cfg = bb.config_from_transformers(_Namespace(small))
    expected = {e['name']: tuple(e['shape']) for e in data['state_dict']}
    assert _our_transformers_shapes(cfg) == expected, json_name
    assert sum(math.prod(s) for s in expected.values()) == data['small_num_parameters']


class _Namespace:
  """A transformers-config stand-in built from the JSON dict (attribute access)."""

  def __init__(self, d):
    self.__dict__.update(d)


def test_preset_semantics():
  v1 = bb.get_config('dino_vits16')
  assert (v1.interpolate_offset, v1.interpolate_antialias, v1.layer_norm_eps) == (0.1, False, 1e-6)
  v1_hf = bb.get_config('dino_vits16', source='transformers')
  assert (v1_hf.interpolate_offset, v1_hf.layer_norm_eps) == (0.0, 1e-12)
  reg = bb.get_config('dinov2_vitb14_reg')
  assert (reg.interpolate_offset, reg.interpolate_antialias) == (0.0, True)
  assert reg.num_register_tokens == 4
  assert reg.pos_embed_grid == 37 and reg.num_prefix_tokens == 5
  v2 = bb.get_config('dinov2_vitb14')
  assert (v2.interpolate_offset, v2.interpolate_antialias) == (0.1, False)
  assert bb.get_config('dinov2_vitb14', source='transformers').interpolate_offset == 0.0
  v3 = bb.get_config('dinov3_vitb16')
  assert (v3.pos_embed, v3.key_bias, v3.layer_norm_eps) == ('rope', False, 1e-5)
  assert v3.num_register_tokens == 4
  assert bb.get_config('dinov2_vitl14', num_layers=3).num_layers == 3
  with pytest.raises(KeyError, match='unknown backbone preset'):
    bb.get_config('dinov2_vitz14')


# ------------------------------------------------------------------------------------------------
# Bicubic kernel: an independent float64 derivation of torch's formulas
# ------------------------------------------------------------------------------------------------

def _keys(x, a):
  x = abs(x)
  if x <= 1:
    return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
  if x < 2:
    return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
  return 0.0


def _reference_weights(n_in, n_out, inv_scale, antialias):
  w = np.zeros((n_out, n_in))
  for o in range(n_out):
    if not antialias:  # Keys a = -0.75 on 4 taps, indices clamped into the input
      src = (o + 0.5) * inv_scale - 0.5
      f = math.floor(src)
      for k in range(-1, 3):
        w[o, min(max(f + k, 0), n_in - 1)] += _keys(src - (f + k), -0.75)
    else:  # a = -0.5 filter stretched by the scale when shrinking, renormalised inside the input
      stretch = max(inv_scale, 1.0)
      center = (o + 0.5) * inv_scale
      taps = [(j, _keys((j + 0.5 - center) / stretch, -0.5)) for j in range(n_in)]
      total = sum(v for _, v in taps)
      for j, v in taps:
        w[o, j] = v / total
  return w


@pytest.mark.parametrize('n_in,size,scale_factor,antialias', [
    (37, 16, None, False), (37, 16, None, True), (14, 20, None, False), (14, 20, None, True),
    (37, None, 16.1 / 37, False), (14, None, 9.1 / 14, False), (4, 7, None, True),
    (5, None, 12.1 / 5, True), (37, 5, None, True)])
def test_bicubic_weights_match_formula(n_in, size, scale_factor, antialias):
  w = bb.bicubic_weights(n_in, size, scale_factor, antialias)
  n_out = size if size is not None else math.floor(n_in * scale_factor)
  inv = 1.0 / scale_factor if scale_factor is not None else n_in / n_out
  ref = _reference_weights(n_in, n_out, inv, antialias)
  assert w.shape == (n_out, n_in) and w.dtype == np.float32
  # torch computes source positions in float32 (ulp 4e-6 near 37): weights agree to ~1e-5.
  np.testing.assert_allclose(w, ref, atol=1e-5, rtol=0)
  np.testing.assert_allclose(w.sum(1), 1.0, atol=2e-6)


def test_bicubic_identity_cases():
  # Size mode to the same length is the identity (t = 0 gives taps [0, 1, 0, 0]) ...
  np.testing.assert_array_equal(bb.bicubic_weights(6, 6, None, False), np.eye(6))
  # ... the offset scale-factor mode is not (torch resamples with scale 6 / 6.1) ...
  w = bb.bicubic_weights(6, None, 6.1 / 6, False)
  assert w.shape == (6, 6) and np.abs(w - np.eye(6)).max() > 1e-3
  # ... except with antialias, where ATen skips axes whose length does not change.
  np.testing.assert_array_equal(bb.bicubic_weights(6, None, 6.1 / 6, True), np.eye(6))
  x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 5, 3)), jnp.float32)
  np.testing.assert_array_equal(bb.resize_bicubic_hwc(x, size=(5, 5)), x)


def test_resize_is_separable_weights_product():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((7, 7, 4)).astype(np.float32)
  y = np.asarray(bb.resize_bicubic_hwc(jnp.asarray(x), size=(3, 11), antialias=True))
  wh, ww = bb.bicubic_weights(7, 3, None, True), bb.bicubic_weights(7, 11, None, True)
  ref = np.einsum('oh,pw,hwc->opc', wh.astype(np.float64), ww.astype(np.float64), x)
  assert y.shape == (3, 11, 4)
  np.testing.assert_allclose(y, ref, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# RoPE
# ------------------------------------------------------------------------------------------------

def test_rope_tables_formula():
  h, w, d, theta = 3, 5, 16, 100.0
  cos, sin = bb.rope_tables((h, w), d, theta)
  assert cos.shape == sin.shape == (h * w, d)
  r, c = 1, 4
  y, x = 2 * (r + 0.5) / h - 1, 2 * (c + 0.5) / w - 1
  omega = theta ** (-4.0 * np.arange(d // 4) / d)
  angles = np.concatenate([2 * np.pi * y * omega, 2 * np.pi * x * omega])
  angles = np.concatenate([angles, angles])
  np.testing.assert_allclose(cos[r * w + c], np.cos(angles), atol=2e-6)
  np.testing.assert_allclose(sin[r * w + c], np.sin(angles), atol=2e-6)


# ------------------------------------------------------------------------------------------------
# Forward pass
# ------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _model(name, **overrides):
  """(module whose `apply` is jitted, random params); cached: tests must not mutate the params.

  Parameters are drawn with numpy from the shapes (no compiled init): LayerNorm scales and
  LayerScale around 1, other weights scaled to keep activations O(1).
  """
  cfg = bb.get_config(name, **overrides)
  rng = np.random.default_rng(3)

  def draw(path, shape):
    leaf = path[-1].key
    if leaf in ('scale', 'gamma'):
      return 1.0 + 0.2 * rng.standard_normal(shape.shape)
    if leaf == 'kernel':
      return rng.standard_normal(shape.shape) / math.sqrt(math.prod(shape.shape[:-1]))
    return 0.3 * rng.standard_normal(shape.shape)

  params = jax.tree_util.tree_map_with_path(
      lambda p, s: jnp.asarray(draw(p, s), jnp.float32), bb.param_shapes(cfg))
  return _Jitted(bb.VisionTransformer(cfg)), params


class _Jitted:
  """Wraps a module so that `apply` runs as one compiled program (op-by-op is slow on CPU)."""

  def __init__(self, module):
    self.module, self.config = module, module.config
    self._apply = jax.jit(module.apply, static_argnames=('return_layers', 'norm_layers',
                                                         'rope_augment'))

  def apply(self, variables, images, **kwargs):
    return self._apply(variables, images, **kwargs)

  def __getattr__(self, name):
    return getattr(self.module, name)


@pytest.mark.parametrize('name', ['smoke', 'smoke_dino', 'smoke_dinov3'])
def test_forward_shapes_layers_and_feature_maps(name):
  module, params = _model(name)
  cfg = module.config
  images = jax.random.normal(jax.random.PRNGKey(0), (2, 50, 75, 3))  # not multiples of p
  h, w = 50 // cfg.patch_size, 75 // cfg.patch_size
  tokens = module.apply({'params': params}, images)
  assert tokens.shape == (2, cfg.num_prefix_tokens + h * w, cfg.hidden_size)
  out = module.apply({'params': params}, images, return_layers=(0, -1))
  assert sorted(out.layers) == [0, cfg.num_layers - 1] and out.grid == (h, w)
  np.testing.assert_allclose(out.tokens, tokens, atol=1e-6)
  # The last block's raw output, normed with the final LayerNorm, is the final output.
  normed = module.apply({'params': params}, images, return_layers=(-1,), norm_layers=True)
  np.testing.assert_allclose(normed.layers[cfg.num_layers - 1], tokens, atol=1e-6)
  assert np.abs(np.asarray(out.layers[cfg.num_layers - 1]) - np.asarray(tokens)).max() > 1e-2
  fmap = out.feature_map()
  assert fmap.shape == (2, h, w, cfg.hidden_size)
  np.testing.assert_array_equal(fmap[:, 1, 2], out.tokens[:, cfg.num_prefix_tokens + 1 * w + 2])
  np.testing.assert_array_equal(out.cls(), out.tokens[:, 0])
  assert out.patch_tokens(0).shape == (2, h * w, cfg.hidden_size)
  # Remainder pixels are cropped like the torch convolution: extra columns change nothing.
  wider = jnp.concatenate([images, jnp.ones((2, 50, 3, 3))], axis=2)
  np.testing.assert_allclose(module.apply({'params': params}, wider), tokens, atol=1e-6)


def test_tokens_are_layernormed_and_jit_grad_work():
  module, _ = _model('smoke', num_layers=1)
  params = bb.init_params(module.config, jax.random.PRNGKey(0))
  images = jax.random.normal(jax.random.PRNGKey(1), (1, 56, 56, 3))
  fn = lambda p, x: module.apply({'params': p}, x)
  tokens = fn(params, images)
  # Fresh LayerNorm (scale 1, bias 0): zero mean, unit variance per token.
  np.testing.assert_allclose(np.asarray(tokens).mean(-1), 0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(tokens).var(-1), 1, atol=1e-3)
  loss = lambda p: jnp.sum(module.module.apply({'params': p}, images)[:, 5:] ** 2)
  grads = jax.jit(jax.grad(loss))(params)
  leaves = jax.tree_util.tree_leaves_with_path(grads)
  assert all(np.isfinite(np.asarray(g)).all() for _, g in leaves)
  named = {jax.tree_util.keystr(k): float(jnp.abs(g).sum()) for k, g in leaves}
  assert named["['pos_embed']"] > 0 and named["['block_0']['ls2']['gamma']"] > 0
  assert named["['mask_token']"] == 0  # unused without masks
  remat = _Jitted(bb.VisionTransformer(module.config, remat=True))
  np.testing.assert_allclose(remat.apply({'params': params}, images), tokens, atol=1e-6)


def test_position_embedding_resize_rules():
  """Skipped only when h·w = G² and H = W; the hub offset mode then differs from size mode."""
  images = jax.random.normal(jax.random.PRNGKey(2), (1, 56, 60, 3))  # 4×4 patches, H != W
  size_mode, params = _model('smoke', interpolate_antialias=False, num_layers=1)
  offset_mode = _Jitted(bb.VisionTransformer(size_mode.config.replace(interpolate_offset=0.1)))
  a = size_mode.apply({'params': params}, images)
  b = offset_mode.apply({'params': params}, images)
  square = images[:, :, :56]
  np.testing.assert_allclose(size_mode.apply({'params': params}, square),
                             offset_mode.apply({'params': params}, square), atol=0)
  # Size mode to the same grid is the identity, so 56×60 equals 56×56 with cropped columns.
  np.testing.assert_allclose(a, size_mode.apply({'params': params}, square), atol=1e-6)
  assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
  pe = params['pos_embed']
  resized = size_mode.interpolated_pos_embed(pe, (6, 3), 84, 42)
  ref = np.einsum('oh,pw,hwc->opc', bb.bicubic_weights(4, 6), bb.bicubic_weights(4, 3),
                  np.asarray(pe[0, 1:]).reshape(4, 4, -1))
  np.testing.assert_allclose(resized[0, 1:], ref.reshape(18, -1), atol=1e-6)
  np.testing.assert_array_equal(resized[0, 0], pe[0, 0])


def test_masks_and_input_errors():
  module, params = _model('smoke', num_layers=1)
  images = jax.random.normal(jax.random.PRNGKey(4), (2, 56, 56, 3))
  masks = jnp.zeros((2, 16), bool).at[:, 3].set(True)
  p2 = jax.tree_util.tree_map(lambda x: x, params)
  p2['mask_token'] = jnp.full_like(params['mask_token'], 0.5)
  masked = module.apply({'params': p2}, images, masks=masks)
  plain = module.apply({'params': p2}, images)
  assert np.abs(np.asarray(masked) - np.asarray(plain)).max() > 1e-3
  with pytest.raises(ValueError, match='no mask token'):
    m, p = _model('smoke_dino', num_layers=1)
    m.apply({'params': p}, images[:, :, :, :], masks=masks)
  with pytest.raises(ValueError, match=r'images must be \[B, H, W, 3\]'):
    module.apply({'params': params}, images[..., :2])
  with pytest.raises(ValueError, match='out of range'):
    module.apply({'params': params}, images, return_layers=(2,))


def test_rope_augmentation_is_opt_in():
  module, params = _model('smoke_dinov3', num_layers=1)
  images = jax.random.normal(jax.random.PRNGKey(5), (1, 64, 48, 3))
  base = module.apply({'params': params}, images)
  aug = module.apply({'params': params}, images, rope_augment=True,
                     rngs={'rope': jax.random.PRNGKey(0)})
  assert np.abs(np.asarray(aug) - np.asarray(base)).max() > 1e-4
  np.testing.assert_array_equal(module.apply({'params': params}, images), base)


def test_pad_to_patch_multiple():
  x = jnp.ones((1, 10, 13, 3))
  y = vit.pad_to_patch_multiple(x, 7)
  assert y.shape == (1, 14, 14, 3)
  assert float(y[0, :2].sum()) == 0 and float(y[0, 2, 0].sum()) == 3  # top gets ⌊4/2⌋ = 2 rows
  assert float(y[0, -2:].sum()) == 0 and float(y[0, 5, 13].sum()) == 0


# ------------------------------------------------------------------------------------------------
# Files without torch
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['smoke', 'smoke_dino', 'smoke_dinov3'])
@pytest.mark.parametrize('layout', ['transformers', 'hub'])
def test_save_load_round_trip(tmp_path, name, layout):
  module, params = _model(name)
  path = tmp_path / f'{name}_{layout}.safetensors'
  bb.save_checkpoint(path, params, module.config, layout=layout)
  module2, params2 = bb.load_checkpoint(path, arch=module.config)
  assert module2.config == module.config
  assert bb.load_checkpoint(path)[0].config.name == name  # preset inferred from names and shapes
  for (k, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(params),
                            jax.tree_util.tree_leaves_with_path(params2)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(k))
  # npz with transformers names, preset inferred from names and shapes.
  npz = tmp_path / 'w.npz'
  np.savez(npz, **bb.export_transformers_state_dict(params, module.config))
  module3, params3 = bb.load_checkpoint(npz)
  assert module3.config.name == name
  np.testing.assert_array_equal(params3['cls_token'], params['cls_token'])


def test_hub_export_names_and_dinov3_bias_mask():
  module, params = _model('smoke_dinov3')
  cfg = module.config
  hub = bb.export_hub_state_dict(params, cfg)
  d = cfg.hidden_size
  assert hub['blocks.0.attn.qkv.weight'].shape == (3 * d, d)
  np.testing.assert_array_equal(hub['blocks.0.attn.qkv.weight'][:d],
                                np.asarray(params['block_0']['attn']['q_proj']['kernel']).T)
  np.testing.assert_array_equal(hub['blocks.1.attn.qkv.bias'][d:2 * d], 0)
  np.testing.assert_array_equal(hub['blocks.1.attn.qkv.bias_mask'],
                                np.r_[np.ones(d), np.zeros(d), np.ones(d)])
  assert hub['storage_tokens'].shape == (1, 4, d) and hub['mask_token'].shape == (1, d)
  np.testing.assert_allclose(hub['rope_embed.periods'], 100.0 ** (np.arange(4) / 4), rtol=1e-6)
  # A masked, non-zero k bias is ignored like the official forward; an unmasked one is an error.
  hub['blocks.0.attn.qkv.bias'][d:2 * d] = 3.0
  back = bb.params_from_hub_state_dict(hub, cfg)
  np.testing.assert_array_equal(back['block_0']['attn']['q_proj']['bias'],
                                params['block_0']['attn']['q_proj']['bias'])
  del hub['blocks.0.attn.qkv.bias_mask']
  with pytest.raises(bb.CheckpointError, match='non-zero k bias'):
    bb.params_from_hub_state_dict(hub, cfg, where='x.pth')


def test_errors_name_file_and_parameters(tmp_path):
  module, params = _model('smoke')
  sd = bb.export_transformers_state_dict(params, module.config)
  del sd['encoder.layer.1.norm2.bias']
  sd['encoder.layer.0.mlp.fc1.weight'] = sd['encoder.layer.0.mlp.fc1.weight'][:, :5]
  sd['encoder.layer.0.extra.weight'] = np.zeros(3, np.float32)
  path = tmp_path / 'broken.safetensors'
  from safetensors.numpy import save_file
  save_file(sd, str(path))
  with pytest.raises(bb.CheckpointError) as e:
    bb.load_checkpoint(path, arch='smoke', source='transformers')
  msg = str(e.value)
  assert 'broken.safetensors' in msg and 'encoder.layer.1.norm2.bias' in msg
  assert 'encoder.layer.0.mlp.fc1.weight: (128, 5) (expected (128, 32))' in msg
  assert 'unexpected 1: encoder.layer.0.extra.weight' in msg
  with pytest.raises(bb.CheckpointError, match='unknown checkpoint format'):
    (tmp_path / 'w.pkl').write_bytes(b'x')
    bb.load_checkpoint(tmp_path / 'w.pkl', arch='smoke')


def test_legacy_transformers_names_are_renamed():
  module, params = _model('smoke_dino')
  sd = bb.export_transformers_state_dict(params, module.config)
  legacy = {}
  for k, v in sd.items():  # the pre-5.0 Hub layout of ViTModel checkpoints
    k = (k.replace('attention.q_proj', 'attention.attention.query')
         .replace('attention.k_proj', 'attention.attention.key')
         .replace('attention.v_proj', 'attention.attention.value')
         .replace('attention.o_proj', 'attention.output.dense')
         .replace('mlp.fc1', 'intermediate.dense')
         .replace('mlp.fc2', 'output.dense').replace('layers.', 'encoder.layer.'))
    legacy['vit.' + k] = v
  legacy['vit.pooler.dense.weight'] = np.zeros((32, 32), np.float32)
  back = bb.params_from_transformers_state_dict(legacy, module.config)
  np.testing.assert_array_equal(back['block_1']['mlp']['fc2']['kernel'],
                                params['block_1']['mlp']['fc2']['kernel'])


def test_pth_without_torch_is_read_or_a_clear_error(tmp_path, monkeypatch):
  """Without torch, `.pth` files go through the restricted pure-Python reader."""
  path = tmp_path / 'w.pth'
  path.write_bytes(b'not a zip')
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` now raises ImportError
  with pytest.raises(bb.CheckpointError, match=r'w\.pth: not a torch zip checkpoint'):
    bb.load_checkpoint(path, arch='smoke')
