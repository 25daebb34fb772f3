"""Building blocks of trajan3d.attention against hand-computed numbers."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajan3d import attention


def test_sinusoid_scales_are_powers_of_two_thirds():
  s = attention.sinusoid_scales(32)
  assert s.dtype == np.float32 and s.shape == (32,)
  assert s[0] == 1.0 and s[3] == 2.0 and s[6] == 4.0
  np.testing.assert_allclose(s[31], 2 ** (31 / 3), rtol=1e-7)
  np.testing.assert_allclose(s[31], 1290.1591, rtol=1e-6)


def test_sinusoidal_embedding_layout_is_coordinate_major_sin_then_cos():
  emb = attention.SinusoidalEmbedding(num_frequencies=4)
  x = np.asarray([[0.25, -1.5]], np.float32)  # [1, C=2]
  out = np.asarray(jax.jit(lambda v: emb.apply({}, v))(x))
  assert out.shape == (1, 2 * 2 * 4)
  scales = 2.0 ** (np.arange(4) / 3)
  for c in range(2):
    a = x[0, c] * scales
    np.testing.assert_allclose(out[0, c * 8:c * 8 + 4], np.sin(a), atol=2e-7)
    np.testing.assert_allclose(out[0, c * 8 + 4:c * 8 + 8], np.cos(a),
                               atol=2e-7)
  # Zero input: sines are 0 and "cosines" are sin(pi/2) = 1 exactly.
  zero = np.asarray(emb.apply({}, np.zeros((3,), np.float32)))
  np.testing.assert_array_equal(zero.reshape(3, 2, 4)[:, 0], 0.0)
  np.testing.assert_array_equal(zero.reshape(3, 2, 4)[:, 1], 1.0)


def test_param_state_init_broadcasts_learned_state():
  mod = attention.ParamStateInit(shape=(3, 5))
  params = mod.init(jax.random.PRNGKey(0), (2, 4))
  assert params['params']['state_init'].shape == (3, 5)
  out = mod.apply(params, (2, 4))
  assert out.shape == (2, 4, 3, 5)
  np.testing.assert_array_equal(out[1, 3], params['params']['state_init'])


def _attention_reference(p, xq, xkv, mask, num_heads):
  """Attention written out in numpy, float64."""
  def proj(x, k):  # [L, W] @ [W, H, d]
    return np.einsum('lw,whd->lhd', x, k)

  def rms(x, scale):
    return x / np.sqrt(np.mean(x ** 2, -1, keepdims=True) + 1e-6) * scale

  q = rms(proj(xq, p['dense_query']['kernel']), p['norm_query']['scale'])
  k = rms(proj(xkv, p['dense_key']['kernel']), p['norm_key']['scale'])
  v = proj(xkv, p['dense_value']['kernel'])
  d = q.shape[-1]
  logits = np.einsum('qhd,khd->hqk', q / np.sqrt(d), k)
  logits = np.where(mask[None], logits, np.finfo(np.float32).min)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  o = np.einsum('hqk,khd->qhd', w, v)
  return np.einsum('qhd,hdw->qw', o, p['dense_out']['kernel']) + p[
      'dense_out']['bias']


def test_attention_matches_reference_and_masked_rows_are_uniform():
  mod = attention.ImprovedMHDPAttention(num_heads=2, qk_size=8)
  rng = np.random.default_rng(0)
  xq = rng.normal(size=(5, 6)).astype(np.float32)
  xkv = rng.normal(size=(7, 3)).astype(np.float32)
  mask = rng.random((5, 7)) > 0.4
  mask[2] = False  # fully masked row -> uniform weights, not NaN
  params = mod.init(jax.random.PRNGKey(1), xq, xkv)['params']
  params = jax.tree.map(
      lambda a: np.asarray(a) + rng.normal(size=a.shape).astype(np.float32)
      * 0.1, flax.core.unfreeze(params))
  assert params['dense_query']['kernel'].shape == (6, 2, 4)
  assert params['dense_out']['kernel'].shape == (2, 4, 6)
  assert 'bias' not in params['dense_key']
  out = np.asarray(mod.apply({'params': params}, xq, xkv, mask[None]))
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  ref = _attention_reference(p64, xq.astype(np.float64),
                             xkv.astype(np.float64), mask, 2)
  np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-5)
  assert np.all(np.isfinite(out))
  # Row 2 (all keys masked): every logit is finfo.min, so the weights are
  # uniform and the output is the projected mean of the values.
  v = np.einsum('lw,whd->lhd', xkv.astype(np.float64),
                p64['dense_value']['kernel']).mean(0)
  expect = np.einsum('hd,hdw->w', v, p64['dense_out']['kernel']) + p64[
      'dense_out']['bias']
  np.testing.assert_allclose(out[2], expect, rtol=2e-5, atol=2e-5)


def test_transformer_names_and_block_structure():
  mod = attention.ImprovedTransformer(qkv_size=8, num_heads=2, mlp_size=12,
                                      num_layers=2)
  x = jnp.ones((3, 4, 6))
  kv = jnp.ones((3, 5, 10))
  params = mod.init(jax.random.PRNGKey(0), x, kv)['params']
  assert set(params) == {'layer_0', 'layer_1', 'norm_encoder'}
  assert set(params['layer_0']) == {'norm_q', 'self_att', 'cross_att',
                                    'norm_attn', 'MLP_in', 'MLP_out'}
  assert set(params['norm_encoder']) == {'scale'}
  assert params['layer_1']['cross_att']['dense_key']['kernel'].shape == (
      10, 2, 4)
  assert params['layer_0']['self_att']['norm_query']['scale'].shape == (4,)
  assert params['layer_0']['MLP_in']['kernel'].shape == (6, 12)
  no_kv = mod.init(jax.random.PRNGKey(0), x)['params']
  assert 'cross_att' not in no_kv['layer_0']


def test_block_is_parallel_attention_then_mlp():
  """y = a + MLP(LN(a)), a = x + self(LN(x)) + cross(LN(x), kv)."""
  block = attention.ImprovedTransformerBlock(qkv_size=8, num_heads=2,
                                             mlp_size=12)
  rng = np.random.default_rng(3)
  x = rng.normal(size=(4, 6)).astype(np.float32)
  kv = rng.normal(size=(5, 3)).astype(np.float32)
  params = block.init(jax.random.PRNGKey(0), x, kv)['params']
  out = np.asarray(block.apply({'params': params}, x, kv))

  def ln(v, scale):
    mean = v.mean(-1, keepdims=True)
    var = np.maximum((v ** 2).mean(-1, keepdims=True) - mean ** 2, 0)
    return (v - mean) / np.sqrt(var + 1e-6) * scale

  att = attention.ImprovedMHDPAttention(num_heads=2, qk_size=8)
  n = ln(x, params['norm_q']['scale'])
  a = (x + att.apply({'params': params['self_att']}, n, n)
       + att.apply({'params': params['cross_att']}, n, kv))
  h = np.asarray(jax.nn.gelu(ln(np.asarray(a), params['norm_attn']['scale'])
                             @ params['MLP_in']['kernel']
                             + params['MLP_in']['bias'], approximate=True))
  ref = a + h @ params['MLP_out']['kernel'] + params['MLP_out']['bias']
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_attention_rejects_bad_head_split():
  mod = attention.ImprovedMHDPAttention(num_heads=3, qk_size=8)
  with pytest.raises(ValueError, match='num_heads=3'):
    mod.init(jax.random.PRNGKey(0), jnp.ones((2, 4)), jnp.ones((2, 4)))
