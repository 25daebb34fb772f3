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
    'dpov_jax.evaluate', 'dpov_jax.match_eval', 'tapkit.track', 'tapkit.depth',
    'tapkit.tracking.evaluate', 'dpov_jax.prepare', 'tapkit.predict_tapvid3d',
)


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu')
  env.pop('TAPKIT_DEBUG', None)
  env.update(extra)
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


def _run(module, *args, **env):
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=_env(**env),
                        capture_output=True, text=True, timeout=300)


# module -> flags its --help must list.
HELP_FLAGS = {
    'tapkit.evaluate': ('--workdir', '--eval', '--step'),
    'tapkit.evaluate_tapvid3d': ('--tapvid3d_dir', '--predictions_dir', '--split'),
    'tapkit.data.synthetic': ('--out', '--num_clips', '--seed'),
    'tapkit.train.toy': ('--config', '--workdir', '--debug'),
    'tapkit3d.quickstart': ('--workdir', '--stages', '--fast'),
    'trajan3d.train': ('--config', '--workdir'),
    'trajan3d.score': ('--tracks', '--checkpoint', '--out'),
    'trajan3d.evaluate_tapvid3d': ('--checkpoint', '--split', '--out'),
    'tracks4d.train': ('--config', '--workdir'),
    'tracks4d.infer': ('--checkpoint', '--input', '--out', '--finetune_steps'),
    'dpov_jax.train': ('--config', '--workdir'),
    'dpov_jax.pretrain': ('--config', '--workdir'),
    'dpov_jax.export': ('--workdir', '--out', '--layout'),
    'dpov_jax.evaluate': ('--task', '--backbones', '--out'),
    'dpov_jax.match_eval': ('--workdir', '--step'),
    'tapkit.track': ('--video', '--tracker', '--checkpoint', '--out', '--format'),
    'tapkit.depth': ('--video', '--checkpoint', '--out', '--random_weights_for_testing'),
    'tapkit.tracking.evaluate': ('--clips', '--tracker'),
    'dpov_jax.prepare': ('--frames_root', '--layout', '--out', '--tracker'),
    'tapkit.predict_tapvid3d': ('--tapvid3d_dir', '--tracker', '--depth', '--out',
                                '--random_weights_for_testing'),
}


@pytest.mark.parametrize('module', CLIS)
def test_help_exits_0_and_lists_flags(module):
  proc = _run(module, '--help')
  assert proc.returncode == 0, proc.stderr[-2000:]
  for flag in HELP_FLAGS[module]:
    assert flag in proc.stdout, (module, flag)


