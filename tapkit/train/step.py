"""The jitted train step: loss, gradients, guarded update, EMA, on-device metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from tapkit.train import accumulation
from tapkit.train import optim
from tapkit.train.state import TrainState

# loss_fn(params, batch, rng, state) -> (loss [], aux {name: []})
#   or, with has_extra, -> (loss, (aux, new_extra)).
LossFn = Callable[[Any, Any, jax.Array, TrainState], tuple[jax.Array, Any]]

ENGINE_METRICS = ('loss', 'grad_norm')


def metrics_class(aux_names: Sequence[str]) -> type[clu_metrics.Collection]:
  """clu Collection: Average of loss, grad_norm and every aux scalar, plus the
  running totals `skipped_steps` and `consecutive_bad` (LastValue)."""
  fields = {name: clu_metrics.Average for name in (*ENGINE_METRICS, *aux_names)}
  fields['skipped_steps'] = clu_metrics.LastValue
  fields['consecutive_bad'] = clu_metrics.LastValue
  return clu_metrics.Collection.create(**fields)


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    metrics_cls: type[clu_metrics.Collection],
    *,
    ema_momentum: float | None = None,
    has_extra: bool = False,
    accumulate_steps: int = 1,
    micro_batch_sharding: jax.sharding.Sharding | None = None,
    grad_shardings: Any = None,
) -> Callable[[TrainState, Any, clu_metrics.Collection],
              tuple[TrainState, clu_metrics.Collection, jax.Array]]:
  """Returns step(state, batch, metrics) -> (state, metrics, consecutive_bad).

  A step whose loss or gradient is non-finite leaves params, opt_state, EMA and
  extra unchanged (decided on device by lax.cond / jnp.where), but
  still advances `state.step` so that the next step uses the next batch and rng.
  Metrics of dropped steps are masked out of the averages.

  With `accumulate_steps` k > 1 the batch [B, ...] is split into k micro-batches
  of B/k examples (see `split_micro_batches`) and a `lax.scan` runs loss and
  gradient on one micro-batch at a time, so activations exist for B/k examples
  only. The update uses the mean of the k gradients, the logged loss and aux
  metrics are the means of the k micro-batch values (all in float32): for a loss
  that is a mean over equally weighted examples this equals one step on the
  whole batch up to float rounding. A loss normalised by a batch-wide count
  (e.g. a sum over visible points divided by their number) would become the
  mean of the k per-micro-batch ratios instead: such a loss is written as an
  `accumulation.SumsLoss` (sums over examples, then a combine function), which
  the step accumulates exactly (`accumulation.accumulate_exact`: loss, aux,
  extra and gradient of the whole batch). Micro-batch i uses the rng
  `fold_in(step_rng, i)`; with a plain loss_fn it sees the `extra` left by
  micro-batch i-1, with a SumsLoss the `extra` of the state before the step.
  With k = 1 the step is exactly the plain one (same rng, same graph).

  Args:
    loss_fn, tx, metrics_cls, ema_momentum, has_extra: see loop.Method and
      tapkit/train/README.md.
    accumulate_steps: micro-batches per update (k).
    micro_batch_sharding: sharding of the split batch [k, B/k, ...] (micro-batch
      axis replicated, examples over the batch axes), so that every device
      keeps its own examples; None leaves it to XLA.
    grad_shardings: shardings of the gradient accumulator (those of the params,
      so FSDP also shards it); None leaves it to XLA.
  """
  if accumulate_steps < 1:
    raise ValueError(f'accumulate_steps must be >= 1, got {accumulate_steps}.')

  def objective(params, batch, rng, state):
    out = loss_fn(params, batch, rng, state)
    if has_extra:
      loss, (aux, new_extra) = out
    else:
      (loss, aux), new_extra = out, state.extra
    # The loss is differentiated and reduced in float32 whatever the compute dtype.
    return loss.astype(jnp.float32), (aux, new_extra)

  value_and_grad = jax.value_and_grad(objective, has_aux=True)

  def constrain(grads):
    if grad_shardings is None:
      return grads
    return jax.lax.with_sharding_constraint(grads, grad_shardings)

  def accumulated(state: TrainState, batch: Any, rng: jax.Array):
    """Mean loss, aux and gradient over the micro-batches; last extra."""
    k = accumulate_steps
    micro = split_micro_batches(batch, k, micro_batch_sharding)  # [k, B/k, ...]
    if isinstance(loss_fn, accumulation.SumsLoss):
      loss, aux, extra, grads = accumulation.accumulate_exact(
          loss_fn, state, micro, rng, has_extra=has_extra, constrain=constrain)
      grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)
      return loss, aux, extra, grads
    first = jax.tree.map(lambda x: x[0], micro)
    shapes = jax.eval_shape(value_and_grad, state.params, first, rng, state)
    (_, (aux_shape, _)), _ = shapes
    zeros = lambda tree: jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), tree)

    def body(carry, xs):
      grad_sum, loss_sum, aux_sum, extra = carry
      index, micro_batch = xs
      (loss, (aux, new_extra)), grads = value_and_grad(
          state.params, micro_batch, jax.random.fold_in(rng, index),
          state.replace(extra=extra))
      grad_sum = constrain(jax.tree.map(
          lambda acc, g: acc + g.astype(jnp.float32), grad_sum, grads))
      aux_sum = jax.tree.map(lambda acc, v: acc + jnp.asarray(v, jnp.float32), aux_sum,
                             dict(aux))
      return (grad_sum, loss_sum + loss, aux_sum, new_extra), None

    init = (constrain(zeros(state.params)), jnp.zeros((), jnp.float32),
            zeros(dict(aux_shape)), state.extra)
    (grad_sum, loss_sum, aux_sum, extra), _ = jax.lax.scan(
        body, init, (jnp.arange(k), micro))
    scale = 1.0 / k
    grads = jax.tree.map(lambda g, p: (g * scale).astype(p.dtype), grad_sum, state.params)
    aux = jax.tree.map(lambda v: v * scale, aux_sum)
    return loss_sum * scale, aux, extra, grads

  def step(state: TrainState, batch: Any, metrics: clu_metrics.Collection):
    rng = jax.random.fold_in(state.rng, state.step)
    if accumulate_steps == 1:
      (loss, (aux, new_extra)), grads = value_and_grad(state.params, batch, rng, state)
    else:
      loss, aux, new_extra, grads = accumulated(state, batch, rng)
    # The global norm is non-finite iff some gradient entry is (or the norm
    # overflows, which is just as bad), so one scalar guards the whole tree.
    grad_norm = optax.global_norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def apply_update(carry):
      params, opt_state, ema = carry
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      if ema_momentum is not None:
        ema = optim.ema_update(ema, params, ema_momentum)
      return params, opt_state, ema

    # lax.cond rather than jnp.where selects: a good step costs exactly the
    # plain update (no extra pass over params and optimiser state), a bad one
    # passes the old values through untouched.
    new_params, new_opt_state, new_ema = jax.lax.cond(
        ok, apply_update, lambda carry: carry,
        (state.params, state.opt_state, state.ema_params))
    new_state = state.replace(
        step=state.step + 1,
        params=new_params,
        opt_state=new_opt_state,
        ema_params=new_ema,
        extra=jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_extra, state.extra),
        skipped_steps=state.skipped_steps + (~ok).astype(jnp.int32),
        consecutive_bad=jnp.where(ok, 0, state.consecutive_bad + 1).astype(jnp.int32),
    )

    mask = ok[None]
    values = {'loss': loss, 'grad_norm': grad_norm, **dict(aux)}
    fields = {name: clu_metrics.Average.from_model_output(
        jnp.asarray(v, jnp.float32), mask=mask) for name, v in values.items()}
    fields['skipped_steps'] = clu_metrics.LastValue(
        value=new_state.skipped_steps.astype(jnp.float32))
    fields['consecutive_bad'] = clu_metrics.LastValue(
        value=new_state.consecutive_bad.astype(jnp.float32))
    counter = metrics._reduction_counter  # pylint: disable=protected-access
    # A fresh counter of 1 (merging adds the counters).
    update = metrics_cls(
        _reduction_counter=type(counter)(jnp.ones((), jnp.int32)), **fields)
    return new_state, metrics.merge(update), new_state.consecutive_bad

  return step


def split_micro_batches(batch: Any, k: int,
                        sharding: jax.sharding.Sharding | None = None) -> Any:
  """[B, ...] -> [k, B/k, ...] with micro-batch i = examples i, i+k, i+2k, ...

  The strided split keeps every micro-batch spread over all devices: a device
  holding a contiguous block of B/D examples holds B/(kD) of each micro-batch,
  so no example moves between devices (requires B divisible by k * D).
  """

  def split(x):
    if x.shape[0] % k:
      raise ValueError(f'batch of {x.shape[0]} examples cannot be split into '
                       f'accumulate_steps={k} equal micro-batches.')
    out = jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)
    return out if sharding is None else jax.lax.with_sharding_constraint(out, sharding)

  return jax.tree.map(split, batch)


def aux_names(loss_fn: LossFn, params: Any, batch: Any, state: TrainState,
              has_extra: bool) -> list[str]:
  """Names of the aux metrics `loss_fn` returns (abstract evaluation, no FLOPs)."""
  out = jax.eval_shape(lambda p, b, s: loss_fn(p, b, jax.random.PRNGKey(0), s),
                       params, batch, state)
  aux = out[1][0] if has_extra else out[1]
  if not isinstance(aux, Mapping):
    raise TypeError(f'loss_fn must return (loss, aux_dict); aux is {type(aux)}.')
  bad = [k for k, v in aux.items() if v.shape != ()]
  if bad:
    raise ValueError(f'aux metrics must be scalars; {bad} are not.')
  clash = set(aux) & {*ENGINE_METRICS, 'skipped_steps', 'consecutive_bad'}
  if clash:
    raise ValueError(f'aux metric names {sorted(clash)} are reserved by the engine.')
  return sorted(aux)
