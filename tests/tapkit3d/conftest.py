"""The quickstart's --fast run, shared by the quickstart and report tests (it takes minutes)."""

import pytest

from tapkit3d import quickstart


@pytest.fixture(scope='session')
def finished(tmp_path_factory):
  """(workdir, results) of `quickstart.run(workdir, fast=True)`, every stage."""
  workdir = tmp_path_factory.mktemp('quickstart')
  results = quickstart.run(workdir, fast=True)
  return workdir, results
