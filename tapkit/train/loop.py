"""The training loop shared by every method, and the small interface a method fills in.

    method = Method(init_fn=..., loss_fn=..., train_source=..., train_transforms=[...])
    final_state = train(config, workdir, method)

See tapkit/train/README.md for the contract of each field and the config keys.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain.python as grain
import jax
import ml_collections

from tapkit.data import bad_records
from tapkit.data import pipeline
from tapkit.data import workers
from tapkit.train import checkpoint as ckpt_lib
from tapkit.train import evaluators as evaluators_lib
from tapkit.train import costs
from tapkit.train import mesh as mesh_lib
from tapkit.train import optim
from tapkit.train import precision as precision_lib
from tapkit.train import progress
from tapkit.train import rng_lowering
from tapkit.train import step as step_lib
from tapkit.train import writers as writers_lib
from tapkit.train.state import TrainState


class NonFiniteError(RuntimeError):
  """Raised after `guard.max_consecutive_bad` consecutive non-finite steps."""


# Periodic evaluation hooks; `config.evals` entries become hooks too.
EvalHook = evaluators_lib.EvalHook


@dataclasses.dataclass(frozen=True)
class Method:
  """What a method hands to the engine.

  Attributes:
    init_fn: (rng, example_batch) -> params, or (params, extra) if has_extra.
      example_batch is this process's numpy batch [B_local, ...].
    loss_fn: (params, batch, rng, state) -> (loss [], aux {name: scalar}); with
      has_extra -> (loss, (aux, new_extra)). `state` is the TrainState before
      the update (state.step, state.ema_params as a teacher, state.extra).
      Must be jit-traceable; `batch` holds global arrays [B, ...].
    train_source: grain random-access source of records.
    train_transforms: grain transforms per record (batching is added).
    eval_hooks: periodic evaluations built by the method itself; the engine
      adds one per `config.evals` entry (tapkit/train/evaluators.py).
    has_extra: see init_fn / loss_fn.
    init_outside_jit: init_fn is called as it is (with the concrete rng and batch), not
      traced into the engine's initialisation program: for an init_fn that jits itself, so
      that its compiled program is shared with other code of the process (3DSPA's untrained
      baseline initialises the model with the same jitted function and input shapes, and
      compiles nothing). A second, small program builds the optimiser state and EMA around
      the parameters. An init_fn that works this way must also work traced (it is, for
      the abstract state, and with several processes).
  """

  init_fn: Callable[[jax.Array, Any], Any]
  loss_fn: step_lib.LossFn
  train_source: grain.RandomAccessDataSource
  train_transforms: Sequence[grain.Transformation] = ()
  eval_hooks: Sequence[EvalHook] = ()
  has_extra: bool = False
  init_outside_jit: bool = False


class _Preemption:
  """SIGTERM -> request a save-and-exit at the next step boundary.

  Single process only. With several processes every host must agree on the
  step at which to save, so the engine leaves SIGTERM to jax.distributed's
  preemption notifier and asks orbax's `reached_preemption(step)` (a
  cross-host sync point) instead.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if jax.process_count() > 1:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread: rely on orbax's multi-host sync.
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint and exiting.')
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def build_state(config: ml_collections.ConfigDict, method: Method,
                example_batch: Any, mesh: jax.sharding.Mesh, materialize: bool = True):
  """Creates the sharded initial TrainState and its optimiser.

  Returns:
    (state, abstract_state, tx): abstract_state holds ShapeDtypeStructs with
    shardings (restore target); state is None unless `materialize`.
  """
  seed_key = jax.random.PRNGKey(config.seed)
  init_key, step_key = jax.random.split(seed_key)

  def init_params(batch):
    out = method.init_fn(init_key, batch)
    return out if method.has_extra else (out, None)

  abstract_params, _ = jax.eval_shape(init_params, example_batch)
  tx = optim.make_optimizer(config.optimizer, abstract_params, config.total_steps)
  use_ema = config.ema.momentum is not None

  def state_around(params, extra):
    return TrainState.create(params=params, opt_state=tx.init(params), rng=step_key,
                             extra=extra, use_ema=use_ema)

  def init_state(batch):
    return state_around(*init_params(batch))

  abstract = jax.eval_shape(init_state, example_batch)
  shardings = mesh_lib.tree_shardings(abstract, mesh, config.sharding.fsdp_min_size)
  state = None
  if materialize and method.init_outside_jit and jax.process_count() == 1:
    # The method's own compiled init; its output, replicated over the mesh, goes through
    # the program that adds the rest of the state with the FSDP shardings. (With several
    # processes the init is traced into one program as for any method: a host's own
    # arrays cannot be placed on another host's devices.)
    params_extra = jax.device_put(init_params(example_batch), mesh_lib.replicated(mesh))
    state = jax.jit(state_around, out_shardings=shardings)(*params_extra)
  elif materialize:
    state = jax.jit(init_state, out_shardings=shardings)(example_batch)
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return state, abstract, tx


