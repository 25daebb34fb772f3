"""The quickstart's --fast run, shared by the quickstart and report tests (it takes minutes)."""

import os
import pathlib
import subprocess
import sys
import time

import pytest

from tapkit3d import quickstart

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope='session')
def cli_run(tmp_path_factory, compile_caches):
  """`python -m tapkit3d.quickstart --fast` as a user runs it: (workdir, output, seconds).

  The run keeps its programs in its own compilation cache (<workdir>/.jax_cache), recorded
  in `compile_caches` for the tests that evaluate its models again.
  """
  workdir = tmp_path_factory.mktemp('quickstart')
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      [str(REPO), *filter(None, [os.environ.get('PYTHONPATH')])])}
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, '-m', 'tapkit3d.quickstart', '--workdir',
                         str(workdir), '--fast'], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=1800, check=False)
  seconds = time.perf_counter() - start
  assert proc.returncode == 0, proc.stderr[-3000:]
  print(f'quickstart --fast: {seconds:.0f} s wall (load {os.getloadavg()[0]:.1f})')
  compile_caches['quickstart'] = workdir / quickstart.COMPILE_CACHE
  return workdir, proc.stdout + proc.stderr, seconds


@pytest.fixture(scope='session')
def finished(cli_run):
  """(workdir, {stage: its done.json}) of the --fast run, every stage."""
  workdir, _, _ = cli_run
  return workdir, {stage: quickstart.read_done(workdir, stage) for stage in quickstart.STAGES}
