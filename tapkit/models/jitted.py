"""One jitted init and one jitted apply per Flax module, shared within a process.

A method's training run initialises its model, and its evaluators (the untrained baseline,
the training-time evaluation, the benchmark evaluations, a score command) apply it on the
same shapes. Each `jax.jit(...)` wrapper object has its own trace cache, so wrappers made in
different places trace, lower and compile the same program again (a persistent-cache hit still
traces and lowers). These two functions hand out one wrapper per module instead: equal Flax
modules (dataclasses compared field by field) share it, so a process that trains and
evaluates a model (the quickstart) compiles each program once per input shape.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

# {module: jax.jit(module.init)} and {module: jitted apply}; equal (hashable) modules share one.
_INIT_CACHE: dict[Any, Callable[..., Any]] = {}
_APPLY_CACHE: dict[Any, Callable[..., Any]] = {}


def _cached(cache: dict[Any, Callable[..., Any]], module: Any,
            make: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
  try:
    if module not in cache:
      cache[module] = make()
    return cache[module]
  except TypeError:  # A module with an unhashable field: a function of its own.
    return make()


def jitted_init(module: Any) -> Callable[..., Any]:
  """jax.jit(module.init): (rng, *inputs) -> variables, the same function for equal modules."""
  return _cached(_INIT_CACHE, module, lambda: jax.jit(module.init))


def jitted_apply(module: Any) -> Callable[..., Any]:
  """jax.jit of (params, *inputs) -> module.apply({'params': params}, *inputs), one per module."""
  return _cached(_APPLY_CACHE, module,
                 lambda: jax.jit(lambda params, *inputs: module.apply({'params': params}, *inputs)))
