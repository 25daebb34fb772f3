"""3DPoV runs are reproducible: the same config and seed give bit-identical weights and metrics.

Two short pre-train + fine-tune + matching runs of a shrunken `smoke` preset (what the
quickstart's dpov stage does), each in its own process with a different Python hash seed (so
no set / dict order can leak into the numbers): their checkpoints, pre-trained backbone files,
training logs and matching accuracies must be equal bit for bit. The runs go one after the
other and share JAX's persistent compilation cache (as a rerun of the quickstart, which keeps
its cache in the workdir, does): the second runs the executables the first compiled, which
are bit-identical to freshly compiled ones, so what differs between them is what runs --
thread order, sampling, data order, hash order -- not the compiler's work.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from tapkit.train import checkpoint as engine_ckpt

REPO = pathlib.Path(__file__).resolve().parents[2]
# Wall-clock entries of metrics.jsonl (they differ between runs by nature).
_TIMING = ('steps_per_sec', 'uptime')
# configs/dpov.py:smoke shrunk to seconds: 2 pre-training steps, 3 fine-tuning steps.
OVERRIDES = {
    'backbone.name': 'smoke', 'backbone.num_layers': 3,
    'optimizer.groups': ((r'^backbone/block_(1|2)/', 0.1), (r'^backbone/', 0.0)),
    'head.features': (16, 16), 'loss.nmb_ref': 2, 'loss.compare_period': 1,
    'data.input_size': 56, 'data.num_frames': 3, 'data.regular_step': 1,
    'data.grid_size': 4, 'data.synthetic.num_train': 4, 'data.synthetic.num_eval': 2,
    'evals.eval.every_steps': 1000, 'evals.eval.num_clips': 2, 'evals.eval.batch_size': 2,
    'batch_size': 2, 'total_steps': 3, 'log_every': 1, 'checkpoint.every_steps': 3,
    'pretrain.steps': 2, 'pretrain.batch_size': 2,
}
# Pre-train, fine-tune and evaluate in `argv[1]` (what the quickstart's dpov stage does).
SCRIPT = """
import sys
from dpov_jax import match_eval, pretrain, task
from tapkit.train import config as config_lib
from tapkit.train import launch
config = config_lib.load_config('configs/dpov.py:smoke')
config.update_from_flattened_dict(%r)
pretrain.ensure_pretrained(config, sys.argv[1])
launch.train(config, sys.argv[1], task.build_method)
match_eval.main(['--workdir', sys.argv[1]])
""" % (OVERRIDES,)


def _run(workdir: pathlib.Path, hash_seed: str, cache_dir: pathlib.Path) -> None:
  env = {**os.environ, 'PYTHONHASHSEED': hash_seed, 'PYTHONPATH': os.pathsep.join(
      [str(REPO), *filter(None, [os.environ.get('PYTHONPATH')])]),
         'JAX_COMPILATION_CACHE_DIR': str(cache_dir),
         'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
         'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}
  proc = subprocess.run([sys.executable, '-c', SCRIPT, str(workdir)], cwd=REPO, env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        timeout=1800, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:]


# A module-scoped fixture is built once per xdist worker: one group keeps the file's tests on one
# worker under `--dist loadgroup` (the README's test command), so the expensive run is made once.
pytestmark = pytest.mark.xdist_group('dpov_determinism')


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
  """The two runs, each in its own process (as a rerun would), one after the other."""
  cache_dir = tmp_path_factory.mktemp('dpov_jax_cache')
  workdirs = [tmp_path_factory.mktemp(f'dpov_{name}') for name in ('a', 'b')]
  for workdir, seed in zip(workdirs, ('1', '2')):
    _run(workdir, seed, cache_dir)
  assert any(cache_dir.iterdir())  # the first run filled the cache the second one read
  return workdirs


def test_weights_are_bit_identical(two_runs):
  (step_a, a), (step_b, b) = (engine_ckpt.load_state_numpy(str(w)) for w in two_runs)
  assert step_a == step_b == 3
  flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
  flat_b = jax.tree_util.tree_flatten_with_path(b)[0]
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  trained = 0
  for (path, x), (_, y) in zip(flat_a, flat_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))
    trained += int(np.asarray(x).size)
  assert trained > 1000
  pre_a, pre_b = (w / 'pretrain' / 'backbone.safetensors' for w in two_runs)
  assert pre_a.read_bytes() == pre_b.read_bytes()


def test_metrics_are_identical(two_runs):
  rows = []
  for workdir in two_runs:
    with open(workdir / 'match_eval.json') as f:
      rows.append(json.load(f)['rows'])
    with open(workdir / 'metrics.jsonl') as f:
      rows.append([{k: v for k, v in json.loads(line).items()
                    if not k.startswith('perf/') and k not in _TIMING} for line in f])
  assert rows[0] == rows[2]  # matching accuracy / errors of start, student, teacher
  assert rows[1] == rows[3]  # every logged training loss
  assert 'student @ 3' in rows[0] and 0.0 <= rows[0]['student @ 3']['acc'] <= 1.0
