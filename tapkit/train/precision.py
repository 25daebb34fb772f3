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

import dataclasses
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


def _inexact(x: Any) -> bool:
  return hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.inexact)


def _zero_from(tree: Any) -> jax.Array:
  """A float32 scalar 0 computed from every floating-point leaf of `tree`.

  Adding it to an array makes that array data-dependent on `tree` without changing
  its value (x + 0 == x; a non-finite leaf makes it NaN, as the gradients then are).
  """
  zero = jnp.zeros((), jnp.float32)
  for leaf in jax.tree.leaves(tree):
    if _inexact(leaf) and leaf.size:
      zero = zero + 0.0 * jnp.max(leaf).astype(jnp.float32)
  return zero


def _after(tree: Any, zero: jax.Array) -> Any:
  """`tree` with `zero` added to its floating-point leaves (a data dependency)."""
  return jax.tree.map(lambda x: x + zero.astype(x.dtype) if _inexact(x) else x, tree)


def checkpointed_call(fn: Any, policy: Any, *args: Any) -> Any:
  """`fn(*args)` under `jax.checkpoint(policy)`, its backward ordered as a block's.

  `jax.checkpoint` alone keeps the forward's residuals small, but nothing orders the
  recomputation (its optimization barriers only prevent CSE and are removed before
  scheduling): XLA's CPU scheduler hoists every block's recomputation next to the
  forward pass and defers the weight-gradient matmuls to the end of the program, so
  all blocks' recomputed activations are alive at once and the peak does not
  shrink. Here the saved residuals are made data-dependent on the incoming
  cotangent (the recomputation cannot start before this block's backward step) and
  the input gradient on the parameter gradients (they are finished before the
  previous block's backward step starts), by adding a zero computed from them.
  Values equal the plain call's.

  Args:
    fn: a pure function of `args` (arrays, None, nested trees).
    policy: a `jax.checkpoint_policies` policy.
    *args: differentiable and non-differentiable inputs (integer / boolean arrays
      get zero cotangents). `args[0]` are the parameters.
  """

  @jax.custom_vjp
  def call(*call_args):
    return fn(*call_args)

  def forward(*call_args):
    return jax.vjp(jax.checkpoint(fn, policy=policy), *call_args)

  def backward(vjp_fn, cotangent):
    vjp_fn = _after(vjp_fn, _zero_from(cotangent))
    param_grads, *arg_grads = vjp_fn(cotangent)
    return (param_grads, *_after(arg_grads, _zero_from(param_grads)))

  call.defvjp(forward, backward)
  return call(*args)


def remat_block(cls: type[nn.Module], remat: str,
                static_argnums: tuple[int, ...] = ()) -> type[nn.Module]:
  """`cls` itself for remat='none', else a subclass whose call is rematerialised.

  The subclass has the same fields and the same parameters (names and shapes) as
  `cls`; applied, it runs `cls` through `checkpointed_call` with the policy of
  `remat`: per block, only what the policy saves is kept for the backward pass, and
  the recomputation happens inside that block's backward step. `static_argnums`
  counts `self` as 0 (flax's convention): those positional arguments (e.g. a
  boolean `train`) are passed to `cls` as Python values, outside the checkpoint.
  """
  if remat == 'none':
    return cls
  policy = remat_policy(remat)
  static = {i - 1 for i in static_argnums}

  class Rematerialized(cls):  # pylint: disable=missing-class-docstring

    def __call__(self, *args):
      if self.is_initializing():
        return super().__call__(*args)
      fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.init and f.name not in ('parent', 'name')}
      plain = cls(**fields, parent=None)
      fixed = {i: a for i, a in enumerate(args) if i in static}
      dynamic = [a for i, a in enumerate(args) if i not in static]

      def apply(variables, *dyn):
        it = iter(dyn)
        full = [fixed[i] if i in fixed else next(it) for i in range(len(args))]
        return plain.apply(variables, *full)

      return checkpointed_call(apply, policy, dict(self.variables), *dynamic)

  Rematerialized.__name__ = cls.__name__
  Rematerialized.__qualname__ = cls.__qualname__
  return Rematerialized
