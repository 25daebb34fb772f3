"""Engine overhead: the engine's jitted train step vs a bare jax.jit update loop.

Both do the same update of the toy MLP (same loss, dropout rng, optax chain,
batch, device); the engine's step adds the non-finite guard (jnp.where selects
of params and optimiser state), the on-device clu metrics and the counters.
Measured at steady state (after compilation and warm-up); repeats of the two
loops are interleaved and the best and median repeats are reported.
Two feeds: a batch already on device, and batches from the grain pipeline
(next() + make_global_batch each step, as the loop does).

    python benchmarks/engine_overhead.py [--steps 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import optax

from configs import toy as toy_config
from tapkit.data import pipeline
from tapkit.train import loop, mesh as mesh_lib, toy_task as toy


def _time_loop(step_once, sync, steps: int) -> tuple[float, float]:
  """(wall steps/s, CPU ms/step) of one run of `steps` steps.

  CPU time (all threads of this process) is reported too because on a shared
  machine wall time mostly measures the other tenants.
  """
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(steps):
    step_once()
  sync()
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  return steps / wall, 1e3 * cpu / steps


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=200)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--hidden', type=int, default=1024)
  parser.add_argument('--batch', type=int, default=256)
  args = parser.parse_args()

  config = toy_config.get_config('default')
  config.model.hidden = (args.hidden, args.hidden)
  config.toy.dim_in = 256
  config.batch_size = args.batch
  config.total_steps = 10**6
  method = toy.build_method(config)
  mesh = mesh_lib.make_mesh(config.mesh)
  loader = pipeline.make_dataloader(
      method.train_source, method.train_transforms, batch_size=config.batch_size,
      seed=config.seed)
  data_iter = iter(loader)
  fixed = mesh_lib.make_global_batch(next(data_iter), mesh)

  # Engine: the same build and jitted step the loop uses.
  state, abstract, tx = loop.build_state(config, method, jax.device_get(fixed), mesh)
  example = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), fixed)
  engine_step, new_metrics = loop.compile_step(config, method, tx, abstract, example, mesh)

  # Bare: params + opt_state through jax.jit(update) with the same loss and tx.
  params = jax.tree.map(jnp.copy, state.params)
  opt_state = jax.tree.map(jnp.copy, state.opt_state)
  rng0 = jax.device_get(state.rng)

  def bare_update(params, opt_state, step, batch):
    rng = jax.random.fold_in(rng0, step)
    # The toy loss reads only `state.step`; pass just that (no captured arrays).
    view = types.SimpleNamespace(step=step)
    grads = jax.grad(lambda p: method.loss_fn(p, batch, rng, view)[0])(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, step + 1

  bare_update = jax.jit(bare_update, donate_argnums=(0, 1))

  carry = {'engine': (state, new_metrics()), 'bare': (params, opt_state, jnp.zeros((), jnp.int32))}

  def engine_once(batch_fn):
    s, m = carry['engine']
    s, m, _ = engine_step(s, batch_fn(), m)
    carry['engine'] = (s, m)

  def bare_once(batch_fn):
    p, o, k = carry['bare']
    carry['bare'] = bare_update(p, o, k, batch_fn())

  feeds = {
      'batch on device': lambda: fixed,
      'grain pipeline': lambda: mesh_lib.make_global_batch(next(data_iter), mesh),
  }
  rows = []
  for feed_name, batch_fn in feeds.items():
    impls = {
        'bare': (lambda: bare_once(batch_fn), lambda: jax.block_until_ready(carry['bare'])),
        'engine': (lambda: engine_once(batch_fn),
                   lambda: jax.block_until_ready(carry['engine'])),
    }
    for once, sync in impls.values():
      _time_loop(once, sync, 20)  # Compile + warm up.
    # Interleave the two so that load from other processes hits both alike;
    # the best repeat is the least disturbed one.
    rates = {name: [] for name in impls}
    cpu_ms = {name: [] for name in impls}
    for _ in range(args.repeats):
      for name, (once, sync) in impls.items():
        rate, ms = _time_loop(once, sync, args.steps)
        rates[name].append(rate)
        cpu_ms[name].append(ms)
    rows.append((feed_name, max(rates['bare']), max(rates['engine']),
                 statistics.median(cpu_ms['bare']), statistics.median(cpu_ms['engine'])))

  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()}, '
        f'MLP {config.toy.dim_in}-{args.hidden}-{args.hidden}-{config.toy.dim_out}, '
        f'batch {args.batch}, {args.steps} steps x {args.repeats} interleaved repeats')
  print(f'| {"feed":<16} | {"bare steps/s":>12} | {"engine steps/s":>14} | '
        f'{"overhead (wall)":>15} | {"bare CPU ms/step":>16} | {"engine CPU ms/step":>18} | '
        f'{"overhead (CPU)":>14} |')
  print(f'|{"-" * 18}|{"-" * 14}|{"-" * 16}|{"-" * 17}|{"-" * 18}|{"-" * 20}|{"-" * 16}|')
  for feed, bare, engine, bare_ms, engine_ms in rows:
    print(f'| {feed:<16} | {bare:>12.1f} | {engine:>14.1f} | {bare / engine - 1:>15.1%} | '
          f'{bare_ms:>16.2f} | {engine_ms:>18.2f} | {engine_ms / bare_ms - 1:>14.1%} |')
  print('steps/s: best of the interleaved repeats; CPU ms/step: median. '
        'overhead = engine cost / bare cost - 1 (target < 5%).')


if __name__ == '__main__':
  main()
