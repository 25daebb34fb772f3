"""Parity and property tests for tapkit.metrics.tapvid3d."""

import json
import pathlib

import numpy as np
import pytest

from tapkit.metrics import tapvid3d


@pytest.fixture(name='golden', scope='session')
def _repo_golden(repo_golden):
  """This module's reference vectors are small and ship in tests/golden."""
  return repo_golden


KEYS = tapvid3d.METRIC_KEYS
ORDERS = ('n t', 't n', 'b n t', 'b t n')
INTRINSICS = np.array([200.0, 230.0, 128.0, 128.0])


def _index(golden):
  return json.loads((golden / 'tapvid_metrics' / 'index.json').read_text())


def _golden_names(kind_prefix, section='cases'):
  # Parametrisation needs the names at collection time, before fixtures exist.
  path = pathlib.Path(__file__).resolve().parents[2] / 'golden' / 'tapvid_metrics' / 'index.json'
  if not path.is_file():
    return []
  return [c['name'] for c in json.loads(path.read_text())[section]
          if c['kind'].startswith(kind_prefix)]


def _case(golden, name):
  index = _index(golden)
  for case in index['cases'] + index['error_cases']:
    if case['name'] == name:
      return case, np.load(golden / 'tapvid_metrics' / case['file'])
  raise KeyError(name)


def _call(data, options, query_points='file'):
  if isinstance(query_points, str):
    query_points = data['query_points'] if 'query_points' in data else None
  return tapvid3d.compute_tapvid3d_metrics(
      data['gt_occluded'], data['gt_tracks'], data['pred_occluded'],
      data['pred_tracks'], data['intrinsics_params'],
      query_points=query_points, **options)


def _assert_metrics_equal(ours, expected, atol=1e-6):
  assert list(ours) == list(KEYS)
  for key in KEYS:
    got, want = np.asarray(ours[key]), np.asarray(expected[key])
    assert got.dtype == np.float64, key
    assert got.shape == want.shape, (key, got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, equal_nan=True,
                               err_msg=key)


@pytest.mark.parametrize('name', _golden_names('3d', 'cases'))
def test_golden_3d_cases(golden, name):
  case, data = _case(golden, name)
  if case['kind'] == '3d_create_local_tracks':
    outputs = tapvid3d.create_local_tracks(
        data['gt_occluded'], data['gt_tracks'], data['pred_occluded'],
        data['pred_tracks'], case['options']['thresh'])
    names = ('local_gt_occluded', 'local_gt_tracks', 'local_pred_occluded',
             'local_pred_tracks', 'local_weights')
    for out_name, got in zip(names, outputs):
      want = data['out_' + out_name]
      assert got.shape == want.shape and got.dtype == want.dtype, out_name
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-6,
                                 err_msg=out_name)
    return
  ours = _call(data, case['options'])
  _assert_metrics_equal(ours, {k: data['out_' + k] for k in KEYS})
  assert list(ours[KEYS[0]].shape) == case['output_shape']
  if case.get('outputs_have_nan'):
    assert any(np.isnan(ours[k]).any() for k in KEYS)


def test_golden_case_list_is_complete(golden):
  index = _index(golden)
  covered = set(_golden_names('3d', 'cases')) | set(
      _golden_names('3d', 'error_cases')) | set(_golden_names('2d', 'cases'))
  assert covered == {c['name'] for c in index['cases'] + index['error_cases']}


def test_golden_error_per_trajectory_query_without_batch_axis(golden):
  # Official: ValueError in take_along_axis. Ours: the intended values, i.e.
  # the same as with the [1, n, 3] queries the official code accepts.
  case, data = _case(golden,
                     'error_015_per_trajectory_unbatched_query_without_batch_axis')
  assert data['query_points'].ndim == 2
  ours = _call(data, case['options'])
  batched_queries = _call(data, case['options'],
                          query_points=data['query_points'][np.newaxis])
  _assert_metrics_equal(ours, batched_queries, atol=0)
  assert ours['occlusion_accuracy'].shape == (1,)
  assert 0 < ours['average_jaccard'][0] < 1


