"""Tests of dpov_jax.evaluate.metrics against hand-computed values."""

import numpy as np
import pytest

from dpov_jax.evaluate import metrics


def test_spair_threshold_scale_uses_target_bbox_and_image():
  # bbox 100 x 50 in a 200 x 100 image: tau = 100 / 200.
  assert metrics.spair_threshold_scale([10, 20, 110, 70], [200, 100, 3]) == 0.5
  # Tall box: max side is the height.
  assert metrics.spair_threshold_scale([0, 0, 10, 80], [50, 100]) == 0.8


def test_spair_keypoint_errors_and_strict_pck():
  pred = np.array([[0.5, 0.5], [0.0, 0.0], [0.3, 0.4], [0.9, 0.9]])
  gt = np.array([[0.5, 0.55], [0.0, 0.0], [0.0, 0.0], [0.1, 0.1]])
  src_v = np.array([True, True, True, False])
  trg_v = np.array([True, True, True, True])
  err = metrics.spair_keypoint_errors(pred, gt, src_v, trg_v, 0.5)
  np.testing.assert_allclose(err, [0.1, 0.0, 1.0])
  # 0.05 / 0.5 is 0.1 up to rounding; use exact values for the strict edge.
  assert list(metrics.pck_correct(np.array([0.0999, 0.1, 0.2]))) == [
      True, False, False]
  assert metrics.recall_percent(np.array([0.0, 0.05, 0.5, 1.0])) == 50.0
  assert np.isnan(metrics.recall_percent(np.zeros(0)))


def test_class_averaged_recall_skips_missing_bins():
  per_class = {'cat': {'0': 50.0, '1': 20.0, 'all': 40.0},
               'dog': {'0': 100.0, 'all': 60.0},
               'cow': {'0': 0.0, '1': float('nan'), 'all': 0.0}}
  out = metrics.class_averaged_recall(per_class)
  assert out['0'] == pytest.approx(50.0)
  assert out['1'] == pytest.approx(20.0)
  assert np.isnan(out['2'])
  assert out['all'] == pytest.approx(100.0 / 3)


def test_bins_are_half_open_at_every_edge():
  ang = np.array([0.0, 14.999, 15.0, 29.99, 30.0, 59.9, 60.0, 119.9, 120.0,
                  -1.0])
  idx = metrics.assign_bins(ang, metrics.NAVI_BIN_EDGES_3DPOV)
  assert idx.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, -1, -1]
  idx = metrics.assign_bins(ang, metrics.NAVI_BIN_EDGES_PROBE3D)
  assert idx.tolist() == [0, 0, 0, 0, 1, 1, 2, 3, -1, -1]
  with pytest.raises(ValueError):
    metrics.assign_bins(ang, [0, 10, 10])


def test_navi_correspondence_metrics():
  err_3d = [np.array([0.005, 0.015, 0.03, 0.1]),
            np.array([0.0, 0.0, 0.0, 0.0]),
            np.array([1.0, 1.0, 0.0, 0.0])]
  err_2d = [np.array([1.0, 10.0, 30.0, 60.0])] * 3
  out = metrics.navi_correspondence_metrics(err_3d, err_2d,
                                            np.array([10.0, 20.0, 21.0]))
  assert out['recall_1cm'] == pytest.approx(100 * 7 / 12)
  assert out['recall_2cm'] == pytest.approx(100 * 8 / 12)
  assert out['recall_5cm'] == pytest.approx(100 * 9 / 12)
  assert out['recall_5px'] == pytest.approx(25.0)
  assert out['recall_25px'] == pytest.approx(50.0)
  assert out['recall_50px'] == pytest.approx(75.0)
  # Bins are means of per-pair recall@2cm: pair 0 -> 0.5; pairs 1, 2 -> 1, 0.5.
  assert out['bin_0-15'] == pytest.approx(50.0)
  assert out['bin_15-30'] == pytest.approx(75.0)
  assert np.isnan(out['bin_30-60']) and np.isnan(out['bin_60-120'])


def test_depth_metrics_scale_aware_exact():
  gt = np.array([[[1.0, 2.0], [4.0, 0.0]]])
  pred = np.array([[[1.25, 2.0], [2.0, 7.0]]])  # last pixel is invalid.
  m = metrics.depth_metrics(pred, gt)
  # Ratios 1.25 (not < 1.25), 1, 2: delta1 = 1/3, delta2 (1.5625) = 2/3,
  # delta3 (1.953125) = 2/3.
  assert m['d1'] == pytest.approx(1 / 3)
  assert m['d2'] == pytest.approx(2 / 3)
  assert m['d3'] == pytest.approx(2 / 3)
  assert m['rmse'] == pytest.approx(np.sqrt((0.0625 + 0 + 4) / 3))
  assert m['abs_rel'] == pytest.approx((0.25 + 0 + 0.5) / 3)


