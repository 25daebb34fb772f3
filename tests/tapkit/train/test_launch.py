"""The command-line entry point: the workdir reaches build_method; run_main parses the flags."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

from configs import toy as toy_config
from tapkit.train import launch, toy_task as toy

REPO = pathlib.Path(__file__).resolve().parents[3]


def test_train_passes_the_workdir_and_saves_the_config(tmp_path):
  config = toy_config.get_config('smoke')
  config.total_steps = 3
  config.optimizer.warmup_steps = 1
  config.checkpoint.async_save = False
  workdir = tmp_path / 'run'
  seen = []

  def build_method(c, w):
    seen.append(w)
    return toy.build_method(c, w)

  state = launch.train(config, workdir, build_method)
  assert seen == [str(workdir)]
  assert int(state.step) == 3
  with open(workdir / 'config.json') as f:
    assert json.load(f)['total_steps'] == 3


_RUN_MAIN = textwrap.dedent('''
    from tapkit.train import launch

    def show(config, workdir):
      print(f'GOT {config.total_steps} {config.optimizer.lr} {workdir}')

    launch.run_main(show)
''')


def test_run_main_parses_config_overrides_and_workdir(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             PYTHONPATH=f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
  cmd = [sys.executable, '-c', _RUN_MAIN, f'--config={REPO}/configs/toy.py:smoke',
         '--config.optimizer.lr=0.25', f'--workdir={tmp_path}']
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'GOT 20 0.25 {tmp_path}' in proc.stdout
  missing = subprocess.run(cmd[:-1], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
  assert missing.returncode != 0
  assert '--config and --workdir are required' in missing.stderr
