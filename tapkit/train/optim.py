"""Optimisers from config: AdamW/SGD, warm-up + cosine, clipping, parameter groups, EMA.

Config (`config.optimizer`):
  name          'adamw' | 'sgd'
  lr            peak learning rate
  b1, b2, eps   Adam moments (sgd uses b1 as momentum; 0 = plain SGD)
  weight_decay  decoupled weight decay (AdamW), applied to every parameter
  clip_norm     global-norm clipping of the trainable gradients; 0 = off
  schedule      'cosine' (linear warm-up 0 -> lr, then cosine to lr * end_lr_factor)
                | 'constant' (linear warm-up 0 -> lr, then constant)
  warmup_steps, end_lr_factor
  groups        ordered ((regex, lr_mult), ...) matched with `re.search` against the
                '/'-joined parameter path (e.g. 'backbone/blocks_3/mlp/kernel');
                the first match wins, unmatched parameters use lr_mult 1.
                lr_mult == 0 freezes a parameter: its gradient is zeroed before
                clipping and it gets no optimiser state.

Example, 3DPoV-style (backbone at lr/10 with only its last two of 12 blocks trained):
  groups = ((r'^backbone/block_(10|11)/', 0.1), (r'^backbone/', 0.0))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

FROZEN = 'frozen'


def path_str(path: Sequence[Any]) -> str:
  """'/'-joined key path of a pytree leaf, e.g. 'params/dense_0/kernel'."""
  parts = []
  for k in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return '/'.join(parts)


def param_lr_mults(params: Any, groups: Sequence[tuple[str, float]]) -> Any:
  """Tree like `params` with each leaf's lr multiplier (first matching regex)."""
  compiled = [(re.compile(rx), float(mult)) for rx, mult in groups]

  def mult_of(path, _):
    name = path_str(path)
    for rx, mult in compiled:
      if rx.search(name):
        return mult
    return 1.0

  return jax.tree_util.tree_map_with_path(mult_of, params)


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Learning-rate schedule, step -> lr (before the group multiplier)."""
  lr, warmup = float(cfg.lr), int(cfg.warmup_steps)
  kind = cfg.schedule
  if kind == 'cosine':
    if total_steps <= warmup:
      raise ValueError(f'total_steps={total_steps} must exceed warmup_steps={warmup}.')
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup,
        decay_steps=total_steps, end_value=lr * float(cfg.end_lr_factor))
  if kind == 'constant':
    if warmup == 0:
      return optax.constant_schedule(lr)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
  raise ValueError(f"optimizer.schedule must be 'cosine' or 'constant', got {kind!r}.")


def _base_tx(cfg: ml_collections.ConfigDict, lr: optax.Schedule) -> optax.GradientTransformation:
  name = cfg.name
  if name == 'adamw':
    return optax.adamw(lr, b1=float(cfg.b1), b2=float(cfg.b2), eps=float(cfg.eps),
                       weight_decay=float(cfg.weight_decay))
  if name == 'sgd':
    momentum = float(cfg.b1)
    return optax.sgd(lr, momentum=momentum or None)
  raise ValueError(f"optimizer.name must be 'adamw' or 'sgd', got {name!r}.")


def make_optimizer(
    cfg: ml_collections.ConfigDict, params: Any, total_steps: int
) -> optax.GradientTransformation:
  """Builds the optax chain described in the module docstring.

  Args:
    cfg: `config.optimizer`.
    params: the parameter tree (arrays or ShapeDtypeStructs); only its paths matter.
    total_steps: length of the run, for the cosine schedule.
  """
  schedule = make_schedule(cfg, total_steps)
  mults = param_lr_mults(params, tuple(cfg.groups))
  distinct = sorted(set(jax.tree.leaves(mults)))
  label_of = {m: (FROZEN if m == 0.0 else f'lr_x{m:g}') for m in distinct}
  labels = jax.tree.map(lambda m: label_of[m], mults)

  stages = []
  if 0.0 in label_of:
    # Zero frozen gradients first so they do not enter the clipping norm.
    stages.append(optax.multi_transform(
        {FROZEN: optax.set_to_zero(), 'train': optax.identity()},
        jax.tree.map(lambda m: FROZEN if m == 0.0 else 'train', mults)))
  if float(cfg.clip_norm) > 0:
    stages.append(optax.clip_by_global_norm(float(cfg.clip_norm)))
  transforms = {}
  for m, label in label_of.items():
    if m == 0.0:
      transforms[label] = optax.set_to_zero()  # no optimiser state for frozen params
    else:
      transforms[label] = _base_tx(cfg, lambda step, m=m: m * schedule(step))
  if len(transforms) == 1 and FROZEN not in transforms:
    stages.append(next(iter(transforms.values())))
  else:
    stages.append(optax.multi_transform(transforms, labels))
  return optax.chain(*stages)


def ema_update(ema: Any, params: Any, momentum: float | jax.Array) -> Any:
  """ema <- momentum * ema + (1 - momentum) * params, leaf-wise (the EMA teacher)."""
  return jax.tree.map(
      lambda e, p: (momentum * e + (1.0 - momentum) * p).astype(e.dtype), ema, params)


def all_finite(tree: Any) -> jax.Array:
  """Scalar bool: every floating leaf of `tree` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.stack(leaves).all() if leaves else jnp.asarray(True)


def all_finite_on_host(tree: Any) -> bool:
  """`all_finite(tree)` as a Python bool, without compiling a program for CPU arrays.

  Numpy leaves and jax arrays held whole on CPU devices are read as numpy views (no copy,
  nothing to compile: the jitted check costs 0.5-1.5 s of compiling per parameter tree); the
  other leaves (an accelerator's, or sharded over hosts) go through the jitted `all_finite`.
  """
  on_device = []
  for x in jax.tree.leaves(tree):
    if not jnp.issubdtype(np.result_type(x), jnp.inexact):
      continue
    if isinstance(x, jax.Array) and not (
        x.is_fully_addressable and all(d.platform == 'cpu' for d in x.devices())):
      on_device.append(x)
    elif not np.isfinite(np.asarray(x)).all():
      return False
  return bool(_all_finite_jit(on_device)) if on_device else True


_all_finite_jit = jax.jit(all_finite)