def _weighted_from_local_tracks(gocc, gpts, pocc, ppts, weights, factor,
                                focal, trackwise):
  """Official metric formulas on the padded [n, L] local tracks."""
  ppts = ppts * factor[:, None, None]
  axis = -1 if trackwise else (-2, -1)
  total = lambda x: np.sum(x * weights, axis=axis)
  visible, pred_visible = ~gocc, ~pocc
  error = np.sum(np.square(ppts - gpts), axis=-1)
  out = {'occlusion_accuracy': total(gocc == pocc) / total(1.0)}
  for delta in tapvid3d.PIXEL_THRESHOLDS:
    within = error < np.square(delta * gpts[..., 2] / focal)
    out[f'pts_within_{delta}'] = total(within & visible) / total(visible)
    out[f'jaccard_{delta}'] = total(within & visible & pred_visible) / (
        total(visible) + total(pred_visible & (~visible | ~within)))
  deltas = tapvid3d.PIXEL_THRESHOLDS
  out['average_jaccard'] = np.mean([out[f'jaccard_{d}'] for d in deltas], 0)
  out['average_pts_within_thresh'] = np.mean(
      [out[f'pts_within_{d}'] for d in deltas], 0)
  return {k: np.asarray(out[k]) for k in KEYS}


def _query_factor(gt, pred, query_points):
  q = np.round(query_points[:, 0]).astype(int)
  rows = np.arange(gt.shape[0])
  return (np.maximum(gt[rows, q, 2], 1e-12)
          / np.maximum(pred[rows, q, 2], 1e-12))


def test_golden_error_local_neighborhood_per_video(golden):
  # Official: AxisError at the final stacking. Ours: the per-video values,
  # which must equal the official weighted sums over the padded local tracks.
  case, data = _case(golden, 'error_016_local_neighborhood_pervideo')
  ours = _call(data, case['options'])
  local = tapvid3d.create_local_tracks(
      data['gt_occluded'], data['gt_tracks'], data['pred_occluded'],
      data['pred_tracks'], case['options']['local_neighborhood_thresh'])
  intr = data['intrinsics_params']
  expected = _weighted_from_local_tracks(
      *local, _query_factor(data['gt_tracks'], data['pred_tracks'],
                            data['query_points']),
      np.sqrt(intr[0] * intr[1]), trackwise=False)
  _assert_metrics_equal(ours, expected, atol=1e-12)
  assert ours['average_jaccard'].shape == ()


# ---------------------------------------------------------------------------
# Hand-made cases.
# ---------------------------------------------------------------------------


def _scene(rng, b, n, t, dense=False):
  """Canonical [b, n, t] random gt / predictions in metres, camera frame."""
  if dense:
    start = rng.normal(0, 0.03, (b, n, 1, 3)) + [0.0, 0.0, 2.0]
  else:
    start = rng.normal(0, 1, (b, n, 1, 3)) * [1, 1, 0.5] + [0.0, 0.0, 3.0]
  gt = start + np.cumsum(rng.normal(0, 0.01, (b, n, t, 3)), axis=2)
  pred = 1.3 * gt + rng.normal(0, 0.02, gt.shape)
  gocc = rng.random((b, n, t)) < 0.3
  pocc = rng.random((b, n, t)) < 0.3
  queries = np.stack([rng.integers(0, t, (b, n)), rng.random((b, n)),
                      rng.random((b, n))], axis=-1).astype(float)
  return gocc, gt, pocc, pred, queries


def _layout(x, order):
  """Canonical [b, n, t, ...] -> `order` (unbatched orders take video 0)."""
  return {'b n t': x, 'b t n': np.swapaxes(x, 1, 2), 'n t': x[0],
          't n': np.swapaxes(x[0], 0, 1)}[order]


@pytest.mark.parametrize('scaling', tapvid3d.SCALINGS)
@pytest.mark.parametrize('fixed', [False, True])
def test_perfect_prediction_scores_one(scaling, fixed):
  rng = np.random.default_rng(0)
  gocc, gt, _, _, queries = _scene(rng, 1, 12, 9)
  gocc[0, :, 0] = False  # Every track visible somewhere (no 0/0).
  out = tapvid3d.compute_tapvid3d_metrics(
      gocc[0], gt[0], gocc[0].copy(), gt[0].copy(), INTRINSICS,
      get_trackwise_metrics=True, scaling=scaling, query_points=queries[0],
      use_fixed_metric_threshold=fixed, local_neighborhood_thresh=0.5)
  for key in KEYS:
    np.testing.assert_array_equal(out[key], 1.0, err_msg=key)


@pytest.mark.parametrize(
    'scaling', ['median', 'mean', 'none', 'per_trajectory', 'reproduce_2d',
                'median_on_queries', 'local_neighborhood'])
