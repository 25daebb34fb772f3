"""Numeric helpers that work on numpy and jax arrays alike."""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any  # np.ndarray or jax.Array.


def array_module(x: Array):
  """numpy for numpy inputs (and Python scalars / sequences), jax.numpy for jax arrays.

  jax is imported only when a jax array is seen, so numpy-only callers never load it.
  """
  if isinstance(x, (np.ndarray, np.generic, float, int, list, tuple)):
    return np
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp


def l2_normalize(x: Array, axis: int = -1, eps: float = 1e-12) -> Array:
  """x / max(||x||₂, eps) along `axis` (torch.nn.functional.normalize).

  Args:
    x: [..., D] (or any shape with the reduced axis at `axis`), numpy or jax.
    axis: the axis whose Euclidean norm is taken.
    eps: lower bound on the norm, so an all-zero vector stays zero instead of NaN.

  Returns:
    Same shape and dtype as `x`.
  """
  xp = array_module(x)
  norm = xp.sqrt(xp.sum(x * x, axis=axis, keepdims=True))
  return x / xp.maximum(norm, eps)
