"""Whole per-video evaluation (official evaluate_model) vs evaluate_model_00."""

import numpy as np

from tracks4d import evaluation


def _inputs(d):
  return dict(projections=d['projections'], tracks=d['tracks'], tracks_vis=d['tracks_vis'],
              depths=d['depths'], rotations=d['rotations'], translations=d['translations'],
              gt_ks=d['GT_Ks'])


def test_evaluate_video_matches_official(t4d_golden):
  d = np.load(t4d_golden / 'evaluate_model_00.npz')
  ev = evaluation.evaluate_video(**_inputs(d), gt_poses=d['GT_poses'], gt_depth=d['gt_depth'],
                                 gt_mask=d['gt_mask'])
  for name in ('ate', 'rpe_trans', 'rpe_rot'):
    ref = float(d[name])
    assert abs(getattr(ev, name) - ref) <= 1e-5 * ref, name
  ref = float(d['pixel_reprojection_error'])
  assert abs(ev.pixel_reprojection_error - ref) <= 1e-6 * ref
  np.testing.assert_allclose(ev.depth_all, d['depth_all'], rtol=1e-6)
  np.testing.assert_allclose(ev.depth_dynamic, d['depth_dynamic'], rtol=1e-6)
  entry = ev.as_official_dict()
  assert set(entry) == {'ATE', 'RPE_trans', 'RPE_rot', 'rep', 'ALL', 'Dynamic'}


def test_missing_ground_truth_reports_zeros(t4d_golden):
  d = np.load(t4d_golden / 'evaluate_model_00.npz')
  ev = evaluation.evaluate_video(**_inputs(d), gt_depth=d['gt_depth'])
  assert (ev.ate, ev.rpe_trans, ev.rpe_rot) == (0.0, 0.0, 0.0)
  assert ev.depth_all == (0.0, 0.0, 0.0, 0.0) and ev.depth_dynamic == (0.0, 0.0, 0.0, 0.0)
  assert abs(ev.pixel_reprojection_error - float(d['pixel_reprojection_error'])) < 1e-5
  # Non-finite predicted poses make the official SVD fail: swallowed, zeros.
  inputs = _inputs(d)
  inputs['translations'] = np.full_like(d['translations'], np.nan)
  ev = evaluation.evaluate_video(**inputs, gt_poses=d['GT_poses'])
  assert (ev.ate, ev.rpe_trans, ev.rpe_rot) == (0.0, 0.0, 0.0)
