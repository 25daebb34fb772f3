"""Parity and property tests for tapkit.metrics.tapvid (2D TAP-Vid metrics)."""

import json
import pathlib

import numpy as np
import pytest

from tapkit.metrics import tapvid


@pytest.fixture(name='golden', scope='session')
def _repo_golden(repo_golden):
  """This module's reference vectors are small and ship in tests/golden."""
  return repo_golden


KEYS = tapvid.METRIC_KEYS


def _golden_names():
  # Names are needed at collection time, before fixtures exist.
  path = pathlib.Path(__file__).resolve().parents[2] / 'golden' / 'tapvid_metrics' / 'index.json'
  if not path.is_file():
    return []
  return [c['name'] for c in json.loads(path.read_text())['cases']
          if c['kind'] == '2d']


@pytest.mark.parametrize('name', _golden_names())
def test_golden_2d_cases(golden, name):
  index = json.loads((golden / 'tapvid_metrics' / 'index.json').read_text())
  case = next(c for c in index['cases'] if c['name'] == name)
  data = np.load(golden / 'tapvid_metrics' / case['file'])
  out = tapvid.compute_tapvid_metrics(
      data['query_points'], data['gt_occluded'], data['gt_tracks'],
      data['pred_occluded'], data['pred_tracks'], **case['options'])
  assert list(out) == list(KEYS)
  for key in KEYS:
    want = data['out_' + key]
    assert out[key].shape == want.shape and out[key].dtype == np.float64, key
    np.testing.assert_allclose(out[key], want, rtol=0, atol=1e-6,
                               equal_nan=True, err_msg=key)
  assert list(out[KEYS[0]].shape) == case['output_shape']


def _video(rng, b=2, n=6, t=8):
  gt = rng.uniform(0, 256, (b, n, t, 2))
  pred = gt + rng.normal(0, 4, gt.shape)
  gocc = rng.random((b, n, t)) < 0.3
  pocc = rng.random((b, n, t)) < 0.3
  queries = np.stack([rng.integers(0, t, (b, n)), rng.uniform(0, 256, (b, n)),
                      rng.uniform(0, 256, (b, n))], axis=-1).astype(float)
  return queries, gocc, gt, pocc, pred


@pytest.mark.parametrize('mode', ['first', 'strided'])
def test_perfect_prediction_scores_one(mode):
  queries, gocc, gt, _, _ = _video(np.random.default_rng(0))
  queries[..., 0] = 0
  gocc[..., 1] = False  # Something visible after every query.
  out = tapvid.compute_tapvid_metrics(queries, gocc, gt, gocc, gt, mode, True)
  for key in KEYS:
    np.testing.assert_array_equal(out[key], 1.0, err_msg=key)


def test_hand_computed_masks_and_thresholds():
  # One track, 5 frames, query at frame 1; pixel errors 0, 1.5, 3, 0.5, 20.
  gt = np.zeros((1, 1, 5, 2))
  pred = gt.copy()
  pred[0, 0, :, 0] = [0.0, 1.5, 3.0, 0.5, 20.0]
  occ = np.zeros((1, 1, 5), bool)
  queries = np.array([[[1.0, 0.0, 0.0]]])
  first = tapvid.compute_tapvid_metrics(queries, occ, gt, occ, pred, 'first')
  # Frames 2, 3, 4 evaluated (errors 3, 0.5, 20).
  for delta, value in {1: 1 / 3, 2: 1 / 3, 4: 2 / 3, 8: 2 / 3, 16: 2 / 3}.items():
    np.testing.assert_allclose(first[f'pts_within_{delta}'], [value])
  strided = tapvid.compute_tapvid_metrics(queries, occ, gt, occ, pred,
                                          'strided')
  # Frames 0, 2, 3, 4 (errors 0, 3, 0.5, 20): the query frame alone is out.
  np.testing.assert_allclose(strided['pts_within_2'], [0.5])
  # Jaccard at δ = 2: TP 2, gt positives 4, FP 2 (the two far points).
  np.testing.assert_allclose(strided['jaccard_2'], [2 / 6])
  # Strict inequality: an error of exactly 1 px is not within 1 px.
  pred[0, 0, :, 0] = 1.0
  out = tapvid.compute_tapvid_metrics(queries, occ, gt, occ, pred, 'strided')
  np.testing.assert_array_equal(out['pts_within_1'], [0.0])
  np.testing.assert_array_equal(out['pts_within_2'], [1.0])


def test_query_on_last_frame_and_half_to_even():
  queries, gocc, gt, pocc, pred = _video(np.random.default_rng(1), b=1, n=3,
                                         t=6)
  queries[0, :, 0] = [5.0, 2.5, 3.5]
  out = tapvid.compute_tapvid_metrics(queries, gocc, gt, pocc, pred, 'first',
                                      True)
  assert np.isnan(out['occlusion_accuracy'][0, 0])  # Nothing after frame 5.
  # 2.5 -> 2 (3 frames evaluated), 3.5 -> 4 (1 frame evaluated).
  mask = tapvid.evaluation_mask(queries, 6, 'first')
  np.testing.assert_array_equal(mask[0].sum(-1), [0, 3, 1])
  expected = np.sum((gocc == pocc)[0] & mask[0], -1)[1:] / np.array([3, 1])
  np.testing.assert_allclose(out['occlusion_accuracy'][0, 1:], expected)


def test_per_video_sums_counts_over_tracks():
  queries, gocc, gt, pocc, pred = _video(np.random.default_rng(2), b=3)
  per_video = tapvid.compute_tapvid_metrics(queries, gocc, gt, pocc, pred,
                                            'strided')
  for v in range(3):
    single = tapvid.compute_tapvid_metrics(
        queries[v:v + 1], gocc[v:v + 1], gt[v:v + 1], pocc[v:v + 1],
        pred[v:v + 1], 'strided')
    for key in KEYS:
      np.testing.assert_array_equal(per_video[key][v], single[key][0])
  mask = tapvid.evaluation_mask(queries, gt.shape[2], 'strided')
  within = np.sum(np.square(pred - gt), -1) < 16
  np.testing.assert_allclose(
      per_video['pts_within_4'],
      np.sum(within & ~gocc & mask, (1, 2)) / np.sum(~gocc & mask, (1, 2)))


def test_bad_inputs_raise_clearly():
  queries, gocc, gt, pocc, pred = _video(np.random.default_rng(3))
  with pytest.raises(ValueError, match='Unknown query mode'):
    tapvid.compute_tapvid_metrics(queries, gocc, gt, pocc, pred, 'all')
  late = queries.copy()
  late[0, 0, 0] = gt.shape[2]
  with pytest.raises(IndexError, match='query frames'):
    tapvid.compute_tapvid_metrics(late, gocc, gt, pocc, pred, 'first')
  with pytest.raises(ValueError, match='query_points'):
    tapvid.compute_tapvid_metrics(queries[0], gocc, gt, pocc, pred, 'first')
  with pytest.raises(ValueError, match='gt_tracks'):
    tapvid.compute_tapvid_metrics(queries, gocc, gt[..., :1], pocc, pred,
                                  'first')
