"""Gradient accumulation: accumulate_steps=4 equals one step on the whole batch.

Each run is a subprocess (1 or 8 forced host devices, FSDP on) that trains the
same global batch of 32 with accumulate_steps 1 and 4 for 20 steps and prints the
largest relative parameter difference, for the toy task as a mean over examples and
as a masked mean over the batch (`accumulation.SumsLoss`). The methods' own
accumulation tests: tests/trajan3d/test_accumulate.py, tests/tracks4d/test_accumulate.py.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow

_RUN = textwrap.dedent('''
    import sys
    import jax
    import numpy as np
    from tapkit.train import config as config_lib, loop
    workdir, method, data, fsdp = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    params = {}
    from tapkit.train import toy_task as task
    for k in (1, 4):
      config = config_lib.load_config('configs/toy.py:smoke')
      config.model.dropout = 0.0  # dropout masks depend on the micro-batch split
      config.sharding.fsdp_min_size = 256
      # toy_masked: MSE over positive targets / their count in the batch (a SumsLoss).
      config.toy.masked_loss = method == 'toy_masked'
      config.total_steps = 20
      config.batch_size = 32
      config.log_every = 20
      config.checkpoint.every_steps = 100
      config.mesh.data, config.mesh.fsdp = data, fsdp
      config.accumulate_steps = k
      run_dir = f'{workdir}/k{k}'
      state = loop.train(config, run_dir, task.build_method(config, run_dir))
      if k == 4:
        sharded = [x.sharding.spec for x in jax.tree.leaves(state.params)
                   if 'fsdp' in tuple(x.sharding.spec)]
        print('SHARDED', len(sharded))
      params[k] = [np.asarray(x) for x in jax.tree.leaves(state.params) if np.ndim(x) > 0]
    rel = max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
              for a, b in zip(params[1], params[4]))
    print('REL', rel)
''')


def _run(tmp_path, method, devices, data, fsdp):
  env = dict(os.environ)
  env.update(XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=f'{REPO}{os.pathsep}{env.get("PYTHONPATH", "")}')
  proc = subprocess.run([sys.executable, '-c', _RUN, str(tmp_path), method, str(data), str(fsdp)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
  assert proc.returncode == 0, proc.stderr[-4000:]
  lines = proc.stdout.splitlines()
  rel = float([l for l in lines if l.startswith('REL')][-1].split()[1])
  sharded = int([l for l in lines if l.startswith('SHARDED')][-1].split()[1])
  return rel, sharded


@pytest.mark.parametrize('method', ['toy', 'toy_masked'])
@pytest.mark.parametrize('devices,data,fsdp', [(1, 1, 1), (8, 2, 4)])
def test_accumulate_four_micro_batches_equals_the_whole_batch(tmp_path, method, devices, data,
                                                              fsdp):
  rel, sharded = _run(tmp_path, method, devices, data, fsdp)
  assert rel < 1e-5, rel
  if fsdp > 1:
    assert sharded > 0  # FSDP really shards parameters in the accumulated run.


def test_batch_must_split_over_micro_batches_and_devices():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tapkit.train import mesh as mesh_lib, step as step_lib  # pylint: disable=g-import-not-at-top
  mesh = mesh_lib.make_mesh({'data': 1, 'fsdp': 1}, jax.devices()[:1])
  with pytest.raises(ValueError, match='accumulate_steps'):
    mesh_lib.check_accumulation(6, 4, mesh)
  x = jnp.arange(8)
  split = step_lib.split_micro_batches({'x': x}, 4)['x']
  np.testing.assert_array_equal(split, [[0, 4], [1, 5], [2, 6], [3, 7]])


def test_killed_run_with_exact_accumulation_resumes_bitwise(tmp_path):
  """SIGKILL between checkpoints, restart: the same final state as an uninterrupted run."""
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from tapkit.train import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
  cmd = lambda w: [sys.executable, '-m', 'tapkit.train.toy', f'--config={REPO}/configs/toy.py:smoke',
                   f'--workdir={w}', '--config.total_steps=60', '--config.checkpoint.every_steps=5',
                   '--config.toy.delay_s=0.001', '--config.accumulate_steps=4',
                   '--config.toy.masked_loss=True']
  ref = subprocess.run(cmd(tmp_path / 'ref'), cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
  assert ref.returncode == 0, ref.stderr[-3000:]
  workdir = tmp_path / 'killed'
  proc = subprocess.Popen(cmd(workdir), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 600
    done = lambda: [p for p in (workdir / 'checkpoints').glob('*') if p.name.isdigit()]
    while not done() and time.time() < deadline:
      assert proc.poll() is None, 'the run ended before it could be killed'
      time.sleep(0.05)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=120) == -signal.SIGKILL
  finally:
    if proc.poll() is None:
      proc.kill()
  killed_step, _ = ckpt_lib.load_state_numpy(workdir)
  assert 5 <= killed_step < 60, killed_step
  again = subprocess.run(cmd(workdir), cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  step_ref, state_ref = ckpt_lib.load_state_numpy(tmp_path / 'ref')
  step_res, state_res = ckpt_lib.load_state_numpy(workdir)
  assert step_ref == step_res == 60
  leaves = lambda state: jax.tree.leaves((state['params'], state['opt_state']))
  assert len(leaves(state_ref)) == len(leaves(state_res)) > 0
  for a, b in zip(leaves(state_ref), leaves(state_res)):
    np.testing.assert_array_equal(a, b)  # Bitwise.
