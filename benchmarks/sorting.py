"""Benchmark: dpov_jax.sorting.diff_sort vs PyTorch diffsort, forward + backward.

Bitonic network, n = 64, steepness 20, cauchy (the 3DPoV student sorter),
float32, loss <W, P> + <w, sorted> with random W, w; timing covers the forward
pass and the gradient with respect to x. Both sides are called the way a user
calls them: ours is `jax.jit(jax.grad(loss))` in one process on the default
devices (no row splitting over devices), diffsort is `DiffSortNet` with the
torch thread count that was fastest in the warm-up (1 or all cores).

The two sides run INTERLEAVED (ours, diffsort, ours, diffsort, ...) so that
both see the same machine load; the table gives the median and best of the
repeats of each side and their ratios (diffsort time / ours; `cpu ratio`:
best process CPU times, the ratio least disturbed by other jobs), the largest
differences of sorted values, permutation matrices and gradients, and the
1-minute load average before / after each row.

    python -m benchmarks.sorting [--rows 2048 8192] [--repeats 3]
        [--implementation auto|blocked|scan] [--chunk-size C]
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
  header = (f'{"rows":>6} {"thr":>3} {"ours ms":>8} {"diffsort ms":>11} '
            f'{"ratio med":>9} {"ours best":>9} {"ds best":>8} '
            f'{"ratio best":>10} {"cpu ratio":>9} {"max|dsort|":>10} {"max|dperm|":>10} '
            f'{"max|dgrad|":>10} {"load":>9}')
  torch_sorter = diffsort.DiffSortNet('bitonic', N, steepness=STEEPNESS)
  rng = np.random.RandomState(0)
  w_perm = rng.randn(N, N).astype(np.float32)
  w_sorted = rng.randn(N).astype(np.float32)
  wp, ws = torch.from_numpy(w_perm), torch.from_numpy(w_sorted)

  def ours_loss(x):
    y, p = sorting.diff_sort(x, steepness=STEEPNESS,
                             implementation=args.implementation,
                             chunk_size=args.chunk_size)
    return jnp.sum(p * w_perm) + jnp.sum(y * w_sorted), (y, p)

  ours = jax.jit(jax.grad(ours_loss, has_aux=True))
  print(header, flush=True)
  rows_out = []
  for rows in args.rows:
    load_before = os.getloadavg()[0]
    x = rng.randn(rows, N).astype(np.float32)
    xj = jnp.asarray(x)

    def run_ours():
      return jax.block_until_ready(ours(xj))

    def run_torch():
      xt = torch.from_numpy(x).requires_grad_(True)
      y, p = torch_sorter(xt)
      ((p * wp).sum() + (y * ws).sum()).backward()
      return y.detach().numpy(), p.detach().numpy(), xt.grad.numpy()

    grad_ours, (y_ours, p_ours) = run_ours()  # compiles
    threads = _pick_torch_threads(torch, run_torch)
    y_t, p_t, g_t = run_torch()
    ours_times, torch_times, ours_cpu, torch_cpu = [], [], [], []
    for _ in range(args.repeats):
      for fn, times, cpus in ((run_ours, ours_times, ours_cpu),
                              (run_torch, torch_times, torch_cpu)):
        wall, cpu = _wall_and_cpu(fn)
        times.append(wall)
        cpus.append(cpu)
    o_med, t_med = 1e3 * np.median(ours_times), 1e3 * np.median(torch_times)
    o_best, t_best = 1e3 * min(ours_times), 1e3 * min(torch_times)
    rows_out.append(
        f'{rows:>6} {threads:>3} {o_med:>8.1f} {t_med:>11.1f} '
        f'{t_med / o_med:>8.1f}x {o_best:>9.1f} {t_best:>8.1f} '
        f'{t_best / o_best:>9.1f}x '
        f'{min(torch_cpu) / min(ours_cpu):>8.1f}x '
        f'{np.abs(np.asarray(y_ours) - y_t).max():>10.2e} '
        f'{np.abs(np.asarray(p_ours) - p_t).max():>10.2e} '
        f'{np.abs(np.asarray(grad_ours) - g_t).max():>10.2e} '
        f'{load_before:>4.1f}/{os.getloadavg()[0]:<4.1f}')
    print(rows_out[-1], flush=True)


if __name__ == '__main__':
  main()
