"""Multi-head softmax attention core, with a cache-friendly head-group loop for CPU.

XLA CPU computes `softmax(q kᵀ) v` over all batch elements and heads at once: the logits
[B, H, T, T] (26 MB for ViT-B/14 at 224 px and batch 8) are written, read back by the softmax,
written again and read by the second matmul, all from main memory. Looping over groups of
(batch, head) pairs whose logits fit in the cache does the same arithmetic on the same values
in about half the CPU time at that size (results equal up to float32 rounding, ~1e-6 relative,
as XLA fuses the softmax differently; when all pairs fit in one group nothing changes). On
GPU/TPU the loop would only serialise the work, so it is used on the CPU backend only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

# Largest float32 logits block [g, T, T] computed per loop step: fits the last-level cache of a
# server core group with room for q, k, v and the output.
DEFAULT_GROUP_BYTES = 4 << 20


def head_group_size(num_pairs: int, q_len: int, kv_len: int,
                    group_bytes: int = DEFAULT_GROUP_BYTES) -> int:
  """Largest divisor g of `num_pairs` (= batch · heads) whose float32 logits [g, q_len, kv_len]
  take at most `group_bytes` (at least 1)."""
  if num_pairs < 1 or q_len < 1 or kv_len < 1:
    raise ValueError(f'head_group_size: num_pairs, q_len, kv_len must be >= 1, got '
                     f'{num_pairs}, {q_len}, {kv_len}')
  per_pair = 4 * q_len * kv_len
  best = 1
  for g in range(1, num_pairs + 1):
    if num_pairs % g == 0 and g * per_pair <= group_bytes:
      best = g
  return best


def _softmax_attention(q: Array, k: Array, v: Array, precision: Any) -> Array:
  """q [..., Tq, hd], k/v [..., Tk, hd] -> [..., Tq, hd]; float32 logits and softmax."""
  logits = jnp.einsum('...qd,...kd->...qk', q, k, precision=precision,
                      preferred_element_type=jnp.float32)
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
  return jnp.einsum('...qk,...kd->...qd', weights, v, precision=precision)


def multi_head_attention(q: Array, k: Array, v: Array, precision: Any = None,
                         head_loop: bool | None = None,
                         group_bytes: int = DEFAULT_GROUP_BYTES) -> Array:
  """softmax(q kᵀ) v per batch element and head (no scaling: pass q already scaled).

  Args:
    q: [B, Tq, H, hd] queries (scaled by 1/√hd by the caller).
    k: [B, Tk, H, hd] keys.
    v: [B, Tk, H, hd] values.
    precision: matmul precision of both products.
    head_loop: loop over groups of (batch, head) pairs whose logits take at most `group_bytes`
      (`lax.map`) when they do not all fit in one group; None = only when JAX's default backend
      is the CPU. A single group is computed at once, exactly as without the loop.
    group_bytes: size bound of one group's float32 logits.

  Returns:
    [B, Tq, H, hd]; the logits and the softmax are float32, the weights are cast to v's dtype
    before the second product.
  """
  if q.ndim != 4 or k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
    raise ValueError(f'multi_head_attention: q must be [B, Tq, H, hd] and k, v [B, Tk, H, hd], '
                     f'got {q.shape}, {k.shape}, {v.shape}')
  if head_loop is None:
    head_loop = jax.default_backend() == 'cpu'
  b, tq, h, hd = q.shape
  tk = k.shape[1]
  g = head_group_size(b * h, tq, tk, group_bytes) if head_loop else b * h
  n = b * h // g
  if n == 1:  # everything fits in one group (or no loop wanted): one batched computation
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k, precision=precision,
                        preferred_element_type=jnp.float32)  # [B, H, Tq, Tk]
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum('bhqk,bkhd->bqhd', weights, v, precision=precision)
  # [B, T, H, hd] -> [n, g, T, hd], pairs in (batch, head) order.
  groups = lambda u: u.transpose(0, 2, 1, 3).reshape(n, g, u.shape[1], hd)
  out = jax.lax.map(lambda qkv: _softmax_attention(*qkv, precision), (groups(q), groups(k),
                                                                       groups(v)))
  return out.reshape(b, h, tq, hd).transpose(0, 2, 1, 3)  # [B, Tq, H, hd]
