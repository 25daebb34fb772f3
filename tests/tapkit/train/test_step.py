"""The jitted train step on one device: EMA, extra state, guard, metrics."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import toy as toy_config
from tapkit.data import pipeline
from tapkit.train import loop, mesh as mesh_lib, toy_task as toy


def _setup(config, method):
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  loader = pipeline.make_dataloader(method.train_source, method.train_transforms,
                                    batch_size=config.batch_size, seed=config.seed)
  batch = next(iter(loader))
  state, abstract, tx = loop.build_state(config, method, batch, mesh)
  example = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
  step, new_metrics = loop.compile_step(config, method, tx, abstract, example, mesh)
  return state, step, new_metrics, mesh_lib.make_global_batch(batch, mesh)


def test_ema_follows_params_with_configured_momentum():
  config = toy_config.get_config('smoke')
  config.ema.momentum = 0.75
  state, step, new_metrics, batch = _setup(config, toy.build_method(config))
  init = jax.tree.map(np.asarray, state.params)
  np.testing.assert_array_equal(np.asarray(state.ema_params['head']['kernel']),
                                init['head']['kernel'])
  metrics = new_metrics()
  state, metrics, _ = step(state, batch, metrics)
  new = jax.tree.map(np.asarray, state.params)
  expected = jax.tree.map(lambda e, p: 0.75 * e + 0.25 * p, init, new)
  for a, b in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  state, metrics, _ = step(state, batch, metrics)
  expected = jax.tree.map(lambda e, p: 0.75 * e + 0.25 * np.asarray(p), expected,
                          state.params)
  for a, b in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  values = jax.device_get(metrics.compute())
  assert values['skipped_steps'] == 0 and np.isfinite(values['loss'])


def test_extra_state_updates_and_is_kept_on_bad_steps():
  """A method with extra state: a counter of applied steps; loss NaN at step 1."""
  config = toy_config.get_config('smoke')
  config.batch_size = 4

  def init_fn(rng, batch):
    return {'w': jax.random.normal(rng, (batch['x'].shape[-1],))}, jnp.zeros((), jnp.int32)

  def loss_fn(params, batch, rng, state):
    del rng
    loss = jnp.mean((batch['x'] @ params['w'] - 1.0) ** 2)
    loss = jnp.where(state.step == 1, jnp.nan, loss)
    return loss, ({'w_norm': jnp.linalg.norm(params['w'])}, state.extra + 1)

  source = pipeline.SequenceSource(
      [{'x': np.full((3,), i, np.float32)} for i in range(8)], name='x')
  method = loop.Method(init_fn=init_fn, loss_fn=loss_fn, train_source=source,
                       has_extra=True)
  state, step, new_metrics, batch = _setup(config, method)
  metrics = new_metrics()
  counts = []
  for _ in range(3):
    state, metrics, bad = step(state, batch, metrics)
    counts.append((int(state.extra), int(bad), int(state.skipped_steps)))
  assert counts == [(1, 0, 0), (1, 1, 1), (2, 0, 1)]
  values = jax.device_get(metrics.compute())
  assert set(values) == {'loss', 'grad_norm', 'w_norm', 'skipped_steps', 'consecutive_bad'}
  assert np.isfinite(values['loss'])  # The NaN step is masked out of the average.
  assert values['skipped_steps'] == 1
