"""Fixtures of the depth-model tests: the VDA goldens and their synthetic parameters."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest


@pytest.fixture(scope='session')
def vda_golden(golden, require_reference) -> pathlib.Path:
  return require_reference('VDA goldens', golden / 'vda')


@pytest.fixture(scope='session')
def vda_state_dict(vda_golden, shared):
  """make_state_dict(encoder) -> {official name: float32 array} (golden parameters, seed 0)."""
  spec = importlib.util.spec_from_file_location('vda_make_params', vda_golden / 'make_params.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cache = {}

  def make(encoder: str) -> dict:
    if encoder not in cache:
      tree = shared / 'data' / 'param_trees' / f'vda_{encoder}.json'
      cache[encoder] = module.make_params(str(tree), seed=0)
    return cache[encoder]
  return make


@pytest.fixture(scope='session')
def vda_case(vda_golden):
  """vda_case(name) -> {array name: array, 'meta': dict} of golden `name`.npz."""
  def load(name: str) -> dict:
    with np.load(vda_golden / f'{name}.npz', allow_pickle=False) as z:
      out = {k: z[k] for k in z.files}
    out['meta'] = json.loads(str(out.pop('meta_json')))
    return out
  return load
