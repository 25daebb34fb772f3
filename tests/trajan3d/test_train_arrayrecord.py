"""3DSPA training (tiny shapes) from an ArrayRecord dataset vs from the folder source.

Record i of the synthetic ArrayRecord split is file clip_<i>.npz of the folder the run
renders itself (same seed and generator parameters), and both sources go through the
same sampler: the runs see the same batches in the same order, so their losses and final
parameters are bitwise equal. A run killed with SIGKILL resumes bitwise (iterator state
in the checkpoint). All runs read in-process (data.worker_count=0): grain batches within
each worker, so the batches depend on the worker count, for both sources alike.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tapkit.data import arrayrecord_builders as builders
from tapkit.train import checkpoint as ckpt_lib
from tapkit.train import writers

REPO = pathlib.Path(__file__).resolve().parents[2]
FRAMES, SIZE, TRACKS, CLIPS, SEED = 8, 32, 24, 6, 3
TOTAL, EVERY = 30, 10

pytestmark = pytest.mark.slow


def _cmd(workdir, *overrides) -> list[str]:
  model = {'num_output_frames': FRAMES, 'num_latent_tokens': 4, 'latent_token_dim': 8,
           'num_frequencies': 4, 'track_token_dim': 16, 'encoder_latent_dim': 16,
           'decoder_num_channels': 176, 'num_heads': 2, 'qkv_size': 16, 'input_track_mlp': 16,
           'tracks_to_latents_mlp': 16, 'decompress_mlp': 16, 'readout_mlp': 16}
  settings = [f'model.{k}={v}' for k, v in model.items()] + [
      f'data.num_frames={FRAMES}', 'data.num_support=8', 'data.num_query=6',
      f'data.synthetic.num_train={CLIPS}', 'data.synthetic.num_eval=0',
      f'data.synthetic.seed={SEED}', f'data.synthetic.num_frames={FRAMES}',
      f'data.synthetic.height={SIZE}', f'data.synthetic.width={SIZE}',
      f'data.synthetic.num_tracks={TRACKS}', 'evals.eval.every_steps=0',
      f'total_steps={TOTAL}', 'batch_size=2', 'log_every=1', 'optimizer.warmup_steps=1',
      f'checkpoint.every_steps={EVERY}', 'checkpoint.async_save=False', *overrides]
  return [sys.executable, '-m', 'trajan3d.train', f'--config={REPO}/configs/spa3d.py:smoke',
          f'--workdir={workdir}', *[f'--config.{s}' for s in settings]]


def _env(cache_dir) -> dict[str, str]:
  env = dict(os.environ)
  # The runs share one persistent compilation cache: the step compiles once, in the first.
  env.update(JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             JAX_COMPILATION_CACHE_DIR=str(cache_dir),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
             PYTHONPATH=f'{REPO}{os.pathsep}{env.get("PYTHONPATH", "")}')
  return env


def _start(workdir, *overrides) -> subprocess.Popen:
  cache_dir = pathlib.Path(workdir).parent / 'jax_cache'
  return subprocess.Popen(_cmd(workdir, *overrides), cwd=REPO, env=_env(cache_dir),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout=600) -> None:
  _, err = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, err[-4000:]


def _losses(workdir) -> list[float]:
  rows = writers.read_jsonl(pathlib.Path(workdir) / 'metrics.jsonl')
  by_step = {r['step']: r['train/loss'] for r in rows if 'train/loss' in r}
  assert sorted(by_step) == list(range(1, TOTAL + 1))
  return [by_step[s] for s in range(1, TOTAL + 1)]


def _flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, f'{prefix}{k}/') if isinstance(v, dict) else {prefix + k: np.asarray(v)})
  return out


def _assert_params_equal(workdir_a, workdir_b) -> None:
  step_a, state_a = ckpt_lib.load_state_numpy(workdir_a)
  step_b, state_b = ckpt_lib.load_state_numpy(workdir_b)
  assert step_a == step_b == TOTAL
  a, b = _flat(state_a['params']), _flat(state_b['params'])
  assert a.keys() == b.keys() and len(a) > 10
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_arrayrecord_training_equals_folder_and_resumes_after_sigkill(tmp_path):
  data = tmp_path / 'arrayrecord'
  builders.build_synthetic(data, CLIPS, SEED, num_frames=FRAMES, height=SIZE, width=SIZE,
                           num_tracks=TRACKS)
  records = ('data.source=arrayrecord', f'data.arrayrecord_folder={data}')
  # One after the other (the first fills the compilation cache): folder, ArrayRecord, then
  # ArrayRecord killed after its first checkpoint and resumed.
  _finish(_start(tmp_path / 'folder'))
  _finish(_start(tmp_path / 'records', *records))
  killed_dir = tmp_path / 'killed'
  killed = _start(killed_dir, *records)
  try:
    ckpt_dir = killed_dir / 'checkpoints'
    deadline = time.time() + 600
    while not (ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir())):
      assert killed.poll() is None, killed.stderr.read()[-4000:]
      assert time.time() < deadline, 'no checkpoint appeared'
      time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
  finally:
    if killed.poll() is None:
      killed.kill()
  interrupted_step, _ = ckpt_lib.load_state_numpy(killed_dir)
  assert interrupted_step < TOTAL  # Killed mid-run.
  _finish(_start(killed_dir, *records))  # Resumes.
  assert _losses(tmp_path / 'folder') == _losses(tmp_path / 'records')
  _assert_params_equal(tmp_path / 'folder', tmp_path / 'records')
  _assert_params_equal(tmp_path / 'records', killed_dir)
  resumed = _losses(killed_dir)  # Steps after the kill were logged by the resumed run.
  assert resumed[interrupted_step:] == _losses(tmp_path / 'records')[interrupted_step:]
