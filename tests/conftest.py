"""Shared test fixtures: where ../shared lives, and quiet, CPU-only defaults."""

import os
import pathlib

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Small public reference vectors kept in the repository (see tests/golden/README.md): the
# TAP-Vid / TAPVid-3D metric cases, the diffsort cases, the TracksTo4D depth / pose metric
# cases and the official parameter-tree layouts. Large parameter sets stay in $TAPKIT_SHARED_DIR.
REPO_GOLDEN = REPO_ROOT / 'tests' / 'golden'


def pytest_configure(config):
  """Compiles jax.random on CPU as straight-line code, as the engine does (same bits)."""
  del config
  from tapkit.train import rng_lowering  # pylint: disable=g-import-not-at-top
  rng_lowering.use_straight_line_threefry_on_cpu()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
  """Tags tests marked `xdist_group(name)` with `@name` under `--dist loadgroup`.

  pytest-xdist (3.8) groups tests by a `@name` suffix of their node id, which it sets by
  assigning `item._nodeid`; pytest 9 reads the node id from `item._id` instead, so the suffix
  never appeared and the groups were spread over the workers (the quickstart's --fast run,
  a session fixture, was then made once per worker). This runs after xdist's hook and sets
  the suffix where pytest reads it; where xdist's own tag took effect it changes nothing.
  """
  # Tests marked `after_quickstart` reuse what the quickstart's --fast run (a session fixture)
  # left in this process, when it ran before them: they go last, so that under
  # `--dist loadgroup` (their `xdist_group('quickstart')` puts them on the run's worker, where
  # a group's tests run in collection order) and without xdist alike the run comes first.
  items[:] = ([item for item in items if not item.get_closest_marker('after_quickstart')] +
              [item for item in items if item.get_closest_marker('after_quickstart')])
  if not getattr(config.option, 'loadgroup', False):
    return
  from _pytest import nodeid  # pylint: disable=g-import-not-at-top
  for item in items:
    names = {str(mark.args[0] if mark.args else mark.kwargs.get('name', 'default'))
             for mark in item.iter_markers('xdist_group')}
    suffix = '@' + '_'.join(sorted(names))
    if names and not item.nodeid.endswith(suffix) and hasattr(item, '_id'):
      item._id = nodeid.NodeId.parse(item.nodeid + suffix)  # pylint: disable=protected-access


def shared_dir() -> pathlib.Path:
  """The project's shared folder: $TAPKIT_SHARED_DIR, else ../shared beside the checkout."""
  env = os.environ.get('TAPKIT_SHARED_DIR')
  return pathlib.Path(env) if env else REPO_ROOT.parent / 'shared'


def _in_ci() -> bool:
  return os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')


def missing_reference(what: str, path: pathlib.Path) -> None:
  """Skips a parity test whose reference vectors are absent; fails instead under CI=true.

  The parity tests compare our models with the original implementations on reference vectors;
  the small ones live in tests/golden, the large ones (official parameter sets and the outputs
  computed with them) in `$TAPKIT_SHARED_DIR/golden`. CI always has them, so their absence
  there is an error.
  """
  message = (f'{what} not found at {path}: this parity test compares against outputs of the '
             'original implementation computed with its official parameters, which are too '
             'large for the repository; set TAPKIT_SHARED_DIR to the folder holding golden/ '
             '(default: ../shared beside the checkout)')
  if _in_ci():
    pytest.fail(message + ' [CI=true: missing reference data is an error]', pytrace=False)
  pytest.skip(message)


@pytest.fixture(scope='session')
def compile_caches() -> dict[str, pathlib.Path]:
  """{name: JAX persistent compilation cache folder} left by this process's session fixtures.

  The quickstart's --fast run (tests/tapkit3d/conftest.py) records its cache as 'quickstart'.
  A later test in the same process that compiles the same programs can use that folder (the
  folder itself: JAX's cache keys include its path, so a copy never hits); cached executables
  are bit-identical to freshly compiled ones, so only the compile time goes.
  """
  return {}


@pytest.fixture(scope='session')
def require_reference():
  """`require_reference(what, path)`: skip (locally) / fail (CI) when `path` does not exist."""
  def check(what: str, path: pathlib.Path) -> pathlib.Path:
    if not path.exists():
      missing_reference(what, path)
    return path
  return check


@pytest.fixture(scope='session')
def repo_golden() -> pathlib.Path:
  """tests/golden: the small reference vectors that ship with the repository."""
  return REPO_GOLDEN


@pytest.fixture(scope='session')
def shared() -> pathlib.Path:
  path = shared_dir()
  if not path.is_dir():
    missing_reference('shared folder', path)
  return path


@pytest.fixture(scope='session')
def golden(shared) -> pathlib.Path:
  return shared / 'golden'
