r"""3DSPA / TRAJAN training throughput on this machine: steps/s and tracks/s.

    python benchmarks/trajan3d_train.py                       # smoke + default sizes
    python benchmarks/trajan3d_train.py --sizes smoke --steps 20
    python benchmarks/trajan3d_train.py --config configs/trajan.py

Measures the jitted train step (forward, loss of trajan3d.losses, gradient,
clip + AdamW of tapkit.train.optim) on random inputs of each preset's shapes,
after one compile step; reports the median over `--steps` steps. tracks/s
counts support + query tracks per second ((S + Q) * B / step time).

'default' is the paper size (150 frames, full-width model). At batch 64 with
2048 + 2048 tracks its step needs terabytes of activations (the official
code's jitted gradient takes ~40 MB per support track and ~65 MB per query
at batch 1), so on a CPU it is measured at `--default_batch` /
`--default_tracks` (batch 1, 64 + 64 tracks) and the table also prints the
step time linearly extrapolated to the paper batch (an estimate, marked as such).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import optax

from tapkit.train import optim
from trajan3d import losses
from trajan3d import score as score_lib
from trajan3d import task


def random_batch(rng: np.random.Generator, batch: int, support: int, query: int,
                 frames: int, coords: int) -> dict[str, np.ndarray]:
  """Random inputs/targets with the training batch layout."""
  vis = lambda n: (rng.random((batch, n, frames, 1)) < 0.9).astype(np.float32)
  qp = rng.normal(size=(batch, query, 1 + coords)).astype(np.float32)
  qp[..., 0] = rng.integers(0, frames, size=(batch, query))
  return {
      'support_tracks': rng.normal(size=(batch, support, frames, coords)).astype(np.float32),
      'support_tracks_visible': vis(support),
      'query_points': qp,
      'boundary_frame': np.full((batch,), frames, np.int32),
      'target_points': rng.normal(size=(batch, query, frames, coords)).astype(np.float32),
      'target_tracks_visible': vis(query),
  }


def time_steps(config, batch_size: int, support: int, query: int, steps: int
               ) -> tuple[float, float, int]:
  """(median step seconds, compile+first step seconds, parameter count)."""
  model = task.build_model_from_config(config)
  coords = 2 if config.model.kind == 'trajan' else 3
  frames = int(config.model.num_output_frames)
  rng = np.random.default_rng(0)
  batch = jax.tree.map(jnp.asarray, random_batch(rng, batch_size, support, query, frames,
                                                 coords))
  inputs = task.model_inputs(batch)
  params = jax.jit(model.init)(jax.random.PRNGKey(0),
                               jax.tree.map(lambda x: x[:1], inputs))['params']
  tx = optim.make_optimizer(config.optimizer, params, config.total_steps)
  opt_state = tx.init(params)

  def loss_fn(p, b):
    out = model.apply({'params': p}, task.model_inputs(b))
    return losses.track_losses(out.tracks, out.visible_logits, out.certain_logits,
                               b['target_points'], b['target_tracks_visible'],
                               config.loss)[0]

  @jax.jit
  def step(p, s, b):
    loss, grads = jax.value_and_grad(loss_fn)(p, b)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  t0 = time.perf_counter()
  params, opt_state, loss = step(params, opt_state, batch)
  loss.block_until_ready()
  first = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, batch)
    loss.block_until_ready()
    times.append(time.perf_counter() - t0)
  count = sum(x.size for x in jax.tree.leaves(params))
  return statistics.median(times), first, count


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/spa3d.py')
  parser.add_argument('--sizes', default='smoke,default')
  parser.add_argument('--steps', type=int, default=10, help='timed steps (smoke)')
  parser.add_argument('--default_steps', type=int, default=2)
  parser.add_argument('--default_batch', type=int, default=1)
  parser.add_argument('--default_tracks', type=int, default=64,
                      help='support = query tracks at the default size')
  args = parser.parse_args(argv)

  rows = []
  for size in args.sizes.split(','):
    config = score_lib.load_config_arg(f'{args.config}:{size}')
    if size == 'smoke':
      b, s, q, n = (config.batch_size, config.data.num_support, config.data.num_query,
                    args.steps)
    else:
      b, s, q, n = (args.default_batch, args.default_tracks, args.default_tracks,
                    args.default_steps)
    print(f'[{size}] timing {n} steps at batch {b}, {s} support + {q} query tracks, '
          f'{config.model.num_output_frames} frames ...', flush=True)
    sec, first, count = time_steps(config, b, s, q, n)
    paper = (config.batch_size * (config.data.num_support + config.data.num_query)
             / (b * (s + q)))
    rows.append((size, count, b, s, q, sec, first, 1.0 / sec, b * (s + q) / sec,
                 sec * paper))

  print(f'\n{args.config} on {jax.devices()[0].platform.upper()} '
        f'({os.cpu_count()} cores), median step time')
  header = (f'{"size":<8}{"params":>12}{"B":>4}{"S":>6}{"Q":>6}{"step s":>10}'
            f'{"1st s":>8}{"steps/s":>9}{"tracks/s":>10}{"paper-batch step s (est.)":>27}')
  print(header)
  for size, count, b, s, q, sec, first, sps, tps, est in rows:
    print(f'{size:<8}{count:>12,}{b:>4}{s:>6}{q:>6}{sec:>10.3f}{first:>8.1f}{sps:>9.3f}'
          f'{tps:>10.1f}{est:>27.1f}')


if __name__ == '__main__':
  main()
