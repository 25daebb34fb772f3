"""Every malformed or malicious file of `hostile_corpus` against every reader it targets.

The cases run in child processes under an address-space limit (`LIMIT_BYTES`) with a
per-case timer, many cases per child (imports are paid once). Each case must end with a
`ValueError` whose message names the file; no payload may create the marker file; no child
may crash or hang; valid controls must load.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

_SPEC = importlib.util.spec_from_file_location(  # Tests are not a package (importlib mode).
    'hostile_corpus', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   'hostile_corpus.py'))
hostile_corpus = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(hostile_corpus)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))
LIMIT_BYTES = 4 << 30  # Address space: imports of jax and torch fit, a trusted header does not.
CASE_SECONDS = 20
CHILD_SECONDS = 240

_CHILD = r'''
import importlib, json, resource, signal, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
readers = {readers!r}
cases = json.load(open(sys.argv[1]))
out = open(sys.argv[2], 'w')


class CaseTimeout(BaseException):
  pass


def alarm(signum, frame):
  raise CaseTimeout()


signal.signal(signal.SIGALRM, alarm)
for reader, path, expect in cases:
  module, name = readers[reader]
  fn = getattr(importlib.import_module(module), name)
  out.write(json.dumps({{'start': [reader, path]}}) + '\n')
  out.flush()
  start = time.monotonic()
  signal.alarm({case_seconds})
  try:
    result = fn(path)
    if reader == 'tapvid3d_clip':
      result.frames  # Decodes the frames.
    record = {{'type': None}}
  except CaseTimeout:
    record = {{'type': 'timeout'}}
  except BaseException as e:
    record = {{'type': type(e).__name__, 'value_error': isinstance(e, ValueError),
              'message': str(e)[:2000]}}
  finally:
    signal.alarm(0)
  record.update(reader=reader, path=path, expect=expect, seconds=time.monotonic() - start)
  out.write(json.dumps(record) + '\n')
  out.flush()
'''

# Readers grouped so that each child imports what it needs once.
GROUPS = (
    ('trajan_ckpt', 't4d_ckpt', 't4d_data'),
    ('dino',),
    ('dpov_tracks', 'frame', 'tapvid3d_clip', 'tapvid3d_pred'),
    ('spair_json', 'navi_json', 'navi_depth', 'nyu', 'geonet'),
)


def _run_group(cases, tmp_path, index):
  case_file = tmp_path / f'cases_{index}.json'
  result_file = tmp_path / f'results_{index}.jsonl'
  case_file.write_text(json.dumps(cases))
  code = _CHILD.format(limit=LIMIT_BYTES, readers=hostile_corpus.READERS,
                       case_seconds=CASE_SECONDS)
  env = {**os.environ, 'PYTHONPATH': ROOT, 'OPENBLAS_NUM_THREADS': '1',
         'OMP_NUM_THREADS': '1', 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  try:
    proc = subprocess.run([sys.executable, '-c', code, str(case_file), str(result_file)],
                          capture_output=True, text=True, env=env, timeout=CHILD_SECONDS,
                          check=False, cwd=str(tmp_path))
    crashed = proc.returncode != 0 and proc.stderr[-3000:]
  except subprocess.TimeoutExpired:
    crashed = 'child timed out'
  lines = [json.loads(line) for line in result_file.read_text().splitlines()]
  records = [r for r in lines if 'start' not in r]
  if crashed:
    last = lines[-1].get('start') if lines else None
    pytest.fail(f'child crashed or hung (last case started: {last}): {crashed}')
  return records


def test_hostile_corpus_is_refused_safely(tmp_path):
  marker = tmp_path / 'PAYLOAD_RAN'
  cases = hostile_corpus.build_corpus(str(tmp_path / 'corpus'), str(marker))
  assert len(cases) > 200
  failures = []
  seen = 0
  for index, group in enumerate(GROUPS):
    selected = [c for c in cases if c[0] in group]
    records = _run_group(selected, tmp_path, index)
    assert len(records) == len(selected)
    seen += len(records)
    for r in records:
      name = os.path.basename(r['path'])
      if r['expect'] == 'load':
        if r['type'] is not None:
          failures.append(f'{r["reader"]} {name}: valid control failed: {r}')
        continue
      if r['type'] is None:
        failures.append(f'{r["reader"]} {name}: accepted')
      elif not r.get('value_error'):
        failures.append(f'{r["reader"]} {name}: {r["type"]}: {r.get("message", "")[:300]}')
      elif name not in r['message']:
        failures.append(f'{r["reader"]} {name}: message does not name the file: '
                        f'{r["message"][:300]}')
      elif r['seconds'] > 10:
        failures.append(f'{r["reader"]} {name}: took {r["seconds"]:.1f} s')
  assert seen == len(cases)
  assert not marker.exists(), 'a payload ran'
  assert not failures, f'{len(failures)} of {len(cases)} cases:\n' + '\n'.join(failures)
