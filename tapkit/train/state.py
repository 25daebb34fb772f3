"""The train-state pytree carried through the jitted step and saved in checkpoints."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """Everything that determines the rest of a run.

  Attributes:
    step: int32 [], number of steps taken (including skipped ones); also the
      index of the next batch and the fold-in value of the next step's rng.
    params: the trainable parameter tree.
    opt_state: optax state for `params`.
    ema_params: exponential moving average of `params` (e.g. a 3DPoV teacher),
      or None when `config.ema.momentum` is unset.
    extra: method-owned non-trainable state (e.g. batch statistics), or None.
    rng: uint32 [2] raw PRNG key fixed at init; step `s` uses
      `fold_in(rng, s)`, so randomness never depends on restarts.
    skipped_steps: int32 [], total steps whose update was dropped (non-finite).
    consecutive_bad: int32 [], length of the current run of dropped steps.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  extra: Any
  rng: jax.Array
  skipped_steps: jax.Array
  consecutive_bad: jax.Array

  @classmethod
  def create(cls, *, params: Any, opt_state: Any, rng: jax.Array,
             extra: Any = None, use_ema: bool = False) -> 'TrainState':
    return cls(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=opt_state,
        # A copy, not an alias: params and EMA are donated separately.
        ema_params=jax.tree.map(jnp.copy, params) if use_ema else None,
        extra=extra,
        rng=rng,
        skipped_steps=jnp.zeros((), jnp.int32),
        consecutive_bad=jnp.zeros((), jnp.int32),
    )
