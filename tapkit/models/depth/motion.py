"""Temporal ("motion") module of Video Depth Anything: attention along time, per pixel.

Derived from AnimateDiff's motion module. For a clip of T frames of a feature map [B, T, h, w, C]
it mixes information across the T frames at each pixel independently (pixels never mix):

  r = z
  x = proj_in(GroupNorm32(z))                         per frame, tokens [B·T, h·w, C]
  for k in 0, 1:  x = x + TemporalAttention_k(LN_k(x))   LN eps 1e-5
  x = x + FF(LN_ff(x))                                GEGLU feed-forward, 4C hidden
  out = proj_out(x) + r                               residual taken before the GroupNorm

TemporalAttention: the LayerNorm output u [B·h·w, T, C] gets the sinusoidal position table added
(queries, keys and values all include it), q/k/v projections without bias, `heads` heads,
softmax over the T frames, output projection with bias.

Parameter tree (ours; `convert.py` maps the original names):

  norm/{scale, bias}  proj_in/{kernel, bias}  proj_out/{kernel, bias}
  attention_blocks_{k}/{to_q, to_k, to_v}/kernel  attention_blocks_{k}/to_out/{kernel, bias}
  attention_blocks_{k}/pos_encoder_pe [max_len, C]   norms_{k}/{scale, bias}
  ff_proj/{kernel [C, 8C], bias}  ff_out/{kernel [4C, C], bias}  ff_norm/{scale, bias}
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PrecisionLike = Any


def sinusoid_table(length: int, dim: int) -> np.ndarray:
  """[length, dim] float32 position table: pe[p, 2j] = sin(p·ω_j), pe[p, 2j+1] = cos(p·ω_j),
  ω_j = exp(−2j·ln(10000)/dim) (computed in float64, rounded once)."""
  if dim % 2:
    raise ValueError(f'sinusoid_table: dim must be even, got {dim}')
  pos = np.arange(length, dtype=np.float64)[:, None]
  omega = np.exp(np.arange(0, dim, 2, dtype=np.float64) * (-math.log(10000.0) / dim))
  table = np.zeros((length, dim), np.float64)
  table[:, 0::2] = np.sin(pos * omega)
  table[:, 1::2] = np.cos(pos * omega)
  return table.astype(np.float32)


class TemporalAttention(nn.Module):
  """Self-attention over the frames of each pixel, with an additive sinusoidal position table.

  Attributes:
    dim: channels C.
    heads: attention heads (head size C / heads).
    max_len: rows of the position table (the longest clip, 32 for the released models).
    precision: matmul precision.
  """
  dim: int
  heads: int = 8
  max_len: int = 32
  precision: PrecisionLike = None

  @nn.compact
  def __call__(self, u: Array) -> Array:
    """u [S, T, C] (S sequences of T frames, already LayerNorm-ed) -> [S, T, C]."""
    s, t, c = u.shape
    if t > self.max_len:
      raise ValueError(f'TemporalAttention: {t} frames exceed the position table ({self.max_len})')
    # A fixed buffer in the original model (stored in its checkpoints); kept as a parameter here
    # so that a checkpoint's table is used exactly. Freeze it when fine-tuning.
    pe = self.param('pos_encoder_pe', lambda *_: jnp.asarray(sinusoid_table(self.max_len, c)))
    u = u + pe[:t].astype(u.dtype)[None]
    hd = c // self.heads
    dense = lambda name, bias: nn.Dense(c, use_bias=bias, precision=self.precision, name=name)
    q = dense('to_q', False)(u).reshape(s, t, self.heads, hd)
    k = dense('to_k', False)(u).reshape(s, t, self.heads, hd)
    v = dense('to_v', False)(u).reshape(s, t, self.heads, hd)
    logits = jnp.einsum('sqhd,skhd->shqk', q, k, precision=self.precision) * (hd ** -0.5)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    out = jnp.einsum('shqk,skhd->sqhd', weights, v, precision=self.precision).reshape(s, t, c)
    return dense('to_out', True)(out)


class TemporalModule(nn.Module):
  """One motion module: GroupNorm, proj_in, 2 temporal attentions, GEGLU FF, proj_out, residual.

  Attributes:
    dim: channels C (a multiple of 32 for the GroupNorm and of `heads`).
    heads: attention heads (8 in every released model).
    max_len: position-table length (32).
    precision: matmul precision.
  """
  dim: int
  heads: int = 8
  max_len: int = 32
  precision: PrecisionLike = None

  @nn.compact
  def __call__(self, z: Array) -> Array:
    """z [B, T, h, w, C] -> [B, T, h, w, C]."""
    b, t, h, w, c = z.shape
    if c != self.dim:
      raise ValueError(f'TemporalModule: expected {self.dim} channels, got {c}')
    if c % 32 or c % self.heads:
      raise ValueError(f'TemporalModule: {c} channels must be divisible by 32 and {self.heads}')
    dense = lambda n, name: nn.Dense(n, precision=self.precision, name=name)
    layer_norm = lambda name: nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name=name)
    residual = z
    # GroupNorm per frame: statistics over C/32 channels × h × w of one frame.
    x = nn.GroupNorm(num_groups=32, epsilon=1e-6, use_fast_variance=False, name='norm')(
        z.reshape(b * t, h, w, c))
    x = dense(c, 'proj_in')(x.reshape(b * t, h * w, c))  # [B·T, h·w, C]
    for k in range(2):
      u = layer_norm(f'norms_{k}')(x)
      # One sequence over the T frames per pixel: [B·h·w, T, C].
      u = u.reshape(b, t, h * w, c).transpose(0, 2, 1, 3).reshape(b * h * w, t, c)
      a = TemporalAttention(c, self.heads, self.max_len, self.precision,
                            name=f'attention_blocks_{k}')(u)
      x = x + a.reshape(b, h * w, t, c).transpose(0, 2, 1, 3).reshape(b * t, h * w, c)
    u = dense(8 * c, 'ff_proj')(layer_norm('ff_norm')(x))
    value, gate = jnp.split(u, 2, axis=-1)
    x = x + dense(c, 'ff_out')(value * nn.gelu(gate, approximate=False))
    x = dense(c, 'proj_out')(x)
    return x.reshape(b, t, h, w, c) + residual
