"""Threefry random bits on CPU as straight-line code: faster compiles, the same bits.

JAX lowers its threefry2x32 hash (behind every `jax.random` draw) differently per platform:
on GPUs as straight-line code (20 rounds), on CPUs as a rolled loop (5 iterations of 4
rounds). XLA's CPU runtime compiles each rolled loop as a `while` with its own condition and
body kernels, and a program that draws many arrays compiles a set of kernels per draw: a
model's initialisation draws one array per parameter (the 3DSPA smoke model: 70 loops, 470
kernels). The straight-line form fuses the rounds into one elementwise kernel per draw (46
kernels in all there), and the initialisation compiles in 5.0 instead of 8.9 CPU seconds.

The arithmetic is the same: identical 32-bit integer additions, rotations and xors in the same
order, so the random bits, and the samples and initial parameters computed from them, are
bit-identical (tests/tapkit/train/test_rng_lowering.py). What can change is how XLA fuses a
draw with the float arithmetic that consumes it inside a larger program, and with it the last
bits of that arithmetic: the 3DSPA and TracksTo4D smoke runs of the quickstart give the same
numbers to every digit, the 3DPoV one the same accuracies with a mean matching error that moved
from 13.68834 to 13.68856 px. A run is still deterministic, since every step is compiled the
same way.

`use_straight_line_threefry_on_cpu()` switches the CPU lowering for the process (idempotent);
the training engine (`loop.train`) and the test suite call it. `restore_default()` undoes it.
"""

from __future__ import annotations

import logging

_NOT_INSTALLED = object()
# JAX's own CPU lowering entry (None: it had none), kept while ours is installed.
_replaced = _NOT_INSTALLED


def _internals():
  """(primitive, straight-line rule, mlir module) of this JAX version, or None."""
  try:
    from jax._src.interpreters import mlir  # pylint: disable=g-import-not-at-top
    from jax._src.random import threefry2x32  # pylint: disable=g-import-not-at-top
    return (threefry2x32.threefry2x32_p, threefry2x32._threefry2x32_lowering_rule,  # pylint: disable=protected-access
            mlir)
  except (ImportError, AttributeError):
    return None


def use_straight_line_threefry_on_cpu() -> bool:
  """Lowers threefry2x32 on CPU as JAX does on GPU (straight-line code); same bits.

  Programs compiled afterwards use it (already compiled ones keep theirs). A JAX version
  whose internals differ keeps its default lowering (logged at INFO).

  Returns:
    whether the straight-line lowering is in use.
  """
  global _replaced
  if _replaced is not _NOT_INSTALLED:
    return True
  found = _internals()
  if found is None:
    logging.info('threefry2x32: this JAX version has no straight-line lowering to reuse; '
                 'keeping its CPU default.')
    return False
  prim, rule, mlir = found
  _replaced = mlir._platform_specific_lowerings['cpu'].get(prim)  # pylint: disable=protected-access
  mlir.register_lowering(prim, rule, platform='cpu', inline=False)
  return True


def restore_default() -> None:
  """Puts JAX's own CPU lowering of threefry2x32 back (for programs compiled afterwards)."""
  global _replaced
  found = _internals()
  if _replaced is _NOT_INSTALLED or found is None:
    return
  prim, _, mlir = found
  lowerings = mlir._platform_specific_lowerings['cpu']  # pylint: disable=protected-access
  if _replaced is None:
    lowerings.pop(prim, None)
  else:
    lowerings[prim] = _replaced
  _replaced = _NOT_INSTALLED
