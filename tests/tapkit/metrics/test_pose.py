"""ATE / RPE with Sim(3) alignment vs the official TracksTo4D pose_eval goldens."""

import numpy as np
import pytest

from tapkit.metrics import pose


@pytest.fixture(name='golden', scope='session')
def _repo_golden(repo_golden):
  """This module's reference vectors are small and ship in tests/golden."""
  return repo_golden



@pytest.fixture(scope='module')
def pose_golden(golden, require_reference):
  path = golden / 'tracks4d'
  require_reference('pose goldens', path / 'pose_eval_00.npz')
  return path


@pytest.mark.parametrize('case', ['pose_eval_00', 'pose_eval_01'])
def test_pose_metrics_match_official(case, pose_golden):
  d = np.load(pose_golden / f'{case}.npz')
  from_network = pose.network_pose_metrics(d['rotations'], d['translations'], d['GT_poses'])
  from_w2c = pose.pose_metrics_from_w2c(d['eval_in_gt_w2c'], d['eval_in_est_w2c'])
  for m in (from_network, from_w2c):
    for name in ('ate', 'rpe_trans', 'rpe_rot'):
      ours, ref = getattr(m, name), float(d[name])
      assert abs(ours - ref) <= 1e-6 * ref, (case, name, ours, ref)
    assert abs(m.scale - float(d['sim3_scale'])) <= 1e-6 * float(d['sim3_scale'])
    np.testing.assert_allclose(m.rotation, d['sim3_R'], atol=1e-6)
    np.testing.assert_allclose(m.translation, d['sim3_t'], atol=1e-6)
    np.testing.assert_allclose(m.aligned_c2w, d['aligned_cam2world'], atol=1e-6)
  # The reader's GT camera-to-world is the float32 inverse of Ms_all.
  ms = np.concatenate([d['Ms_all'], np.tile([[[0, 0, 0, 1.0]]], (len(d['Ms_all']), 1, 1))], 1)
  np.testing.assert_allclose(np.linalg.inv(ms), d['GT_poses'], atol=1e-5)


def _random_poses(rng, f):
  q, _ = np.linalg.qr(rng.normal(size=(f, 3, 3)))
  q *= np.sign(np.linalg.det(q))[:, None, None]
  c2w = np.tile(np.eye(4), (f, 1, 1))
  c2w[:, :3, :3] = q
  c2w[:, :3, 3] = np.cumsum(rng.normal(size=(f, 3)), axis=0)
  return c2w


def test_similarity_invariance_and_known_errors():
  rng = np.random.default_rng(0)
  gt = _random_poses(rng, 10)
  # A prediction that is GT in another world frame and scale has zero error.
  s, r = 2.5, _random_poses(rng, 1)[0, :3, :3]
  t = np.array([1.0, -2.0, 0.5])
  pred = gt.copy()
  pred[:, :3, :3] = r @ gt[:, :3, :3]
  pred[:, :3, 3] = s * gt[:, :3, 3] @ r.T + t
  m = pose.pose_metrics(pred, gt)
  assert m.ate < 1e-9 and m.rpe_trans < 1e-9 and m.rpe_rot == 0.0
  assert abs(m.scale - 1 / s) < 1e-9
  # A constant extra rotation of 10 degrees about z on one frame -> RPE_rot known.
  bumped = gt.copy()
  a = np.deg2rad(10.0)
  rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
  bumped[4, :3, :3] = bumped[4, :3, :3] @ rz
  m = pose.pose_metrics(bumped, gt)
  assert m.ate < 1e-9
  # Frames 3->4 and 4->5 each carry a 10 degree error; 9 relative motions in all.
  assert abs(m.rpe_rot - np.sqrt(2 * 100.0 / 9)) < 1e-6


def test_shape_errors():
  rng = np.random.default_rng(1)
  c2w = _random_poses(rng, 3)
  with pytest.raises(ValueError, match='pred_c2w'):
    pose.pose_metrics(np.zeros((3, 3, 3)), c2w)
  with pytest.raises(ValueError, match='same number'):
    pose.pose_metrics(c2w[:2], c2w)
