"""loop.Method.init_outside_jit: the method's own jitted init, then the rest of the state."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from configs import toy as toy_config
from tapkit.data import pipeline
from tapkit.train import loop, mesh as mesh_lib, precision, toy_task as toy


def test_init_outside_jit_gives_the_same_state_and_shares_the_compiled_init():
  config = toy_config.get_config('smoke')
  config.ema.momentum = 0.9
  method = toy.build_method(config)
  model = toy.MLP(hidden=tuple(config.model.hidden), dim_out=config.toy.dim_out,
                  dropout=config.model.dropout, dtype=precision.compute_dtype(config))
  jitted_init = jax.jit(model.init)
  own = dataclasses.replace(
      method, init_outside_jit=True,
      init_fn=lambda rng, batch: jitted_init(rng, jnp.asarray(batch['x'][:1]))['params'])
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  loader = pipeline.make_dataloader(method.train_source, method.train_transforms,
                                    batch_size=config.batch_size, seed=config.seed)
  batch = next(iter(loader))

  expected, abstract_expected, _ = loop.build_state(config, method, batch, mesh)
  state, abstract, _ = loop.build_state(config, own, batch, mesh)
  assert jax.tree.structure(state) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(expected)):
    assert a.sharding == b.sharding
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert abstract == abstract_expected
  # The init ran as a program of its own, which another caller with the same shapes reuses.
  assert jitted_init._cache_size() == 1
  key = jax.random.PRNGKey(5)
  jitted_init(key, jnp.asarray(batch['x'][:1]))
  assert jitted_init._cache_size() == 1
  # Resuming (no materialised state) traces the init without running it.
  none, abstract_again, _ = loop.build_state(config, own, batch, mesh, materialize=False)
  assert none is None and abstract_again == abstract
