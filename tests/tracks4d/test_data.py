"""Window / point sampling and normalisation vs the official reader's outputs."""

import json

import numpy as np
import pytest

from tracks4d import data


def _load(path):
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


@pytest.mark.parametrize('index', [0, 1])
def test_sample_clip_matches_official_reader(index, t4d_golden, normwise_rel):
  manifest = json.loads((t4d_golden / 'manifest.json').read_text())['dataset'][index]
  clip = _load(t4d_golden / manifest['clip'])
  ref = _load(t4d_golden / manifest['file'])
  out = data.sample_clip(clip, rng=np.random.default_rng(123), source=manifest['clip'],
                         **manifest['CustomDataset_kwargs'])
  for key in ('camera_num', 'start_ind', 'num_actual_tracklets'):
    assert out[key] == int(ref[key]), key
  n = int(ref['num_actual_tracklets'])
  # The official order is an unseeded permutation: compare sets, then align rows.
  assert sorted(out['selected_inds'][:n]) == sorted(ref['selected_inds'][:n])
  assert np.all(out['selected_inds'][n:] == 0) and np.all(ref['selected_inds'][n:] == 0)
  row = {int(i): j for j, i in enumerate(out['selected_inds'][:n])}
  order = np.array([row[int(i)] for i in ref['selected_inds'][:n]] +
                   list(range(n, len(ref['selected_inds']))))
  assert set(out) - {'selected_inds'} >= set(ref) - {'selected_inds'}
  for key in ref:
    if key in ('camera_num', 'start_ind', 'num_actual_tracklets', 'selected_inds'):
      continue
    ours = out[key]
    if key == 'tracks':
      ours = ours[order]
    elif key in ('tracks_vis', 'GT_depth', 'GT_mask'):
      ours = ours[:, order]
    assert ours.shape == ref[key].shape and ours.dtype == ref[key].dtype, key
    if ref[key].dtype == bool or key == 'GT_depth':
      np.testing.assert_array_equal(ours, ref[key], err_msg=key)
    else:
      assert normwise_rel(ours, ref[key]) < 1e-6, key
  if index == 1:  # No Ks_all: generic K from the maximal visible coordinates.
    vis_xy = clip['pred_tracks'][clip['pred_visibility']]
    mx, my = vis_xy.max(axis=0)
    np.testing.assert_allclose(out['GT_Ks'][0], [[(mx + my) / 2, 0, mx / 2],
                                                 [0, (mx + my) / 2, my / 2], [0, 0, 1]], rtol=1e-7)


def _toy_clip(t=60, p=40, seed=0):
  rng = np.random.default_rng(seed)
  vis = rng.random((1, t, p)) > 0.3
  vis[0, :, 0] = False  # Track 0 is never visible: ineligible, but used as padding.
  return {
      'pred_tracks': rng.uniform(0, 300, (1, t, p, 2)).astype(np.float32),
      'pred_visibility': vis,
      'started_at': rng.choice([0.0, 20.0, 40.0, t - 1.0], size=(1, 1, p)).astype(np.float32),
      'Ms_all': np.tile(np.eye(4)[:3], (t, 1, 1)),
  }


def test_random_windows_and_eligibility_rules():
  clip = _toy_clip()
  seen = set()
  for seed in range(30):
    out = data.sample_clip(clip, max_cameras=50, max_points=100, sample_cameras=True,
                           rng=np.random.default_rng(seed))
    f, s = out['camera_num'], out['start_ind']
    assert 20 <= f <= 49 and 0 <= s <= 60 - f - 1
    seen.add(f)
    expected = data.eligible_tracks(clip['started_at'][0, 0], clip['pred_visibility'][0], s, f,
                                    True)
    centre = s + f / 2
    manual = [i for i in range(40)
              if abs(clip['started_at'][0, 0, i] - centre) < f
              and clip['pred_visibility'][0, s:s + f, i].sum() > 10]
    assert expected.tolist() == manual
    n = out['num_actual_tracklets']
    assert n == len(manual) and sorted(out['selected_inds'][:n]) == manual
    assert np.all(out['selected_inds'][n:] == 0)  # Padding with index 0.
    np.testing.assert_array_equal(out['point_mask'], np.arange(100) < n)
    assert out['tracks'].shape == (100, 3, f) and out['GT_poses'].shape == (f, 4, 4)
  assert len(seen) > 5
  # Deterministic given the generator.
  a = data.sample_clip(clip, 50, 100, True, rng=np.random.default_rng(7))
  b = data.sample_clip(clip, 50, 100, True, rng=np.random.default_rng(7))
  np.testing.assert_array_equal(a['tracks'], b['tracks'])
  assert a['start_ind'] == b['start_ind'] and a['camera_num'] == b['camera_num']


