"""Relaxed swap weights of differentiable sorting networks (diffsort semantics).

alpha = P(a is the smaller value) for the difference v = b - a of a
comparator's two inputs, for each of diffsort 0.2.0's distributions, with the
same arithmetic (and, for 'gaussian', the same custom derivative) as diffsort.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

DISTRIBUTIONS = ('logistic', 'logistic_phi', 'gaussian', 'reciprocal',
                 'cauchy', 'optimal')


@jax.custom_jvp
def _normal_cdf(v: jax.Array, steepness: jax.Array) -> jax.Array:
  sigma = 1 / steepness
  return 0.5 + 0.5 * jax.lax.erf(v / sigma / math.sqrt(2))


@_normal_cdf.defjvp
def _normal_cdf_jvp(primals, tangents):
  (v, steepness), (t_v, t_steepness) = primals, tangents
  sigma = 1 / steepness
  # diffsort's custom backward keeps sigma = 1/steepness as a float32 tensor,
  # so its derivative in v uses sigma rounded to float32 (even for float64
  # input).
  sigma32 = sigma.astype(jnp.float32).astype(v.dtype)
  dv = t_v / sigma32 / math.sqrt(math.pi * 2) * jnp.exp(-0.5 * (v / sigma32)**2)
  # d/ds Phi(v s) = v phi(v s) (diffsort has no gradient in s).
  ds = t_steepness * v / math.sqrt(math.pi * 2) * jnp.exp(-0.5 * (v / sigma)**2)
  return _normal_cdf(v, steepness), dv + ds


def swap_weight(v: jax.Array, distribution: str, steepness: jax.Array | float,
                art_lambda: jax.Array | float) -> jax.Array:
  """alpha = P(a is the smaller value) for v = b - a, as diffsort computes it.

  Args:
    v: [...] differences b - a.
    distribution: one of DISTRIBUTIONS.
    steepness: [] inverse temperature s (traced or a Python float).
    art_lambda: [] exponent of `logistic_phi`.

  Returns:
    [...] weights in [0, 1]; 0.5 at v = 0.
  """
  if distribution == 'logistic':
    return jax.nn.sigmoid(v * steepness)
  if distribution == 'logistic_phi':
    # The +1e-10 keeps ties (v = 0) finite in value and gradient.
    return jax.nn.sigmoid(v * steepness / (jnp.abs(v) + 1e-10)**art_lambda)
  if distribution == 'gaussian':
    return _normal_cdf(v, jnp.asarray(steepness, v.dtype))
  if distribution == 'reciprocal':
    u = steepness * v
    return 0.5 * (u / (2 + jnp.abs(u)) + 1)
  if distribution == 'cauchy':
    u = steepness * v
    return 1 / math.pi * jnp.arctan(u) + 0.5
  if distribution == 'optimal':
    u = steepness * v
    # torch.clamp passes the gradient on the closed interval; `where` does too
    # (jnp.clip would halve it at the bounds).
    clamped = jnp.where(u > 0.25, 0.25, jnp.where(u < -0.25, -0.25, u))
    side = ((u > 0.25).astype(u.dtype) - (u < -0.25).astype(u.dtype))
    return clamped + 0.5 + side * (0.25 - 1 / 16 / (jnp.abs(u) + 1e-10))
  raise ValueError(
      f'unknown distribution {distribution!r}; expected one of {DISTRIBUTIONS}')
