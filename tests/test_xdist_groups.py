"""`--dist loadgroup` keeps an `xdist_group` on one worker (the README's test command relies on it).

The quickstart and report tests share one session fixture that runs `quickstart --fast` for
minutes; they are marked `xdist_group('quickstart')` so that one worker makes that run. This
runs pytest with two workers on a small project that uses tests/conftest.py's collection hook
and checks where each test ran and how often the shared fixture was set up.
"""

import pathlib
import re
import subprocess
import sys

import pytest

pytest.importorskip('xdist')

CONFTEST = pathlib.Path(__file__).resolve().parent / 'conftest.py'

_PROJECT_CONFTEST = f'''
import importlib.util
import os

import pytest

_spec = importlib.util.spec_from_file_location('repo_tests_conftest', {str(CONFTEST)!r})
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
pytest_collection_modifyitems = _module.pytest_collection_modifyitems


@pytest.fixture(scope='session')
def shared_run(tmp_path_factory):
  marker = tmp_path_factory.getbasetemp().parent / ('setup-' + os.environ['PYTEST_XDIST_WORKER'])
  marker.write_text('')
  return marker
'''

_GROUPED = '''
import pytest

pytestmark = pytest.mark.xdist_group('quickstart')


@pytest.mark.parametrize('i', range(4))
def test_grouped(shared_run, i):
  assert shared_run.exists()
'''

_FREE = '''
import time


def test_free_a():
  time.sleep(0.2)


def test_free_b():
  time.sleep(0.2)
'''


def test_loadgroup_runs_a_group_on_one_worker(tmp_path):
  project = tmp_path / 'project'
  (project / 'tests').mkdir(parents=True)
  (project / 'pytest.ini').write_text('[pytest]\naddopts = --import-mode=importlib\n')
  (project / 'tests' / 'conftest.py').write_text(_PROJECT_CONFTEST)
  (project / 'tests' / 'test_group_a.py').write_text(_GROUPED)
  (project / 'tests' / 'test_group_b.py').write_text(_GROUPED)
  (project / 'tests' / 'test_free.py').write_text(_FREE)
  basetemp = tmp_path / 'basetemp'
  proc = subprocess.run(
      [sys.executable, '-m', 'pytest', '-n', '2', '--dist', 'loadgroup', '-v',
       '-p', 'no:cacheprovider', f'--basetemp={basetemp}', 'tests'],
      cwd=project, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  ran = re.findall(r'\[(gw\d)\] .*PASSED (\S+)', proc.stdout)
  grouped = {worker for worker, test in ran if 'test_group_' in test}
  assert len(ran) == 10, proc.stdout
  assert len(grouped) == 1, ran
  assert all(test.endswith('@quickstart') for _, test in ran if 'test_group_' in test), ran
  # The session fixture of the group was set up on that one worker only.
  assert sorted(p.name for p in basetemp.glob('setup-*')) == [f'setup-{grouped.pop()}']
