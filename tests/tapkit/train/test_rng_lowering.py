"""The straight-line threefry lowering on CPU gives the same bits as JAX's rolled loop."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.train import rng_lowering


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(7, kernel_init=nn.initializers.truncated_normal(0.02))(x)
    x = nn.LayerNorm()(nn.Dense(5)(x))
    return nn.Dropout(0.3, deterministic=False)(x)


def _draws():
  key = jax.random.PRNGKey(3)
  k1, k2 = jax.random.split(key)

  @jax.jit
  def draws(k1, k2):
    return {
        'bits': jax.random.bits(k1, (1001,)),
        'uniform': jax.random.uniform(k2, (3, 5, 7)),
        'normal': jax.random.normal(jax.random.fold_in(k1, 9), (2, 33)),
        'truncated': jax.random.truncated_normal(k2, -2.0, 2.0, (17,)),
        'split': jax.random.split(k1, 6),
        'typed_key': jax.random.bits(jax.random.key(5), (4, 4)),
        'permutation': jax.random.permutation(k1, 50),
    }

  net = _Net()
  x = jnp.ones((2, 3))
  variables = jax.jit(net.init)({'params': k1, 'dropout': k2}, x)
  out = jax.jit(lambda v: net.apply(v, x, rngs={'dropout': k2}))(variables)
  return jax.device_get({**draws(k1, k2), 'params': variables['params'], 'apply': out})


@pytest.fixture
def default_then_straight_line():
  rng_lowering.restore_default()
  jax.clear_caches()
  default = _draws()
  assert rng_lowering.use_straight_line_threefry_on_cpu()
  jax.clear_caches()
  yield default, _draws()
  jax.clear_caches()


def test_straight_line_lowering_is_bit_identical(default_then_straight_line):
  default, straight = default_then_straight_line
  flat_default, tree = jax.tree.flatten(default)
  flat_straight, tree2 = jax.tree.flatten(straight)
  assert tree == tree2
  for a, b in zip(flat_default, flat_straight):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.asarray(default['bits']).std() > 1e8  # real random bits, not zeros


def test_lowering_is_used_and_fewer_loops():
  x = jax.random.PRNGKey(0)
  f = lambda k: jax.random.normal(k, (64, 64)) + jax.random.uniform(k, (64,))
  rng_lowering.restore_default()
  jax.clear_caches()
  rolled = jax.jit(f).lower(x).compile().as_text()
  rng_lowering.use_straight_line_threefry_on_cpu()
  jax.clear_caches()
  straight = jax.jit(f).lower(x).compile().as_text()
  assert rolled.count(' while(') == 2
  assert straight.count(' while(') == 0
  assert rng_lowering.use_straight_line_threefry_on_cpu()  # idempotent
