"""tapkit.models.jitted: one jitted init / apply per Flax module, shared by equal modules."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models import jitted


class _Affine(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x, scale=1.0):
    return scale * nn.Dense(self.features)(x)


class _Unhashable(nn.Module):
  widths: list  # A list field makes the dataclass unhashable.

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.widths[0])(x)


def test_equal_modules_share_one_program_and_results_equal_the_module():
  x = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
  key = jax.random.PRNGKey(0)
  init = jitted.jitted_init(_Affine(4))
  assert jitted.jitted_init(_Affine(4)) is init
  assert jitted.jitted_init(_Affine(5)) is not init
  params = init(key, x)['params']
  expected = _Affine(4).init(key, x)['params']
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  apply = jitted.jitted_apply(_Affine(4))
  assert jitted.jitted_apply(_Affine(4)) is apply
  out = apply(params, x, 2.0)  # Extra positional inputs pass through.
  np.testing.assert_allclose(np.asarray(out),
                             np.asarray(_Affine(4).apply({'params': params}, x, 2.0)), rtol=1e-6)
  apply(params, x + 1.0, 2.0)
  assert apply._cache_size() == 1  # pylint: disable=protected-access
  init(jax.random.PRNGKey(1), x)
  assert init._cache_size() == 1  # pylint: disable=protected-access


def test_unhashable_module_gets_a_function_of_its_own():
  module = _Unhashable([3])
  x = jnp.ones((1, 2))
  params = jitted.jitted_init(module)(jax.random.PRNGKey(0), x)['params']
  assert jitted.jitted_apply(module)(params, x).shape == (1, 3)
  assert jitted.jitted_init(module) is not jitted.jitted_init(module)