NO_SUCH = '/nonexistent/tapkit_cli_test'
# module -> (arguments of a user mistake, a fragment of the one-line message).
USER_ERRORS = {
    'tapkit.evaluate': (('--workdir', NO_SUCH, '--eval', 'eval'), NO_SUCH),
    'tapkit.evaluate_tapvid3d': (('--tapvid3d_dir', NO_SUCH, '--predictions_dir', NO_SUCH,
                                  '--split', 'bogus'), "invalid choice: 'bogus'"),
    'tapkit.data.synthetic': (('--out', '/tmp/tapkit_cli_test', '--num_clips', '0'),
                              'num_clips'),
    'tapkit.train.toy': (('--config', 'configs/toy.py:smoke', '--workdir', '/tmp/x',
                          '--config.optimizer.lrr=1'), "did you mean 'optimizer.lr'?"),
    'tapkit3d.quickstart': (('--stages', 'nope', '--workdir', '/tmp/tapkit_cli_test'), 'nope'),
    'trajan3d.train': (('--config', 'configs/spa3d.py:smoke', '--workdir', '/tmp/x',
                        '--config.data.dir=/x'), "unknown config key 'data.dir'"),
    'trajan3d.score': (('--tracks', NO_SUCH + '.npz', '--checkpoint', NO_SUCH, '--out',
                        '/tmp/tapkit_cli_test.csv'), NO_SUCH),
    'trajan3d.evaluate_tapvid3d': (('--checkpoint', NO_SUCH, '--out', '/tmp/tapkit_cli_test',
                                    '--tapvid3d_dir', NO_SUCH), NO_SUCH),
    'tracks4d.train': (('--config', 'configs/missing.py', '--workdir', '/tmp/x'),
                       'config file not found: configs/missing.py'),
    'tracks4d.infer': (('--checkpoint', NO_SUCH, '--input', NO_SUCH, '--out', '/tmp/x'),
                       NO_SUCH),
    'dpov_jax.train': (('--config', 'configs/dpov.py:bogus', '--workdir', '/tmp/x'),
                       "preset 'bogus'"),
    'dpov_jax.pretrain': (('--config', 'configs/dpov.py:smoke'),
                          '--config and --workdir are required'),
    'dpov_jax.export': (('--workdir', NO_SUCH, '--out', '/tmp/x.safetensors'), NO_SUCH),
    'dpov_jax.evaluate': (('--task', 'depth', '--backbones', NO_SUCH + '.safetensors',
                           '--out', '/tmp/x'), 'no such checkpoint file or workdir'),
    'dpov_jax.match_eval': (('--workdir', NO_SUCH), NO_SUCH),
    'tapkit.track': (('--video', NO_SUCH + '.mp4', '--out', '/tmp/tapkit_cli_test'), NO_SUCH),
    'tapkit.depth': (('--video', NO_SUCH + '.mp4', '--out', '/tmp/tapkit_cli_test',
                      '--random_weights_for_testing'), NO_SUCH),
    'tapkit.tracking.evaluate': (('--clips', NO_SUCH, '--tracker', 'nope'),
                                 "invalid choice: 'nope'"),
    'dpov_jax.prepare': (('--frames_root', NO_SUCH, '--layout', 'bogus', '--out', '/tmp/x'),
                         "invalid choice: 'bogus'"),
    'tapkit.predict_tapvid3d': (('--tapvid3d_dir', NO_SUCH, '--tracker', 'lk', '--depth', 'gt',
                                 '--out', '/tmp/tapkit_cli_test'), NO_SUCH),
}


@pytest.mark.parametrize('module', CLIS)
def test_user_error_is_one_line_exit_2(module):
  args, fragment = USER_ERRORS[module]
  proc = _run(module, *args)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  assert lines[-1].startswith('error: '), proc.stderr[-3000:]
  assert fragment in lines[-1], lines[-1]


def test_debug_shows_the_traceback():
  args, _ = USER_ERRORS['trajan3d.score']
  proc = _run('trajan3d.score', *args, '--debug')
  assert proc.returncode != 0 and 'Traceback' in proc.stderr
  proc = _run('tracks4d.train', *USER_ERRORS['tracks4d.train'][0], TAPKIT_DEBUG='1')
  assert 'Traceback' in proc.stderr


def test_known_library_noise_is_dropped_and_other_warnings_kept(capsys):
  # In a subprocess: the filters are process-wide once installed by an entry point.
  code = (
      'import logging, sys\n'
      'from absl import logging as absl_logging\n'
      'logging.basicConfig(stream=sys.stderr, level=logging.INFO)\n'
      'from tapkit import cli\n'
      'cli.quiet_known_library_noise()\n'
      "absl_logging.warning('Given directory is read only=%s', '/ckpt')\n"
      "absl_logging.warning('Metadata file does not exist: %s', '/ckpt/_METADATA')\n"
      "logging.getLogger('jax._src.xla_bridge').info(\"Unable to initialize backend 'tpu': x\")\n"
      "absl_logging.warning('a real warning')\n")
  proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert 'a real warning' in proc.stderr
  for noise in ('read only', 'Metadata file', 'initialize backend'):
    assert noise not in proc.stderr


def test_tiny_training_run_and_resume_print_no_library_noise(tmp_path):
  base = ('--config', 'configs/toy.py:smoke', '--workdir', str(tmp_path))
  first = _run('tapkit.train.toy', *base, '--config.total_steps=6')
  resumed = _run('tapkit.train.toy', *base, '--config.total_steps=7')
  for proc in (first, resumed):
    assert proc.returncode == 0, proc.stderr[-3000:]
    for noise in ('read only', 'Metadata file does not exist', 'initialize backend',
                  'tensorflow', 'TensorFlow', 'oneDNN'):
      assert noise not in proc.stderr, (noise, proc.stderr[-3000:])
  assert 'Resuming from checkpoint at step 6' in resumed.stderr
  assert list(tmp_path.glob('events.out.tfevents.*'))
