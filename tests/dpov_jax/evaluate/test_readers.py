"""Reader tests on tiny fake SPair / NAVI / NYU trees in tmp dirs."""

import json
import os
import pickle
import random

import numpy as np
import pytest
from PIL import Image

from dpov_jax.evaluate import readers
from tapkit.data import geometry


def _write_json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(obj, f)


def _pair(i, src, trg, cat='cat', vp=0, **kw):
  d = {'filename': f'{i:06d}-{src}-{trg}:{cat}', 'category': cat,
       'src_bndbox': [0, 0, 10, 10], 'trg_bndbox': [2, 4, 12, 24],
       'trg_imsize': [30, 20, 3], 'viewpoint_variation': vp,
       'src_kps': [[1, 2], [3, 4]], 'trg_kps': [[5, 6], [7, 8]]}
  d.update(kw)
  return d


@pytest.fixture()
def spair_root(tmp_path):
  root = str(tmp_path / 'SPair-71k')
  rng = np.random.default_rng(0)
  for cat in ('cat', 'dog'):
    for name in ('a1', 'a2', 'a3'):
      path = os.path.join(root, 'JPEGImages', cat, f'{name}_{cat}.jpg')
      os.makedirs(os.path.dirname(path), exist_ok=True)
      Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).save(path)
      _write_json(os.path.join(root, 'ImageAnnotation', cat,
                               f'{name}_{cat}.json'),
                  {'filename': f'{name}_{cat}.jpg',
                   'kps': {'0': [10.7, 5.2], '1': None, '2': [29.0, 19.9]}})
  n = 0
  for cat in ('cat', 'dog'):
    for vp in (0, 0, 1, 2, 2):
      n += 1
      _write_json(os.path.join(root, 'PairAnnotation', 'test',
                               f'{n:06d}.json'),
                  _pair(n, f'a1_{cat}', f'a{2 + n % 2}_{cat}', cat, vp))
  return root


def test_spair_select_filters_then_shuffles_with_seed_20(spair_root):
  ds = readers.SPairDataset(spair_root, 'test')
  assert len(ds.pairs) == 10
  sel = ds.select('cat', 2, num_instances=200)
  assert {p['viewpoint_variation'] for p in sel} == {2}
  assert len(sel) == 2
  expect = [p for p in ds.pairs if p['category'] == 'dog']
  random.seed(20)
  random.shuffle(expect)
  got = ds.select('dog', None, num_instances=3)
  assert [p['filename'] for p in got] == [p['filename'] for p in expect[:3]]


def test_spair_load_pair_keypoints_and_tau(spair_root):
  ds = readers.SPairDataset(spair_root, 'test')
  pair = ds.load_pair(ds.pairs[0], image_size=80)
  assert pair.src_image.shape == (80, 80, 3)
  assert pair.src_image.dtype == np.float32
  # Side 30: int(10.7) = 10 -> int(10 * 80 / 30) = 26; int(5.2) = 5 -> 13;
  # (29, 19.9) -> (29, 19) -> (77, 50).
  np.testing.assert_array_equal(pair.src_kps, [[26, 13], [0, 0], [77, 50]])
  np.testing.assert_array_equal(pair.src_valid, [True, False, True])
  # tau = max(10, 20) / max(30, 20).
  assert pair.threshold_scale == pytest.approx(20 / 30)
  assert pair.category == 'cat' and pair.bin == 0
  # The padded bottom rows are white: (1 - mean) / std.
  np.testing.assert_allclose(pair.src_image[-1, 0],
                             (1 - readers.IMAGENET_MEAN) / readers.IMAGENET_STD,
                             atol=0.05)
  groups = ds.probe3d_groups(image_size=32)
  assert set(groups) == {(c, b) for c in ('cat', 'dog')
                         for b in ('0', '1', '2', 'all')}
  assert len(groups[('cat', 'all')]) == 5
  val = ds.dpov_val_groups(image_size=32, counts={0: 3, 1: 5, 2: 1})
  assert {k: len(v) for k, v in val.items()} == {
      ('all', '0'): 3, ('all', '1'): 2, ('all', '2'): 1}
  assert val[('all', '0')][0].src_image.shape == (32, 32, 3)


