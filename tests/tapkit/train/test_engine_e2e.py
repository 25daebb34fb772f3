"""End-to-end engine tests on the toy task, each run in a fresh subprocess."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tapkit.train import checkpoint as ckpt_lib
from tapkit.train import writers

REPO = pathlib.Path(__file__).resolve().parents[3]
CONFIG = f'{REPO}/configs/toy.py:smoke'

pytestmark = pytest.mark.slow


def _env(devices: int) -> dict[str, str]:
  env = dict(os.environ)
  env.update(
      XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
      JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
      PYTHONPATH=f'{REPO}{os.pathsep}{env.get("PYTHONPATH", "")}')
  return env


def _toy_cmd(workdir, *overrides) -> list[str]:
  return [sys.executable, '-m', 'tapkit.train.toy', f'--config={CONFIG}',
          f'--workdir={workdir}', *overrides]


def _run_toy(workdir, *overrides, devices=1, timeout=300) -> subprocess.CompletedProcess:
  return subprocess.run(_toy_cmd(workdir, *overrides), cwd=REPO, env=_env(devices),
                        capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess) -> None:
  assert proc.returncode == 0, proc.stderr[-4000:]


def _params(workdir):
  step, state = ckpt_lib.load_state_numpy(workdir)
  return step, state


def _losses(workdir) -> dict[int, float]:
  rows = writers.read_jsonl(pathlib.Path(workdir) / 'metrics.jsonl')
  return {r['step']: r['train/loss'] for r in rows if 'train/loss' in r}


def _assert_trees_equal(a, b, **tol):
  flat_a = _flatten(a)
  flat_b = _flatten(b)
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    if tol:
      np.testing.assert_allclose(flat_a[k], flat_b[k], err_msg=k, **tol)
    else:
      np.testing.assert_array_equal(flat_a[k], flat_b[k], err_msg=k)


def _flatten(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}/'))
    else:
      out[f'{prefix}{k}'] = np.asarray(v)
  return out


_SHARDED_RUN = textwrap.dedent('''
    import json, sys
    import jax
    from configs import toy as toy_config
    from tapkit.train import loop, toy_task as toy
    config = toy_config.get_config('smoke')
    config.mesh.data, config.mesh.fsdp = int(sys.argv[2]), int(sys.argv[3])
    state = loop.train(config, sys.argv[1], toy.build_method(config))
    specs = {jax.tree_util.keystr(p): list(x.sharding.spec)
             for p, x in jax.tree_util.tree_flatten_with_path(state.params)[0]}
    print('SPECS=' + json.dumps({'devices': jax.device_count(), 'specs': specs}))
''')


def test_one_device_and_eight_devices_data_fsdp_agree(tmp_path):
  """20 steps on 1 device vs a data=2 x fsdp=4 mesh on 8 host devices."""
  results = {}
  for devices, (data, fsdp) in ((1, (1, 1)), (8, (2, 4))):
    workdir = tmp_path / f'dev{devices}'
    proc = subprocess.run(
        [sys.executable, '-c', _SHARDED_RUN, str(workdir), str(data), str(fsdp)],
        cwd=REPO, env=_env(devices), capture_output=True, text=True, timeout=300)
    _ok(proc)
    line = [l for l in proc.stdout.splitlines() if l.startswith('SPECS=')][-1]
    results[devices] = (json.loads(line[len('SPECS='):]), workdir)

  info8, work8 = results[8]
  assert info8['devices'] == 8
  # 16x64, 64x64 and 64x4 kernels are >= fsdp_min_size=256: sharded on 'fsdp'
  # along their largest divisible axis; biases (< 256 elements) replicated.
  assert info8['specs']["['dense_0']['kernel']"] == [None, 'fsdp']
  assert info8['specs']["['dense_1']['kernel']"] == [None, 'fsdp']
  assert info8['specs']["['head']['kernel']"] == ['fsdp', None]
  assert info8['specs']["['dense_0']['bias']"] == []

  _, work1 = results[1]
  loss1, loss8 = _losses(work1), _losses(work8)
  assert sorted(loss1) == list(range(1, 21))
  np.testing.assert_allclose([loss8[s] for s in range(1, 21)],
                             [loss1[s] for s in range(1, 21)], rtol=1e-5, atol=1e-6)
  assert loss1[20] < 0.6 * loss1[1]  # It trains.
  step1, state1 = _params(work1)
  step8, state8 = _params(work8)
  assert step1 == step8 == 20
  _assert_trees_equal(state1['params'], state8['params'], rtol=1e-5, atol=1e-6)


def _wait_for_checkpoint(workdir, proc, timeout=240) -> int:
  ckpt_dir = pathlib.Path(workdir) / 'checkpoints'
  start = time.time()
  while time.time() - start < timeout:
    if proc.poll() is not None:
      raise AssertionError(f'run ended before it could be killed:\n{proc.stderr.read()[-3000:]}')
    steps = [int(p.name) for p in ckpt_dir.glob('*') if p.name.isdigit()] if ckpt_dir.exists() else []
    if steps:
      return max(steps)
    time.sleep(0.05)
  raise AssertionError('no checkpoint appeared')


# ~16 ms of input delay per step: 60 steps take > 1 s, time enough to kill a run.
# Two micro-batches per update: the accumulating step resumes bitwise too.
_RESUME_OVERRIDES = ('--config.total_steps=60', '--config.checkpoint.every_steps=5',
                     '--config.toy.delay_s=0.001', '--config.accumulate_steps=2')


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  _ok(_run_toy(workdir, *_RESUME_OVERRIDES))
  return workdir


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_bitwise(tmp_path, uninterrupted, sig):
  overrides = _RESUME_OVERRIDES
  reference = uninterrupted
  workdir = tmp_path / 'interrupted'
  proc = subprocess.Popen(_toy_cmd(workdir, *overrides), cwd=REPO, env=_env(1),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    _wait_for_checkpoint(workdir, proc)
    time.sleep(0.1)  # Land somewhere between checkpoints.
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  if sig == signal.SIGTERM:
    assert code == 0  # Clean exit after saving.
  else:
    assert code == -signal.SIGKILL
  interrupted_step, _ = _params(workdir)
  assert 5 <= interrupted_step < 60, interrupted_step

  _ok(_run_toy(workdir, *overrides))
  step_ref, state_ref = _params(reference)
  step_res, state_res = _params(workdir)
  assert step_ref == step_res == 60
  _assert_trees_equal(state_ref['params'], state_res['params'])  # Bitwise.
  _assert_trees_equal(state_ref['opt_state'], state_res['opt_state'])


def test_command_line_override_reaches_the_step(tmp_path):
  """--config.optimizer.lr=0 leaves the params at their initial values."""
  frozen, trained = tmp_path / 'lr0', tmp_path / 'lr_default'
  _ok(_run_toy(frozen, '--config.optimizer.lr=0', '--config.total_steps=6',
               '--config.optimizer.weight_decay=0.1'))
  _ok(_run_toy(trained, '--config.total_steps=6'))
  assert json.loads((frozen / 'config.json').read_text())['optimizer']['lr'] == 0.0

  import jax  # pylint: disable=g-import-not-at-top
  from configs import toy as toy_config  # pylint: disable=g-import-not-at-top
  from tapkit.train import loop, mesh as mesh_lib, toy_task as toy  # pylint: disable=g-import-not-at-top
  config = toy_config.get_config('smoke')
  method = toy.build_method(config)
  example = {'x': np.zeros((2, config.toy.dim_in), np.float32),
             'y': np.zeros((2, config.toy.dim_out), np.float32)}
  init_state, _, _ = loop.build_state(config, method, example,
                                      mesh_lib.make_mesh(config.mesh, jax.devices()[:1]))
  init_params = jax.tree.map(np.asarray, init_state.params)
  _, state0 = _params(frozen)
  _, state1 = _params(trained)
  _assert_trees_equal(state0['params'], init_params)
  assert np.abs(state1['params']['head']['kernel'] - init_params['head']['kernel']).max() > 1e-4


def _free_port() -> int:
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_each_feed_their_shard(tmp_path):
  """Multi-host path on CPU: 2 processes x 4 devices, jax.distributed + gloo."""
  port = _free_port()
  workdir = tmp_path / 'multihost'
  env = _env(4)
  env['JAX_CPU_COLLECTIVES_IMPLEMENTATION'] = 'gloo'
  procs = [subprocess.Popen(
      _toy_cmd(workdir, '--config.distributed.initialize=True',
               f'--config.distributed.coordinator_address=localhost:{port}',
               '--config.distributed.num_processes=2',
               f'--config.distributed.process_id={i}',
               '--config.mesh.data=2', '--config.mesh.fsdp=4', '--config.total_steps=10'),
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  try:
    errors = [p.communicate(timeout=300)[1] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, err in zip(procs, errors):
    assert p.returncode == 0, err[-3000:]
  data_dir = workdir / 'checkpoints' / '10' / 'data'
  states = [json.loads((data_dir / f'process_{i}-of-2.json').read_text()) for i in range(2)]
  # Each process advanced its own shard of the sampler by 10 local batches.
  assert states[0] != states[1]
  losses = _losses(workdir)
  assert sorted(losses) == list(range(1, 11)) and losses[10] < losses[1]
  step, state = _params(workdir)
  assert step == 10 and all(np.isfinite(v).all() for v in _flatten(state['params']).values())
