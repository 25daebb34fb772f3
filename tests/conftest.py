"""Shared test fixtures: where ../shared lives, and quiet, CPU-only defaults."""

import os
import pathlib

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def shared_dir() -> pathlib.Path:
  """The project's shared folder: $TAPKIT_SHARED_DIR, else ../shared beside the checkout."""
  env = os.environ.get('TAPKIT_SHARED_DIR')
  return pathlib.Path(env) if env else REPO_ROOT.parent / 'shared'


@pytest.fixture(scope='session')
def shared() -> pathlib.Path:
  path = shared_dir()
  if not path.is_dir():
    pytest.skip(f'shared folder not found at {path} (set TAPKIT_SHARED_DIR)')
  return path


@pytest.fixture(scope='session')
def golden(shared) -> pathlib.Path:
  return shared / 'golden'
