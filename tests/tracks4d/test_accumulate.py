"""TracksTo4D's SumsLoss: accumulate_steps=4 equals one step on the whole batch.

The loss divides by the visible entries of all samples jointly, sums the depth term
over the batch, is clamped and switches phase on a flag in `extra`: the engine's
exact accumulation reproduces the whole batch's loss, flag and parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tapkit.train import step as step_lib
from tapkit.train.state import TrainState
from tracks4d import task


def _run(k, batch, net, params, phases, steps):
  loss_fn = task.make_loss_fn(net, phases, {}, 100.0, random_windows=False)
  tx = optax.sgd(0.01, momentum=0.9)
  state = TrainState.create(params=params, opt_state=tx.init(params), rng=jax.random.PRNGKey(1),
                            extra={'camera_init_done': jnp.zeros((), jnp.int32)})
  names = step_lib.aux_names(loss_fn, params, batch, state, True)
  metrics_cls = step_lib.metrics_class(names)
  step = jax.jit(step_lib.make_train_step(loss_fn, tx, metrics_cls, has_extra=True,
                                          accumulate_steps=k))
  losses = []
  for _ in range(steps):
    state, metrics, _ = step(state, batch, metrics_cls.empty())
    losses.append(float(metrics.compute()['loss']))
  return state, losses


def test_four_micro_batches_equal_the_whole_batch():
  rng = np.random.default_rng(0)
  b, n, f = 8, 12, 6
  tracks = np.concatenate([rng.uniform(-0.5, 0.5, (b, n, 2, f)), np.ones((b, n, 1, f))],
                          2).astype(np.float32)
  batch = {'fixed/tracks': jnp.asarray(tracks),
           'fixed/point_mask': jnp.asarray(rng.random((b, n)) < 0.8),
           'fixed/frame_mask': jnp.asarray(np.arange(f)[None] < rng.integers(4, f + 1, (b, 1))),
           # Very different visible counts per sample: per-micro-batch means would differ.
           'fixed/visible': jnp.asarray(rng.random((b, f, n)) < np.linspace(0.2, 1.0, b)[:, None,
                                                                                        None])}
  net = task.build_model({'width': 16, 'num_layers': 1, 'num_heads': 2, 'head_dim': 8,
                          'mlp_dim': 32, 'num_bases': 4, 'camera_kernel_size': 3})
  # Jitted: initialised op by op this took as long as a training run.
  params = jax.jit(net.init)(jax.random.PRNGKey(0), batch['fixed/tracks'][:1])['params']
  # Camera initialisation for steps 0-1, then the clamped total loss.
  phases = task.PhaseSteps(steps_per_epoch=1, camera_init_until=2, clamp_from=3,
                           random_window_from=-1)
  whole, losses1 = _run(1, batch, net, params, phases, 5)
  micro, losses4 = _run(4, batch, net, params, phases, 5)
  np.testing.assert_allclose(losses4, losses1, rtol=1e-5)
  assert losses1[1] != losses1[2]  # the phase switched within the run
  rel = max(float(np.abs(a - c).max() / np.abs(a).max())
            for a, c in zip(jax.tree.leaves(whole.params), jax.tree.leaves(micro.params)))
  assert rel < 1e-5, rel
  assert int(whole.extra['camera_init_done']) == int(micro.extra['camera_init_done'])
  # The plain mean of micro-batch losses would not match: the normaliser is batch-wide.
  # Jitted (op by op the five evaluations took longer than both training runs), at LLVM
  # optimisation level 0: half the compile time, and rounding-level changes only, far
  # below the 1e-4 gap asserted (the training runs above keep the default level).
  loss_fn = jax.jit(task.make_loss_fn(net, phases, {}, 100.0, random_windows=False),
                    compiler_options={'xla_backend_optimization_level': 0})
  state = TrainState.create(params=params, opt_state=None, rng=jax.random.PRNGKey(1),
                            extra={'camera_init_done': jnp.ones((), jnp.int32)})
  state = state.replace(step=jnp.asarray(2, jnp.int32))  # unclamped total loss
  full = float(loss_fn(params, batch, None, state)[0])
  parts = [float(loss_fn(params, jax.tree.map(lambda x: x[i::4], batch), None, state)[0])
           for i in range(4)]
  assert abs(np.mean(parts) - full) > 1e-4 * abs(full)