def test_spair_protocol_end_to_end(spair_root):
  from dpov_jax.evaluate import matching
  ds = readers.SPairDataset(spair_root, 'test')
  groups = ds.probe3d_groups(image_size=32)
  b = np.random.default_rng(0).normal(scale=0.5, size=(2, 64))

  def position_fn(images):
    # Identical feature maps for every image: each pixel's code is its own
    # position, so a keypoint maps to its own coordinates.
    ys, xs = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing='ij')
    g = np.stack([xs, ys], -1) @ b
    f = np.concatenate([np.cos(g), np.sin(g)], -1)
    return np.broadcast_to(f, (images.shape[0],) + f.shape)

  out = matching.run_keypoint_protocol(groups, position_fn)
  # Every fake image carries the same keypoints, so the target keypoint is
  # the source position, which position-only features recover to within one
  # cell (error <= 1.5 px / (32 tau) < 0.1): 100 % in every (class, bin).
  rows = {r['bin']: r for r in out['rows']}
  assert [rows[k]['recall'] for k in ('0', '1', '2', 'all')] == [100.0] * 4
  assert rows['all']['num_pairs'] == 10 and rows['all']['num_kps'] == 20
  assert out['per_category']['dog']['1'] == 100.0
  val = matching.run_keypoint_protocol(
      ds.dpov_val_groups(image_size=32, counts={0: 4, 1: 2, 2: 4}),
      position_fn, protocol='3dpov_val')
  assert val['mean'] == 100.0


@pytest.mark.parametrize('content, field', [
    ('{not json', '<file>'),
    ({'kps': {'0': [1, 2]}}, 'filename'),
    ({'filename': 'x.jpg'}, 'kps'),
    ({'filename': 'x.jpg', 'kps': {'0': [1, 2], '2': [3, 4]}}, 'kps'),
    ({'filename': 'x.jpg', 'kps': {'0': [1, 'a']}}, 'kps.0'),
    ({'filename': 'x.jpg', 'kps': {'0': [1, 2, 3]}}, 'kps.0'),
    ({'filename': 'x.jpg', 'kps': {'0': [-1, 2]}}, 'kps.0'),
])
def test_spair_image_annotation_malformed(tmp_path, content, field):
  path = str(tmp_path / 'x.json')
  with open(path, 'w') as f:
    f.write(content if isinstance(content, str) else json.dumps(content))
  with pytest.raises(readers.DatasetFormatError) as e:
    readers.read_spair_image_annotation(path)
  assert e.value.field == field
  assert 'x.json' in str(e.value) and field in str(e.value)


@pytest.mark.parametrize('change, field', [
    ({'filename': 'no-colon'}, 'filename'),
    ({'filename': '1-a:cat'}, 'filename'),
    ({'filename': '1-a-b:dog'}, 'filename'),
    ({'category': 'unicorn'}, 'category'),
    ({'trg_bndbox': [0, 0, 10]}, 'trg_bndbox'),
    ({'src_bndbox': [10, 0, 5, 10]}, 'src_bndbox'),
    ({'trg_imsize': [0, 10, 3]}, 'trg_imsize'),
    ({'viewpoint_variation': 3}, 'viewpoint_variation'),
    ({'viewpoint_variation': True}, 'viewpoint_variation'),
    ({'trg_kps': [[1, 2]]}, 'trg_kps'),
    ({'src_kps': [[1, None], [3, 4]]}, 'src_kps.0'),
])
def test_spair_pair_annotation_malformed(tmp_path, change, field):
  path = str(tmp_path / 'p.json')
  _write_json(path, _pair(1, 'a', 'b', **change))
  with pytest.raises(readers.DatasetFormatError) as e:
    readers.read_spair_pair_annotation(path)
  assert e.value.field == field and 'p.json' in str(e.value)


