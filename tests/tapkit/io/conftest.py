"""Fixture `run_limited`: a reader run in a child process under a 2 GiB address-space limit.

A reader that trusted a header declaring terabytes would die there with MemoryError (or be
killed); a validating one fails fast with a ValueError naming the file and field.
"""

import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))
LIMIT_BYTES = 2 << 30

_CHILD = r'''
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import importlib
module = importlib.import_module({module!r})
try:
  getattr(module, {function!r})(*{args!r})
except Exception as e:
  print(json.dumps({{'type': type(e).__name__, 'mro': [c.__name__ for c in type(e).__mro__],
                    'message': str(e)}}))
else:
  print(json.dumps({{'type': None}}))
'''


def _run_limited(module: str, function: str, *args) -> tuple[dict, float]:
  """(exception record of `module.function(*args)` in a limited child, wall seconds)."""
  code = _CHILD.format(limit=LIMIT_BYTES, module=module, function=function, args=args)
  env = {**os.environ, 'PYTHONPATH': ROOT, 'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1'}
  start = time.monotonic()
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                       timeout=120, check=False)
  elapsed = time.monotonic() - start
  assert out.returncode == 0, out.stderr
  return json.loads(out.stdout.strip().splitlines()[-1]), elapsed


@pytest.fixture(name='run_limited')
def run_limited_fixture():
  return _run_limited