@pytest.mark.parametrize('trackwise', [False, True])
def test_all_orders_agree(scaling, trackwise):
  rng = np.random.default_rng(1)
  gocc, gt, pocc, pred, queries = _scene(rng, 1, 15, 11, dense=True)
  results = {}
  for order in ORDERS:
    if scaling == 'local_neighborhood' and len(order.split()) == 3:
      continue
    batched = len(order.split()) == 3
    results[order] = tapvid3d.compute_tapvid3d_metrics(
        _layout(gocc, order), _layout(gt, order), _layout(pocc, order),
        _layout(pred, order), INTRINSICS, get_trackwise_metrics=trackwise,
        scaling=scaling, query_points=queries if batched else queries[0],
        order=order)
  reference = results.pop('n t')
  for order, result in results.items():
    _assert_metrics_equal(result, reference, atol=0)


@pytest.mark.parametrize('scaling', ['median', 'mean', 'median_on_queries'])
@pytest.mark.parametrize('trackwise', [False, True])
def test_batch_is_per_video(scaling, trackwise):
  # Official code raises for b > 1 here; ours gives one factor per video.
  rng = np.random.default_rng(2)
  gocc, gt, pocc, pred, queries = _scene(rng, 2, 10, 8)
  pred[1] *= 0.5  # The two videos need different factors.
  intrinsics = np.stack([INTRINSICS, INTRINSICS * 1.5])
  kwargs = dict(get_trackwise_metrics=trackwise, scaling=scaling)
  single = [
      tapvid3d.compute_tapvid3d_metrics(
          gocc[v], gt[v], pocc[v], pred[v], intrinsics[v],
          query_points=queries[v], **kwargs) for v in range(2)]
  both = tapvid3d.compute_tapvid3d_metrics(
      gocc, gt, pocc, pred, intrinsics, query_points=queries, order='b n t',
      **kwargs)
  for key in KEYS:
    np.testing.assert_array_equal(
        both[key], np.concatenate([s[key] for s in single]), err_msg=key)
  # Two identical videos: each equals the single-video result.
  twice = tapvid3d.compute_tapvid3d_metrics(
      np.stack([gocc[0]] * 2), np.stack([gt[0]] * 2), np.stack([pocc[0]] * 2),
      np.stack([pred[0]] * 2), INTRINSICS, query_points=queries[[0, 0]],
      order='b n t', **kwargs)
  for key in KEYS:
    np.testing.assert_array_equal(twice[key][0], single[0][key][0])
    np.testing.assert_array_equal(twice[key][1], single[0][key][0])


def test_per_trajectory_unbatched_query_shapes_agree():
  rng = np.random.default_rng(3)
  gocc, gt, pocc, pred, queries = _scene(rng, 1, 20, 7)
  args = (gocc[0], gt[0], pocc[0], pred[0], INTRINSICS)
  flat = tapvid3d.compute_tapvid3d_metrics(
      *args, True, 'per_trajectory', queries[0])
  with_batch = tapvid3d.compute_tapvid3d_metrics(
      *args, True, 'per_trajectory', queries)
  _assert_metrics_equal(flat, with_batch, atol=0)
  assert flat['jaccard_4'].shape == (1, 20)


def _loop_local_tracks(gocc, gt, pocc, pred, radius):
  """Per-anchor loop: neighbourhoods in (track, frame) order, padded."""
  rows = []
  for anchor in range(gt.shape[0]):
    close = np.sum(np.square(gt - gt[anchor]), axis=-1) < radius * radius
    rows.append(np.flatnonzero(close.reshape(-1)))
  length = max(len(r) for r in rows)
  n = gt.shape[0]
  out = [np.zeros((n, length), bool), np.zeros((n, length, 3), gt.dtype),
         np.zeros((n, length), bool), np.zeros((n, length, 3), pred.dtype)]
  valid = np.zeros((n, length), bool)
  for anchor, members in enumerate(rows):
    for target, source in zip(out, (gocc, gt, pocc, pred)):
      target[anchor, :len(members)] = source.reshape(
          (-1,) + source.shape[2:])[members]
    valid[anchor, :len(members)] = True
  visible_entries = np.sum(~out[0] & valid, axis=1, keepdims=True)
  weight = np.sum(~gocc, axis=1, keepdims=True) / np.maximum(1,
                                                             visible_entries)
  return (*out, valid * weight)


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
@pytest.mark.parametrize('radius', [0.02, 0.05, 0.3])
def test_local_neighborhood_matches_loop_reference(dtype, radius):
  rng = np.random.default_rng(4)
  gocc, gt, pocc, pred, queries = _scene(rng, 1, 40, 12, dense=True)
  gocc, gt, pocc, pred, queries = gocc[0], gt[0], pocc[0], pred[0], queries[0]
  gocc[3] = True  # A never-visible track: all its metrics are NaN (Q5).
  gt[5, 2] = np.nan  # A broken point is nobody's neighbour, not even its own.
  gt, pred = gt.astype(dtype), pred.astype(dtype)
  local = tapvid3d.create_local_tracks(gocc, gt, pocc, pred, radius)
  reference = _loop_local_tracks(gocc, gt, pocc, pred, radius)
  for got, want in zip(local, reference):
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
  factor = _query_factor(gt, pred, queries)
  for trackwise in (False, True):
    ours = tapvid3d.compute_tapvid3d_metrics(
        gocc, gt, pocc, pred, INTRINSICS, trackwise, 'local_neighborhood',
        queries, local_neighborhood_thresh=radius)
    with np.errstate(invalid='ignore'):
      expected = _weighted_from_local_tracks(
          *reference, factor, np.sqrt(INTRINSICS[0] * INTRINSICS[1]),
          trackwise)
    _assert_metrics_equal(ours, expected, atol=1e-12)
  trackwise_out = tapvid3d.compute_tapvid3d_metrics(
      gocc, gt, pocc, pred, INTRINSICS, True, 'local_neighborhood', queries,
      local_neighborhood_thresh=radius)
  assert all(np.isnan(trackwise_out[k][3]) for k in KEYS)