def test_spair_pair_annotation_missing_field(tmp_path):
  d = _pair(1, 'a', 'b')
  del d['trg_bndbox']
  path = str(tmp_path / 'p.json')
  _write_json(path, d)
  with pytest.raises(readers.DatasetFormatError, match="'trg_bndbox': missing"):
    readers.read_spair_pair_annotation(path)


def test_spair_pair_annotation_good(tmp_path):
  path = str(tmp_path / 'p.json')
  _write_json(path, _pair(7, '2008_000585', '2008_000880', 'cat', 1))
  p = readers.read_spair_pair_annotation(path)
  assert (p['pair_id'], p['src_name'], p['trg_name']) == (
      '000007', '2008_000585', '2008_000880')
  assert p['viewpoint_variation'] == 1 and p['src_kps'].shape == (2, 2)


# ---------------------------------------------------------------------------
# NAVI.


def _quat_z(deg):
  t = np.radians(deg) / 2
  return [float(np.cos(t)), 0.0, 0.0, float(np.sin(t))]


def _navi_entry(img_id, deg, split=None):
  d = {'filename': f'{img_id}.jpg', 'image_size': [40, 60],
       'camera': {'focal_length': 50.0, 'q': _quat_z(deg),
                  't': [0.0, 0.0, 1000.0]}}
  if split:
    d['split'] = split
  return d


@pytest.fixture()
def navi_root(tmp_path):
  root = tmp_path / 'navi_v1'
  for obj, colls in (('obj', ('multiview_00', 'multiview_01', 'wild_set')),
                     ('lonely', ('multiview_00',))):
    for coll in colls:
      base = root / obj / coll
      (base / 'images').mkdir(parents=True)
      (base / 'depth').mkdir()
      entries = []
      for k, img_id in enumerate(('000', '001', '002', '003', '004')):
        Image.fromarray(np.full((20, 30, 3), 40 * k, np.uint8)).save(
            base / 'images' / f'downsampled_{img_id}.jpg')
        if obj == 'obj':  # 'lonely' keeps only the downsampled copies.
          (base / 'images' / f'{img_id}.jpg').touch()
        dep = np.zeros((20, 30), np.uint16)
        dep[5:15, 8:20] = 650 + k
        Image.fromarray(dep).save(base / 'depth' / f'downsampled_{img_id}.png')
        entries.append(_navi_entry(img_id, 20.0 * k, 'train'))
      # Skipped: ids with '_' and files without the prefix.
      Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(
          base / 'images' / 'downsampled_000_small.jpg')
      with open(base / 'annotations.json', 'w') as f:
        json.dump(entries, f)
  return str(root)


def test_navi_parse_splits_and_pairs(navi_root):
  data = readers.parse_navi(navi_root)
  assert data['obj']['wild_set']['views'] == ['000', '001', '002', '003',
                                             '004']
  test = readers.navi_instances(data, 'test')
  assert len(test) == 5 and all(c == 'wild_set' for _, c, _ in test)
  # int(0.9 * 2) = 1 training scene, 1 validation scene; 'lonely' skipped.
  assert {c for _, c, _ in readers.navi_instances(data, 'train')} == {
      'multiview_00'}
  assert {c for _, c, _ in readers.navi_instances(data, 'valid')} == {
      'multiview_01'}
  assert len(readers.navi_instances(data, 'trainval')) == 10
  assert data['lonely']['multiview_00']['views'] == data['obj']['wild_set'][
      'views']
  pairs = readers.navi_pairs(data, test, max_angle=50.0)
  # Every 4th instance: images 000 and 004.
  assert [p[2] for p in pairs] == ['000', '004']
  for _, _, i0, i1, ang in pairs:
    # Views are 20 deg apart about z: partners 20 or 40 deg away.
    assert i0 != i1 and ang == pytest.approx(20.0 * abs(int(i0) - int(i1)))
    assert 0 < ang <= 50.0


