"""Building blocks shared by TRAJAN and 3DSPA (released `ImprovedTransformer` family).

Every module here keeps the submodule names of the released checkpoints
(`self_att`, `cross_att`, `dense_query`, `norm_q`, `MLP_in`, `layer_3`,
`norm_encoder`, ...), so that a parameter tree produced by `init` has exactly
the keys of the official flat `.npz` files.

Conventions: `...` are leading batch axes, `L` query tokens, `M` key/value
tokens, `W` token width, `H` heads, `d` head size.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tapkit.train import precision as precision_lib

Precision = Any  # None, a `jax.lax.Precision` or a precision string.


def sinusoid_scales(num_frequencies: int) -> np.ndarray:
  """Frequencies `2^(i/3)`, i = 0..F-1, computed in float64 and stored float32.

  Returns:
    float32 array [F]; no 2*pi factor (the released code has none).
  """
  return np.asarray([2.0 ** (i / 3.0) for i in range(num_frequencies)],
                    dtype=np.float32)


class SinusoidalEmbedding(nn.Module):
  """Fourier features of scalar coordinates (no parameters).

  For every coordinate c the output holds F sines then F "cosines",
  coordinate-major: index `c * 2F + j`. The cosine half is evaluated as
  `sin(x * s + pi/2)` in float32 (not `cos`): under `jax.jit` XLA fuses the
  multiply-add into one FMA, which is what the released jitted model computes.
  TRAJAN's decoder embeds already-embedded values a second time with
  frequencies up to ~1290, so `cos(a)` instead would move outputs by ~1e-3.

  Attributes:
    num_frequencies: F, number of frequencies per coordinate.
  """

  num_frequencies: int = 32

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Embeds `inputs` [..., C] into [..., C * 2F] (float32)."""
    scales = jnp.asarray(sinusoid_scales(self.num_frequencies))  # [F]
    inputs = jnp.asarray(inputs, jnp.float32)
    x = inputs[..., jnp.newaxis] * scales  # [..., C, F]
    # One `sin` over both halves; the `+ pi/2` is a weakly-typed float32 add.
    feats = jnp.sin(jnp.concatenate([x, x + 0.5 * np.pi], axis=-1))  # [..., C, 2F]
    return jnp.reshape(feats, feats.shape[:-2] + (-1,))  # [..., C * 2F]


class ParamStateInit(nn.Module):
  """A learned array broadcast over leading batch axes.

  Attributes:
    shape: shape of the learned `state_init` (initialised N(0, 1)).
  """

  shape: Sequence[int]

  @nn.compact
  def __call__(self, batch_shape: Sequence[int]) -> jax.Array:
    """Returns `state_init` broadcast to `batch_shape + shape`."""
    state = self.param('state_init', nn.initializers.normal(stddev=1.0),
                       tuple(self.shape))
    return jnp.broadcast_to(state, tuple(batch_shape) + state.shape)


class ImprovedMHDPAttention(nn.Module):
  """Multi-head dot-product attention with RMS-normalised queries and keys.

  q/k/v projections have no bias; q and k are RMS-normalised per head with a
  scale [d] shared by the heads; the output projection has a bias. Masked
  logits are replaced by `finfo(float32).min` (Flax semantics), so a query
  row whose keys are all masked attends uniformly instead of producing NaN.

  Attributes:
    num_heads: H.
    qk_size: total query/key width H * d.
    v_size: total value width (defaults to `qk_size`).
    precision: matmul precision passed to every dot (None = JAX default).
    dtype: compute dtype of the projections and of the weighted sum of values.
      The q/k RMS norms, the logits and the softmax stay float32 whatever
      `dtype`: bfloat16 logits (8 bits of mantissa) would round attention
      weights of long sequences (T=150 frames, hundreds of latents) visibly.
  """

  num_heads: int
  qk_size: int
  v_size: Optional[int] = None
  precision: Precision = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      inputs_q: jax.Array,  # [..., L, Wq]
      inputs_kv: jax.Array,  # [..., M, Wkv]
      mask: Optional[jax.Array] = None,  # bool, broadcastable to [..., H, L, M]
  ) -> jax.Array:  # [..., L, Wq]
    v_size = self.qk_size if self.v_size is None else self.v_size
    if self.qk_size % self.num_heads or v_size % self.num_heads:
      raise ValueError(
          f'num_heads={self.num_heads} must divide qk_size={self.qk_size} '
          f'and v_size={v_size}.')
    head_qk = self.qk_size // self.num_heads
    head_v = v_size // self.num_heads

    query = nn.DenseGeneral(
        (self.num_heads, head_qk), use_bias=False, precision=self.precision,
        dtype=self.dtype, name='dense_query')(inputs_q)  # [..., L, H, d]
    key = nn.DenseGeneral(
        (self.num_heads, head_qk), use_bias=False, precision=self.precision,
        dtype=self.dtype, name='dense_key')(inputs_kv)  # [..., M, H, d]
    # RMSNorm over the head axis d only (scale [d] shared by all heads).
    query = nn.RMSNorm(dtype=jnp.float32, name='norm_query')(query)
    key = nn.RMSNorm(dtype=jnp.float32, name='norm_key')(key)
    value = nn.DenseGeneral(
        (self.num_heads, head_v), use_bias=False, precision=self.precision,
        dtype=self.dtype, name='dense_value')(inputs_kv)  # [..., M, H, dv]

    if mask is not None:
      mask = jnp.asarray(mask).astype(jnp.bool_)
    # float32 logits and softmax; the weighted sum runs in the compute dtype.
    weights = nn.dot_product_attention_weights(
        query, key, mask=mask, precision=self.precision)  # [..., H, L, M]
    x = jnp.einsum('...hqk,...khd->...qhd', weights.astype(value.dtype), value,
                   precision=self.precision)  # [..., L, H, dv]
    return nn.DenseGeneral(
        inputs_q.shape[-1], axis=(-2, -1), use_bias=True,
        precision=self.precision, name='dense_out')(x)  # [..., L, Wq]


