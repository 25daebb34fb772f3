"""Rematerialisation and mixed precision of the three methods' transformer models.

`config.remat` must not change results (loss and gradients to 1e-6 on tiny
models); bfloat16 compute keeps float32 parameters and float32 outputs.

The models are the smallest with every layer type of their method (one layer per
transformer stack). Compilation dominates the run time: parameters are initialised as
one jitted program, and the float32 `remat='none'` gradient step, which both tests use,
is compiled once per model (`_float32_reference`; each model's cases run on one xdist
worker).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.models import vit as bb
from tapkit.train import precision
from tracks4d import task as t4d_task
from trajan3d import model as trajan_model

REMATS = ('none', 'block', 'dots_saveable')


def _trajan(remat='none', dtype=jnp.float32):
  model = trajan_model.build_model(
      '3dspa_nofeat', num_output_frames=6, num_latent_tokens=4, num_frequencies=2,
      latent_token_dim=8, track_token_dim=16, encoder_latent_dim=16, decoder_num_channels=136,
      num_heads=2, qkv_size=16, input_track_layers=1, input_track_mlp=16,
      tracks_to_latents_layers=1, tracks_to_latents_mlp=16, decompress_layers=1,
      decompress_mlp=16, readout_layers=1, readout_mlp=16, remat=remat, dtype=dtype)
  inputs = trajan_model.example_inputs(model, batch_size=2, num_tracks=5, num_frames=6,
                                       num_queries=3)
  inputs['support_tracks'] = jax.random.normal(jax.random.PRNGKey(3),
                                               inputs['support_tracks'].shape)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), inputs)['params']

  def loss(p):
    out = model.apply({'params': p}, inputs)
    return jnp.mean(out.tracks ** 2) + jnp.mean(out.visible_logits ** 2), out.tracks
  return params, loss


def _tracks4d(remat='none', dtype=jnp.float32):
  net = t4d_task.build_model({'width': 16, 'num_layers': 1, 'num_heads': 2, 'head_dim': 8,
                              'mlp_dim': 32, 'num_bases': 4, 'camera_kernel_size': 3},
                             dtype=dtype, remat=remat)
  rng = np.random.default_rng(0)
  tracks = np.concatenate([rng.uniform(-0.5, 0.5, (1, 7, 2, 8)), np.ones((1, 7, 1, 8))],
                          2).astype(np.float32)
  params = jax.jit(net.init)(jax.random.PRNGKey(0), tracks)['params']

  def loss(p):
    out = net.apply({'params': p}, tracks)
    return jnp.mean(out.points3d ** 2) + jnp.mean(out.translations ** 2), out.points3d
  return params, loss


def _vit(remat='none', dtype=jnp.float32):
  module = bb.VisionTransformer(bb.get_config('smoke'), remat=remat, dtype=dtype)
  images = jax.random.normal(jax.random.PRNGKey(1), (2, 56, 56, 3))
  params = jax.jit(module.init)(jax.random.PRNGKey(0), images)['params']

  def loss(p):
    tokens = module.apply({'params': p}, images)
    return jnp.mean(tokens[:, 5:] ** 2 * jnp.arange(tokens.shape[-1])), tokens
  return params, loss


MODELS = {'trajan3d': _trajan, 'tracks4d': _tracks4d, 'vit': _vit}


# Absolute gradient tolerance. The ViT's recomputed blocks fuse differently: one of the
# 32 entries of a [1, 1, 32] token gradient (values ~1e-2) moved by 1.1e-6 (float32
# rounding of the recomputation), the rest agree to 1e-6.
_GRAD_ATOL = {'trajan3d': 1e-6, 'tracks4d': 1e-6, 'vit': 5e-6}


# Each model's remat and bfloat16 cases share `_float32_reference`: one xdist worker each.
_NAMES = [pytest.param(name, marks=pytest.mark.xdist_group(f'precision_{name}'))
          for name in sorted(MODELS)]


@functools.cache
def _float32_reference(name):
  """(params, (loss, output), gradients) of the float32 model without remat, compiled once."""
  params, loss = MODELS[name]('none', jnp.float32)
  return (params, *jax.jit(jax.value_and_grad(loss, has_aux=True))(params))


@pytest.mark.parametrize('name', _NAMES)
def test_remat_does_not_change_loss_or_gradients(name):
  build = MODELS[name]
  _, (ref_value, _), ref_grads = _float32_reference(name)
  results = {'none': (float(ref_value), jax.tree.map(np.asarray, ref_grads))}
  for remat in REMATS[1:]:
    params, loss = build(remat)
    (value, _), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    results[remat] = (float(value), jax.tree.map(np.asarray, grads))
  ref_value, ref_grads = results['none']
  assert any(np.abs(g).max() > 0 for g in jax.tree.leaves(ref_grads))
  for remat in REMATS[1:]:
    value, grads = results[remat]
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=_GRAD_ATOL[name])


@pytest.mark.parametrize('name', _NAMES)
def test_bfloat16_compute_keeps_float32_params_and_outputs(name):
  build = MODELS[name]
  params32, (v32, out32), _ = _float32_reference(name)
  params16, loss16 = build('block', jnp.bfloat16)
  # Same float32 parameters whatever the compute dtype.
  for a, b in zip(jax.tree.leaves(params32), jax.tree.leaves(params16)):
    assert a.dtype == b.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
  # Compiled as one program, as a training step is (op-by-op dispatch costs more CPU).
  (v16, out16), g16 = jax.jit(jax.value_and_grad(loss16, has_aux=True))(params32)
  assert out16.dtype == jnp.float32 and v16.dtype == jnp.float32
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g16))
  # bfloat16 matmuls (8-bit mantissa): outputs agree to about 1e-2 relative.
  scale = float(jnp.abs(out32).max())
  assert float(jnp.abs(out16 - out32).max()) < 0.05 * scale
  assert float(jnp.abs(out16 - out32).max()) > 0  # it really computed in bfloat16
  np.testing.assert_allclose(float(v16), float(v32), rtol=0.05)


def test_settings_are_validated():
  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict({'compute_dtype': 'float16', 'param_dtype': 'float32'})
  with pytest.raises(ValueError, match='compute_dtype'):
    precision.check(cfg)
  cfg = ml_collections.ConfigDict({'compute_dtype': 'bfloat16', 'param_dtype': 'bfloat16'})
  with pytest.raises(ValueError, match='param_dtype'):
    precision.check(cfg)
  with pytest.raises(ValueError, match='config.remat'):
    precision.remat_policy('dots_saveabel')
  assert precision.remat_policy('block') is jax.checkpoint_policies.nothing_saveable
