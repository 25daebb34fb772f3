"""JAX's persistent compilation cache for the span of a run (`compilation_cache`)."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator

import jax
from jax.experimental.compilation_cache import compilation_cache as cc

# Programs compiled faster than this are not written to the cache (seconds).
_CACHE_MIN_COMPILE_S = 0.2


@contextlib.contextmanager
def compilation_cache(directory: str | pathlib.Path) -> Iterator[str | None]:
  """JAX's persistent compilation cache in `directory` while the block runs.

  A run compiles the same programs more than once (the same model's apply for an
  untrained and a trained evaluation, a resumed run's new step function), and a rerun
  compiles everything again: with the cache each program is compiled once per directory.
  Cached programs are bit-identical to freshly compiled ones, so results do not change. A cache directory the user configured
  (JAX_COMPILATION_CACHE_DIR / jax_compilation_cache_dir) is kept as it is.

  Yields:
    the cache directory in use (None when JAX's cache is disabled).
  """
  if not jax.config.jax_enable_compilation_cache:
    yield None
    return
  if jax.config.jax_compilation_cache_dir:
    yield jax.config.jax_compilation_cache_dir
    return
  min_time = jax.config.jax_persistent_cache_min_compile_time_secs
  cc.reset_cache()  # The cache binds its directory once per process.
  cc.set_cache_dir(str(directory))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', _CACHE_MIN_COMPILE_S)
  try:
    yield str(directory)
  finally:
    cc.reset_cache()
    jax.config.update('jax_compilation_cache_dir', None)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', min_time)