def test_neighbour_search_is_chunk_independent():
  rng = np.random.default_rng(5)
  gt = rng.normal(0, 0.05, (30, 6, 3))
  def entries(chunk):
    # pylint: disable-next=protected-access
    pairs = list(tapvid3d._neighbour_pairs(gt, 0.05, chunk=chunk))
    anchor = np.concatenate([a for a, _ in pairs])
    member = np.concatenate([m for _, m in pairs])
    return np.unique(anchor * gt[:, :, 0].size + member), len(pairs)
  whole, _ = entries(1 << 30)
  small, num_chunks = entries(7)
  assert num_chunks > 10
  np.testing.assert_array_equal(whole, small)
  brute = (np.sum(np.square(gt[:, None] - gt[None]), -1) < 0.05 * 0.05)
  assert whole.size == brute.sum()


def test_hand_computed_fixed_thresholds_and_scalings():
  # One track, four visible frames, z = 2 m; errors of 0.05, 0.15, 0.5, 2 m
  # along x. Fixed thresholds 0.01 * delta**2 m: 0.01, 0.04, 0.16, 0.64, 2.56.
  gt = np.array([[[0.0, 0.0, 2.0]] * 4])
  pred = gt + np.array([[0.05, 0, 0], [0.15, 0, 0], [0.5, 0, 0], [2.0, 0, 0]])
  occ = np.zeros((1, 4), bool)
  out = tapvid3d.compute_tapvid3d_metrics(
      occ, gt, occ, pred, INTRINSICS, scaling='none',
      use_fixed_metric_threshold=True)
  expected = {1: 0.0, 2: 0.0, 4: 0.5, 8: 0.75, 16: 1.0}
  for delta, value in expected.items():
    np.testing.assert_allclose(out[f'pts_within_{delta}'], [value])
    # Predicted visible everywhere: TP = within, FP = 4 - within.
    np.testing.assert_allclose(out[f'jaccard_{delta}'],
                               [value * 4 / (4 + 4 - value * 4)])
  np.testing.assert_allclose(out['average_pts_within_thresh'], [0.45])
  # Adaptive: tau = delta * z / sqrt(fx fy) with sqrt(200 * 230) = 214.48 px,
  # so at z = 2 m, 16 px = 0.1492 m: only the 0.05 m error passes at δ = 16,
  # and δ = 4 (0.0373 m) and below fail.
  out = tapvid3d.compute_tapvid3d_metrics(occ, gt, occ, pred, INTRINSICS,
                                          scaling='none')
  np.testing.assert_allclose(out['pts_within_16'], [0.25])
  np.testing.assert_allclose(out['pts_within_8'], [0.25])  # 0.0746 m > 0.05.
  np.testing.assert_allclose(out['pts_within_4'], [0.0])
  # 'median' undoes a global scale; 'reproduce_2d' moves each point to the gt
  # depth, so a prediction 3x farther along the ray is perfect.
  for scaling in ('median', 'mean', 'reproduce_2d'):
    out = tapvid3d.compute_tapvid3d_metrics(occ, gt, occ, 3.0 * gt,
                                            INTRINSICS, scaling=scaling)
    np.testing.assert_allclose(out['average_jaccard'], [1.0])


