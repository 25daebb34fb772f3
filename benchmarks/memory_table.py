"""Per-device memory and FLOPs of the papers' training steps, compile only.

    python benchmarks/memory_table.py [--max_rss_gb 6] [--rows spa3d_f32,vit_b14]

Rows (per-device batch 1 on one device -- 3DPoV: 2, its loss takes references from the
other clips of the batch -- AdamW, the `default` presets):
  spa3d_f32         3DSPA (kind '3dspa', DINO + depth features), 512 support /
                    128 query tracks, T = 150, float32, no rematerialisation
  spa3d_f32_remat   the same with config.remat = 'block'
  spa3d_bf16_remat  the same with bfloat16 compute
  dpov_vitb14       3DPoV default (ViT-B/14 with registers, teacher EMA), float32
  tracks4d          TracksTo4D default, float32

Nothing is executed and no parameter is allocated: each row runs
`tapkit.train.memory.analyze` (eval_shape + lower + compile) in a subprocess
whose resident memory is watched; a row whose compilation itself needs more
than --max_rss_gb is stopped and reported as such. 3DSPA's DINO features are a
[B, S, T, 768] input that synthetic clips lack: the example batch comes from
the feature-less pipeline and gets a `dino_features` array of the right shape.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPA3D = {'model.kind': '3dspa', 'features.depth': True, 'features.dino': True, 'data.num_support': 512,
         'data.num_query': 128, 'data.num_frames': 150, 'model.num_output_frames': 150,
         'batch_size': 1}
ROWS = {
    'spa3d_f32': ('configs/spa3d.py:default', {**SPA3D, 'remat': 'none'}),
    'spa3d_f32_remat': ('configs/spa3d.py:default', {**SPA3D, 'remat': 'block'}),
    'spa3d_bf16_remat': ('configs/spa3d.py:default',
                         {**SPA3D, 'remat': 'block', 'precision.compute_dtype': 'bfloat16'}),
    'dpov_vitb14': ('configs/dpov.py:default', {'batch_size': 2}),  # >= 2: in-batch references
    'tracks4d': ('configs/tracks4d.py:default', {'batch_size': 1}),
}


def _set(config, dotted, value):
  *parents, last = dotted.split('.')
  node = config
  for part in parents:
    node = node[part]
  node[last] = value


def _without_dino(config):
  """A copy of `config` whose input pipeline does not read DINO feature maps."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  plain = ml_collections.ConfigDict(config.to_dict())
  if 'features' in plain:
    plain.features.dino = False
  return plain


def build_row(name: str, workdir: str) -> tuple:
  """(config, method, example batch) of one row; the method is built in `workdir`."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tapkit.train import config as config_lib, memory  # pylint: disable=g-import-not-at-top
  spec, overrides = ROWS[name]
  config = config_lib.load_config(spec)
  for k, v in overrides.items():
    _set(config, k, v)
  if name.startswith('spa3d'):
    # Small synthetic renders (memory.build_for_memory keeps 1-2 clips): only the
    # example's shapes matter, not the images.
    config.data.synthetic.update({'num_frames': 150, 'height': 32, 'width': 32,
                                  'num_tracks': 700})
  builder = memory.resolve_builder(memory.builder_for(spec))
  method = memory.build_for_memory(_without_dino(config), builder, workdir)
  example = memory.example_batch(method)
  if 'features' in config and config.features.get('dino'):
    example = {**example, 'dino_features': jax.ShapeDtypeStruct(
        (1, config.data.num_support, config.data.num_frames, 768), np.float32)}
  return config, method, example


def run_row(name: str) -> dict:
  """Compiles one row's train step (in this process) and returns the report."""
  from tapkit.train import memory  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as workdir:
    config, method, example = build_row(name, workdir)
    return memory.analyze(config, method, example)


def _watch(cmd: list[str], max_rss: float) -> tuple[int, str, float]:
  """Runs cmd, killing it if its resident memory exceeds max_rss bytes."""
  import psutil  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
  with tempfile.TemporaryFile('w+') as out:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.DEVNULL,
                            text=True)
    peak = 0.0
    while proc.poll() is None:
      try:
        rss = psutil.Process(proc.pid).memory_info().rss
      except psutil.NoSuchProcess:
        break
      peak = max(peak, rss)
      if rss > max_rss:
        proc.kill()
        proc.wait()
        return -1, '', peak
      time.sleep(0.2)
    out.seek(0)
    return proc.returncode, out.read(), peak


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rows', default=','.join(ROWS))
  parser.add_argument('--max_rss_gb', type=float, default=6.0)
  parser.add_argument('--row', help=argparse.SUPPRESS)  # internal: run one row, print JSON
  args = parser.parse_args()
  if args.row:
    print('ROW ' + json.dumps(run_row(args.row)))
    return
  gib = lambda b: f'{b / 2**30:7.2f}'
  print(f"{'row':18s} {'params':>10s} {'param':>7s} {'opt':>7s} {'temp':>7s} {'peak':>7s} "
        f"{'GFLOP/ex':>9s} {'compile RSS':>11s}   (GiB per device)")
  for name in args.rows.split(','):
    code, out, peak = _watch([sys.executable, __file__, '--row', name],
                             args.max_rss_gb * 2**30)
    lines = [l for l in out.splitlines() if l.startswith('ROW ')]
    if code != 0 or not lines:
      why = (f'compilation needs more than {args.max_rss_gb:g} GiB of host memory here'
             if code == -1 else f'failed (exit {code})')
      print(f'{name:18s} {why}')
      continue
    r = json.loads(lines[-1][4:])
    print(f"{name:18s} {r['num_params'] / 1e6:9.1f}M {gib(r['params_bytes'])} "
          f"{gib(r['opt_state_bytes'])} {gib(r['temp_bytes'])} {gib(r['peak_bytes'])} "
          f"{r['flops_per_example'] / 1e9:9.1f} {gib(peak)}")


if __name__ == '__main__':
  main()
