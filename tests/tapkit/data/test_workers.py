"""No grain worker process outlives a killed or terminated training run."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from tapkit.data import workers

REPO = pathlib.Path(__file__).resolve().parents[3]

# A grain loader with 2 worker processes, in a child process that prints READY once the
# workers deliver batches, then keeps reading.
_PIPELINE = textwrap.dedent('''
    import time
    from absl import flags
    from tapkit.data import pipeline
    flags.FLAGS.mark_as_parsed()  # grain's worker options are absl flags.
    source = pipeline.SequenceSource(list(range(64)), name='ints')
    loader = pipeline.make_dataloader(source, batch_size=2, seed=0, worker_count=2)
    it = iter(loader)
    next(it)
    print('READY', flush=True)
    while True:
      next(it)
      time.sleep(0.01)
''')


def _env() -> dict[str, str]:
  env = dict(os.environ)
  env.update(JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=f'{REPO}{os.pathsep}{env.get("PYTHONPATH", "")}')
  return env


def _is_worker(process: psutil.Process) -> bool:
  try:
    return any('multiprocessing' in part for part in process.cmdline())
  except psutil.Error:
    return False


def test_no_pipeline_worker_survives_its_process():
  """SIGKILL and SIGTERM (two pipelines, side by side): the workers and multiprocessing's
  resource tracker end within seconds of their parent."""
  signals = (signal.SIGKILL, signal.SIGTERM)
  procs = [subprocess.Popen([sys.executable, '-c', _PIPELINE], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in signals]
  children = []
  try:
    for proc in procs:
      line = proc.stdout.readline()
      assert line.strip() == 'READY', proc.stderr.read()[-3000:]
    for proc, sig in zip(procs, signals):
      own = psutil.Process(proc.pid).children(recursive=True)
      assert sum(_is_worker(c) for c in own) >= 2, [c.cmdline() for c in own]
      children += own
      proc.send_signal(sig)
    for proc, sig in zip(procs, signals):
      assert proc.wait(timeout=30) == -sig
    start = time.time()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [(p.pid, p.cmdline()[:4]) for p in alive]
    assert time.time() - start < 10
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
    for child in children:
      if child.is_running():
        child.kill()


def _descendants_after_start(proc: subprocess.Popen, workdir: pathlib.Path,
                             timeout: float = 900) -> list[psutil.Process]:
  """The run's child processes once it has saved a checkpoint (workers running)."""
  start = time.time()
  ckpt_dir = workdir / 'checkpoints'
  while time.time() - start < timeout:
    if proc.poll() is not None:
      raise AssertionError(f'run ended early:\n{proc.stderr.read()[-3000:]}')
    if ckpt_dir.exists() and any(p.name.isdigit() for p in ckpt_dir.iterdir()):
      children = psutil.Process(proc.pid).children(recursive=True)
      if len(children) >= 2:
        return children
    time.sleep(0.1)
  raise AssertionError('no checkpoint with running workers appeared')


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM])
def test_no_worker_survives_the_run(tmp_path, sig):
  env = _env()
  cmd = [sys.executable, '-m', 'tapkit.train.toy', f'--config={REPO}/configs/toy.py:smoke',
         f'--workdir={tmp_path}', '--config.data.worker_count=2', '--config.total_steps=100000',
         '--config.checkpoint.every_steps=2', '--config.toy.delay_s=0.002']
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  children = []
  try:
    children = _descendants_after_start(proc, tmp_path)
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [(p.pid, p.cmdline()[:3]) for p in alive]
  finally:
    if proc.poll() is None:
      proc.kill()
    for child in children:
      if child.is_running():
        child.kill()


def test_wrapper_is_the_source_in_the_main_process():
  source = list(range(5))

  class Source:
    def __len__(self):
      return len(source)

    def __getitem__(self, i):
      return source[i]

    def __repr__(self):
      return 'Source(5)'

  wrapped = workers.ParentWatchedSource(Source())
  assert len(wrapped) == 5 and wrapped[3] == 3 and repr(wrapped) == 'Source(5)'
  assert not workers.start_parent_watch()  # Not a multiprocessing child.
