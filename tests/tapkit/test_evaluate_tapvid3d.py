"""The TAPVid-3D evaluation CLI on a tiny directory of clips written with save_clip."""

import json

import numpy as np
import pytest

from tapkit import evaluate_tapvid3d
from tapkit.data import clip as clip_lib
from tapkit.data import tapvid3d
from tapkit.metrics import tapvid3d as metrics_lib

T, N, H, W = 5, 8, 48, 64
ALL_SCALINGS = ('median', 'mean', 'none', 'per_trajectory', 'local_neighborhood',
                'reproduce_2d', 'median_on_queries')


def _clip(seed: int) -> clip_lib.Clip:
  rng = np.random.default_rng(seed)
  tracks = rng.uniform(-0.5, 0.5, (T, N, 3)).astype(np.float32)
  tracks[..., 2] = rng.uniform(1.0, 3.0, (T, N))
  visibility = rng.random((T, N)) > 0.25
  visibility[0] = True
  queries = np.stack([rng.uniform(0, W, N), rng.uniform(0, H, N),
                      rng.integers(0, T, N)], -1).astype(np.float32)
  return clip_lib.Clip(
      tracks_xyz=tracks, visibility=visibility, queries_xyt=queries,
      intrinsics=np.array([60.0, 62.0, 32.0, 24.0], np.float32),
      raw_frames=rng.integers(0, 255, (T, H, W, 3), dtype=np.uint8))


@pytest.fixture
def dirs(tmp_path):
  """Ground truth + perfect predictions: adt has 3 clips, pstudio 2."""
  gt, pred = tmp_path / 'gt', tmp_path / 'pred'
  clips = {}
  for source, count in (('adt', 3), ('pstudio', 2)):
    (gt / source).mkdir(parents=True)
    (pred / source).mkdir(parents=True)
    for i in range(count):
      clip = _clip(len(clips))
      rel = f'{source}/clip_{i}.npz'
      tapvid3d.save_clip(gt / rel, clip)
      tapvid3d.save_predictions(pred / rel, clip.tracks_xyz, clip.visibility)
      clips[rel] = clip
  return gt, pred, clips


def test_perfect_predictions_score_one(dirs, tmp_path, capsys):
  gt, pred, _ = dirs
  output = tmp_path / 'results.json'
  results = evaluate_tapvid3d.main([
      f'--tapvid3d_dir={gt}', f'--predictions_dir={pred}', '--glob=*/*.npz',
      f'--depth_scalings={",".join(ALL_SCALINGS)}', f'--output={output}', '--no_progress'])
  assert results['failed_files'] == []
  assert results['num_videos'] == {'adt': 3, 'pstudio': 2}
  saved = json.loads(output.read_text())
  assert set(saved) >= {'overall', 'per_source', 'failed_files'}
  for scaling in ALL_SCALINGS:
    for table in [saved['overall']] + list(saved['per_source'].values()):
      assert list(table[scaling]) == list(metrics_lib.METRIC_KEYS)
      for key, value in table[scaling].items():
        assert value == 1.0, (scaling, key, value)
  out = capsys.readouterr().out
  assert 'depth scaling: per_trajectory' in out and 'average_jaccard' in out


def test_broken_and_missing_predictions_score_zero(dirs, tmp_path):
  gt, pred, _ = dirs
  (pred / 'adt/clip_1.npz').write_bytes(b'this is not an npz file')
  (pred / 'pstudio/clip_0.npz').unlink()
  results = evaluate_tapvid3d.evaluate_directory(
      str(gt), str(pred), glob='*/*.npz', depth_scalings=('median', 'none'),
      progress=False)
  assert results['failed_files'] == ['adt/clip_1.npz', 'pstudio/clip_0.npz']
  assert 'prediction' in results['failure_reasons']['adt/clip_1.npz']
  assert 'clip_1.npz' in results['failure_reasons']['adt/clip_1.npz']['prediction']
  for scaling in ('median', 'none'):
    adt = results['per_source']['adt'][scaling]
    pstudio = results['per_source']['pstudio'][scaling]
    # Means over videos with the failed one counted as 0.
    assert adt['average_jaccard'] == pytest.approx(2 / 3, abs=1e-15)
    assert pstudio['occlusion_accuracy'] == 0.5
    assert results['overall'][scaling]['pts_within_4'] == pytest.approx(
        (2 / 3 + 1 / 2) / 2, abs=1e-15)


