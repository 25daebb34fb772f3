"""Winograd F(2×2, 3×3) convolution against XLA's direct convolution."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.models.cotracker3 import winograd


def _direct(x, kernel, bias):
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                   precision=jax.lax.Precision.HIGHEST)
  return y + bias


@pytest.mark.parametrize('h, w, c, o', [(8, 12, 5, 7), (7, 9, 16, 3), (1, 1, 4, 2), (2, 3, 40, 8)])
def test_conv3x3_equals_direct_convolution(h, w, c, o):
  rng = np.random.default_rng(h * 100 + w)
  x = rng.standard_normal((2, h, w, c)).astype(np.float32)
  kernel = (rng.standard_normal((3, 3, c, o)) / np.sqrt(9 * c)).astype(np.float32)
  bias = rng.standard_normal(o).astype(np.float32)
  want = np.asarray(_direct(x, kernel, bias))
  got = np.asarray(winograd.conv3x3(jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(bias)))
  assert got.shape == (2, h, w, o)
  np.testing.assert_allclose(got, want, atol=3e-6, rtol=0)
  # Both float32 results are within rounding of the float64 convolution.
  xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  exact = sum(xp[:, i:i + h, j:j + w] @ kernel[i, j].astype(np.float64)
              for i in range(3) for j in range(3)) + bias
  np.testing.assert_allclose(got, exact, atol=3e-6, rtol=0)
  np.testing.assert_allclose(want, exact, atol=3e-6, rtol=0)


def test_kernel_transform_of_a_delta_kernel():
  """The centre tap alone: G·g·Gᵀ = outer product of G's middle column (0, ½, −½, 0)."""
  kernel = np.zeros((3, 3, 1, 1), np.float32)
  kernel[1, 1] = 1.0
  u = np.asarray(winograd.transform_kernel(jnp.asarray(kernel)))[..., 0, 0]
  col = np.array([0.0, 0.5, -0.5, 0.0])
  np.testing.assert_array_equal(u, np.outer(col, col))


def test_module_has_the_parameters_of_flax_conv():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 6, 10, 4)), jnp.float32)
  ours = winograd.Conv3x3(8).init(jax.random.PRNGKey(3), x)['params']
  flax_conv = nn.Conv(8, (3, 3), padding=((1, 1), (1, 1))).init(jax.random.PRNGKey(3), x)['params']
  assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(flax_conv)
  for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(flax_conv)):
    np.testing.assert_array_equal(a, b)
  y = winograd.Conv3x3(8).apply({'params': flax_conv}, x)
  want = nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), precision='highest').apply(
      {'params': flax_conv}, x)
  np.testing.assert_allclose(y, want, atol=3e-6, rtol=0)


def test_rejects_bad_shapes():
  with pytest.raises(ValueError, match='kernel'):
    winograd.conv3x3(jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 2, 5)))
  with pytest.raises(ValueError, match='x must be'):
    winograd.conv3x3(jnp.zeros((4, 4, 3)), jnp.zeros((3, 3, 3, 5)))


@pytest.mark.parametrize('h, w', [(32, 34), (31, 33)])
def test_separate_and_batched_products_agree(h, w, monkeypatch):
  """Above `SEPARATE_PRODUCTS_MIN_TILES` tiles the 16 products run one by one; the values equal
  the batched product's exactly (the same products and sums) and the direct convolution's."""
  rng = np.random.default_rng(h + w)
  x = jnp.asarray(rng.standard_normal((1, h, w, 24)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((3, 3, 24, 16)) / np.sqrt(9 * 24), jnp.float32)
  bias = jnp.asarray(rng.standard_normal(16), jnp.float32)
  assert 16 * 17 >= winograd.SEPARATE_PRODUCTS_MIN_TILES
  separate = np.asarray(winograd.conv3x3(x, kernel, bias))
  monkeypatch.setattr(winograd, 'SEPARATE_PRODUCTS_MIN_TILES', 10 ** 9)
  batched = np.asarray(winograd.conv3x3(x, kernel, bias))
  np.testing.assert_array_equal(separate, batched)
  np.testing.assert_allclose(separate, _direct(x, kernel, bias), atol=1e-5, rtol=0)
