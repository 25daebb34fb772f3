"""TracksTo4D's initialisation on INIT_TRACKS_SHAPE: the same parameters as on any input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tracks4d as tracks4d_config
from tapkit.models import jitted
from tracks4d import task


@pytest.mark.parametrize('preset', ['smoke', 'default'])
def test_init_params_do_not_depend_on_the_input_and_compile_once(preset):
  config = tracks4d_config.get_config(preset)
  net = task.build_model(config.model)
  key = jax.random.PRNGKey(1)
  params = task.init_params(net, key)
  # What the training run and the quickstart's untrained baseline initialised on before:
  # a batch's tracks with its point mask, and a held-out scene's tracks (other N and F).
  rng = np.random.default_rng(0)
  tracks = jnp.asarray(rng.normal(size=(1, 37, 3, 21)).astype(np.float32))
  mask = jnp.asarray(rng.random((1, 37)) > 0.2)
  for args in ((tracks, mask), (tracks[:, :11, :, :13],)):
    expected = jax.jit(net.init)(key, *args)['params']
    assert jax.tree.structure(params) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  task.init_params(task.build_model(config.model), jax.random.PRNGKey(2))
  assert jitted.jitted_init(net)._cache_size() == 1  # pylint: disable=protected-access
