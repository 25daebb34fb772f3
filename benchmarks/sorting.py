"""Benchmark: dpov_jax.sorting.diff_sort vs PyTorch diffsort, forward + backward.

Bitonic network, n = 64, steepness 20, cauchy (the 3DPoV student sorter),
float32, loss <W, P> + <w, sorted> with random W, w; timing covers the forward
pass and the gradient with respect to x. Prints a table with the median of
several runs, the speed ratio (diffsort time / ours) of the medians and of the
best runs, plus the largest
differences of sorted values and permutation matrices between the two.

    python -m benchmarks.sorting [--rows 2048 8192] [--repeats 5]
        [--implementation auto|blocked|scan] [--chunk-size C]

Our side runs on one XLA CPU device per core (XLA_FLAGS, set here unless you set it)
with the rows split over them; torch uses its default threads (all cores).
The 1-minute load average is printed before and after each row (timings on a
loaded machine are noisy; the ratio is measured back to back).
"""

import argparse
import os
import time

if __name__ == '__main__' and 'XLA_FLAGS' not in os.environ:
  # One XLA CPU device per core: XLA runs these elementwise programs on one thread per
  # device, while torch's batched matmuls use every core. Rows are split over the devices
  # (below), so both sides use the whole machine. Must be set before jax is imported.
  os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={os.cpu_count()}'

import jax
import jax.numpy as jnp
import numpy as np

from dpov_jax import sorting

N = 64
STEEPNESS = 20.0


def _time_ms(fn, repeats: int) -> tuple[float, float]:
  """(median, best) wall time in ms over `repeats` runs after one warm-up run."""
  fn()  # warm-up (and compile for JAX)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times)), 1e3 * float(np.min(times))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--rows', type=int, nargs='+', default=[2048, 8192])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--implementation', default='auto',
                      choices=sorting.IMPLEMENTATIONS)
  parser.add_argument('--chunk-size', type=int, default=None)
  args = parser.parse_args()

  import torch  # benchmark-only dependency
  import diffsort

  print(f'cpu cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}'
        f' (interop {torch.get_num_interop_threads()}), jax devices: '
        f'{jax.devices()}')
  print(f'bitonic n={N} steepness={STEEPNESS} cauchy float32, fwd+bwd, median '
        f'of {args.repeats} runs, implementation={args.implementation}, '
        f'chunk_size={args.chunk_size}')
  header = (f'{"rows":>6} {"ours ms":>10} {"diffsort ms":>12} {"ratio":>7} {"best":>7} '
            f'{"max|dsorted|":>13} {"max|dperm|":>11} {"max|dgrad|":>11} '
            f'{"load":>9}')
  print(header)
  torch_sorter = diffsort.DiffSortNet('bitonic', N, steepness=STEEPNESS)
  rng = np.random.RandomState(0)
  w_perm = rng.randn(N, N).astype(np.float32)
  w_sorted = rng.randn(N).astype(np.float32)

  def ours_loss(x):
    y, p = sorting.diff_sort(x, steepness=STEEPNESS,
                             implementation=args.implementation,
                             chunk_size=args.chunk_size)
    return jnp.sum(p * w_perm) + jnp.sum(y * w_sorted), (y, p)

  # Each device sorts its own rows (the loss is a sum over rows, so per-shard
  # gradients are the full gradient's rows): shard_map over a 1-D row mesh.
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('rows',))
  spec = jax.sharding.PartitionSpec('rows')
  ours = jax.jit(jax.shard_map(jax.grad(ours_loss, has_aux=True), mesh=mesh,
                               in_specs=spec, out_specs=(spec, (spec, spec)),
                               check_vma=False))

  for rows in args.rows:
    load_before = os.getloadavg()[0]
    x = rng.randn(rows, N).astype(np.float32)
    xj = jax.device_put(x, jax.sharding.NamedSharding(mesh, spec))
    ours_ms, ours_best = _time_ms(lambda: jax.block_until_ready(ours(xj)), args.repeats)
    grad_ours, (y_ours, p_ours) = ours(xj)

    wp, ws = torch.from_numpy(w_perm), torch.from_numpy(w_sorted)

    def run_torch():
      xt = torch.from_numpy(x).requires_grad_(True)
      y, p = torch_sorter(xt)
      ((p * wp).sum() + (y * ws).sum()).backward()
      return y.detach().numpy(), p.detach().numpy(), xt.grad.numpy()

    torch_ms, torch_best = _time_ms(run_torch, args.repeats)
    y_t, p_t, g_t = run_torch()
    print(f'{rows:>6} {ours_ms:>10.1f} {torch_ms:>12.1f} '
          f'{torch_ms / ours_ms:>6.1f}x {torch_best / ours_best:>6.1f}x '
          f'{np.abs(np.asarray(y_ours) - y_t).max():>13.2e} '
          f'{np.abs(np.asarray(p_ours) - p_t).max():>11.2e} '
          f'{np.abs(np.asarray(grad_ours) - g_t).max():>11.2e} '
          f'{load_before:>4.1f}/{os.getloadavg()[0]:<4.1f}')


if __name__ == '__main__':
  main()
