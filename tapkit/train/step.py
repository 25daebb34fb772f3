"""The jitted train step: loss, gradients, guarded update, EMA, on-device metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

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
) -> Callable[[TrainState, Any, clu_metrics.Collection],
              tuple[TrainState, clu_metrics.Collection, jax.Array]]:
  """Returns step(state, batch, metrics) -> (state, metrics, consecutive_bad).

  A step whose loss or gradient is non-finite leaves params, opt_state, EMA and
  extra unchanged (decided on device by lax.cond / jnp.where), but
  still advances `state.step` so that the next step uses the next batch and rng.
  Metrics of dropped steps are masked out of the averages.
  """

  def step(state: TrainState, batch: Any, metrics: clu_metrics.Collection):
    rng = jax.random.fold_in(state.rng, state.step)

    def objective(params):
      out = loss_fn(params, batch, rng, state)
      if has_extra:
        loss, (aux, new_extra) = out
      else:
        (loss, aux), new_extra = out, state.extra
      return loss, (aux, new_extra)

    (loss, (aux, new_extra)), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
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
