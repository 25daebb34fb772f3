"""One jitted init and one jitted apply per TRAJAN / 3DSPA model, shared within a process.

The training run's initialisation (`trajan3d.task`, through the engine's `init_outside_jit`)
and the untrained baseline (`evaluate_tapvid3d.random_reconstructor`) call the same jitted
init on the same input shapes, and the Reconstructors of one model (the training-time
evaluator, the untrained and trained TAPVid-3D evaluations, the realism score) share one
jitted apply, so a process doing all of them (the quickstart) traces and compiles each
program once. A persistent-cache hit would still trace and lower anew.
"""

from __future__ import annotations

from typing import Any

import jax

# {model: jax.jit(model.init)} and {model: jitted apply}; equal (hashable) models share one.
_INIT_CACHE: dict[Any, Any] = {}
_APPLY_CACHE: dict[Any, Any] = {}


def _cached(cache: dict[Any, Any], model: Any, make: Any) -> Any:
  try:
    if model not in cache:
      cache[model] = make()
    return cache[model]
  except TypeError:  # A module with an unhashable field: a function of its own.
    return make()


def jitted_init(model: Any) -> Any:
  """jax.jit(model.init): (rng, inputs) -> variables, the same function for equal models."""
  return _cached(_INIT_CACHE, model, lambda: jax.jit(model.init))


def jitted_apply(model: Any) -> Any:
  """jax.jit of (params, inputs) -> model.apply({'params': params}, inputs), one per model."""
  return _cached(_APPLY_CACHE, model,
                 lambda: jax.jit(lambda p, x: model.apply({'params': p}, x)))