def test_navi_pose_and_depth(navi_root, tmp_path):
  rt = readers.navi_pose(_navi_entry('x', 90.0))
  np.testing.assert_allclose(rt[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
                             atol=1e-12)
  np.testing.assert_allclose(rt[:3, 3], [0, 0, 1.0])
  path = str(tmp_path / 'd.png')
  Image.fromarray(np.array([[0, 650, 65535]], np.uint16)).save(path)
  np.testing.assert_allclose(readers.read_navi_depth(path),
                             [[0.0, 655.35 / 650, 0.01]], rtol=1e-6)


def test_navi_load_view_and_pair(navi_root):
  data = readers.parse_navi(navi_root)
  anns = data['obj']['wild_set']['annotations']
  v = readers.load_navi_view(navi_root, 'obj', 'wild_set', '001', anns['001'],
                             size=16)
  assert v['image'].shape == (16, 16, 3) and v['depth'].shape == (16, 16)
  assert v['xyz_grid'].shape == (16, 16, 3) and v['snorm'].shape == (16, 16, 3)
  # Resize 20x30 -> 16x24 (nearest), centre crop 16x16 (cols 4:20): depth box
  # rows 4..11 (src floor(1.25 r) in 5..14), cols 7..15 - 4 = 3..11: index
  # spans 7 x 8 -> 8 x 8 square crop (Probe3D's max - min, no +1).
  # fx' = 50 * 16 / 40 = 20; fx'' = 20 * 16 / 8.
  np.testing.assert_allclose(v['intrinsics'], np.diag([40.0, 40.0, 1.0]))
  valid = v['depth'] > 0
  assert valid.any()
  np.testing.assert_allclose(v['xyz_grid'][..., 2][valid], v['depth'][valid],
                             rtol=1e-6)
  # A fronto-parallel plane: l x t etc. give +z (Probe3D's orientation).
  n = v['snorm'][valid]
  interior = np.linalg.norm(n, axis=-1) > 0
  np.testing.assert_allclose(n[interior], [[0, 0, 1]] * interior.sum(),
                             atol=1e-5)
  p = readers.load_navi_pair(navi_root, data,
                             ('obj', 'wild_set', '000', '002', 40.0), size=16)
  assert geometry.rotation_angle_deg(p['Rt_01'][:3, :3]) == pytest.approx(40.0)


def test_navi_bbox_crop_shift_inside():
  depth = np.zeros((10, 10))
  depth[0:2, 3:9] = 1.0  # box 1 x 5 (index span), touches the top.
  sy, sx = readers.navi_bbox_crop(depth)
  # Centred start row 0 - 4 // 2 < 0 -> shifted: max(tl - pad, 0).
  assert (sy.start, sy.stop, sx.start, sx.stop) == (0, 5, 3, 8)


@pytest.mark.parametrize('entry, field', [
    ({'image_size': [4, 4], 'camera': {}}, '[0].filename'),
    ({'filename': 'a.jpg', 'image_size': [4], 'camera': {}}, '[0].image_size'),
    ({'filename': 'a.jpg', 'image_size': [4, 4]}, '[0].camera'),
    ({'filename': 'a.jpg', 'image_size': [4, 4],
      'camera': {'focal_length': -1, 'q': [1, 0, 0, 0], 't': [0, 0, 0]}},
     '[0].camera.focal_length'),
    ({'filename': 'a.jpg', 'image_size': [4, 4],
      'camera': {'focal_length': 1, 'q': [1, 0, 0], 't': [0, 0, 0]}},
     '[0].camera.q'),
    ({'filename': 'a.jpg', 'image_size': [4, 4],
      'camera': {'focal_length': 1, 'q': [0, 0, 0, 0], 't': [0, 0, 0]}},
     '[0].camera.q'),
    ({'filename': 'a.jpg', 'image_size': [4, 4],
      'camera': {'focal_length': 1, 'q': [1, 0, 0, 0], 't': None}},
     '[0].camera.t'),
])
def test_navi_annotations_malformed(tmp_path, entry, field):
  path = str(tmp_path / 'annotations.json')
  _write_json(path, [entry])
  with pytest.raises(readers.DatasetFormatError) as e:
    readers.read_navi_annotations(path)
  assert e.value.field == field and 'annotations.json' in str(e.value)


# ---------------------------------------------------------------------------
# NYU.


def _nyu_dict(n=3, h=4, w=6):
  rng = np.random.default_rng(0)
  depths = rng.uniform(0.5, 12.0, (n, h, w)).astype(np.float32)
  return {'depths': depths,
          'images': rng.integers(0, 255, (n, 3, h, w), np.uint8),
          'snorms': rng.normal(size=(n, 3, h, w)).astype(np.float32),
          'scene_types': [np.array(['kitchen']), np.array(['office']),
                          np.array(['bath'])][:n],
          'train_indices': np.array([0, 2]), 'test_indices': np.array([1])}


def test_nyu_pickle_restricted_and_npz(tmp_path):
  d = _nyu_dict()
  pkl = str(tmp_path / 'nyu.pkl')
  with open(pkl, 'wb') as f:
    pickle.dump(d, f)
  data = readers.read_nyu_test(pkl)
  assert data['scene_types'].tolist() == ['kitchen', 'office', 'bath']
  items = readers.nyu_test_items(data)
  assert len(items) == 1 and items[0]['nyu_index'] == 1
  dep = d['depths'][1]
  np.testing.assert_array_equal(items[0]['depth'], np.where(dep > 10, 0, dep))
  npz = str(tmp_path / 'nyu.npz')
  np.savez(npz, **{**d, 'scene_types': data['scene_types']})
  data2 = readers.read_nyu_test(npz)
  np.testing.assert_array_equal(data2['images'], d['images'])


def test_nyu_pickle_with_code_is_refused(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ('echo pwned',))
  path = str(tmp_path / 'evil.pkl')
  with open(path, 'wb') as f:
    pickle.dump({'depths': Evil()}, f)
  with pytest.raises(readers.DatasetFormatError, match='refusing'):
    readers.read_nyu_test(path)


@pytest.mark.parametrize('change, field', [
    ({'depths': None}, 'depths'),
    ({'images': np.zeros((3, 3, 4, 6), np.float32)}, 'images'),
    ({'snorms': np.zeros((3, 3, 4, 5), np.float32)}, 'snorms'),
    ({'test_indices': np.array([5])}, 'test_indices'),
])
def test_nyu_malformed(tmp_path, change, field):
  d = _nyu_dict()
  d.update(change)
  if change.get('depths', 1) is None:
    del d['depths']
  path = str(tmp_path / 'nyu.pkl')
  with open(path, 'wb') as f:
    pickle.dump(d, f)
  with pytest.raises(readers.DatasetFormatError) as e:
    readers.read_nyu_test(path)
  assert e.value.field == field and 'nyu.pkl' in str(e.value)


def test_geonet_mat_and_file_list(tmp_path, monkeypatch):
  import scipy.io
  img = np.full((480, 640, 3), -200.0)
  depth = np.full((480, 640), 3.0)
  depth[0, 0] = 11.0
  path = str(tmp_path / 'x.mat')
  scipy.io.savemat(path, {'img': img, 'depth': depth,
                          'norm': np.zeros((480, 640, 3))})
  m = readers.read_geonet_mat(path)
  # -200 + 2 * 122.175 = 44.35 -> 44.
  assert m['image'][1, 1].tolist() == [44, 32, 7]
  assert m['depth'][0, 0] == 0.0 and m['depth'][1, 1] == 3.0
  scipy.io.savemat(path, {'img': img, 'depth': depth})
  with pytest.raises(readers.DatasetFormatError, match="'norm': missing"):
    readers.read_geonet_mat(path)
  # The list only depends on the sorted names; shuffled to check the sort.
  listing = [f'{i:06d}.mat' for i in range(21190)]
  np.random.default_rng(0).shuffle(listing)
  monkeypatch.setattr(os, 'listdir', lambda _: list(listing))
  d = tmp_path / 'geonet'
  names = readers.geonet_file_list(str(d))
  assert len(names) == 21188
  # Entry 21181 goes first, so entry 6919 is still the original one.
  assert '006919.mat' not in names and '021181.mat' not in names
  assert '006920.mat' in names and '021182.mat' in names
  assert len(readers.geonet_file_list(str(d), 'valid')) == 21188 // 20 + 1
