"""python -m tapkit.predict_tapvid3d on tiny synthetic clips, scored with tapkit.evaluate_tapvid3d."""

import numpy as np
import pytest

from tapkit import cli
from tapkit import evaluate_tapvid3d
from tapkit import predict_tapvid3d
from tapkit.data import synthetic
from tapkit.data import tapvid3d

T, H, W, N = 8, 48, 64, 24
SCALINGS = ('median', 'none', 'per_trajectory')


@pytest.fixture(scope='module')
def clips_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('tapvid3d')
  (root / 'synthetic').mkdir()
  for i in range(4):
    clip = synthetic.generate_clip((11, i), num_frames=T, height=H, width=W, num_tracks=N)
    tapvid3d.save_clip(root / 'synthetic' / f'clip_{i}.npz', clip, frames_format='png_blob')
  return root


def _predict_and_score(clips_dir, out, *args):
  assert predict_tapvid3d.main(['--tapvid3d_dir', str(clips_dir), '--glob', '*/*.npz',
                                '--out', str(out), *args]) == 0
  results = evaluate_tapvid3d.evaluate_directory(str(clips_dir), str(out), glob='*/*.npz',
                                                 depth_scalings=SCALINGS, progress=False)
  assert results['failed_files'] == []
  assert results['num_videos'] == {'synthetic': 4}
  return results['overall']


def test_exact_tracks_with_point_depth_score_one(clips_dir, tmp_path):
  overall = _predict_and_score(clips_dir, tmp_path, '--tracker', 'exact', '--depth', 'gt_points')
  for scaling in SCALINGS:
    for key, value in overall[scaling].items():
      assert value == pytest.approx(1.0, abs=1e-12), (scaling, key, value)
  clip = tapvid3d.load_clip(clips_dir / 'synthetic/clip_0.npz')
  pred = tapvid3d.load_predictions(tmp_path / 'synthetic/clip_0.npz')
  assert pred.tracks_xyz.shape == (T, N, 3) and pred.tracks_xyz.dtype == np.float32
  np.testing.assert_array_equal(pred.visibility, clip.visibility)
  visible = clip.visibility
  np.testing.assert_allclose(pred.tracks_xyz[visible], clip.tracks_xyz[visible], rtol=1e-5,
                             atol=1e-5)


def test_exact_tracks_with_depth_maps_lose_only_at_depth_edges(clips_dir, tmp_path):
  overall = _predict_and_score(clips_dir, tmp_path, '--tracker', 'exact', '--depth', 'gt')
  for scaling in SCALINGS:
    assert overall[scaling]['occlusion_accuracy'] == 1.0
  # Bilinear sampling mixes the depths on both sides of an object's outline, so points within
  # a pixel of an edge get a wrong depth: the average Jaccard stays below 1.
  unscaled = overall['none']['average_jaccard']
  assert 0.5 < unscaled < 1.0
  # Away from edges (the four pixels read by bilinear sampling within 1 % of each other in
  # depth) the sampled map is the point's own depth within 1 %; the points off by more lie at
  # edges.
  clip = tapvid3d.load_clip(clips_dir / 'synthetic/clip_0.npz')
  xy = predict_tapvid3d.ground_truth_2d(clip)
  sampled = predict_tapvid3d.depth_at_tracks(clip.depth, xy)
  error = np.abs(sampled / clip.tracks_xyz[..., 2] - 1)
  x0 = np.clip(np.floor(xy[..., 0]).astype(int), 0, W - 2)
  y0 = np.clip(np.floor(xy[..., 1]).astype(int), 0, H - 2)
  frame = np.arange(T)[:, None]
  corners = np.stack([clip.depth[frame, y0 + dy, x0 + dx] for dy in (0, 1) for dx in (0, 1)])
  smooth = corners.max(0) / corners.min(0) < 1.01
  visible = clip.visibility
  assert np.all(error[visible & smooth] < 0.01)
  assert np.any(error[visible & ~smooth] > 0.01)


