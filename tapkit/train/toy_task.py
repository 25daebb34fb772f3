"""Toy task for testing the engine: MLP regression on a deterministic synthetic source.

Trained by `python -m tapkit.train.toy --config configs/toy.py:smoke --workdir /tmp/toy`.

Record i is (x [D_in], y [D_out]) with x ~ N(0, 1) from a generator seeded by
(data_seed, i) and y = tanh(x W) V for fixed random W, V, so the data never
depend on run order. A RandomMapTransform adds input noise from grain's
per-record rng, and the model has dropout, so every source of randomness the
engine must control is exercised. `config.toy.nan_steps` makes the loss NaN at
the listed steps (guard tests).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import grain.python as grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from tapkit.train import accumulation, launch, loop, precision


class ToySource(grain.RandomAccessDataSource):
  """Deterministic regression records {'x': [D_in], 'y': [D_out]} float32."""

  def __init__(self, num_records: int, dim_in: int, dim_out: int, data_seed: int = 1234):
    self._n, self._din, self._dout, self._seed = num_records, dim_in, dim_out, data_seed
    g = np.random.default_rng(data_seed)
    self._w = g.normal(size=(dim_in, 32)).astype(np.float32) / np.sqrt(dim_in)
    self._v = g.normal(size=(32, dim_out)).astype(np.float32) / np.sqrt(32)

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    x = np.random.default_rng((self._seed, int(index))).normal(size=self._din)
    x = x.astype(np.float32)
    return {'x': x, 'y': (np.tanh(x @ self._w) @ self._v).astype(np.float32)}

  def __repr__(self) -> str:
    return f'ToySource(n={self._n}, din={self._din}, dout={self._dout}, seed={self._seed})'


class InputNoise(grain.RandomMapTransform):
  """x += noise_std * N(0, 1), drawn from grain's per-record rng.

  `delay_s` > 0 sleeps per record to mimic a slow input pipeline (used by the
  kill-and-resume test to have time to kill a run mid-way); it never changes
  the data.
  """

  def __init__(self, noise_std: float, delay_s: float = 0.0):
    self._std = noise_std
    self._delay_s = delay_s

  def random_map(self, element, rng: np.random.Generator):
    if self._delay_s > 0:
      time.sleep(self._delay_s)
    noise = rng.normal(size=element['x'].shape).astype(np.float32)
    return {**element, 'x': element['x'] + np.float32(self._std) * noise}


class MLP(nn.Module):
  """[B, D_in] -> [B, D_out]; gelu hidden layers with dropout."""

  hidden: Sequence[int]
  dim_out: int
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i, width in enumerate(self.hidden):
      x = nn.gelu(nn.Dense(width, dtype=self.dtype, name=f'dense_{i}')(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.dim_out, dtype=self.dtype, name='head')(x)


def build_method(config: ml_collections.ConfigDict,
                 workdir: str | os.PathLike | None = None) -> loop.Method:
  """The toy task as an engine Method.

  `workdir` is the run directory `launch.run` passes to every build_method; the toy generates
  its data in memory and needs none, so it is optional here.
  """
  del workdir
  model = MLP(hidden=tuple(config.model.hidden), dim_out=config.toy.dim_out,
              dropout=config.model.dropout, dtype=precision.compute_dtype(config))
  nan_steps = jnp.asarray(tuple(config.toy.nan_steps) or (-1,), jnp.int32)

  def init_fn(rng: jax.Array, batch: dict[str, Any]) -> Any:
    return model.init(rng, jnp.asarray(batch['x'][:1]))['params']

  def loss_fn(params, batch, rng, state):
    pred = model.apply({'params': params}, batch['x'], train=True,
                       rngs={'dropout': rng})  # [B, D_out]
    mse = jnp.mean(jnp.square(pred - batch['y']))
    # Guard tests: a NaN loss at the listed steps (its gradient is also NaN-free
    # zero here, so only the loss check can catch it).
    loss = jnp.where(jnp.isin(state.step, nan_steps), jnp.nan, mse)
    return loss, {'mse': mse, 'pred_abs': jnp.mean(jnp.abs(pred))}

  def masked_sums(params, batch, rng, state):
    del state
    pred = model.apply({'params': params}, batch['x'], train=True,
                       rngs={'dropout': rng})  # [B, D_out]
    m = (batch['y'] > 0).astype(jnp.float32)  # [B, D_out]
    totals = {'masked_sq': jnp.sum(jnp.square(pred - batch['y']) * m),
              'abs': jnp.sum(jnp.abs(pred))}
    return totals, {'masked': jnp.sum(m), 'entries': jnp.asarray(m.size, jnp.float32)}

  def masked_combine(totals, weights, state):
    mse = totals['masked_sq'] / jnp.maximum(1.0, weights['masked'])
    loss = jnp.where(jnp.isin(state.step, nan_steps), jnp.nan, mse)
    return loss, {'mse': mse, 'pred_abs': totals['abs'] / weights['entries']}

  if config.toy.masked_loss:
    # The squared error over the positive targets, divided by their count in the
    # whole batch: a batch-wide normaliser, exact under accumulate_steps.
    loss_fn = accumulation.SumsLoss(masked_sums, masked_combine)

  source = ToySource(config.toy.num_records, config.toy.dim_in, config.toy.dim_out,
                     config.toy.data_seed)
  hooks = []
  if config.toy.eval_every:
    # Held-out records: indices past the training range of the same function;
    # no input noise, no dropout.
    held_out = [source[config.toy.num_records + i] for i in range(64)]
    eval_x = np.stack([r['x'] for r in held_out])  # [64, D_in]
    eval_y = np.stack([r['y'] for r in held_out])  # [64, D_out]

    @jax.jit
    def eval_mse(params):
      return jnp.mean(jnp.square(model.apply({'params': params}, eval_x) - eval_y))

    def evaluate(state, step, writer=None):
      del step, writer
      return {'mse': float(eval_mse(state.params))}

    hooks.append(loop.EvalHook(every_steps=config.toy.eval_every, fn=evaluate))

  return loop.Method(
      init_fn=init_fn,
      loss_fn=loss_fn,
      train_source=source,
      train_transforms=[InputNoise(config.toy.noise_std, config.toy.delay_s)],
      eval_hooks=hooks,
  )
