"""Every command line: starts without TensorFlow, `--help` exits 0 and lists its flags, and a
user mistake ends in one `error:` line with exit code 2 (no traceback)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

# Every `python -m` entry point of the repository.
CLIS = (
    'tapkit.evaluate', 'tapkit.evaluate_tapvid3d', 'tapkit.data.synthetic', 'tapkit.train.toy',
    'tapkit3d.quickstart', 'trajan3d.train', 'trajan3d.score', 'trajan3d.evaluate_tapvid3d',
    'tracks4d.train', 'tracks4d.infer', 'dpov_jax.train', 'dpov_jax.pretrain', 'dpov_jax.export',
    'dpov_jax.evaluate', 'dpov_jax.match_eval',
)


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', **extra)
  env.pop('TAPKIT_DEBUG', None)
  return env


def test_no_cli_imports_tensorflow():
  # One interpreter imports every command's module (as `python -m` would, minus running it)
  # and reports which of them pulled TensorFlow in: only a TensorBoard writer ever needed it.
  code = (
      'import importlib, json, sys\n'
      'out = {}\n'
      f'for name in {list(CLIS)!r}:\n'
      '  spec = importlib.util.find_spec(name)\n'
      '  importlib.import_module(name + (".__main__" if spec.submodule_search_locations else ""))\n'
      '  out[name] = "tensorflow" in sys.modules\n'
      'print(json.dumps(out))\n')
  proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  imported = json.loads(proc.stdout.strip().splitlines()[-1])
  assert set(imported) == set(CLIS)
  assert not any(imported.values()), imported