class ImprovedTransformerBlock(nn.Module):
  """ViT-22B-style block: parallel self/cross attention, then an MLP.

    n = LN_q(x);  a = x + SelfAttn(n, n, self_mask) [+ CrossAttn(n, kv)]
    y = a + Dense_out(gelu_tanh(Dense_in(LN_attn(a))))

  LayerNorms have a scale and no bias. The cross-attention keys/values are
  not layer-normalised (only RMS-normalised after projection).

  Attributes:
    qkv_size: total attention width H * d.
    num_heads: H.
    mlp_size: hidden width of the MLP.
    precision: matmul precision.
    dtype: compute dtype of the attention and MLP matmuls; the LayerNorms
      and the residual stream stay float32.
  """

  qkv_size: int
  num_heads: int
  mlp_size: int
  precision: Precision = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      queries: jax.Array,  # [..., L, W]
      inputs_kv: Optional[jax.Array] = None,  # [..., M, Wkv]
      self_mask: Optional[jax.Array] = None,  # [..., 1 or H, L, L] bool
      cross_mask: Optional[jax.Array] = None,  # [..., 1 or H, L, M] bool
  ) -> jax.Array:  # [..., L, W]
    width = queries.shape[-1]
    normed = nn.LayerNorm(use_bias=False, use_scale=True, dtype=jnp.float32,
                          name='norm_q')(queries)
    attn_out = queries + ImprovedMHDPAttention(
        num_heads=self.num_heads, qk_size=self.qkv_size,
        precision=self.precision, dtype=self.dtype, name='self_att')(normed, normed, self_mask)
    if inputs_kv is not None:
      attn_out = attn_out + ImprovedMHDPAttention(
          num_heads=self.num_heads, qk_size=self.qkv_size,
          precision=self.precision, dtype=self.dtype, name='cross_att')(
              normed, inputs_kv, cross_mask)
    normed_attn = nn.LayerNorm(
        use_bias=False, use_scale=True, dtype=jnp.float32, name='norm_attn')(attn_out)
    hidden = nn.gelu(nn.Dense(
        self.mlp_size, precision=self.precision, dtype=self.dtype, name='MLP_in')(normed_attn))
    out = nn.Dense(width, precision=self.precision, dtype=self.dtype, name='MLP_out')(hidden)
    return attn_out + out.astype(attn_out.dtype)


class ImprovedTransformer(nn.Module):
  """A stack of `ImprovedTransformerBlock`s followed by a final LayerNorm.

  Blocks are named `layer_0 ... layer_{L-1}`, the final norm `norm_encoder`.

  Attributes:
    qkv_size: total attention width.
    num_heads: number of heads.
    mlp_size: MLP hidden width.
    num_layers: number of blocks.
    precision: matmul precision.
    dtype: compute dtype of the blocks (`ImprovedTransformerBlock`).
    remat: 'none' | 'block' | a jax.checkpoint policy name: what each block
      keeps for the backward pass (tapkit/train/precision.py).
  """

  qkv_size: int
  num_heads: int
  mlp_size: int
  num_layers: int
  precision: Precision = None
  dtype: Any = jnp.float32
  remat: str = 'none'

  @nn.compact
  def __call__(
      self,
      queries: jax.Array,  # [..., L, W]
      inputs_kv: Optional[jax.Array] = None,  # [..., M, Wkv]
      self_mask: Optional[jax.Array] = None,  # [..., L, L] or [..., H|1, L, L]
      cross_mask: Optional[jax.Array] = None,  # [..., L, M] or [..., H|1, L, M]
  ) -> jax.Array:  # [..., L, W]
    # A mask with the rank of the tokens lacks the head axis: add it.
    if self_mask is not None and self_mask.ndim == queries.ndim:
      self_mask = self_mask[..., jnp.newaxis, :, :]
    if (cross_mask is not None and inputs_kv is not None
        and cross_mask.ndim == inputs_kv.ndim):
      cross_mask = cross_mask[..., jnp.newaxis, :, :]
    block = precision_lib.remat_block(ImprovedTransformerBlock, self.remat)
    for i in range(self.num_layers):
      queries = block(
          qkv_size=self.qkv_size, num_heads=self.num_heads,
          mlp_size=self.mlp_size, precision=self.precision, dtype=self.dtype,
          name=f'layer_{i}')(queries, inputs_kv, self_mask, cross_mask)
    return nn.LayerNorm(
        use_bias=False, use_scale=True, dtype=jnp.float32, name='norm_encoder')(queries)