def test_matches_direct_metric_call_and_scales(dirs):
  """Noisy, scaled predictions: the CLI equals the metric with the official inputs."""
  gt, pred, clips = dirs
  rng = np.random.default_rng(7)
  expected = {s: [] for s in ('median', 'none', 'per_trajectory', 'local_neighborhood')}
  for rel, clip in clips.items():
    if not rel.startswith('adt/'):
      continue
    noisy = (clip.tracks_xyz * 2.0 + rng.normal(0, 0.01, clip.tracks_xyz.shape)).astype(
        np.float32)
    vis = clip.visibility ^ (rng.random(clip.visibility.shape) < 0.1)
    tapvid3d.save_predictions(pred / rel, noisy, vis)
    k = 256 / min(H, W)
    for scaling in expected:
      values = metrics_lib.compute_tapvid3d_metrics(
          gt_occluded=~clip.visibility, gt_tracks=clip.tracks_xyz, pred_occluded=~vis,
          pred_tracks=noisy, intrinsics_params=clip.intrinsics.astype(np.float64) * k,
          scaling=scaling, query_points=clip.queries_xyt[..., ::-1], order='t n')
      expected[scaling].append(float(np.asarray(values['average_jaccard']).reshape(-1)[0]))
  results = evaluate_tapvid3d.evaluate_directory(
      str(gt), str(pred), glob='*/*.npz', data_sources=['adt'],
      depth_scalings=tuple(expected), progress=False)
  for scaling, values in expected.items():
    assert results['per_source']['adt'][scaling]['average_jaccard'] == float(
        np.mean(values))
  adt = results['per_source']['adt']
  # Predictions are 2x too far: without scaling almost nothing is within threshold,
  # per-track and median rescaling recover most points (official script: 0 for
  # per_trajectory / local_neighborhood).
  assert adt['none']['pts_within_16'] < 0.1
  assert adt['per_trajectory']['pts_within_16'] > 0.5
  assert adt['local_neighborhood']['pts_within_16'] > 0.5
  assert adt['median']['pts_within_16'] > 0.5


def test_split_mode_with_official_names(tmp_path):
  """--split reads <dir>/<source>/<official file name>; --debug stops after one video."""
  gt, pred = tmp_path / 'gt', tmp_path / 'pred'
  for i, source in enumerate(('adt', 'pstudio')):
    name = tapvid3d.split_files('minival', source)[0]
    (gt / source).mkdir(parents=True)
    (pred / source).mkdir(parents=True)
    clip = _clip(10 + i)
    tapvid3d.save_clip(gt / source / name, clip)
    tapvid3d.save_predictions(pred / source / name, clip.tracks_xyz, clip.visibility)
  results = evaluate_tapvid3d.main([
      f'--tapvid3d_dir={gt}', f'--tapvid3d_predictions={pred}',
      '--data_sources_to_evaluate=adt,pstudio', '--debug', '--no_progress'])
  assert results['overall']['median']['average_jaccard'] == 1.0
  assert results['num_videos'] == {'adt': 1, 'pstudio': 1}
  # Without --debug the other 49 minival files per source are missing: listed, scored 0.
  results = evaluate_tapvid3d.evaluate_directory(
      str(gt), str(pred), split='minival', data_sources=['pstudio'], progress=False)
  assert len(results['failed_files']) == 49
  assert 'ground_truth' in results['failure_reasons']['pstudio/softball_25.npz']
  assert results['overall']['median']['jaccard_8'] == pytest.approx(1 / 50, abs=1e-15)


def test_bad_arguments(dirs):
  gt, pred, _ = dirs
  with pytest.raises(ValueError, match='unknown depth scaling'):
    evaluate_tapvid3d.evaluate_directory(str(gt), str(pred), glob='*/*.npz',
                                         depth_scalings=('bogus',), progress=False)
  with pytest.raises(ValueError, match='no clips match'):
    evaluate_tapvid3d.evaluate_directory(str(gt), str(pred), glob='*/*.xyz', progress=False)


def test_missing_or_empty_input_dirs_exit_2(tmp_path, dirs, capsys):
  gt, pred, _ = dirs
  (tmp_path / 'empty').mkdir()
  for args in ([f'--tapvid3d_dir={tmp_path / "nowhere"}', f'--predictions_dir={pred}'],
               [f'--tapvid3d_dir={gt}', f'--predictions_dir={tmp_path / "empty"}']):
    with pytest.raises(SystemExit) as e:
      evaluate_tapvid3d.main(args + ['--glob=*/*.npz', '--no_progress'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --') and str(tmp_path) in err[0]


def test_bad_files_are_listed_and_only_all_bad_exits_nonzero(tmp_path, dirs, capsys):
  gt, pred, _ = dirs
  (pred / 'adt' / 'clip_1.npz').write_bytes(b'not a zip')
  results = evaluate_tapvid3d.main([f'--tapvid3d_dir={gt}', f'--predictions_dir={pred}',
                                    '--glob=*/*.npz', '--no_progress'])
  assert results['failed_files'] == ['adt/clip_1.npz']
  assert 'clip_1.npz' in results['failure_reasons']['adt/clip_1.npz']['prediction']
  assert evaluate_tapvid3d.num_scored(results) == 4
  assert 'adt/clip_1.npz [prediction]' in capsys.readouterr().out
  for path in pred.rglob('*.npz'):
    path.write_bytes(b'')
  with pytest.raises(SystemExit) as e:
    evaluate_tapvid3d.main([f'--tapvid3d_dir={gt}', f'--predictions_dir={pred}',
                            '--glob=*/*.npz', '--no_progress'])
  assert e.value.code == 1
  assert 'failed files (5, scored 0)' in capsys.readouterr().out
