"""TracksTo4D from a raw video: official query grids, then `python -m tracks4d.infer --video`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import tracks4d as t4d_config
from tapkit import tracking
from tapkit.data import synthetic, tracks4d_format
from tapkit.io import video as video_io
from tapkit.train import launch, loop
from tracks4d import from_video, task

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_query_frames_follow_the_preprocessing():
  assert from_video.query_frames(50) == [0, 20, 40, 49]
  assert from_video.query_frames(41) == [0, 20, 40]
  assert from_video.query_frames(40) == [0, 20, 39]
  assert from_video.query_frames(1) == [0]


def test_track_frames_concatenates_grids_with_exact_tracker():
  clip = synthetic.generate_clip((3, 0), 25, 32, 40, query_mode='grid', grid_size=2)
  # The 'exact' tracker returns the given tracks for every grid: P = 4 grids x 4 points.
  tracks = np.random.default_rng(0).uniform(0, 30, (25, 4, 2)).astype(np.float32)
  vis = np.ones((25, 4), bool)
  vis[3, 1] = False
  tracker = tracking.make_tracker('exact', tracks=tracks, visible=vis)
  arrays = from_video.track_frames(tracker, clip.frames, grid_size=2, every=10)
  assert arrays['pred_tracks'].shape == (1, 25, 16, 2)
  assert arrays['started_at'][0, 0].tolist() == [0] * 4 + [10] * 4 + [20] * 4 + [24] * 4
  np.testing.assert_array_equal(arrays['pred_tracks'][0, :, 4:8], tracks)
  assert not arrays['pred_visibility'][0, 3, 5]
  tracks4d_format.validate_tracks4d(arrays, 'arrays')


def test_retrack_queries_each_track_where_it_starts():
  clip = synthetic.generate_clip((3, 1), 12, 32, 40, num_tracks=20)
  arrays = tracks4d_format.clip_to_tracks4d(clip)
  queries = from_video.track_queries(arrays)
  np.testing.assert_array_equal(queries[:, 0], clip.query_frames)
  np.testing.assert_allclose(queries[:, 1:], clip.queries_xyt[:, :2], atol=1e-3)
  # The exact tracker gives back the file's tracks; everything else is kept.
  lk_like = np.random.default_rng(1).uniform(0, 30, (12, 20, 2)).astype(np.float32)
  exact = tracking.make_tracker('exact', tracks=lk_like, visible=np.ones((12, 20), bool))
  out = from_video.retrack(exact, clip.frames, arrays)
  np.testing.assert_array_equal(out['pred_tracks'][0], lk_like)
  assert out['pred_visibility'].all()
  for key in ('started_at', 'Ks_all', 'Ms_all', 'GT_depth_tracks_all'):
    np.testing.assert_array_equal(out[key], arrays[key])
  # LK starts every track at its query position.
  lk = from_video.retrack(tracking.make_tracker('lk'), clip.frames, arrays)
  at_query = lk['pred_tracks'][0, clip.query_frames, np.arange(20)]
  np.testing.assert_allclose(at_query, queries[:, 1:], atol=1e-4)
  with pytest.raises(ValueError, match='frames has 11 frames'):
    from_video.retrack(exact, clip.frames[:11], arrays)


@pytest.fixture(scope='module')
def tiny_workdir(tmp_path_factory):
  """A TracksTo4D engine workdir of a tiny network trained for 2 steps."""
  workdir = str(tmp_path_factory.mktemp('t4d_video_run'))
  config = t4d_config.get_config('smoke')
  config.model.update({'width': 16, 'num_heads': 2, 'head_dim': 8, 'mlp_dim': 32,
                       'num_bases': 4, 'camera_kernel_size': 3})
  config.data.update({'max_points': 24, 'min_points': 4, 'first_phase_frames': 16})
  config.data.synthetic.update({'num_train': 2, 'num_eval': 1, 'num_frames': 16,
                                'height': 32, 'width': 40, 'num_tracks': 60})
  config.evals = type(config.evals)()
  config.optimizer.warmup_steps = 1
  config.total_steps = 2
  config.checkpoint.update({'every_steps': 2, 'async_save': False})
  launch.save_config(config, workdir)
  loop.train(config, workdir, task.build_method(config, workdir))
  return workdir


def test_infer_video_end_to_end_with_lk(tiny_workdir, tmp_path):
  clip = synthetic.generate_clip((11, 0), 24, 48, 64, 16)
  videos = tmp_path / 'videos'
  video_io.write_video(os.fspath(videos / 'scene.mp4'), clip.frames, fps=10)
  (videos / 'broken.mp4').write_bytes(b'not a video')
  out = tmp_path / 'out'
  proc = subprocess.run(
      [sys.executable, '-m', 'tracks4d.infer', '--checkpoint', tiny_workdir, '--video',
       os.fspath(videos), '--tracker', 'lk', '--grid_size', '6', '--out', os.fspath(out),
       '--finetune_steps', '2', '--max_points', '50'],
      cwd=ROOT, env={**os.environ, 'PYTHONPATH': ROOT}, capture_output=True, text=True,
      timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'skipped' in proc.stdout and 'broken.mp4' in proc.stdout
  # The tracked input: 6 x 6 grids at frames 0, 20 and 23, backward tracking.
  arrays = tracks4d_format.load_tracks4d_npz(out / 'tracks' / 'scene.npz')
  assert arrays['pred_tracks'].shape == (1, 24, 108, 2)
  assert sorted(set(arrays['started_at'].reshape(-1).tolist())) == [0.0, 20.0, 23.0]
  np.testing.assert_allclose(arrays['pred_tracks'][0, 0, :36],
                             tracking.grid_queries(48, 64, 6)[:, 1:], atol=1e-4)
  assert 'Ks_all' not in arrays
  with open(out / 'metrics.json') as f:
    metrics = json.load(f)
  row = metrics['videos'][0]
  assert row['video'] == 'scene' and row['num_frames'] == 24 and 0 < row['num_points'] <= 50
  assert row['finetune_loss_first'] > 0 and np.isfinite(row['pixel_error'])
  with np.load(out / 'scene.npz') as z:
    assert z['points_world'].shape == (24, row['num_points'], 3)
    # Generic intrinsics from the track extent: principal point = half the max x, y.
    k = z['intrinsics'][0]
    assert k[0, 0] == pytest.approx(k[0, 2] + k[1, 2], rel=1e-5)
    assert 20 < k[0, 2] <= 32 and 15 < k[1, 2] <= 24
  assert (out / 'scene.html').stat().st_size > 1000
