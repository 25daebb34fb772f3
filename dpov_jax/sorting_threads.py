"""Row-parallel execution of a differentiable sort on the host's CPU cores.

XLA's CPU runtime runs the chunk loop of `dpov_jax.sorting.diff_sort` on one
core: the rows' chunks are independent, but a `lax.map` is one sequential
while loop, and two while loops in one program do not run concurrently (their
loop bodies share the program's single preallocated temporary buffer, so the
runtime orders them). This module runs the same per-row computation as
separately compiled XLA programs, one per block of rows, from a thread pool
(JAX releases the GIL while a program executes), reached from inside the
caller's program through `jax.pure_callback`:

    rows = row_parallel(sort_rows, (('chunk', 2), ...), threads)
    sorted_x, perm = rows(x, steepness, art_lambda)

`sort_rows(x, s, lam, **static) -> (sorted, perm)` is the pure JAX sort of a
block of rows; every row's result is the one the whole-batch program computes
(the caller cuts the blocks at its chunk boundaries), and the steepness /
art_lambda cotangents are the sum of the blocks' cotangents.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
from typing import Callable

import jax
import numpy as np

_POOL_LOCK = threading.Lock()
_POOLS: dict[int, concurrent.futures.ThreadPoolExecutor] = {}


def _pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
  """A process-wide pool of `threads` workers (created on first use)."""
  with _POOL_LOCK:
    if threads not in _POOLS:
      _POOLS[threads] = concurrent.futures.ThreadPoolExecutor(
          threads, thread_name_prefix='diff_sort')
    return _POOLS[threads]


def _blocks(rows: int, threads: int) -> list[slice]:
  """`threads` equal row blocks of rows (a multiple of threads)."""
  if rows % threads:
    raise ValueError(f'rows ({rows}) must be a multiple of threads ({threads})')
  size = rows // threads
  return [slice(i * size, (i + 1) * size) for i in range(threads)]


def _run_blocks(fn: Callable, threads: int, row_args: tuple,
                shared_args: tuple, row_outputs: tuple[np.ndarray, ...]
                ) -> list[tuple[np.ndarray, ...]]:
  """Runs fn(*row_args[block], *shared_args) for every row block concurrently.

  fn's first len(row_outputs) results are row blocks, copied by the worker
  into row_outputs[i][block]; the remaining results are returned per block.
  """
  def one(block: slice) -> tuple[np.ndarray, ...]:
    out = fn(*(a[block] for a in row_args), *shared_args)
    for dest, result in zip(row_outputs, out):
      dest[block] = np.asarray(result)
    return tuple(np.asarray(o) for o in out[len(row_outputs):])

  futures = [_pool(threads).submit(one, b)
             for b in _blocks(row_args[0].shape[0], threads)]
  return [f.result() for f in futures]


@functools.lru_cache(maxsize=None)
def row_parallel(sort_rows: Callable, static: tuple[tuple[str, object], ...],
                 threads: int) -> jax.custom_vjp:
  """Differentiable (x [R, n], s [], lam []) -> (sorted [R, n], perm [R, n, n]).

  Args:
    sort_rows: (x [R', n], s [], lam [], **static) -> (sorted, perm), a pure
      JAX function of any number of rows; each block of R / threads rows runs
      it (and its VJP) as its own jitted program.
    static: its static keyword arguments as (name, value) pairs.
    threads: number of row blocks run concurrently; R must be a multiple.

  Returns:
    A `jax.custom_vjp` function whose forward and backward passes are
    `jax.pure_callback`s (vectorised sequentially under `jax.vmap`).
  """
  rows_fn_of_block = functools.partial(sort_rows, **dict(static))
  forward = jax.jit(rows_fn_of_block)

  @jax.jit
  def backward(x, s, lam, g_sorted, g_perm):
    _, vjp = jax.vjp(rows_fn_of_block, x, s, lam)
    return vjp((g_sorted, g_perm))

  def host_forward(x, s, lam):
    rows, n = x.shape
    outputs = (np.empty((rows, n), x.dtype), np.empty((rows, n, n), x.dtype))
    _run_blocks(forward, threads, (x,), (s, lam), outputs)
    return outputs

  def host_backward(x, s, lam, g_sorted, g_perm):
    g_x = np.empty_like(x)
    parts = _run_blocks(lambda xb, gy, gp, s, lam: backward(xb, s, lam, gy, gp),
                        threads, (x, g_sorted, g_perm), (s, lam), (g_x,))
    g_s, g_lam = parts[0]
    for part in parts[1:]:
      g_s, g_lam = g_s + part[0], g_lam + part[1]
    return g_x, np.asarray(g_s, s.dtype), np.asarray(g_lam, lam.dtype)

  def shapes(x):
    rows, n = x.shape
    return (jax.ShapeDtypeStruct((rows, n), x.dtype),
            jax.ShapeDtypeStruct((rows, n, n), x.dtype))

  @jax.custom_vjp
  def rows_fn(x, s, lam):
    return jax.pure_callback(host_forward, shapes(x), x, s, lam,
                             vmap_method='sequential')

  def fwd(x, s, lam):
    return rows_fn(x, s, lam), (x, s, lam)

  def bwd(res, cts):
    x, s, lam = res
    g_sorted, g_perm = cts
    out = (jax.ShapeDtypeStruct(x.shape, x.dtype),
           jax.ShapeDtypeStruct(s.shape, s.dtype),
           jax.ShapeDtypeStruct(lam.shape, lam.dtype))
    return jax.pure_callback(host_backward, out, x, s, lam, g_sorted, g_perm,
                             vmap_method='sequential')

  rows_fn.defvjp(fwd, bwd)
  return rows_fn
