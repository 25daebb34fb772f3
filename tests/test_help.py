"""`python -m <command> --help` of every command line: exit 0, printed usage, and fast.

The commands are the `python -m` entry points the README shows plus every module of the
packages with a `__main__` block, so a new command is covered without editing this file.
A command must parse its arguments before importing JAX / Flax / torch / TensorFlow, which
keeps `--help` at about a second on an idle 2-core machine; the bound below is generous
because the test machines are shared.
"""

import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ('tapkit', 'trajan3d', 'tracks4d', 'dpov_jax', 'tapkit3d')
# Seconds; about 1 s on an idle 2-core machine, several on a loaded one.
HELP_BOUND_S = 6.0
# Modules that import JAX before parsing their arguments (their import graph needs it at
# module level); --help works, just not fast. Each entry should disappear, not grow.
SLOW_IMPORTS: set[str] = set()


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(REPO).with_suffix('').parts)
  if parts[-1] == '__main__':
    parts.pop()
  return '.'.join(parts)


def command_modules() -> list[str]:
  """Modules run as `python -m X`: README commands and package modules with a main block."""
  readme = (REPO / 'README.md').read_text(encoding='utf-8')
  names = set(re.findall(r'python -m ((?:%s)(?:\.\w+)*)\b' % '|'.join(PACKAGES), readme))
  main_block = re.compile(r"^if __name__ == '__main__':", re.MULTILINE)
  for package in PACKAGES:
    for path in (REPO / package).rglob('*.py'):
      if main_block.search(path.read_text(encoding='utf-8')):
        names.add(_module_name(path))
  return sorted(names)


def test_command_list_is_complete():
  modules = command_modules()
  for name in ('tapkit3d.quickstart', 'trajan3d.train', 'tracks4d.infer', 'dpov_jax.train',
               'dpov_jax.evaluate', 'tapkit.data.synthetic'):
    assert name in modules
  assert not SLOW_IMPORTS - set(modules), 'SLOW_IMPORTS names a command that is gone'


def _help(module: str) -> tuple[subprocess.CompletedProcess, float]:
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      [str(REPO), *filter(None, [os.environ.get('PYTHONPATH')])])}
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, '-m', module, '--help'], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120, check=False)
  return proc, time.perf_counter() - start


@pytest.mark.parametrize('module', command_modules())
def test_help_exits_0_and_lists_options(module):
  proc, seconds = _help(module)
  assert proc.returncode == 0, f'{module} --help: exit {proc.returncode}\n{proc.stderr[-2000:]}'
  text = proc.stdout + proc.stderr
  assert 'usage' in text.lower() or 'flags' in text.lower(), text[:500]
  assert '--' in text  # at least one option is listed
  print(f'{module} --help: {seconds:.2f} s (load {os.getloadavg()[0]:.1f})')
  if module not in SLOW_IMPORTS:
    # A machine busier than its cores stretches every process start by about that factor.
    bound = HELP_BOUND_S * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    assert seconds < bound, f'{module} --help took {seconds:.1f} s (bound {bound:.0f} s)'


@pytest.mark.parametrize('module', command_modules())
def test_help_imports_no_heavy_library(module):
  """The fast path: the process that printed the help never imported JAX and friends."""
  if module in SLOW_IMPORTS:
    pytest.skip('imports JAX before parsing (SLOW_IMPORTS)')
  code = ('import runpy, sys\n'
          f'sys.argv = [{module!r}, "--help"]\n'
          'try:\n'
          f'  runpy.run_module({module!r}, run_name="__main__", alter_sys=True)\n'
          'except SystemExit:\n'
          '  pass\n'
          'heavy = ("jax", "flax", "torch", "tensorflow", "matplotlib", "orbax", "grain")\n'
          'print("HEAVY", sorted(m for m in heavy if m in sys.modules))\n')
  proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                        text=True, timeout=120, check=False,
                        env={**os.environ, 'PYTHONPATH': str(REPO)})
  line = [l for l in proc.stdout.splitlines() if l.startswith('HEAVY')]
  assert line == ['HEAVY []'], f'{module}: {line} {proc.stderr[-1000:]}'
