"""Memory and FLOPs of a config's train step, from the compiled program alone.

    python -m tapkit.train.memory --config configs/spa3d.py:default \
        --config.batch_size=1 --config.remat=block [--method trajan3d.task:build_method] \
        [--run_step[=N]] [--json]

No parameter is allocated and no step runs: the initial state is traced with
`jax.eval_shape` (ShapeDtypeStructs with the engine's FSDP shardings), the step
is lowered on abstract inputs and compiled, and XLA's `memory_analysis()` /
`cost_analysis()` of the compiled per-device program are reported:

  params / opt_state / ema / extra   the train state's bytes on one device
  batch                              one step's input batch on one device
  temporaries                        XLA's temp buffers (activations kept for
                                     the backward pass, workspaces)
  output (not aliased)               outputs not written into donated inputs
  peak estimate                      arguments + output - aliased + temporaries
  flops per step / per example       XLA's count for the per-device program

The method is built from its `build_method(config, workdir)` to obtain one
example record (with a temporary workdir, one synthetic clip and no
evaluators, so nothing big is rendered); `--method` names the builder
('module.path:function'), by default the one of the config file's method.
FLOPs are the compiler's count of the optimised program (including
rematerialised recomputation); XLA counts a loop body once, so the count is
multiplied by `accumulate_steps` and is a lower bound for models that scan
internally (3DSPA with `decoder_scan_chunk_size` below the number of queries).
Peaks per device kind are in `costs.PEAK_FLOPS`.

`--run_step` then initialises the state for real and executes 2 (or N) training
steps on synthetic inputs of the example's shapes (`run_steps`), and adds the
process's measured peak resident memory and the step times: evidence that the
configuration runs on this machine, not only that XLA planned it.
"""

from __future__ import annotations

import ast
import importlib
import json
import pathlib
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from tapkit.data import pipeline
from tapkit.train import costs
from tapkit.train import loop
from tapkit.train import mesh as mesh_lib

# Config file stem -> the method's builder, imported by name at run time (the
# base layer imports no method).
BUILDERS = {
    'spa3d': 'trajan3d.task:build_method',
    'trajan': 'trajan3d.task:build_method',
    'tracks4d': 'tracks4d.task:build_method',
    'dpov': 'dpov_jax.task:build_method',
    'toy': 'tapkit.train.toy_task:build_method',
}


def resolve_builder(spec: str) -> Callable[..., Any]:
  """'module.path:function' -> the function."""
  module, _, name = spec.partition(':')
  return getattr(importlib.import_module(module), name or 'build_method')


def builder_for(config_spec: str) -> str:
  stem = pathlib.Path(config_spec.partition(':')[0]).stem
  if stem not in BUILDERS:
    raise ValueError(f'no builder known for config file {stem!r}; pass --method module:function '
                     f'(known: {sorted(BUILDERS)}).')
  return BUILDERS[stem]


def example_batch(method: Any) -> Any:
  """One record of `method.train_source` through its transforms, batched as [1, ...]."""
  loader = pipeline.make_dataloader(method.train_source, method.train_transforms,
                                    batch_size=1, seed=0, worker_count=0)
  return next(iter(loader))


def analyze(config: ml_collections.ConfigDict, method: Any, example: Any,
            mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
  """Compiles the train step of `config` on abstract inputs; returns the report dict.

  Args:
    config: the full config (batch_size is the global batch per update).
    method: the engine Method.
    example: a batch tree [n, ...] (arrays or ShapeDtypeStructs); only the
      shapes after the leading axis and the dtypes are used.
    mesh: default: `config.mesh` over all devices.
  """
  mesh = mesh or mesh_lib.make_mesh(config.mesh)
  num_devices = mesh.devices.size
  mesh_lib.check_accumulation(config.batch_size, config.accumulate_steps, mesh)
  local = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((config.batch_size, *np.shape(x)[1:]), np.dtype(x.dtype)),
      example)
  _, abstract_state, tx = loop.build_state(config, method, local, mesh, materialize=False)
  step, new_metrics = loop.compile_step(config, method, tx, abstract_state, local, mesh)
  batch_sh = mesh_lib.batch_sharding(mesh)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=batch_sh), local)
  compiled = step.lower(abstract_state, batch, new_metrics()).compile()
  return costs.report(config, compiled, abstract_state, batch, num_devices)


def synthetic_batch(example: Any, batch_size: int, seed: int = 0) -> Any:
  """A numpy batch [batch_size, ...] of the example's shapes and dtypes.

  Array leaves ([1, ...] records) are repeated along the batch; ShapeDtypeStruct
  leaves (inputs the example lacks, such as DINO features) are filled with
  standard-normal floats (zeros for integer / boolean leaves).
  """
  rng = np.random.default_rng(seed)

  def make(x):
    shape = (batch_size, *np.shape(x)[1:])
    if isinstance(x, jax.ShapeDtypeStruct):
      if np.issubdtype(x.dtype, np.floating):
        return rng.standard_normal(shape).astype(x.dtype)
      return np.zeros(shape, x.dtype)
    x = np.asarray(x)
    return np.repeat(x[:1], batch_size, axis=0)

  return jax.tree.map(make, example)