def test_query_frames_round_half_to_even():
  # Depth ratios differ per frame; the factor must come from frame 2 for a
  # query at t = 2.5 (half to even), not from frame 3.
  gt = np.array([[[0.0, 0.0, 2.0]] * 4])
  pred = gt.copy()
  pred[0, :, 2] = [1.0, 1.0, 1.0, 4.0]
  occ = np.zeros((1, 4), bool)
  out = tapvid3d.compute_tapvid3d_metrics(
      occ, gt, occ, pred, INTRINSICS, True, 'per_trajectory',
      np.array([[2.5, 0.0, 0.0]]))
  # Factor 2 from frame 2: frames 0-2 exact, frame 3 at 8 m instead of 2 m.
  np.testing.assert_allclose(out['pts_within_16'], [[0.75]])


def test_median_is_ratio_of_medians_over_jointly_visible_points():
  gt = np.array([[[0, 0, 1.0], [0, 0, 2.0], [0, 0, 3.0], [0, 0, 100.0]]])
  pred = np.array([[[0, 0, 2.0], [0, 0, 4.0], [0, 0, 5.0], [0, 0, 1.0]]])
  gocc = np.array([[False, False, False, True]])  # Frame 3 drops out.
  pocc = np.zeros((1, 4), bool)
  out = tapvid3d.compute_tapvid3d_metrics(gocc, gt, pocc, pred, INTRINSICS,
                                          True, 'median')
  # Factor 2 / 4 = 0.5: frames 0, 1 exact, frame 2 at 2.5 m vs 3 m.
  np.testing.assert_allclose(out['pts_within_16'], [[2 / 3]])
  # Predicted occluded and gt occluded: no shared visible point -> NaN factor.
  out = tapvid3d.compute_tapvid3d_metrics(
      gocc, gt, ~gocc, pred, INTRINSICS, True, 'median')
  np.testing.assert_array_equal(out['pts_within_1'], [[0.0]])


def test_float_dtypes_give_float64_outputs():
  rng = np.random.default_rng(6)
  gocc, gt, pocc, pred, queries = _scene(rng, 1, 8, 5)
  out = tapvid3d.compute_tapvid3d_metrics(
      gocc[0], gt[0].astype(np.float32), pocc[0], pred[0].astype(np.float32),
      INTRINSICS.astype(np.float32), scaling='per_trajectory',
      query_points=queries[0])
  assert all(v.dtype == np.float64 for v in out.values())


def test_prediction_broadcasts_like_official():
  rng = np.random.default_rng(7)
  gocc, gt, pocc, pred, _ = _scene(rng, 1, 6, 5)
  one_track = tapvid3d.compute_tapvid3d_metrics(
      gocc[0], gt[0], pocc[0, :1], pred[0, :1], INTRINSICS)
  explicit = tapvid3d.compute_tapvid3d_metrics(
      gocc[0], gt[0], np.repeat(pocc[0, :1], 6, 0),
      np.repeat(pred[0, :1], 6, 0), INTRINSICS)
  _assert_metrics_equal(one_track, explicit, atol=0)


def test_bad_inputs_raise_clearly():
  rng = np.random.default_rng(8)
  gocc, gt, pocc, pred, queries = _scene(rng, 1, 6, 5)
  args = (gocc[0], gt[0], pocc[0], pred[0], INTRINSICS)
  with pytest.raises(ValueError, match='Unknown scaling:bogus'):
    tapvid3d.compute_tapvid3d_metrics(*args, scaling='bogus')
  with pytest.raises(ValueError, match='order'):
    tapvid3d.compute_tapvid3d_metrics(*args, order='t b n')
  with pytest.raises(AssertionError, match='batched'):
    tapvid3d.compute_tapvid3d_metrics(
        gocc, gt, pocc, pred, INTRINSICS, scaling='local_neighborhood',
        query_points=queries, order='b n t')
  for scaling in ('per_trajectory', 'local_neighborhood', 'median_on_queries'):
    with pytest.raises(TypeError, match='query_points'):
      tapvid3d.compute_tapvid3d_metrics(*args, scaling=scaling)
  late = queries[0].copy()
  late[0, 0] = 5.0
  with pytest.raises(IndexError, match='query frames'):
    tapvid3d.compute_tapvid3d_metrics(*args, scaling='per_trajectory',
                                      query_points=late)
  with pytest.raises(ValueError, match='dims'):
    tapvid3d.compute_tapvid3d_metrics(gocc, gt, pocc, pred, INTRINSICS)
  with pytest.raises(ValueError, match='broadcast'):
    tapvid3d.compute_tapvid3d_metrics(gocc[0], gt[0], pocc[0, :2],
                                      pred[0, :2], INTRINSICS)
  with pytest.raises(ValueError, match='0/1'):
    tapvid3d.compute_tapvid3d_metrics(gocc[0] * 0.3, *args[1:])
  with pytest.raises(ValueError, match='intrinsics'):
    tapvid3d.compute_tapvid3d_metrics(*args[:4], INTRINSICS[:3])
