"""The step profiler of benchmarks/tracks4d_step.py groups compiled operations correctly."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np


def _bench_module():
  path = os.path.join(os.path.dirname(__file__), '..', '..', 'benchmarks', 'tracks4d_step.py')
  spec = importlib.util.spec_from_file_location('tracks4d_step_bench', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_op_groups_counts_product_flops_and_time():
  bench = _bench_module()
  x = jnp.ones((40, 24), jnp.float32)
  w = jnp.ones((24, 12), jnp.float32)
  fn = jax.jit(lambda x, w: jnp.tanh(jnp.dot(x, w, precision=jax.lax.Precision.HIGHEST)) * 2.0)
  compiled = fn.lower(x, w).compile()
  hlo = compiled.as_text()
  # Give every entry operation 1.5 ms: the group times must add up to that.
  entry = hlo[hlo.index('\nENTRY'):]
  names = [line.split(' = ')[0].strip().removeprefix('ROOT ').lstrip('%')
           for line in entry.split('\n')[1:] if ' = ' in line]
  rows = bench._op_groups(hlo, {n: 1.5 for n in names})
  assert sum(r[2] for r in rows) == len(names)  # every entry operation in exactly one group
  dots = [r for r in rows if r[0].startswith('dot ')]
  assert len(dots) == 1, rows
  key, ms, count, flops = dots[0]
  assert flops == 2 * 40 * 12 * 24  # 2 M N K
  assert ms == 1.5 * count
  assert 'f32[40,12]' in key and 'f32[40,24]' in key
  np.testing.assert_allclose(sum(r[1] for r in rows), 1.5 * sum(r[2] for r in rows))
