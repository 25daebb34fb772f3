"""Test-time fine-tuning of TracksTo4D on one video (official inference.py fine-tuning).

n Adam steps (lr 1e-4, betas (0.9, 0.999), eps 1e-8; optax.adam has torch Adam's update
rule) of the total loss, unclamped, on the video's own tracks. The official keeps, for
the lowest loss seen (evaluated *before* a step), the weights *after* that step, and
only considers losses below 1000.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tracks4d import losses
from tracks4d import model as model_lib
from tracks4d.checkpoint import AdamMoments

Array = jax.Array

LEARNING_RATE = 1e-4
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
BEST_LOSS_THRESHOLD = 1000.0  # The official "best" tracker starts here.


@dataclasses.dataclass
class FinetuneResult:
  """Outcome of `finetune`.

  Attributes:
    params: the kept weights (one update past the best-scoring ones); the initial
      weights when no step reached a loss below the threshold (the official would then
      load a stale file from an earlier video, which we do not reproduce).
    best_step: index of the best step, or None.
    best_loss: its loss (evaluated before that step), or None.
    loss_history: [iterations, 5] float64 loss terms before each step, columns in
      `losses.LOSS_NAMES` order.
    opt_state: the optax state after the last step.
  """

  params: Any
  best_step: int | None
  best_loss: float | None
  loss_history: np.ndarray
  opt_state: Any


@functools.lru_cache(maxsize=8)
def _optimiser_and_step(net: model_lib.TracksTo4D, coeff_items: tuple[tuple[str, float], ...],
                        learning_rate: float):
  """(optax Adam, jitted step) cached per configuration, so videos reuse compilations."""
  opt = optax.adam(learning_rate, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)
  coeffs = dict(coeff_items) or None

  def loss_fn(p, tracks, visible):
    terms = losses.loss_terms(net.apply({'params': p}, tracks), tracks, visible, coeffs)
    return terms['loss_total'], jnp.stack([terms[k] for k in losses.LOSS_NAMES])

  @jax.jit
  def step(p, s, tracks, visible):
    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, tracks, visible)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, terms

  return opt, step


def finetune(params: Any, tracks: Array, visible: Array, iterations: int, *,
             net: model_lib.TracksTo4D | None = None,
             coeffs: Mapping[str, float] | None = None,
             adam_moments: AdamMoments | None = None,
             learning_rate: float = LEARNING_RATE,
             best_threshold: float = BEST_LOSS_THRESHOLD) -> FinetuneResult:
  """Official test-time fine-tuning.

  Args:
    params: Flax params of `TracksTo4D` (the `params` collection).
    tracks: [1, N, 3, F] network input of the video.
    visible: [1, F, N] bool.
    iterations: number of Adam steps (README: 500).
    net: the module (default `TracksTo4D()`).
    coeffs: loss coefficients (released defaults when None).
    adam_moments: the checkpoint's Adam state to continue from (the official loads it);
      None = fresh Adam state.
    learning_rate: 1e-4 (official).
    best_threshold: losses must be below this to count as "best" (1000).
  """
  net = model_lib.TracksTo4D() if net is None else net
  coeff_items = tuple(sorted((coeffs or {}).items()))
  opt, step = _optimiser_and_step(net, coeff_items, float(learning_rate))
  state = opt.init(params)
  if adam_moments is not None:
    state = adam_moments.to_optax(state)

  best_params, best_step, best_loss = params, None, float(best_threshold)
  history = []
  for i in range(iterations):
    params, state, terms = step(params, state, tracks, visible)
    terms = np.asarray(terms, np.float64)
    history.append(terms)
    if terms[0] < best_loss:  # Loss before the step; weights kept are after it.
      best_params, best_step, best_loss = params, i, float(terms[0])
  return FinetuneResult(params=best_params, best_step=best_step,
                        best_loss=None if best_step is None else best_loss,
                        loss_history=np.array(history, np.float64).reshape(-1, 5),
                        opt_state=state)
