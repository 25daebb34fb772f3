"""Tests of dpov_jax.sorting_threads: diff_sort with rows on host threads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpov_jax import sorting
from dpov_jax import sorting_threads


def _grad_and_outputs(x, w_perm, w_sorted, **kwargs):
  """jit(grad) in x and steepness of <W, P> + <w, sorted>, with (y, P)."""

  def loss(v, s):
    y, perm = sorting.diff_sort(v, steepness=s, **kwargs)
    return jnp.sum(perm * w_perm) + jnp.sum(y * w_sorted), (y, perm)

  (g_x, g_s), (y, perm) = jax.jit(
      jax.grad(loss, argnums=(0, 1), has_aux=True))(x, 20.0)
  return [np.asarray(a) for a in (y, perm, g_x, g_s)]


@pytest.mark.parametrize('network, rows, chunk_size, host_threads', [
    ('bitonic', 13, None, 2),   # 7 chunks of 2 -> padded to 8, 2 blocks
    ('bitonic', 24, 4, 3),
    ('odd_even', 10, 3, 2),
])
def test_host_threads_match_one_program(network, rows, chunk_size,
                                        host_threads):
  rng = np.random.RandomState(rows)
  n = 16
  x = rng.randn(rows, n).astype(np.float32)
  x[1] = 0.5  # ties
  w_perm = rng.randn(n, n).astype(np.float32)
  w_sorted = rng.randn(n).astype(np.float32)
  kwargs = dict(network=network, chunk_size=chunk_size)
  one = _grad_and_outputs(x, w_perm, w_sorted, host_threads=1, **kwargs)
  many = _grad_and_outputs(x, w_perm, w_sorted, host_threads=host_threads,
                           **kwargs)
  # Every row's values, matrix and input gradient are bit-identical; the
  # steepness gradient is a sum over rows in another order.
  for got, want in zip(many[:3], one[:3]):
    np.testing.assert_array_equal(got, want)
  np.testing.assert_allclose(many[3], one[3], rtol=1e-6)
  assert abs(float(one[3])) > 1e-3


def test_host_threads_batch_shape_and_vmap():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 8))
  y1, p1 = sorting.diff_sort(x, steepness=3.0)
  y2, p2 = sorting.diff_sort(x, steepness=3.0, host_threads=2)
  np.testing.assert_array_equal(y2, y1)
  np.testing.assert_array_equal(p2, p1)
  yv, pv = jax.vmap(lambda v: sorting.diff_sort(v, steepness=3.0,
                                                host_threads=2))(x)
  np.testing.assert_array_equal(yv, y1)
  np.testing.assert_array_equal(pv, p1)


def test_row_blocks_must_divide():
  with pytest.raises(ValueError, match='multiple of threads'):
    sorting_threads._blocks(7, 2)
  assert sorting_threads._blocks(6, 3) == [slice(0, 2), slice(2, 4),
                                            slice(4, 6)]
