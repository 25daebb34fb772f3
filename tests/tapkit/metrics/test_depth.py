"""Depth AbsRel / delta metrics, pixel error and aggregation vs TracksTo4D goldens."""

import numpy as np
import pytest

from tapkit.metrics import depth


@pytest.fixture(name='golden', scope='session')
def _repo_golden(repo_golden):
  """This module's reference vectors are small and ship in tests/golden."""
  return repo_golden


NAMES = (('abs_rel', 'abs_rel'), ('delta_1.25', 'delta_1'), ('delta_1.25^2', 'delta_2'),
         ('delta_1.25^3', 'delta_3'))


@pytest.fixture(scope='module')
def depth_golden(golden, require_reference):
  path = golden / 'tracks4d'
  require_reference('depth goldens', path / 'depth_eval_00.npz')
  return path


@pytest.mark.parametrize('case', ['depth_eval_00', 'depth_eval_01'])
def test_depth_metrics_match_official(case, depth_golden):
  d = np.load(depth_golden / f'{case}.npz')
  dyn = depth.dynamic_point_mask(d['gt_mask'][0])
  np.testing.assert_array_equal(dyn, d['dynamic_mask'])
  m = depth.depth_metrics(d['depths'][0], d['gt_depth'][0], d['tracks_vis'][0], dyn)
  np.testing.assert_allclose(m.align_scales, d['align_scales'], rtol=1e-6)
  for golden_name, ours in NAMES:
    for suffix in ('', '_dynamic'):
      ref = float(d[golden_name + suffix])
      val = getattr(m, ours + suffix)
      if np.isnan(ref):
        assert np.isnan(val), (golden_name + suffix, val)
      else:
        assert abs(val - ref) <= 1e-6 * max(abs(ref), 1e-6), (golden_name + suffix, val, ref)


def test_lower_median_and_quirks():
  assert depth.lower_median(np.array([4.0, 1.0, 3.0, 2.0])) == 2.0  # Lower middle value.
  assert depth.lower_median(np.array([5.0, 1.0, 3.0])) == 3.0
  assert np.isnan(depth.lower_median(np.array([], np.float32)))
  # One frame: GT (1, 2, 4, 8) all valid; pred = GT / 2 except a negative one.
  gt = np.array([[1.0, 2.0, 4.0, 8.0, 3.0]], np.float32)
  pred = np.array([[0.5, 1.0, 2.0, -4.0, 9.0]], np.float32)
  vis = np.array([[True, True, True, True, False]])
  dyn = np.array([False, False, False, True, False])
  m = depth.depth_metrics(pred, gt, vis, dynamic_points=dyn)
  # Medians (lower): GT 2, pred 0.5 -> scale 4: aligned (2, 4, 8, -16).
  np.testing.assert_allclose(m.align_scales, [4.0])
  np.testing.assert_allclose(m.abs_rel, np.mean([1.0, 1.0, 1.0, 3.0]), rtol=1e-6)
  # Ratios 2, 2, 2 fail every threshold (1.953125 < 2); the negative one passes all.
  np.testing.assert_allclose([m.delta_1, m.delta_2, m.delta_3], [0.25, 0.25, 0.25])
  np.testing.assert_allclose(m.dynamic_tuple(), [1.0, 1.0, 1.0, 3.0])
  m = depth.depth_metrics(pred, gt, vis)  # No dynamic points: NaN.
  assert np.isnan(m.abs_rel_dynamic) and np.isnan(m.delta_1_dynamic)
  # Lower median 1.1 -> ratios 1.1, 1, 1.27, 1.82: 2, 3, 4 of 4 pass 1.25, 1.25^2, 1.25^3.
  g2 = np.array([[1.0, 1.0, 1.0, 1.0]], np.float32)
  p2 = np.array([[1.0, 1.1, 1.4, 2.0]], np.float32)
  m2 = depth.depth_metrics(p2, g2, np.ones((1, 4), bool))
  np.testing.assert_allclose([m2.delta_1, m2.delta_2, m2.delta_3], [0.5, 0.75, 1.0])
  with pytest.raises(ValueError, match='must all be'):
    depth.depth_metrics(pred, gt[:, :3], vis)


def test_dynamic_rule_is_an_absolute_count():
  mask = np.zeros((45, 3), bool)
  mask[:41, 0] = True  # 41 frames > 40: dynamic.
  mask[:40, 1] = True  # Exactly 40: not dynamic.
  np.testing.assert_array_equal(depth.dynamic_point_mask(mask), [True, False, False])
  np.testing.assert_array_equal(depth.dynamic_point_mask(mask[:30]), [False, False, False])


def test_pixel_reprojection_error_uses_given_focal():
  proj = np.zeros((2, 2, 3), np.float32)
  trk = np.zeros((2, 2, 3), np.float32)
  trk[0, 0, 0] = 0.03  # 3 px at fx 100.
  trk[1, 1, 2] = 0.04  # 4 px.
  vis = np.array([[True, False, True], [False, False, True]])
  err = depth.pixel_reprojection_error(proj, trk, vis, 100.0)
  np.testing.assert_allclose(err, (3.0 + 0.0 + 4.0) / 3, rtol=1e-6)


def test_aggregation_follows_official_report():
  vids = {
      'a': {'ATE': 1.0, 'RPE_trans': 0.1, 'RPE_rot': 3.0, 'rep': 2.0,
            'ALL': (0.5, 0.8, 0.9, 0.3), 'Dynamic': (0.4, 0.7, 0.9, 0.35)},
      'b': {'ATE': 3.0, 'RPE_trans': 0.3, 'RPE_rot': 1.0, 'rep': 6.0,
            'ALL': (0.7, 0.9, 1.0, 0.1), 'Dynamic': (np.nan, np.nan, np.nan, np.nan)},
      'c': {'ATE': 2.0, 'RPE_trans': 0.2, 'RPE_rot': 2.0, 'rep': 1.0,
            'ALL': (0.6, 0.85, 0.95, 0.2), 'Dynamic': (0.5, 0.8, 1.0, 0.25)},
      'd': {'ATE': 10.0, 'RPE_trans': 0.4, 'RPE_rot': 4.0, 'rep': 3.0,
            'ALL': (0.9, 0.95, 1.0, 0.05), 'Dynamic': (0.6, 0.9, 1.0, 0.2)},
  }
  agg = depth.aggregate_video_results(vids)
  assert agg['mean']['ATE'] == 4.0 and agg['median']['ATE'] == 2.5  # numpy median averages.
  assert agg['mean']['rep'] == 3.0 and agg['median']['rep'] == 3.0  # Quirk: median = mean.
  # Depth medians per component, lower median (torch), NaN-propagating.
  np.testing.assert_allclose(agg['median']['ALL'], [0.6, 0.85, 0.95, 0.1], rtol=1e-6)
  np.testing.assert_allclose(agg['mean']['ALL'], [0.675, 0.875, 0.9625, 0.1625], rtol=1e-6)
  assert np.all(np.isnan(agg['median']['Dynamic'])) and np.all(np.isnan(agg['mean']['Dynamic']))
  with pytest.raises(ValueError, match='no videos'):
    depth.aggregate_video_results({})
