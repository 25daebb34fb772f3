"""Missing reference vectors: a skip on a developer's machine, an error under CI=true."""

import pytest


def test_missing_reference_fails_in_ci(require_reference, monkeypatch, tmp_path):
  monkeypatch.setenv('CI', 'true')
  with pytest.raises(pytest.fail.Exception, match='TAPKIT_SHARED_DIR'):
    require_reference('goldens', tmp_path / 'absent.npz')


def test_missing_reference_skips_locally(require_reference, monkeypatch, tmp_path):
  monkeypatch.delenv('CI', raising=False)
  with pytest.raises(pytest.skip.Exception, match='TAPKIT_SHARED_DIR'):
    require_reference('goldens', tmp_path / 'absent.npz')


def test_present_reference_is_returned(require_reference, tmp_path):
  path = tmp_path / 'present.npz'
  path.write_bytes(b'')
  assert require_reference('goldens', path) == path
