"""End-to-end protocol runs on synthetic pairs and the real stereo pair."""

import numpy as np
import pytest

from dpov_jax.evaluate import matching
from dpov_jax.evaluate import metrics
from dpov_jax.evaluate import synthetic_pairs
from tapkit.data import geometry


def _lookup_features_fn(table):
  """features_fn returning precomputed maps for known images."""
  def fn(images):
    out = []
    for im in images:
      for key, feat in table:
        if key.shape == im.shape and np.array_equal(key, im):
          out.append(feat)
          break
      else:
        raise KeyError('unknown image')
    return np.stack(out)
  return fn


def _rff(xyz, b):
  g = xyz @ b
  return np.concatenate([np.cos(g), np.sin(g)], -1).astype(np.float32)


def _oracle_table(raw_pairs, scale=2.0, dim=256, seed=0):
  """Perfect features: random-Fourier code of each pixel's 3D point in
  camera-A coordinates (view B mapped back with the inverse relative pose),
  at pixel resolution, so equal surface points get equal features."""
  b = np.random.default_rng(seed).normal(scale=scale, size=(3, dim))
  table = []
  for d, pair in raw_pairs:
    inv = np.linalg.inv(d['relative_pose'])
    xyz_a = synthetic_pairs.xyz_grid(d['depth_a'], d['intrinsics'])
    xyz_b = synthetic_pairs.xyz_grid(d['depth_b'], d['intrinsics'])
    xyz_b = xyz_b @ inv[:3, :3].T + inv[:3, 3]
    table += [(pair.src_image, _rff(xyz_a, b)), (pair.trg_image,
                                                 _rff(xyz_b, b))]
  return table


@pytest.fixture(scope='module')
def synthetic():
  return synthetic_pairs.synthetic_keypoint_pairs(seeds=(0,), size=48,
                                                  num_kps=15)


def test_synthetic_pairs_cover_navi_bins(synthetic):
  bins = [p.bin for _, p in synthetic]
  assert bins == ['0-15', '15-30', '30-60', '60-120']
  for d, p in synthetic:
    assert p.src_kps.shape == (15, 2) and p.threshold_scale == 1.0
    assert geometry.rotation_angle_deg(d['relative_rotation']) == (
        pytest.approx(float(d['rotation_deg'])))
    assert (p.trg_kps >= 0).all() and (p.trg_kps <= 47).all()


def test_perfect_features_give_full_recall(synthetic):
  fn = _lookup_features_fn(_oracle_table(synthetic))
  groups = synthetic_pairs.keypoint_groups(synthetic)
  for protocol in ('probe3d', '3dpov_val'):
    out = matching.run_keypoint_protocol(groups, fn, protocol=protocol)
    rows = {r['bin']: r for r in out['rows']}
    assert set(rows) == {'0-15', '15-30', '30-60', '60-120', 'all'}
    for r in rows.values():
      assert r['recall'] == 100.0
    assert rows['all']['num_kps'] == 60
  assert out['mean'] == 100.0


def test_random_features_give_low_recall(synthetic):
  rng = np.random.default_rng(3)
  table = [(im, rng.normal(size=(12, 12, 32)).astype(np.float32))
           for _, p in synthetic for im in (p.src_image, p.trg_image)]
  out = matching.run_keypoint_protocol(
      synthetic_pairs.keypoint_groups(synthetic), _lookup_features_fn(table))
  rec = {r['bin']: r['recall'] for r in out['rows']}
  # Chance of landing within 0.1 of the image side is about pi 0.1^2 ~ 3 %.
  assert rec['all'] < 20.0


def test_stereo_motorcycle_correspondences_are_consistent():
  raw, pair = synthetic_pairs.stereo_motorcycle_pair(size=224, num_kps=40)
  left, right, disp = raw['left'], raw['right'], raw['disparity']
  # Ground truth: the left pixel's colour reappears at x - disparity in the
  # right image (rectified, y unchanged); check the photometric error.
  ys, xs = np.nonzero(np.isfinite(disp))
  sel = np.random.default_rng(0).choice(ys.size, 2000, replace=False)
  y, x = ys[sel], xs[sel]
  xb = np.round(x - disp[y, x]).astype(int)
  ok = (xb >= 0) & (xb < left.shape[1])
  err_true = np.abs(left[y[ok], x[ok]].astype(float) -
                    right[y[ok], xb[ok]].astype(float)).mean()
  err_shift = np.abs(left[y[ok], x[ok]].astype(float) - right[
      y[ok], np.clip(xb[ok] + 25, 0, left.shape[1] - 1)].astype(float)).mean()
  assert err_true < 0.5 * err_shift
  np.testing.assert_allclose(pair.src_kps[:, 1], pair.trg_kps[:, 1])
  assert (pair.src_kps[:, 0] >= pair.trg_kps[:, 0]).all()
  # Colour-patch features at pixel resolution find most matches (PCK@0.1
  # of the image side).
  def patch_fn(images):
    feats = []
    for im in images:
      p = np.pad(im, ((3, 3), (3, 3), (0, 0)), mode='edge')
      cols = [p[dy:dy + im.shape[0], dx:dx + im.shape[1]]
              for dy in range(0, 7, 2) for dx in range(0, 7, 2)]
      f = np.concatenate(cols, -1)
      feats.append(f - f.mean(-1, keepdims=True))
    return np.stack(feats)
  errs = matching.keypoint_pair_errors(pair, patch_fn)
  assert errs.shape == (40,)
  assert metrics.recall_percent(errs) > 60.0


def test_correspondence_protocol_on_synthetic_pairs():
  pairs = synthetic_pairs.synthetic_correspondence_pairs(
      seeds=(0,), rotations_deg=(10.0, 45.0), size=64, covisible_only=True)
  # Perfect features: a sharp random-Fourier encoding of each pixel's
  # position in camera-0 coordinates (view 1 mapped back with Rt_01^-1).
  rng = np.random.default_rng(0)
  b = rng.normal(scale=2.0, size=(3, 256))

  table = []
  for p in pairs:
    inv = np.linalg.inv(p['Rt_01'])
    for img, xyz in ((p['image_0'], p['xyz_grid_0']),
                     (p['image_1'],
                      p['xyz_grid_1'] @ inv[:3, :3].T + inv[:3, 3])):
      g = matching.downsample_nearest(xyz, 0.25) @ b
      table.append((img, np.concatenate([np.cos(g), np.sin(g)], -1)))
  good = matching.run_correspondence_protocol(
      pairs, _lookup_features_fn(table), num_corr=100)
  bad_table = [(im, rng.normal(size=(16, 16, 64))) for im, _ in table]
  bad = matching.run_correspondence_protocol(
      pairs, _lookup_features_fn(bad_table), num_corr=100)
  assert [r['num_pairs'] for r in good['rows']] == [1, 0, 1, 0]
  np.testing.assert_allclose(good['rel_angle_deg'], [10.0, 45.0])
  # 64 px images, so 5 px is about 8 % of the side.
  assert good['summary']['recall_5px'] == 100.0
  assert bad['summary']['recall_5px'] < 50.0
