"""Fixtures of the CoTracker3 parity tests: golden files and the golden parameter rule."""

import functools
import importlib.util

import numpy as np
import pytest


@pytest.fixture(scope='session')
def ct3_golden(golden, require_reference):
  """`ct3_golden(name)` -> {key: array} of golden/cotracker3/<name>.npz (skips when absent)."""
  def load(name):
    path = require_reference(f'CoTracker3 reference {name}',
                             golden / 'cotracker3' / f'{name}.npz')
    with np.load(path) as z:
      return {k: z[k] for k in z.files}
  return load


@pytest.fixture(scope='session')
def ct3_state(shared, require_reference):
  """`ct3_state(kind)` -> the golden parameters of the 'offline' / 'online' model in the official
  state_dict layout (golden/cotracker3/make_params.py with its param_overrides.json)."""
  folder = require_reference('CoTracker3 goldens', shared / 'golden' / 'cotracker3')
  spec = importlib.util.spec_from_file_location('ct3_make_params', folder / 'make_params.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)

  @functools.lru_cache(maxsize=2)
  def make(kind):
    return module.make_params(shared / 'data' / 'param_trees' / f'cotracker3_{kind}.json', 0,
                              folder / 'param_overrides.json')
  return make


@pytest.fixture(scope='session')
def ct3_params(ct3_state):
  """`ct3_params(kind)` -> the golden parameters of the 'offline' / 'online' model as our tree
  (jax arrays)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from tapkit.models.cotracker3 import convert  # pylint: disable=g-import-not-at-top

  @functools.lru_cache(maxsize=2)
  def make(kind):
    return jax.tree_util.tree_map(jnp.asarray, convert.params_from_state_dict(ct3_state(kind)))
  return make
