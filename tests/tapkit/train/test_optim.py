"""Optimiser construction: schedules, parameter groups, frozen params, EMA."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from tapkit.train import optim
from tapkit.train.config import engine_config


def _params():
  return {
      'backbone': {f'blocks_{i}': {'w': jnp.full((3, 2), 1.0 + i)} for i in range(4)},
      'head': {'w': jnp.full((2, 2), -1.0), 'b': jnp.zeros((2,))},
  }


def _opt_cfg(**kw):
  cfg = engine_config().optimizer
  cfg.update(dict(schedule='constant', warmup_steps=0, clip_norm=0.0, lr=1e-2))
  cfg.update(kw)
  return cfg


def test_groups_freeze_and_scale_learning_rate():
  params = _params()
  # 3DPoV-style: backbone at lr/10, only its last two blocks trainable.
  cfg = _opt_cfg(groups=((r'^backbone/blocks_(2|3)/', 0.1), (r'^backbone/', 0.0)))
  tx = optim.make_optimizer(cfg, params, total_steps=10)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  updates, state = tx.update(grads, tx.init(params), params)
  delta = jax.tree.map(np.asarray, updates)
  for i in (0, 1):  # frozen
    np.testing.assert_array_equal(delta['backbone'][f'blocks_{i}']['w'], 0.0)
  # Adam's first step moves every entry by lr * mult (m / sqrt(v) = 1).
  np.testing.assert_allclose(delta['head']['w'], -1e-2, rtol=1e-5)
  for i in (2, 3):
    np.testing.assert_allclose(delta['backbone'][f'blocks_{i}']['w'], -1e-3, rtol=1e-5)
  # Frozen params carry no Adam moments.
  n_state = sum(np.size(x) for x in jax.tree.leaves(state))
  n_trainable = 2 * 6 + 4 + 2
  # mu, nu for trainables; per lr group an Adam count and a schedule count.
  assert n_state == 2 * n_trainable + 2 * 2


def test_frozen_gradients_do_not_enter_clipping():
  params = {'frozen': jnp.zeros((1,)), 'train': jnp.zeros((1,))}
  cfg = _opt_cfg(name='sgd', b1=0.0, lr=1.0, clip_norm=1.0, groups=(('^frozen', 0.0),))
  tx = optim.make_optimizer(cfg, params, total_steps=10)
  grads = {'frozen': jnp.array([1000.0]), 'train': jnp.array([0.5])}
  updates, _ = tx.update(grads, tx.init(params), params)
  assert float(updates['frozen'][0]) == 0.0
  # Norm of the trainable grads is 0.5 < 1: not clipped.
  np.testing.assert_allclose(float(updates['train'][0]), -0.5, rtol=1e-6)


def test_warmup_cosine_schedule_values():
  cfg = _opt_cfg(schedule='cosine', warmup_steps=10, lr=1.0, end_lr_factor=0.1)
  sched = optim.make_schedule(cfg, total_steps=110)
  np.testing.assert_allclose(
      [float(sched(s)) for s in (0, 5, 10, 60, 110)],
      [0.0, 0.5, 1.0, 0.1 + 0.9 * 0.5, 0.1], rtol=1e-6, atol=1e-7)


def test_unknown_optimizer_fails_clearly():
  with pytest.raises(ValueError, match="optimizer.name must be"):
    optim.make_optimizer(_opt_cfg(name='lamb'), _params(), 10)


def test_ema_update_math():
  ema = {'a': jnp.array([1.0, 2.0])}
  params = {'a': jnp.array([3.0, -2.0])}
  out = optim.ema_update(ema, params, 0.9)
  np.testing.assert_allclose(out['a'], [0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * -2], rtol=1e-6)


def test_path_str_of_flax_tree():
  paths = []
  jax.tree_util.tree_map_with_path(lambda p, _: paths.append(optim.path_str(p)),
                                   {'params': {'dense': {'kernel': 0}}, 'l': [0, 1]})
  assert sorted(paths) == ['l/0', 'l/1', 'params/dense/kernel']


def test_all_finite():
  assert bool(optim.all_finite({'a': jnp.ones(3), 'i': jnp.arange(2)}))
  assert not bool(optim.all_finite({'a': jnp.array([1.0, jnp.inf])}))


def test_all_finite_on_host():
  assert optim.all_finite_on_host({'a': jnp.ones(3), 'i': jnp.arange(2), 'n': np.ones(2)})
  assert optim.all_finite_on_host({})
  assert not optim.all_finite_on_host({'a': jnp.array([1.0, jnp.nan])})
  assert not optim.all_finite_on_host({'b': jnp.array([jnp.inf], jnp.bfloat16)})
  assert not optim.all_finite_on_host([np.array([-np.inf], np.float32)])
