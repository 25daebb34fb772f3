"""Benchmark: dpov_jax.sorting.diff_sort vs PyTorch diffsort, forward + backward.

Bitonic network, n = 64, steepness 20, cauchy (the 3DPoV student sorter),
float32, loss <W, P> + <w, sorted> with random W, w; timing covers the forward
pass and the gradient with respect to x. Both sides are called the way a user
calls them: ours is `jax.jit(jax.grad(loss))` in one process on the default
devices (no row splitting over devices), diffsort is `DiffSortNet` with the
torch thread count that was fastest in the warm-up (1 or all cores).

Ours runs once per `--host-threads` value (1: everything inside the caller's
program, the default of `diff_sort`; 2: blocks of rows on two host threads
through `jax.pure_callback`, `diff_sort(..., host_threads=2)`). All variants
run INTERLEAVED (ours with each thread count, diffsort, ours, ...) so that
they see the same machine load; the table gives, per variant, the median and
best of its repeats and the ratios against diffsort's (diffsort time / ours;
`cpu ratio`: best process CPU times, the ratio least disturbed by other jobs),
the largest differences of sorted values, permutation matrices and gradients
to diffsort, and the 1-minute load average before / after each rows value.

    python -m benchmarks.sorting [--rows 2048 8192] [--repeats 3]
        [--host-threads 1 2] [--implementation auto|blocked|scan]
        [--chunk-size C]
"""

import argparse
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from dpov_jax import sorting

N = 64
STEEPNESS = 20.0


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _seconds(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def _wall_and_cpu(fn) -> tuple[float, float]:
  """(wall, process CPU) seconds of one call of fn."""
  cpu = _cpu_seconds()
  wall = _seconds(fn)
  return wall, _cpu_seconds() - cpu


def _pick_torch_threads(torch, fn, repeats: int = 1) -> int:
  """Fastest torch intra-op thread count of 1 and all cores for `fn`."""
  best = None
  for threads in sorted({1, os.cpu_count() or 1}):
    torch.set_num_threads(threads)
    fn()
    took = min(_seconds(fn) for _ in range(repeats))
    if best is None or took < best[1]:
      best = (threads, took)
  torch.set_num_threads(best[0])
  return best[0]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--rows', type=int, nargs='+', default=[2048, 8192])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--host-threads', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--implementation', default='auto',
                      choices=sorting.IMPLEMENTATIONS)
  parser.add_argument('--chunk-size', type=int, default=None)
  args = parser.parse_args()

  import torch  # benchmark-only dependency
  import diffsort

  print(f'cpu cores: {os.cpu_count()}, jax devices: {jax.devices()}, '
        f'load average: {os.getloadavg()}')
  print(f'bitonic n={N} steepness={STEEPNESS} cauchy float32, fwd+bwd, '
        f'{args.repeats} interleaved repeats per side, '
        f'implementation={args.implementation}, chunk_size={args.chunk_size}')
  header = (f'{"rows":>6} {"thr":>3} {"host":>4} {"ours ms":>8} {"diffsort ms":>11} '
            f'{"ratio med":>9} {"ours best":>9} {"ds best":>8} '
            f'{"ratio best":>10} {"cpu ratio":>9} {"max|dsort|":>10} {"max|dperm|":>10} '
            f'{"max|dgrad|":>10} {"load":>9}')
  torch_sorter = diffsort.DiffSortNet('bitonic', N, steepness=STEEPNESS)
  rng = np.random.RandomState(0)
  w_perm = rng.randn(N, N).astype(np.float32)
  w_sorted = rng.randn(N).astype(np.float32)
  wp, ws = torch.from_numpy(w_perm), torch.from_numpy(w_sorted)

  def ours_fn(host_threads):
    def loss(x):
      y, p = sorting.diff_sort(x, steepness=STEEPNESS,
                               implementation=args.implementation,
                               chunk_size=args.chunk_size,
                               host_threads=host_threads)
      return jnp.sum(p * w_perm) + jnp.sum(y * w_sorted), (y, p)
    return jax.jit(jax.grad(loss, has_aux=True))

  ours = {t: ours_fn(t) for t in args.host_threads}
  print(header, flush=True)
  rows_out = []
  for rows in args.rows:
    load_before = os.getloadavg()[0]
    x = rng.randn(rows, N).astype(np.float32)
    xj = jnp.asarray(x)

    def run_ours(host_threads):
      return lambda: jax.block_until_ready(ours[host_threads](xj))

    def run_torch():
      xt = torch.from_numpy(x).requires_grad_(True)
      y, p = torch_sorter(xt)
      ((p * wp).sum() + (y * ws).sum()).backward()
      return y.detach().numpy(), p.detach().numpy(), xt.grad.numpy()

    results = {t: run_ours(t)() for t in args.host_threads}  # compiles
    for t in args.host_threads[1:]:
      diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                 for a, b in zip(jax.tree.leaves(results[t]),
                                 jax.tree.leaves(results[args.host_threads[0]])))
      print(f'rows {rows}: host_threads={t} vs {args.host_threads[0]}: '
            f'max |difference| of values, matrices, gradients {diff:.1e}')
    threads = _pick_torch_threads(torch, run_torch)
    y_t, p_t, g_t = run_torch()
    variants = [(t, run_ours(t)) for t in args.host_threads]
    variants.append(('torch', run_torch))
    walls = {name: [] for name, _ in variants}
    cpus = {name: [] for name, _ in variants}
    for _ in range(args.repeats):
      for name, fn in variants:
        wall, cpu = _wall_and_cpu(fn)
        walls[name].append(wall)
        cpus[name].append(cpu)
    t_med = 1e3 * np.median(walls['torch'])
    t_best = 1e3 * min(walls['torch'])
    load = f'{load_before:>4.1f}/{os.getloadavg()[0]:<4.1f}'
    for t in args.host_threads:
      grad_ours, (y_ours, p_ours) = results[t]
      o_med, o_best = 1e3 * np.median(walls[t]), 1e3 * min(walls[t])
      rows_out.append(
          f'{rows:>6} {threads:>3} {t:>4} {o_med:>8.1f} {t_med:>11.1f} '
          f'{t_med / o_med:>8.1f}x {o_best:>9.1f} {t_best:>8.1f} '
          f'{t_best / o_best:>9.1f}x '
          f'{min(cpus["torch"]) / min(cpus[t]):>8.1f}x '
          f'{np.abs(np.asarray(y_ours) - y_t).max():>10.2e} '
          f'{np.abs(np.asarray(p_ours) - p_t).max():>10.2e} '
          f'{np.abs(np.asarray(grad_ours) - g_t).max():>10.2e} {load}')
      print(rows_out[-1], flush=True)


if __name__ == '__main__':
  main()
