"""Per-device memory and FLOPs of a compiled train step, and device peak FLOP/s.

`report(config, compiled, abstract_state, batch, num_devices)` reads XLA's
`memory_analysis()` / `cost_analysis()` of the compiled step (see
tapkit/train/memory.py for the command that prints it without training);
`peak_flops(device_kind, compute_dtype)` gives the peak used for MFU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

# Dense peak FLOP/s per chip by (device kind substring, compute dtype), from the
# vendors' data sheets (bf16 without sparsity; fp32 = TF32 tensor cores on
# NVIDIA A100 / H100 / H200, the bf16 MXU rate with fp32 accumulation on TPUs).
PEAK_FLOPS = {
    ('TPU v4', 'bfloat16'): 275e12, ('TPU v4', 'float32'): 275e12,
    ('TPU v5 lite', 'bfloat16'): 197e12, ('TPU v5 lite', 'float32'): 197e12,
    ('TPU v5e', 'bfloat16'): 197e12, ('TPU v5e', 'float32'): 197e12,
    ('TPU v5p', 'bfloat16'): 459e12, ('TPU v5p', 'float32'): 459e12,
    ('TPU v5', 'bfloat16'): 459e12, ('TPU v5', 'float32'): 459e12,
    ('A100', 'bfloat16'): 312e12, ('A100', 'float32'): 156e12,
    ('H100', 'bfloat16'): 989e12, ('H100', 'float32'): 495e12,
    ('H200', 'bfloat16'): 989e12, ('H200', 'float32'): 495e12,
}

def peak_flops(device_kind: str, compute_dtype: str) -> float | None:
  """Peak FLOP/s of one device of `device_kind` (jax Device.device_kind), or None."""
  for (kind, dtype), peak in PEAK_FLOPS.items():
    if kind.lower() in device_kind.lower() and dtype == compute_dtype:
      return peak
  return None


def _bytes_on_device(tree: Any) -> int:
  """Bytes of one device's shards of a tree of ShapeDtypeStructs with shardings."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += int(np.prod(shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
  return total


def report(config: ml_collections.ConfigDict, compiled: Any, abstract_state: Any, batch: Any,
           num_devices: int) -> dict[str, Any]:
  """The report dict of a compiled train step (see the module docstring)."""
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  # XLA counts the body of a loop once. The accumulation scan runs it k times; scaling
  # by k also counts the (small) optimiser update k times. Scans inside a model (e.g.
  # 3DSPA's chunked decoder) stay counted once: a lower bound there.
  flops = float(cost.get('flops', 0.0)) if cost else 0.0
  flops *= int(config.accumulate_steps)
  out = {
      'devices': num_devices,
      'batch_size': int(config.batch_size),
      'accumulate_steps': int(config.accumulate_steps),
      'compute_dtype': config.precision.compute_dtype,
      'num_params': int(sum(np.prod(x.shape, dtype=np.int64)
                            for x in jax.tree.leaves(abstract_state.params))),
      'params_bytes': _bytes_on_device(abstract_state.params),
      'opt_state_bytes': _bytes_on_device(abstract_state.opt_state),
      'ema_bytes': _bytes_on_device(abstract_state.ema_params),
      'extra_bytes': _bytes_on_device(abstract_state.extra),
      'batch_bytes': _bytes_on_device(batch),
      'flops_per_step_per_device': flops,
      'flops_per_example': flops * num_devices / max(int(config.batch_size), 1),
  }
  if mem is not None:
    out.update({
        'argument_bytes': int(mem.argument_size_in_bytes),
        'temp_bytes': int(mem.temp_size_in_bytes),
        'output_bytes': int(mem.output_size_in_bytes),
        'alias_bytes': int(mem.alias_size_in_bytes),
        'code_bytes': int(mem.generated_code_size_in_bytes),
    })
    out['peak_bytes'] = (out['argument_bytes'] + out['output_bytes'] - out['alias_bytes']
                         + out['temp_bytes'])
  return out


def format_report(r: Mapping[str, Any]) -> str:
  """Human-readable lines of a report."""
  gib = lambda b: f'{b / 2**20:10.1f} MiB'
  lines = [f"train step: {r['num_params']:,} parameters, global batch {r['batch_size']} "
           f"({r['accumulate_steps']} micro-batch(es)), {r['compute_dtype']} compute, "
           f"{r['devices']} device(s); per device:"]
  for key, label in (('params_bytes', 'parameters'), ('opt_state_bytes', 'optimizer state'),
                     ('ema_bytes', 'EMA'), ('extra_bytes', 'extra state'),
                     ('batch_bytes', 'batch'), ('temp_bytes', 'temporaries'),
                     ('output_bytes', 'outputs'), ('alias_bytes', 'aliased (donated)'),
                     ('peak_bytes', 'peak estimate')):
    if key in r:
      lines.append(f'  {label:20s}{gib(r[key])}')
  lines.append(f"  {'FLOPs per step':20s}{r['flops_per_step_per_device']:.4g} per device, "
               f"{r['flops_per_example']:.4g} per example")
  return '\n'.join(lines)