def test_fixed_window_training_phase_and_truncation():
  clip = _toy_clip()
  out = data.sample_clip(clip, max_cameras=data.TRAIN_FIRST_PHASE_MAX_CAMERAS, max_points=5,
                         rng=np.random.default_rng(0))
  assert out['camera_num'] == 22 and out['start_ind'] == 0
  assert out['num_actual_tracklets'] == 5 and 0 not in out['selected_inds']
  eligible = data.eligible_tracks(clip['started_at'][0, 0], clip['pred_visibility'][0], 0, 22,
                                  False)
  assert np.all(clip['started_at'][0, 0, eligible] < 22)
  assert set(out['selected_inds']) <= set(eligible.tolist())
  # Visibility row, frame-major visibility.
  np.testing.assert_array_equal(out['tracks'][:, 2, :], out['tracks_vis'].T.astype(np.float32))
  no_vis = data.sample_clip(clip, 22, 5, use_visible_input=False, rng=np.random.default_rng(0))
  assert no_vis['tracks'].shape == (5, 2, 22)
  few = data.sample_clip(clip, 50, 200)
  short = data.truncate_to_real(few)
  assert short['tracks'].shape[0] == few['num_actual_tracklets'] < 200
  assert short['tracks_vis'].shape == (50, few['num_actual_tracklets'])


def test_normalisation_ignores_skew_and_uses_inverse():
  k = np.array([[[500.0, 3.0, 320.0], [0, 400.0, 240.0], [0, 0, 1]]], np.float32)
  px = np.array([[[820.0], [640.0]]], np.float32)  # [N=1, 2, F=1]
  out = data.normalise_tracks(px, k)
  inv = np.linalg.inv(k[0].astype(np.float64))
  expected = [820 * inv[0, 0] + inv[0, 2], 640 * inv[1, 1] + inv[1, 2]]
  np.testing.assert_allclose(out[0, :, 0], expected,
                             rtol=1e-6)


def test_clear_errors():
  clip = _toy_clip()
  bad = dict(clip, Ms_all=np.tile(np.eye(4), (60, 1, 1)))
  with pytest.raises(ValueError, match=r"clip.npz: field 'Ms_all' must have shape \(60, 3, 4\)"):
    data.sample_clip(bad, source='clip.npz')
  with pytest.raises(ValueError, match="missing field 'started_at'"):
    data.sample_clip({k: v for k, v in clip.items() if k != 'started_at'})
  with pytest.raises(ValueError, match='need a numpy Generator'):
    data.sample_clip(clip, sample_cameras=True)
  short = _toy_clip(t=21)
  with pytest.raises(ValueError, match='more than'):
    data.sample_clip(short, max_cameras=50, sample_cameras=True,
                     rng=np.random.default_rng(0))


def test_sample_clip_of_a_clip_file(t4d_golden):
  tracks4d_format = pytest.importorskip('tapkit.data.tracks4d_format')
  manifest = json.loads((t4d_golden / 'manifest.json').read_text())['dataset'][0]
  path = t4d_golden / manifest['clip']
  out = data.sample_clip(tracks4d_format.load_tracks4d_npz(path), source=str(path),
                         rng=np.random.default_rng(0), **manifest['CustomDataset_kwargs'])
  ref = _load(t4d_golden / manifest['file'])
  assert out['num_actual_tracklets'] == int(ref['num_actual_tracklets'])
  np.testing.assert_array_equal(out['GT_Ks'], ref['GT_Ks'])
  np.testing.assert_allclose(out['GT_poses'], ref['GT_poses'], atol=1e-6)
