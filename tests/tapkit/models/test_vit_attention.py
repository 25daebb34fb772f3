"""tapkit.models.vit.attention: the head-group loop against a float64 reference and the one-shot
form, group sizes, and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.models import vit as bb
from tapkit.models.vit import attention


def _reference(q, k, v):
  """softmax(q kᵀ) v per batch element and head in float64 numpy; inputs [B, T, H, hd]."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  logits = np.einsum('bqhd,bkhd->bhqk', q, k)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return np.einsum('bhqk,bkhd->bqhd', weights, v)


def _qkv(b, tq, tk, h, hd, seed=0):
  rng = np.random.default_rng(seed)
  q = rng.standard_normal((b, tq, h, hd)).astype(np.float32) * hd ** -0.5
  k, v = (rng.standard_normal((b, tk, h, hd)).astype(np.float32) for _ in range(2))
  return jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)


def test_head_group_size():
  # ViT-B/14 at 224 px with registers, batch 8: 96 pairs of 261×261 float32 logits (272 KB each).
  assert attention.head_group_size(96, 261, 261) == 12
  assert attention.head_group_size(96, 261, 261, group_bytes=1 << 20) == 3
  # One pair larger than the bound (518 px: 1374 tokens, 7.6 MB) still gives groups of one.
  assert attention.head_group_size(12, 1374, 1374) == 1
  assert attention.head_group_size(7, 10, 10) == 7  # 7 · 400 B fits: a single group
  with pytest.raises(ValueError, match='num_pairs'):
    attention.head_group_size(0, 10, 10)


@pytest.mark.parametrize('group_bytes', [4 * 9 * 9, 4 * 9 * 9 * 3, 1 << 20])
def test_head_loop_matches_reference_and_one_shot(group_bytes):
  # 2 images × 3 heads = 6 pairs: groups of 1, 3 and 6 (loop of 6, loop of 2, no loop).
  q, k, v = _qkv(2, 9, 9, 3, 8)
  ref = _reference(q, k, v)
  looped = attention.multi_head_attention(q, k, v, head_loop=True, group_bytes=group_bytes)
  one_shot = attention.multi_head_attention(q, k, v, head_loop=False)
  assert looped.shape == one_shot.shape == (2, 9, 3, 8)
  assert np.abs(np.asarray(looped) - ref).max() < 2e-6
  assert np.abs(np.asarray(one_shot) - ref).max() < 2e-6
  np.testing.assert_allclose(np.asarray(looped), np.asarray(one_shot), rtol=0, atol=2e-6)


def test_single_group_is_the_one_shot_computation():
  q, k, v = _qkv(2, 9, 9, 3, 8, seed=4)
  one_group = attention.multi_head_attention(q, k, v, head_loop=True)  # 6 · 324 B fit: no loop
  np.testing.assert_array_equal(np.asarray(one_group),
                                np.asarray(attention.multi_head_attention(q, k, v,
                                                                          head_loop=False)))


def test_cross_attention_lengths_and_bfloat16_weights():
  q, k, v = _qkv(1, 5, 7, 2, 4, seed=1)
  out = jax.jit(lambda q, k, v: attention.multi_head_attention(q, k, v, head_loop=True,
                                                               group_bytes=4 * 5 * 7))(q, k, v)
  assert out.shape == (1, 5, 2, 4)
  assert np.abs(np.asarray(out) - _reference(q, k, v)).max() < 2e-6
  # bfloat16 values: float32 logits and softmax, weights rounded to bfloat16 for the second product.
  vb = v.astype(jnp.bfloat16)
  outb = attention.multi_head_attention(q, k, vb, head_loop=True, group_bytes=4 * 5 * 7)
  assert outb.dtype == jnp.bfloat16
  assert np.abs(np.asarray(outb, np.float32) - _reference(q, k, v)).max() < 3e-2


def test_gradients_agree_between_forms():
  q, k, v = _qkv(2, 6, 6, 2, 4, seed=2)
  loss = lambda loop: (lambda q, k, v: jnp.sum(jnp.sin(attention.multi_head_attention(
      q, k, v, head_loop=loop, group_bytes=4 * 6 * 6))))
  g_loop = jax.grad(loss(True), argnums=(0, 1, 2))(q, k, v)
  g_one = jax.grad(loss(False), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(g_loop, g_one):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5)


def test_input_errors():
  q, k, v = _qkv(1, 4, 4, 2, 4)
  with pytest.raises(ValueError, match='multi_head_attention'):
    attention.multi_head_attention(q[0], k[0], v[0])
  with pytest.raises(ValueError, match='multi_head_attention'):
    attention.multi_head_attention(q, k, v[:, :3])
  with pytest.raises(ValueError, match='multi_head_attention'):
    attention.multi_head_attention(q, k[..., :2], v[..., :2])


def test_vit_forward_same_with_and_without_the_loop(monkeypatch):
  """The smoke ViT (registers, LayerScale) gives the same tokens with the loop forced on or off."""
  cfg = bb.get_config('smoke')
  params = bb.init_params(cfg)
  images = jnp.asarray(np.random.default_rng(3).standard_normal((3, 56, 56, 3)), jnp.float32)
  module = bb.VisionTransformer(cfg)
  outs = []
  for loop in (True, False):
    monkeypatch.setattr(bb.vit, 'multi_head_attention',
                        lambda q, k, v, p, loop=loop: attention.multi_head_attention(
                            q, k, v, p, head_loop=loop, group_bytes=4 * 21 * 21))
    outs.append(np.asarray(module.apply({'params': params}, images)))
  # 3 images × 2 heads of 1 + 4 + 16 tokens: groups of one pair, a loop of 6 steps.
  np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-5)
  assert np.abs(outs[0]).max() > 0.5