def test_lk_tracks_score_between_zero_and_one(clips_dir, tmp_path):
  overall = _predict_and_score(clips_dir, tmp_path, '--tracker', 'lk', '--depth', 'gt')
  for scaling in SCALINGS:
    jaccard = overall[scaling]['average_jaccard']
    assert np.isfinite(jaccard) and 0.0 < jaccard < 1.0, (scaling, jaccard)
    assert 0.5 < overall[scaling]['occlusion_accuracy'] <= 1.0


def test_vda_with_random_weights_writes_finite_predictions(clips_dir, tmp_path, capsys):
  assert predict_tapvid3d.main([
      '--tapvid3d_dir', str(clips_dir), '--glob', 'synthetic/clip_0.npz', '--tracker', 'lk',
      '--depth', 'vda', '--random_weights_for_testing', '--depth_input_size', '28',
      '--out', str(tmp_path)]) == 0
  assert 'random_weights_for_testing' in capsys.readouterr().err
  pred = tapvid3d.load_predictions(tmp_path / 'synthetic/clip_0.npz')
  assert pred.tracks_xyz.shape == (T, N, 3)
  assert np.all(np.isfinite(pred.tracks_xyz))
  assert np.all(pred.tracks_xyz[..., 2] > 0)


def test_inverse_depth_lift_marks_invalid_points():
  z, valid = predict_tapvid3d.inverse_to_depth(np.array([[0.5, 0.25, 0.0, -1.0]]))
  np.testing.assert_allclose(z, [[2.0, 4.0, 4.0, 4.0]])
  np.testing.assert_array_equal(valid, [[True, True, False, False]])


def test_queries_become_tracker_rows():
  clip = synthetic.generate_clip(3, num_frames=4, height=16, width=16, num_tracks=3)
  clip = clip.replace(queries_xyt=np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 2.5], [5.0, 6.0, 1.5]],
                                           np.float32))
  np.testing.assert_array_equal(predict_tapvid3d.query_rows(clip),
                                [[0, 1, 2], [2, 3, 4], [2, 5, 6]])


def test_bad_clip_is_listed_and_skipped(clips_dir, tmp_path, capsys):
  root = tmp_path / 'data'
  (root / 'synthetic').mkdir(parents=True)
  (root / 'synthetic/bad.npz').write_bytes(b'not an npz')
  (root / 'synthetic/good.npz').write_bytes((clips_dir / 'synthetic/clip_1.npz').read_bytes())
  out = tmp_path / 'out'
  assert predict_tapvid3d.main(['--tapvid3d_dir', str(root), '--glob', '*/*.npz', '--tracker',
                                'exact', '--depth', 'gt', '--out', str(out)]) == 0
  assert (out / 'synthetic/good.npz').is_file() and not (out / 'synthetic/bad.npz').exists()
  err = capsys.readouterr().err
  assert 'processed 1 of 2 clip(s); 1 failed' in err and 'synthetic/bad.npz' in err
  (root / 'synthetic/good.npz').unlink()
  with pytest.raises(cli.UserError, match='no clip could be predicted'):
    predict_tapvid3d.main(['--tapvid3d_dir', str(root), '--glob', '*/*.npz', '--tracker',
                           'exact', '--depth', 'gt', '--out', str(out)])


def test_split_lists_official_files(tmp_path):
  files = predict_tapvid3d.clip_files(str(tmp_path), 'minival', ['adt'])
  assert files == [f'adt/{name}' for name in tapvid3d.split_files('minival', 'adt')]
  with pytest.raises(ValueError, match='no clip matches'):
    predict_tapvid3d.clip_files(str(tmp_path), glob='*/*.npz')


@pytest.mark.parametrize('args, message', [
    (('--tracker', 'cotracker3', '--depth', 'gt'), 'needs --tracker_checkpoint'),
    (('--tracker', 'lk', '--depth', 'vda'), 'exactly one of --depth_checkpoint'),
    (('--tracker', 'lk', '--depth', 'gt', '--random_weights_for_testing'),
     'only go with --depth vda'),
    (('--tracker', 'lk', '--depth', 'gt', '--glob', '*.npz', '--split', 'minival'),
     'not both'),
])
def test_argument_errors(tmp_path, args, message):
  with pytest.raises(cli.UserError, match=message):
    predict_tapvid3d.main(['--tapvid3d_dir', str(tmp_path), '--out', str(tmp_path), *args])