def compile_step(config: ml_collections.ConfigDict, method: Method, tx,
                 abstract_state: TrainState, example_global_batch: Any,
                 mesh: jax.sharding.Mesh):
  """jit of the train step with explicit shardings and donated state/metrics.

  Returns (jitted_step, new_metrics): new_metrics() gives a fresh, replicated,
  empty metrics collection (a new one each time: the step donates it).
  """
  names = step_lib.aux_names(method.loss_fn, abstract_state.params, example_global_batch,
                             abstract_state, method.has_extra)
  metrics_cls = step_lib.metrics_class(names)
  state_sh = jax.tree.map(lambda a: a.sharding, abstract_state)
  step_fn = step_lib.make_train_step(
      method.loss_fn, tx, metrics_cls, ema_momentum=config.ema.momentum,
      has_extra=method.has_extra, accumulate_steps=int(config.accumulate_steps),
      micro_batch_sharding=mesh_lib.micro_batch_sharding(mesh),
      grad_shardings=state_sh.params)
  rep = mesh_lib.replicated(mesh)
  new_metrics = lambda: jax.device_put(metrics_cls.empty(), rep)
  metrics_sh = jax.tree.map(lambda _: rep, metrics_cls.empty())
  jitted = jax.jit(
      step_fn,
      in_shardings=(state_sh, mesh_lib.batch_sharding(mesh), metrics_sh),
      out_shardings=(state_sh, metrics_sh, rep),
      donate_argnums=(0, 2))
  return jitted, new_metrics


def _check_finite_params(state: TrainState) -> None:
  if not optim.all_finite_on_host(state.params):
    raise NonFiniteError('Parameters are not finite; refusing to save a checkpoint.')