def run_steps(config: ml_collections.ConfigDict, method: Any, example: Any,
              num_steps: int = 2, mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
  """Runs `num_steps` real train steps on `synthetic_batch(example)`; returns measurements.

  The state is initialised for real (parameters, optimiser state) and the compiled
  step is executed, so the numbers include what XLA's plan leaves out (the
  runtime's own buffers, the host copies of the batch). Returned keys:
  'rss_before_bytes' (resident memory after compiling and initialising),
  'peak_rss_bytes' (largest resident memory sampled every 50 ms during the steps),
  'step_seconds' (wall time of each step, the first included), 'loss' (last).
  """
  import threading  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  import psutil  # pylint: disable=g-import-not-at-top
  mesh = mesh or mesh_lib.make_mesh(config.mesh)
  batch = synthetic_batch(example, int(config.batch_size), int(config.seed))
  state, abstract_state, tx = loop.build_state(config, method, batch, mesh)
  step, new_metrics = loop.compile_step(config, method, tx, abstract_state, batch, mesh)
  process = psutil.Process()
  global_batch = mesh_lib.make_global_batch(batch, mesh)
  compiled = step.lower(abstract_state, global_batch, new_metrics()).compile()
  rss_before = process.memory_info().rss
  peak = [rss_before]
  done = threading.Event()

  def watch():
    while not done.wait(0.05):
      peak[0] = max(peak[0], process.memory_info().rss)

  watcher = threading.Thread(target=watch, daemon=True)
  watcher.start()
  times, metrics = [], None
  try:
    for _ in range(num_steps):
      start = time.perf_counter()
      state, metrics, _ = compiled(state, global_batch, new_metrics())
      jax.block_until_ready(state.params)
      times.append(time.perf_counter() - start)
  finally:
    done.set()
    watcher.join()
  peak[0] = max(peak[0], process.memory_info().rss)
  values = jax.device_get(metrics.compute())
  return {'rss_before_bytes': int(rss_before), 'peak_rss_bytes': int(peak[0]),
          'step_seconds': times, 'loss': float(values.get('loss', np.nan))}


def build_for_memory(config: ml_collections.ConfigDict, builder: Callable[..., Any],
                     workdir: str) -> Any:
  """`builder(config, workdir)` with one synthetic training clip and no evaluators."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.evals = ml_collections.ConfigDict()
  synthetic = config.get('data', {}).get('synthetic') if 'data' in config else None
  if synthetic is not None and 'num_train' in synthetic:
    synthetic.num_train = max(1, min(int(synthetic.num_train), 2))
    if 'num_eval' in synthetic:
      synthetic.num_eval = 1
  return builder(config, workdir)


def parse_args(argv: list[str]) -> tuple[ml_collections.ConfigDict, str, str | None, bool]:
  """--config path.py[:preset] [--config.a.b=value ...] [--method m:f] [--json].

  Override values are Python literals (`1e-4`, `True`, `(1, 2)`), else strings.
  Returns (config, config_spec, method_spec, as_json).
  """
  from tapkit.train import config as config_lib  # pylint: disable=g-import-not-at-top
  spec, method_spec, as_json, overrides = None, None, False, []
  argv = list(argv)
  while argv:
    arg = argv.pop(0)
    name, sep, value = arg.partition('=')
    if not sep and name in ('--config', '--method') and argv:
      value = argv.pop(0)  # `--config x.py` as well as `--config=x.py`
    if name == '--config':
      spec = value
    elif name == '--method':
      method_spec = value
    elif name == '--json':
      as_json = True
    elif name in ('--help', '-h'):
      print(f'usage: python -m tapkit.train.memory --config FILE[:preset] [--config.key=value '
            f'...] [--method module:function] [--json]\n\n{__doc__}')
      sys.exit(0)
    elif name.startswith('--config.'):
      overrides.append((name[len('--config.'):], value))
    else:
      raise ValueError(f'unknown argument {arg!r}; usage: python -m tapkit.train.memory '
                       '--config configs/x.py[:preset] [--config.key=value ...] '
                       '[--method module:function] [--json]')
  if not spec:
    raise ValueError('--config path/to/config.py[:preset] is required.')
  config = config_lib.load_config(spec)
  for dotted, text in overrides:
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    *parents, last = dotted.split('.')
    node = config
    for part in parents:
      node = node[part]
    if last not in node:
      raise ValueError(f"config key '{dotted}' is not known.")
    node[last] = value
  return config, spec, method_spec, as_json


def main(argv: list[str] | None = None) -> None:
  """Prints the report of the config given on the command line (module docstring).

  `--run_step` (or `--run_step=N`) also runs 2 (N) real steps on synthetic inputs and
  adds the measured peak resident memory and step times.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  steps = 0
  for arg in list(argv):
    if arg == '--run_step' or arg.startswith('--run_step='):
      steps = int(arg.partition('=')[2] or 2)
      argv.remove(arg)
  config, spec, method_spec, as_json = parse_args(argv)
  builder = resolve_builder(method_spec or builder_for(spec))
  with tempfile.TemporaryDirectory() as workdir:
    method = build_for_memory(config, builder, workdir)
    example = example_batch(method)
    r = analyze(config, method, example)
    if steps:
      r.update(run_steps(config, method, example, steps))
  if as_json:
    print(json.dumps(r))
    return
  print(costs.format_report(r))
  if steps:
    print(f"  {'measured peak RSS':20s}{r['peak_rss_bytes'] / 2**20:10.1f} MiB (process, "
          f"{r['rss_before_bytes'] / 2**20:.1f} MiB before the steps); step times "
          + ', '.join(f'{t:.2f}' for t in r['step_seconds']) + ' s')


if __name__ == '__main__':
  main()
