"""TracksTo4D cost on this machine: forward, train step, and per-video inference.

Full-size network (released checkpoints: width 256, 3 rounds, 16 heads, K = 12, 12.8 M params),
batch 1, F = 50 frames, N = 100 and 256 points, float32 (HIGHEST matmul precision,
as the official). Measured after compilation and one warm-up run; the median (and
min) of --repeats runs is reported:
  forward       jitted `TracksTo4D.apply`
  train step    jitted forward + backward of the total loss (tracks4d.losses) + Adam(1e-4) update
  infer video   `tracks4d.infer.infer_video` on a synthetic TracksTo4D file (read,
                sample 50 frames / up to --infer_points tracks, forward, official
                metrics, write the npz; no HTML), after a first warm-up video
The official PyTorch figures on this CPU (torch CPU, 2 threads, median of 5 runs; upper bounds,
measured under load): forward 2.83 s / step 11.1 s at N=100; 8.30 s / 25.8 s at N=256.

    python benchmarks/tracks4d_step.py [--points 100 256] [--frames 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import optax

from tracks4d import losses
from tracks4d import model as model_lib


def _timed(fn, repeats: int) -> tuple[float, float]:
  """(median, min) seconds of `repeats` calls of fn() after one warm-up call."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times), min(times)


def random_tracks(num_points: int, num_frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Smooth random normalised tracks [1, N, 3, F] and visibility [1, F, N] (~85% visible)."""
  rng = np.random.default_rng(seed)
  start = rng.uniform(-0.6, 0.6, size=(num_points, 2, 1))
  drift = np.cumsum(rng.normal(0.0, 0.01, size=(num_points, 2, num_frames)), axis=-1)
  vis = rng.uniform(size=(num_points, 1, num_frames)) < 0.85
  tracks = np.concatenate([start + drift, vis.astype(np.float64)], axis=1)
  return tracks[None].astype(np.float32), np.transpose(vis[:, 0], (1, 0))[None]


def bench_model(num_points: int, num_frames: int, repeats: int) -> dict[str, float]:
  net = model_lib.TracksTo4D()
  tracks, vis = random_tracks(num_points, num_frames)
  tracks, vis = jnp.asarray(tracks), jnp.asarray(vis)
  params = jax.jit(net.init)(jax.random.PRNGKey(0), tracks)['params']
  opt = optax.adam(1e-4)
  opt_state = opt.init(params)

  fwd = jax.jit(lambda p, t: net.apply({'params': p}, t))

  def loss(p):
    return losses.loss_terms(net.apply({'params': p}, tracks), tracks, vis)['loss_total']

  @jax.jit
  def step(p, s):
    value, grads = jax.value_and_grad(loss)(p)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, value

  t0 = time.perf_counter()
  jax.block_until_ready(fwd(params, tracks))
  compile_fwd = time.perf_counter() - t0
  t0 = time.perf_counter()
  jax.block_until_ready(step(params, opt_state))
  compile_step = time.perf_counter() - t0
  fwd_med, fwd_min = _timed(lambda: fwd(params, tracks), repeats)
  # The step is timed on fixed inputs (no state carried): same work per call.
  step_med, step_min = _timed(lambda: step(params, opt_state), repeats)
  return {'forward': fwd_med, 'forward_min': fwd_min, 'step': step_med, 'step_min': step_min,
          'compile_forward': compile_fwd, 'compile_step': compile_step}


def bench_infer(num_points: int, repeats: int) -> float:
  """Median seconds per video of tracks4d.infer on a 50-frame synthetic file."""
  from tapkit.data import synthetic, tracks4d_format  # pylint: disable=g-import-not-at-top
  from tracks4d import checkpoint as t4d_checkpoint  # pylint: disable=g-import-not-at-top
  from tracks4d import infer  # pylint: disable=g-import-not-at-top
  net = model_lib.TracksTo4D()
  with tempfile.TemporaryDirectory() as tmp:
    clip = synthetic.generate_clip((7, 0), 51, 96, 128, int(1.6 * num_points))
    path = os.path.join(tmp, 'input', 'video.npz')
    out_dir = os.path.join(tmp, 'out')
    tracks4d_format.save_tracks4d_npz(path, tracks4d_format.clip_to_tracks4d(clip))
    params = jax.jit(net.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8, 3, 50)))['params']
    flat = os.path.join(tmp, 'params.npz')
    np.savez(flat, **t4d_checkpoint.flax_params_to_torch_state_dict(jax.device_get(params)))
    model = infer.load_model(flat)
    run = lambda: infer.infer_video(model, path, out_dir, max_points=num_points, html=False)
    row = run()  # Warm-up (compiles for this N).
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      run()
      times.append(time.perf_counter() - t0)
    return statistics.median(times), row['num_points']


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--points', type=int, nargs='*', default=[100, 256],
                      help='N values of the model timings (none: skip them)')
  parser.add_argument('--frames', type=int, default=50)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--infer_points', type=int, default=256,
                      help='max tracks per video in the inference timing (official 1000)')
  parser.add_argument('--skip_infer', action='store_true')
  args = parser.parse_args()

  print(f'jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} cpu(s); '
        f'full TracksTo4D, batch 1, F={args.frames}, median (min) of {args.repeats} runs')
  rows = []
  for n in args.points:
    r = bench_model(n, args.frames, args.repeats)
    rows.append((n, r))
    print(f'  N={n}: forward {r["forward"]:.3f}s step {r["step"]:.3f}s '
          f'(compile {r["compile_forward"]:.1f}s / {r["compile_step"]:.1f}s)', flush=True)
  print()
  if rows:
    print(f'{"N, F":>10} | {"forward s":>16} | {"fwd+bwd+Adam s":>16}')
    print('-' * 50)
  for n, r in rows:
    print(f'{f"{n}, {args.frames}":>10} | {r["forward"]:7.3f} ({r["forward_min"]:.3f}) | '
          f'{r["step"]:7.3f} ({r["step_min"]:.3f})')
  if not args.skip_infer:
    seconds, n_real = bench_infer(args.infer_points, max(1, args.repeats // 2))
    print(f'\ninference per video (50 frames, {n_real} tracks, read + sample + forward + '
          f'metrics + npz): {seconds:.3f}s')


if __name__ == '__main__':
  main()
