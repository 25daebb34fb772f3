"""Exact gradient accumulation for losses normalised by batch-wide counts.

A loss such as "sum of the errors of all visible points divided by the number of
visible points in the batch" is not a mean over examples: averaging it over k
micro-batches gives the mean of k per-micro-batch ratios, not the ratio of the
whole batch. A method makes such a loss exact under `config.accumulate_steps`
by writing it as a `SumsLoss`:

* `sums(params, batch, rng, state) -> (totals, weights)`: two dicts of float
  scalars that ADD over examples, so that the sums over the k micro-batches are
  those of the whole batch. `totals` depend on the parameters (e.g. the summed
  position error of the visible points); `weights` depend on the data only
  (e.g. the number of visible points) and are never differentiated.
* `combine(totals, weights, state) -> (loss, aux)` (or, for a method with
  `has_extra`, `(loss, (aux, new_extra))`): the loss and metrics from the sums,
  e.g. `totals['position'] / jnp.maximum(1.0, weights['visible'])`, plus any
  nonlinearity of the whole batch's loss (a clamp, a phase switch on `state`).

Called as a plain `loss_fn(params, batch, rng, state)`, a `SumsLoss` is
`combine(*sums(...), state)`, so with accumulate_steps = 1 the step is the
plain one. With k > 1 the engine (`accumulate_exact`) runs two scans over the
micro-batches:

1. forward only: the totals T and weights W of the whole batch (sums over the
   micro-batches), and lambda = d combine(T, W, state).loss / dT, a handful of
   scalars. When the loss is linear in the totals (a weighted sum of ratios)
   lambda depends on W only, the forward pass of this scan is dead code and XLA
   drops it (only the data-only weights are computed).
2. forward and backward: the gradient of sum_t lambda_t * totals_t for each
   micro-batch, summed, which by the chain rule is the whole batch's gradient.

The loss, the aux metrics and the new `extra` are `combine` of the whole
batch's sums: the same values as one step on the whole batch, up to the float
summation order. Every micro-batch sees the `extra` of the state before the
step. Micro-batch j uses the rng `fold_in(step_rng, j)` in both scans.

Randomness tied to an example's position in the batch (3DSPA draws its latent
noise with a fixed key in the batch's shape, so example b gets noise row b) is
made exact by the optional `micro_sums(params, batch, rng, state, positions,
batch_size)`: the engine calls it instead of `sums` for each micro-batch, with
`positions` [B/k] int32 the examples' indices in the whole batch (micro-batch j
holds examples j, j+k, j+2k, ..., the engine's strided split) and `batch_size`
= B, so that the method can draw the whole batch's values once and take its
rows. A single step on the whole batch calls `sums` (positions 0..B-1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

Sums = tuple[Mapping[str, jax.Array], Mapping[str, jax.Array]]  # (totals, weights)


@dataclasses.dataclass(frozen=True)
class SumsLoss:
  """A loss_fn written as a function of sums over examples (module docstring).

  Attributes:
    sums: (params, batch, rng, state) -> (totals {name: []}, weights {name: []}),
      both additive over examples; weights must not depend on `params`.
    combine: (totals, weights, state) -> (loss [], aux {name: []}), or
      (loss, (aux, new_extra)) for a method with `has_extra`.
    micro_sums: optional (params, micro_batch, rng, state, positions [B/k]
      int32, batch_size B) -> the sums of a micro-batch whose examples sit at
      `positions` of the whole batch of B; used by `accumulate_exact` instead of
      `sums` (module docstring). It must equal `sums` when positions = 0..B-1.
  """
  sums: Callable[[Any, Any, jax.Array, Any], Sums]
  combine: Callable[[Mapping[str, jax.Array], Mapping[str, jax.Array], Any], Any]
  micro_sums: Callable[[Any, Any, jax.Array, Any, jax.Array, int], Sums] | None = None

  def __call__(self, params: Any, batch: Any, rng: jax.Array, state: Any) -> Any:
    """The loss of one (whole) batch: combine(sums(...))."""
    totals, weights = self.sums(params, batch, rng, state)
    return self.combine(totals, jax.lax.stop_gradient(weights), state)


def _float32(tree: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  return {name: jnp.asarray(value, jnp.float32) for name, value in tree.items()}


def accumulate_exact(
    loss: SumsLoss,
    state: Any,
    micro: Any,
    rng: jax.Array,
    *,
    has_extra: bool,
    constrain: Callable[[Any], Any] = lambda grads: grads,
) -> tuple[jax.Array, Any, Any, Any]:
  """Loss, aux, new extra and gradient of the whole batch from its micro-batches.

  Args:
    loss: the method's SumsLoss.
    state: the TrainState before the update (params, extra, step).
    micro: the batch split into micro-batches, every leaf [k, B/k, ...].
    rng: the step's rng; micro-batch j uses fold_in(rng, j).
    has_extra: whether `loss.combine` returns (loss, (aux, new_extra)).
    constrain: applied to the gradient accumulator after every micro-batch
      (the engine's sharding constraint).

  Returns:
    (loss [] float32, aux, new_extra, grads) with grads float32 in the
    structure of state.params.
  """
  k, micro_size = jax.tree.leaves(micro)[0].shape[:2]
  indices = jnp.arange(k)

  def sums_of(params, micro_batch, index):
    micro_rng = jax.random.fold_in(rng, index)
    if loss.micro_sums is None:
      totals, weights = loss.sums(params, micro_batch, micro_rng, state)
    else:
      # Micro-batch `index` holds examples index, index + k, ... of the whole batch.
      positions = jnp.arange(micro_size, dtype=jnp.int32) * k + index
      totals, weights = loss.micro_sums(params, micro_batch, micro_rng, state, positions,
                                        k * micro_size)
    return _float32(totals), jax.lax.stop_gradient(_float32(weights))

  first = jax.tree.map(lambda x: x[0], micro)
  totals_shape, weights_shape = jax.eval_shape(sums_of, state.params, first, 0)
  zeros = lambda tree: jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), tree)
  add = lambda a, b: jax.tree.map(jnp.add, a, b)

  # Scan 1 (forward only): the whole batch's sums.
  def forward(carry, xs):
    index, micro_batch = xs
    return add(carry, sums_of(state.params, micro_batch, index)), None

  (totals, weights), _ = jax.lax.scan(
      forward, (zeros(totals_shape), zeros(weights_shape)), (indices, micro))

  def loss_of_totals(t):
    out = loss.combine(t, weights, state)
    return jnp.asarray(out[0], jnp.float32)

  lam = jax.lax.stop_gradient(jax.grad(loss_of_totals)(totals))

  # Scan 2: sum over micro-batches of the gradient of sum_t lam_t * totals_t.
  def surrogate(params, micro_batch, index):
    t, _ = sums_of(params, micro_batch, index)
    value = sum(lam[name] * t[name] for name in sorted(t))
    return value, t

  value_and_grad = jax.value_and_grad(surrogate, has_aux=True)

  def backward(carry, xs):
    grad_sum, total_sum = carry
    index, micro_batch = xs
    (_, t), grads = value_and_grad(state.params, micro_batch, index)
    grad_sum = constrain(jax.tree.map(lambda acc, g: acc + g.astype(jnp.float32),
                                      grad_sum, grads))
    return (grad_sum, add(total_sum, t)), None

  (grads, totals), _ = jax.lax.scan(
      backward, (constrain(zeros(state.params)), zeros(totals_shape)), (indices, micro))
  # The logged loss and metrics use scan 2's totals, so that scan 1 only has to
  # produce them when lambda needs them.
  out = loss.combine(totals, weights, state)
  if has_extra:
    value, (aux, new_extra) = out
  else:
    (value, aux), new_extra = out, state.extra
  return jnp.asarray(value, jnp.float32), aux, new_extra, grads