def test_depth_metrics_scale_invariant_recovers_affine_and_averages_images():
  rng = np.random.default_rng(0)
  gt = rng.uniform(0.5, 5.0, (2, 4, 5))
  gt[0, 0, 0] = 0.0
  pred = (gt - 0.3) / 2.0
  pred[0, 0, 0] = 100.0  # an invalid pixel must not affect the fit.
  si = metrics.depth_metrics(pred, gt, scale_invariant=True)
  assert si['rmse'] == pytest.approx(0.0, abs=1e-9)
  assert si['d1'] == 1.0 and si['abs_rel'] == pytest.approx(0.0, abs=1e-9)
  sa = metrics.depth_metrics(pred, gt, image_average=False)
  assert sa['rmse'].shape == (2,)
  np.testing.assert_allclose(
      metrics.depth_metrics(pred, gt)['rmse'], sa['rmse'].mean())
  # Negative predictions count as wrong (ratio against clamp(pred, 1e-9)).
  neg = metrics.depth_metrics(-np.ones((1, 1, 2)), np.ones((1, 1, 2)))
  assert neg['d3'] == 0.0 and neg['rmse'] == pytest.approx(2.0)
  # An image without valid pixels scores zeros (count clamped to 1).
  empty = metrics.depth_metrics(np.ones((1, 2, 2)), np.zeros((1, 2, 2)))
  assert empty == {'d1': 0.0, 'd2': 0.0, 'd3': 0.0, 'rmse': 0.0,
                   'abs_rel': 0.0}


def test_match_scale_and_shift_singular_keeps_prediction():
  gt = np.array([[[1.0, 3.0]]])
  pred = np.array([[[2.0, 2.0]]])  # constant prediction: singular system.
  np.testing.assert_allclose(metrics.match_scale_and_shift(pred, gt), pred)


def test_depth_nyu_crop():
  gt = np.zeros((1, 480, 640))
  gt[:, 45:471, 41:601] = 2.0
  pred = np.full((1, 480, 640), 2.0)
  pred[:, :45] = 50.0  # outside the crop; gt there is invalid anyway.
  m = metrics.depth_metrics(pred, gt, nyu_crop=True)
  assert m['rmse'] == 0.0 and m['d1'] == 1.0


def _rotated_normals(angles_deg):
  a = np.radians(np.asarray(angles_deg, np.float64))
  return np.stack([np.sin(a), np.zeros_like(a), np.cos(a)], 0)


def test_normal_metrics_known_angles():
  angles = np.array([[5.0, 15.0], [25.0, 40.0]])
  pred = _rotated_normals(angles)[None] * 3.0  # scale must not matter.
  pred = np.concatenate([pred, np.ones((1, 1, 2, 2))], 1)  # kappa ignored.
  gt = np.zeros((1, 3, 2, 2))
  gt[:, 2] = 1.0
  valid = np.ones((1, 1, 2, 2), bool)
  m = metrics.normal_metrics(pred, gt, valid)
  assert m['d1'] == pytest.approx(0.25)
  assert m['d2'] == pytest.approx(0.5)
  assert m['d3'] == pytest.approx(0.75)
  assert m['rmse'] == pytest.approx(np.sqrt(np.mean(angles**2)))
  assert m['mean'] == pytest.approx(21.25)
  assert m['median'] == pytest.approx(20.0)
  # Masking out the 40 degree pixel.
  valid[0, 0, 1, 1] = False
  m = metrics.normal_metrics(pred, gt, valid)
  assert m['d3'] == pytest.approx(1.0)
  assert m['mean'] == pytest.approx(15.0)
  assert m['median'] == pytest.approx(15.0)


def test_normal_metrics_per_image_vs_pooled():
  gt = np.zeros((2, 3, 1, 2))
  gt[:, 2] = 1.0
  pred = np.stack([_rotated_normals([[10.0, 10.0]]),
                   _rotated_normals([[50.0, 50.0]])])
  valid = np.array([[[True, False]], [[True, True]]])
  m = metrics.normal_metrics(pred, gt, valid)
  # Per image then averaged: d1 = (1 + 0) / 2; pooled: 1 of 3 pixels.
  assert m['d1'] == pytest.approx(0.5)
  assert m['pooled_d1'] == pytest.approx(1 / 3)
  assert m['rmse'] == pytest.approx(30.0)
  assert m['mean'] == pytest.approx(110.0 / 3)
  # Opposite normals: 180 degrees (cosine clamped, no NaN).
  e = metrics.angular_error_deg(-gt, gt)
  np.testing.assert_allclose(e, 180.0)
