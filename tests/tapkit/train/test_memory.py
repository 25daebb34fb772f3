"""The compile-only memory / FLOPs report and the throughput metrics."""

import jax
import numpy as np

from tapkit.train import config as config_lib
from tapkit.train import costs, loop, memory, mesh as mesh_lib, toy_task as toy


def _report(**overrides):
  config = config_lib.load_config('configs/toy.py:smoke')
  config.update(overrides)
  method = toy.build_method(config)
  example = memory.example_batch(method)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  return memory.analyze(config, method, example, mesh), config


def test_report_counts_state_bytes_and_flops_without_allocating():
  r, config = _report(batch_size=64)
  n = 16 * 64 + 64 + 64 * 64 + 64 + 64 * 4 + 4  # the smoke MLP 16 -> 64 -> 64 -> 4
  assert r['num_params'] == n
  assert r['params_bytes'] == 4 * n
  assert r['opt_state_bytes'] >= 2 * 4 * n  # Adam mu and nu (plus counters)
  assert r['batch_bytes'] == 64 * (16 + 4) * 4
  # The three matmuls forward + two backward matmuls each, 2 FLOPs per multiply-add.
  matmul_flops = 2 * 3 * 64 * (16 * 64 + 64 * 64 + 64 * 4)
  assert 0.8 * matmul_flops < r['flops_per_step_per_device'] < 3 * matmul_flops
  assert r['peak_bytes'] >= r['temp_bytes'] > 0
  text = costs.format_report(r)
  assert 'peak estimate' in text and f"{n:,} parameters" in text


def test_accumulation_shrinks_the_activations():
  whole, _ = _report(batch_size=512)
  split, _ = _report(batch_size=512, accumulate_steps=8)
  assert split['temp_bytes'] < whole['temp_bytes']
  np.testing.assert_allclose(split['flops_per_example'], whole['flops_per_example'], rtol=0.2)


def test_peak_table_and_mfu():
  assert costs.peak_flops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989e12
  assert costs.peak_flops('TPU v5 lite', 'bfloat16') == 197e12
  assert costs.peak_flops('cpu', 'float32') is None
  out = loop.throughput(2.0, 32, {'flops_per_step_per_device': 1e12}, 4e12)
  assert out == {'perf/steps_per_sec': 2.0, 'perf/examples_per_sec': 64.0, 'perf/mfu': 0.5}
  assert 'perf/mfu' not in loop.throughput(2.0, 32, {'flops_per_step_per_device': 1.0}, None)


def test_command_line_parses_overrides():
  config, spec, method, as_json = memory.parse_args(
      ['--config', 'configs/toy.py:smoke', '--config.batch_size=8',
       '--config.precision.compute_dtype=bfloat16', '--json'])
  assert (config.batch_size, config.precision.compute_dtype, as_json) == (8, 'bfloat16', True)
  assert memory.builder_for(spec) == 'tapkit.train.toy_task:build_method' and method is None


def test_run_step_executes_real_steps_and_measures_memory(capsys):
  config = config_lib.load_config('configs/toy.py:smoke')
  config.batch_size = 8
  method = toy.build_method(config)
  example = memory.example_batch(method)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  out = memory.run_steps(config, method, example, num_steps=2, mesh=mesh)
  assert len(out['step_seconds']) == 2 and all(t > 0 for t in out['step_seconds'])
  assert out['peak_rss_bytes'] >= out['rss_before_bytes'] > 0
  assert np.isfinite(out['loss'])
  # The plan of the step that ran is the one analyze() reports (one compilation, not two).
  plan = memory.analyze(config, method, example, mesh)
  assert out['peak_bytes'] == plan['peak_bytes'] and out['num_params'] == plan['num_params']
  assert out['flops_per_step_per_device'] == plan['flops_per_step_per_device']
  batch = memory.synthetic_batch(
      {'a': np.ones((1, 3), np.float32), 'b': jax.ShapeDtypeStruct((1, 2), np.int32)}, 4)
  assert batch['a'].shape == (4, 3) and batch['b'].shape == (4, 2) and batch['b'].dtype == np.int32