def throughput(steps_per_s: float, batch_size: int, cost: Mapping[str, Any],
               peak_flops: float | None) -> dict[str, float]:
  """perf/{steps_per_sec, examples_per_sec[, mfu]}: mfu = achieved / peak FLOP/s per device.

  The achieved rate counts XLA's FLOPs of the compiled per-device step (`cost`, a
  `costs.report`), so rematerialised recomputation counts as work done.
  """
  out = {'perf/steps_per_sec': steps_per_s, 'perf/examples_per_sec': steps_per_s * batch_size}
  if peak_flops:
    out['perf/mfu'] = cost['flops_per_step_per_device'] * steps_per_s / peak_flops
  return out


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
          method: Method) -> TrainState:
  """Trains `method` for config.total_steps steps, resuming from `workdir` if possible."""
  workdir = os.fspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  rng_lowering.use_straight_line_threefry_on_cpu()  # faster compiles, the same random bits
  # Built first, so that a wrong `config.evals` entry fails before any work.
  eval_hooks = [*method.eval_hooks, *evaluators_lib.build_hooks(config, workdir)]
  mesh = mesh_lib.make_mesh(config.mesh)
  local_batch = mesh_lib.local_batch_size(config.batch_size, mesh)
  mesh_lib.check_accumulation(config.batch_size, config.accumulate_steps, mesh)
  precision_lib.check(config.precision)
  total = int(config.total_steps)
  logging.info('Mesh %s over %d devices, %d process(es); local batch %d.',
               dict(mesh.shape), mesh.devices.size, jax.process_count(), local_batch)

  # A malformed training file is skipped (warning + counter), up to data.max_bad_fraction.
  train_source = bad_records.skip_bad_records(method.train_source,
                                              float(config.data.max_bad_fraction))
  loader = pipeline.make_dataloader(
      train_source, method.train_transforms, batch_size=local_batch,
      seed=config.seed,
      shard_options=grain.ShardOptions(jax.process_index(), jax.process_count(),
                                       drop_remainder=True),
      worker_count=config.data.worker_count)
  example_iter = iter(loader)  # A throw-away iterator: only shapes are needed.
  example = next(example_iter)
  workers.close_iterator(example_iter)
  data_iter = iter(loader)

  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), config.checkpoint)
  latest = ckpt.latest_step()
  state, abstract_state, tx = build_state(config, method, example, mesh,
                                          materialize=latest is None)
  if latest is not None:
    logging.info('Resuming from checkpoint at step %d.', latest)
    state = ckpt.restore(latest, abstract_state, data_iter)
  example_global = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((config.batch_size, *x.shape[1:]), x.dtype), example)
  train_step, new_metrics = compile_step(
      config, method, tx, abstract_state, example_global, mesh)
  # Compiled once, ahead of time, so that its memory and FLOPs are known up front.
  batch_abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=mesh_lib.batch_sharding(mesh)),
      example_global)
  train_step = train_step.lower(abstract_state, batch_abstract, new_metrics()).compile()
  cost = costs.report(config, train_step, abstract_state, batch_abstract, mesh.devices.size)
  logging.info('Compiled %s', costs.format_report(cost))
  peak = costs.peak_flops(jax.devices()[0].device_kind, config.precision.compute_dtype)

  step = int(jax.device_get(state.step))

  writer = writers_lib.create_writer(workdir)
  hooks = [progress.ReportProgress(
      num_train_steps=total, writer=writer, every_steps=config.log_every)]
  if config.profile.first_step > 0 and jax.process_index() == 0:
    hooks.append(progress.Profile(
        logdir=workdir, num_steps=config.profile.num_steps,
        first_step=config.profile.first_step))

  max_bad = int(config.guard.max_consecutive_bad)
  metrics = new_metrics()
  pending_bad = None  # (step, device scalar) of the previous step.
  timer = [step, time.time()]  # [step, time] of the last throughput measurement

  def check_guard(at_step: int, consecutive_bad: jax.Array) -> None:
    bad = int(consecutive_bad)
    if bad >= max_bad:
      raise NonFiniteError(
          f'{bad} consecutive steps with a non-finite loss or gradient, ending at '
          f'step {at_step} (guard.max_consecutive_bad={max_bad}). Their updates '
          f'were skipped; the last checkpoint (step {ckpt.latest_step()}) is clean.')

  def save(at_step: int, eval_metrics: Mapping[str, float] | None = None) -> None:
    _check_finite_params(state)
    ckpt.save(at_step, state, data_iter, metrics=dict(eval_metrics) if eval_metrics else None)

  try:
    with _Preemption() as preemption:
      while step < total:
        batch = mesh_lib.make_global_batch(next(data_iter), mesh)
        state, metrics, consecutive_bad = train_step(state, batch, metrics)
        step += 1
        # Read the previous step's guard while this one runs, so the host
        # never waits for the device in steady state.
        if pending_bad is not None:
          check_guard(*pending_bad)
        pending_bad = (step, consecutive_bad)
        for hook in hooks:
          hook(step)

        last = step == total
        if step % config.log_every == 0 or last:
          values = jax.device_get(metrics.compute())
          scalars = {f'train/{k}': v for k, v in values.items()}
          now = time.time()
          steps_per_s = (step - timer[0]) / max(now - timer[1], 1e-9)
          timer[:] = [step, now]
          scalars.update(throughput(steps_per_s, config.batch_size, cost, peak))
          writer.write_scalars(step, scalars)
          metrics = new_metrics()

        eval_metrics = {}
        for hook in eval_hooks:
          if step % hook.every_steps == 0 or last:
            out = hook.fn(state, step, writer=writer)
            scalars = {f'{hook.name}/{k}': float(v) for k, v in (out or {}).items()}
            writer.write_scalars(step, scalars)
            eval_metrics.update(scalars)

        preempted = preemption.requested or ckpt.manager.reached_preemption(step)
        if step % config.checkpoint.every_steps == 0 or last or preempted:
          check_guard(*pending_bad)
          save(step, eval_metrics)
        if preempted and not last:
          logging.warning('Preempted: saved step %d, exiting.', step)
          break
  finally:
    ckpt.wait()
    ckpt.close()
    writer.close()
    workers.close_iterator(data_iter)  # Stops grain's worker processes now.
  return state
