"""The Colab notebooks: stored clean, equal to colabs/_build.py, and they run (fast mode)."""

import importlib.util
import json
import math
import os
import pathlib

import nbformat
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
COLABS = REPO / 'colabs'
NAMES = ('tapvid3d_eval.ipynb', 'trajan3d_demo.ipynb', 'tracks4d_demo.ipynb', 'dpov_demo.ipynb')


def _builder():
  spec = importlib.util.spec_from_file_location('colabs_build', COLABS / '_build.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_notebooks_are_stored_without_outputs_and_match_the_builder():
  build = _builder()
  assert sorted(build.NOTEBOOKS) == sorted(NAMES)
  for name in NAMES:
    stored = nbformat.read(COLABS / name, as_version=4)
    nbformat.validate(stored)
    for cell in stored.cells:
      if cell.cell_type == 'code':
        assert cell.outputs == [] and cell.execution_count is None, name
    assert json.dumps(stored, sort_keys=True) == json.dumps(
        build.build(build.NOTEBOOKS[name]), sort_keys=True), (
            f'{name} differs from colabs/_build.py: run `python colabs/_build.py`')
    assert 'google.colab' in stored.cells[1].source  # the install cell comes first


def _execute(name, tmp_path, compile_cache=None):
  """Runs notebook `name` in fast mode; `compile_cache`: a JAX cache folder to start from."""
  from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top
  nb = nbformat.read(COLABS / name, as_version=4)
  env_backup = dict(os.environ)
  if compile_cache is not None and not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    # The folder itself, not a copy: JAX puts the folder's path into its cache keys (as
    # XLA's autotuning cache path in the compile options), so a copy elsewhere never hits.
    os.environ['JAX_COMPILATION_CACHE_DIR'] = str(compile_cache)
  os.environ['TAPKIT_NOTEBOOK_FAST'] = '1'
  # Fresh outputs: a run left by an older version must not be resumed.
  os.environ['TAPKIT_NOTEBOOK_WORK'] = str(tmp_path / 'work')
  # The kernel inherits the environment: the repo importable even without `pip install -e`.
  os.environ['PYTHONPATH'] = os.pathsep.join(
      [str(REPO)] + [p for p in env_backup.get('PYTHONPATH', '').split(os.pathsep) if p])
  os.environ['JAX_PLATFORMS'] = 'cpu'
  try:
    client = NotebookClient(nb, timeout=600, kernel_name='python3',
                            resources={'metadata': {'path': str(REPO)}})
    client.execute()
  finally:
    os.environ.clear()
    os.environ.update(env_backup)
  nbformat.write(nb, tmp_path / name)  # executed copy, for a look when a test fails
  return nb




def _text_outputs(nb) -> str:
  out = []
  for cell in nb.cells:
    for o in cell.get('outputs', []):
      if o.output_type == 'stream':
        out.append(o.text)
      elif 'data' in o and 'text/plain' in o.data:
        out.append(o.data['text/plain'])
  return '\n'.join(out)


def _num_images(nb) -> int:
  return sum('image/png' in o.get('data', {}) for c in nb.cells for o in c.get('outputs', []))


def _num_html(nb) -> int:
  return sum('text/html' in o.get('data', {}) for c in nb.cells for o in c.get('outputs', []))


def test_tapvid3d_eval_runs(tmp_path):
  nb = _execute('tapvid3d_eval.ipynb', tmp_path)
  text = _text_outputs(nb)
  assert 'fast mode' in text
  value = float(text.split('average Jaccard (median scaling): ')[1].split()[0])
  assert 0.0 < value < 1.0  # noisy predictions: neither perfect nor zero
  assert "'average_jaccard': 1.0" in text  # ground truth against itself
  assert _num_images(nb) >= 2 and _num_html(nb) >= 1


def test_trajan3d_demo_runs(tmp_path):
  nb = _execute('trajan3d_demo.ipynb', tmp_path)
  text = _text_outputs(nb)
  assert 'clean' in text and 'corrupted' in text
  rows = [line.split() for line in text.splitlines() if line.startswith('clip_')]
  assert len(rows) == 2 and all(math.isfinite(float(v)) for r in rows for v in r[1:3])
  assert _num_images(nb) >= 3


def test_tracks4d_demo_runs(tmp_path):
  nb = _execute('tracks4d_demo.ipynb', tmp_path)
  text = _text_outputs(nb)
  after = [line for line in text.splitlines() if line.startswith('after fine-tuning')]
  assert len(after) == 1
  values = [float(v) for v in after[0].split()[2:]]
  assert len(values) == 6 and all(math.isfinite(v) for v in values)
  assert _num_images(nb) >= 1 and _num_html(nb) >= 1


# In fast mode the notebook pre-trains and fine-tunes the model of the quickstart's --fast dpov
# stage (configs/dpov.py:smoke, 2 + 2 steps of batch 2 on 4 synthetic clips, matching on 2):
# on the quickstart's worker after its run (tests/tapkit3d/conftest.py), it starts from the
# run's compilation cache and gets those programs, bit-identical executables, without
# compiling them again ; alone it compiles them itself.
@pytest.mark.after_quickstart
@pytest.mark.xdist_group('quickstart')
def test_dpov_demo_runs(tmp_path, compile_caches):
  nb = _execute('dpov_demo.ipynb', tmp_path, compile_caches.get('quickstart'))
  text = _text_outputs(nb)
  assert 'hard sort' in text and 'of points within' in text
  assert 'start backbone' in text  # the match_eval table
  assert _num_images(nb) >= 4  # PCA, permutations, two correspondence figures
