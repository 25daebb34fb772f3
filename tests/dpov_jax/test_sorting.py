"""Tests of dpov_jax.sorting against the diffsort goldens (tests/golden/diffsort)."""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpov_jax import sorting


@pytest.fixture(name='golden', scope='session')
def _repo_golden(repo_golden):
  """This module's reference vectors are small and ship in tests/golden."""
  return repo_golden


def _cases(golden: pathlib.Path) -> list[dict]:
  manifest = json.loads((golden / 'diffsort' / 'manifest.json').read_text())
  return manifest['cases']


def _kwargs(data) -> dict:
  return dict(network=str(data['network']), steepness=float(data['steepness']),
              art_lambda=float(data['art_lambda']),
              distribution=str(data['distribution']))


NUM_GOLDEN = 47


# LLVM optimisation level 0 halves the compile time of these 7-row programs;
# XLA's HLO passes (and so the arithmetic checked) are unchanged.
@functools.partial(jax.jit, static_argnames=('network', 'distribution',
                                             'implementation'),
                   compiler_options={'xla_backend_optimization_level': 0})
def _golden_outputs(
    x: jax.Array, w_perm: jax.Array, w_sorted: jax.Array, steepness: jax.Array,
    art_lambda: jax.Array, network: str, distribution: str,
    implementation: str = 'auto'
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Values, matrices and the gradients of both golden functionals.

  x [7, n], w_perm [n, n], w_sorted [n], steepness [] and art_lambda [] are
  traced: one compilation per (network, n, distribution, implementation)
  serves every steepness. Both gradients come from one batched VJP.

  Returns:
    sorted [7, n], perm [7, n, n], dL_P/dx [7, n], dL_s/dx [7, n].
  """
  sort = lambda v: sorting.diff_sort(
      v, network=network, steepness=steepness, art_lambda=art_lambda,
      distribution=distribution, implementation=implementation)
  (y, perm), vjp = jax.vjp(sort, x)
  cot_sorted = jnp.stack([jnp.zeros_like(y), jnp.broadcast_to(w_sorted,
                                                              y.shape)])
  cot_perm = jnp.stack([jnp.broadcast_to(w_perm, perm.shape),
                        jnp.zeros_like(perm)])
  (grads,) = jax.vmap(vjp)((cot_sorted, cot_perm))
  return y, perm, grads[0], grads[1]


def _check_golden(data: np.lib.npyio.NpzFile,
                  implementation: str = 'auto') -> None:
  """Checks values, matrices and both gradients against one golden case."""
  rows = int(data['perm_rows'])
  # float64 only inside this test (the jit cache keys on the x64 flag).
  with jax.enable_x64(True):
    y, perm, grad_perm, grad_sorted = _golden_outputs(
        jnp.asarray(data['x'], jnp.float64),
        jnp.asarray(data['w_perm'], jnp.float64),
        jnp.asarray(data['w_sorted'], jnp.float64),
        jnp.asarray(data['steepness'], jnp.float64),
        jnp.asarray(data['art_lambda'], jnp.float64),
        network=str(data['network']), distribution=str(data['distribution']),
        implementation=implementation)
    assert y.dtype == jnp.float64 and perm.dtype == jnp.float64
  np.testing.assert_allclose(y, data['sorted'], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(perm[:rows], data['perm'], rtol=1e-5, atol=1e-5)
  # Same arithmetic as diffsort: far tighter than the 1e-5 contract.
  assert np.abs(y - data['sorted']).max() < 1e-12
  assert np.abs(perm[:rows] - data['perm']).max() < 1e-11
  for ours, ref in ((grad_perm, data['grad_perm']),
                    (grad_sorted, data['grad_sorted'])):
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * scale)


def test_golden_manifest(golden):
  assert len(_cases(golden)) == NUM_GOLDEN


@pytest.mark.parametrize('index', range(NUM_GOLDEN))
def test_golden_float64(golden, index):
  case = _cases(golden)[index]
  _check_golden(np.load(golden / 'diffsort' / case['file']))


@pytest.mark.parametrize('name', ['bitonic_n033_gaussian_s100.npz',
                                  'bitonic_n064_cauchy_s20.npz',
                                  'bitonic_n100_cauchy_s20.npz'])
def test_golden_bitonic_scan_implementation(golden, name):
  # The gather/scan implementation (odd-even's) on bitonic networks too.
  _check_golden(np.load(golden / 'diffsort' / name), implementation='scan')


def test_float32_matches_golden(golden):
  data = np.load(golden / 'diffsort' / 'bitonic_n064_cauchy_s20.npz')
  y, perm = sorting.diff_sort(jnp.asarray(data['x'], jnp.float32),
                              **_kwargs(data))
  assert y.dtype == jnp.float32 and perm.dtype == jnp.float32
  np.testing.assert_allclose(y, data['sorted'], atol=2e-5)
  np.testing.assert_allclose(perm, data['perm'], atol=2e-5)
  # Doubly stochastic and consistent with sorted = x @ perm.
  np.testing.assert_allclose(perm.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(perm.sum(-2), 1.0, atol=1e-5)
  np.testing.assert_allclose(
      jnp.einsum('bi,bir->br', jnp.asarray(data['x'], jnp.float32), perm), y,
      atol=1e-5)


def _values_and_grad(x: np.ndarray, w_perm: np.ndarray, w_sorted: np.ndarray,
                     **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """sorted [R, n], perm [R, n, n] and d(<w_perm, perm> + <w_sorted, sorted>)/dx."""

  def loss(v):
    y, perm = sorting.diff_sort(v, steepness=20.0, distribution='cauchy',
                                **kwargs)
    return jnp.sum(perm * w_perm) + jnp.sum(y * w_sorted), (y, perm)

  # One jitted program per variant, at LLVM level 0 as `_golden_outputs` (a third of
  # the compile time of the op-by-op gradient; the HLO compared is unchanged).
  grad, (y, perm) = jax.jit(
      jax.grad(loss, has_aux=True),
      compiler_options={'xla_backend_optimization_level': 0})(jnp.asarray(x))
  return np.asarray(y), np.asarray(perm), np.asarray(grad)


@pytest.mark.parametrize('network, n', [('bitonic', 4), ('bitonic', 16),
                                        ('bitonic', 64), ('odd_even', 4),
                                        ('odd_even', 16), ('odd_even', 64)])
def test_chunkings_and_implementations_agree(network, n):
  # The default (blocked bitonic: 2-row chunks) against the gather/scan
  # formulation one row at a time and other chunkings, on float32 rows with
  # ties (equal neighbours, equal halves, a constant row) and a row count that
  # leaves padding rows in the last chunk.
  rng = np.random.RandomState(n)
  x = rng.randn(7, n).astype(np.float32)
  x[1, 1::2] = x[1, ::2]
  x[2, n // 2:] = x[2, :n // 2]
  x[3] = 0.25
  w_perm = rng.randn(n, n).astype(np.float32)
  w_sorted = rng.randn(n).astype(np.float32)
  ref = _values_and_grad(x, w_perm, w_sorted, network=network,
                         implementation='scan', chunk_size=1)
  variants = [dict(), dict(chunk_size=3), dict(chunk_size=16)]
  if network == 'bitonic':
    variants.append(dict(implementation='blocked', chunk_size=8))
  for kwargs in variants:
    got = _values_and_grad(x, w_perm, w_sorted, network=network, **kwargs)
    for ours, want in zip(got, ref):
      scale = max(1.0, float(np.abs(want).max()))
      np.testing.assert_allclose(ours, want, rtol=0, atol=1e-5 * scale,
                                 err_msg=str(kwargs))
  # A row of ties sorts to itself through a doubly stochastic matrix.
  np.testing.assert_allclose(ref[0][3], 0.25, atol=1e-6)
  np.testing.assert_allclose(ref[1][3].sum(0), 1.0, atol=1e-5)
  np.testing.assert_allclose(ref[1][3].sum(1), 1.0, atol=1e-5)


def test_steepness_is_traced_and_differentiable():
  x = np.random.RandomState(2).randn(3, 6)
  w = np.random.RandomState(3).randn(6, 6)
  with jax.enable_x64(True):
    for distribution in ('gaussian', 'logistic_phi', 'cauchy'):

      def loss(s, lam, implementation, distribution=distribution):
        y, perm = sorting.diff_sort(x, steepness=s, art_lambda=lam,
                                    distribution=distribution,
                                    implementation=implementation)
        return jnp.sum(perm * w) + jnp.sum(y * w[0])

      grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
      s, lam, eps = 3.0, 0.4, 1e-6
      blocked = grad(s, lam, 'blocked')
      scan = grad(s, lam, 'scan')
      numeric = ((loss(s + eps, lam, 'scan') - loss(s - eps, lam, 'scan')) /
                 (2 * eps),
                 (loss(s, lam + eps, 'scan') - loss(s, lam - eps, 'scan')) /
                 (2 * eps))
      np.testing.assert_allclose(blocked, scan, rtol=1e-9, atol=1e-12)
      np.testing.assert_allclose(blocked, numeric, rtol=1e-5, atol=1e-8)
      assert abs(float(blocked[0])) > 1e-3
      assert (abs(float(blocked[1])) > 1e-3) == (distribution == 'logistic_phi')
  # A new steepness reuses the compiled program.
  x32 = jnp.asarray(x, jnp.float32)
  sorting.diff_sort(x32, steepness=1.0)
  size = sorting.diff_sort._cache_size()
  for s in (2.0, 7.5, 30.0):
    sorting.diff_sort(x32, steepness=s)
  assert sorting.diff_sort._cache_size() == size


@pytest.mark.parametrize('network', ['bitonic', 'odd_even'])
@pytest.mark.parametrize('n', [5, 16])
def test_batch_shapes_match_rows(network, n):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4, n))
  y, perm = sorting.diff_sort(x, network=network, steepness=5.0,
                              distribution='logistic', chunk_size=5)
  assert y.shape == (2, 3, 4, n) and perm.shape == (2, 3, 4, n, n)
  y2, perm2 = sorting.diff_sort(x.reshape(24, n), network=network,
                                steepness=5.0, distribution='logistic')
  np.testing.assert_allclose(y.reshape(24, n), y2, atol=1e-6)
  np.testing.assert_allclose(perm.reshape(24, n, n), perm2, atol=1e-6)
  # A single unbatched row works too.
  y1, perm1 = sorting.diff_sort(x[0, 0, 0], network=network, steepness=5.0,
                                distribution='logistic')
  np.testing.assert_allclose(y1, y2[0], atol=1e-6)
  np.testing.assert_allclose(perm1, perm2[0], atol=1e-6)


def test_steep_sort_is_exact_permutation():
  x = jax.random.permutation(jax.random.PRNGKey(1), 33).astype(jnp.float32)
  x = x[None] * 1.0
  for network in ('bitonic', 'odd_even'):
    y, perm = sorting.diff_sort(x, network=network, steepness=1e4,
                                distribution='optimal')
    np.testing.assert_allclose(y[0], np.arange(33), atol=1e-3)
    np.testing.assert_allclose(perm[0], np.eye(33)[np.asarray(x[0], int)],
                               atol=1e-3)


@pytest.mark.parametrize('network', ['bitonic', 'odd_even'])
def test_n1_is_identity(network):
  x = jnp.array([[3.0], [-1.0]])
  y, perm = sorting.diff_sort(x, network=network)
  np.testing.assert_array_equal(y, x)
  np.testing.assert_array_equal(perm, np.ones((2, 1, 1)))
  grad = jax.grad(lambda v: jnp.sum(sorting.diff_sort(v, network=network)[0]))(x)
  np.testing.assert_array_equal(grad, np.ones((2, 1)))


def test_network_sizes():
  assert sorting.network_size('bitonic', 64)[0] == 21
  assert set(sorting.network_size('bitonic', 64)[1]) == {32}
  assert sorting.network_size('bitonic', 100)[0] == 28
  layers, counts = sorting.network_size('odd_even', 5)
  assert layers == 5 and counts == [2, 2, 2, 2, 2]


def test_unknown_options_raise():
  with pytest.raises(ValueError):
    sorting.diff_sort(jnp.ones((1, 4)), distribution='softmax')
  with pytest.raises(ValueError):
    sorting.diff_sort(jnp.ones((1, 4)), network='bubble')
