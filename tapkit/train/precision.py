"""Mixed precision and rematerialisation settings shared by every method.

`config.precision.compute_dtype` ('float32' | 'bfloat16') is the dtype in which
a method's modules run their matrix multiplications and activations (each
module's `dtype` attribute). Parameters are created and kept in
`config.precision.param_dtype` ('float32', the only supported value: the
master weights, the optimiser state, the EMA and the checkpoints stay float32,
and flax casts each parameter to the compute dtype where it is used). The
engine differentiates and reduces the loss and the metrics in float32.

`config.remat` ('none' | 'block' | a `jax.checkpoint_policies` name such as
'dots_saveable' or 'nothing_saveable') says which activations of a method's
transformer blocks are kept for the backward pass: 'none' keeps all of them,
'block' keeps only each block's input and recomputes the rest in the backward
pass ('nothing_saveable'), a policy name keeps what that policy saves (e.g.
'dots_saveable': the matmul outputs). `remat_block(cls, config.remat)` wraps a
flax block class accordingly. Results are identical up to float rounding.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

COMPUTE_DTYPES = ('float32', 'bfloat16')
PARAM_DTYPES = ('float32',)


def check(cfg: ml_collections.ConfigDict) -> None:
  """Validates `config.precision`."""
  if cfg.compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f'config.precision.compute_dtype must be one of {COMPUTE_DTYPES}, '
                     f'got {cfg.compute_dtype!r}.')
  if cfg.param_dtype not in PARAM_DTYPES:
    raise ValueError(f'config.precision.param_dtype must be one of {PARAM_DTYPES} (float32 '
                     f'master weights and optimiser state), got {cfg.param_dtype!r}.')


def compute_dtype(config: ml_collections.ConfigDict) -> jnp.dtype:
  """The modules' compute dtype from `config.precision` (validated)."""
  check(config.precision)
  return jnp.dtype(config.precision.compute_dtype)


def param_dtype(config: ml_collections.ConfigDict) -> jnp.dtype:
  """The parameters' dtype from `config.precision` (validated)."""
  check(config.precision)
  return jnp.dtype(config.precision.param_dtype)


def remat_policy(remat: str) -> Any:
  """The jax.checkpoint policy of a `config.remat` value other than 'none'."""
  if remat == 'block':
    return jax.checkpoint_policies.nothing_saveable
  policy = getattr(jax.checkpoint_policies, remat, None)
  if policy is None or remat.startswith('_'):
    names = sorted(n for n in dir(jax.checkpoint_policies) if not n.startswith('_'))
    raise ValueError(f"config.remat must be 'none', 'block' or a jax.checkpoint_policies "
                     f'name {names}, got {remat!r}.')
  if remat in ('save_only_these_names', 'save_any_names_but_these',
               'save_and_offload_only_these_names', 'save_from_both_policies'):
    raise ValueError(f'config.remat={remat!r} is a policy factory that needs arguments; '
                     "use a plain policy such as 'dots_saveable'.")
  return policy


def remat_block(cls: type[nn.Module], remat: str,
                static_argnums: tuple[int, ...] = ()) -> type[nn.Module]:
  """`cls` itself for remat='none', else `nn.remat(cls)` with the policy of `remat`.

  `static_argnums` counts `self` as 0 (flax's convention), e.g. (2,) for a
  boolean `train` passed positionally after the input.
  """
  if remat == 'none':
    return cls
  return nn.remat(cls, policy=remat_policy(remat), static_argnums=static_argnums)
