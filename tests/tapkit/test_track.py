"""`python -m tapkit.track` end to end on tiny videos with known motion."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tapkit import track
from tapkit.data import tracks4d_format
from tapkit.io import npz as npz_io
from tapkit.io import video as video_io

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def videos(tmp_path_factory, texture):
  """A folder with an mp4 and a frame folder of the moving texture, and a broken video."""
  root = tmp_path_factory.mktemp('videos')
  frames = texture
  video_io.write_video(os.fspath(root / 'texture.mp4'), frames, fps=10)
  video_io.write_video(os.fspath(root / 'frames'), frames, fps=10)
  (root / 'broken.mp4').write_bytes(b'not a video')
  return root


def test_tapvid3d_format_and_viz(videos, tmp_path, capsys):
  out = tmp_path / 'out'
  status = track.main(['--video', os.fspath(videos), '--tracker', 'lk', '--grid_size', '4',
                       '--out', os.fspath(out), '--viz'])
  assert status == 0
  assert sorted(os.listdir(out)) == ['frames.npz', 'frames_tracks.mp4', 'texture.npz',
                                     'texture_tracks.mp4']
  err = capsys.readouterr().err
  assert 'processed 2 of 3 video(s); 1 failed' in err and 'broken.mp4' in err
  data = npz_io.read_npz(os.fspath(out / 'texture.npz'))
  assert data['tracks'].shape == (10, 16, 2)
  np.testing.assert_array_equal(data['frame_size'], [64, 80])
  assert float(data['fps']) == 10.0
  # The texture moves by (2, 1) px per frame; interior points follow it through the mp4.
  motion = data['tracks'][-1] - data['tracks'][0]
  both = data['visibility'][0] & data['visibility'][-1]
  np.testing.assert_allclose(motion[both], [[18.0, 9.0]] * int(both.sum()), atol=0.5)
  np.testing.assert_array_equal(data['queries_xyt'][:, 2], 0)
  assert video_io.read_video(out / 'texture_tracks.mp4').frames.shape == (10, 64, 80, 3)
  # trajan3d.score reads the same fields.
  from trajan3d import score  # pylint: disable=g-import-not-at-top

  clip = score.load_track_file(out / 'frames.npz')
  assert clip.tracks_uv.shape == (10, 16, 2) and clip.image_size == (64, 80)


def test_tracks4d_format_queries_and_reading_options(videos, tmp_path):
  queries = tmp_path / 'queries.txt'
  queries.write_text('# t, x, y\n0, 20, 20\n2, 30.5, 25\n')
  out = tmp_path / 'out'
  status = track.main(['--video', os.fspath(videos / 'texture.mp4'), '--queries',
                       os.fspath(queries), '--backward', '--format', 'tracks4d', '--out',
                       os.fspath(out), '--stride', '2', '--max_frames', '4'])
  assert status == 0
  data = tracks4d_format.load_tracks4d_npz(out / 'texture.npz')
  assert data['pred_tracks'].shape == (1, 4, 2, 2)
  np.testing.assert_array_equal(data['started_at'].ravel(), [0, 2])
  # Every 2nd frame: (4, 2) px per kept frame; the second query is tracked backwards too.
  np.testing.assert_allclose(data['pred_tracks'][0, :, 1],
                             [[22.5, 21], [26.5, 23], [30.5, 25], [34.5, 27]], atol=0.5)
  from tracks4d import task  # pylint: disable=g-import-not-at-top

  assert task.load_clip_arrays(out / 'texture.npz')['pred_tracks'].shape == (1, 4, 2, 2)


def test_errors_exit_2_with_one_line(videos, tmp_path):
  def run(*args):
    proc = subprocess.run([sys.executable, '-m', 'tapkit.track', *args], cwd=ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': ROOT})
    return proc.returncode, proc.stderr.strip().splitlines()

  code, lines = run('--video', os.fspath(videos / 'broken.mp4'), '--out', os.fspath(tmp_path))
  assert code == 2 and lines[-1].startswith('error: no video could be processed')
  code, lines = run('--video', os.fspath(videos), '--out', os.fspath(tmp_path), '--resize', '7')
  assert code == 2 and len(lines) == 1
  assert lines[0].startswith('error: --resize must be H,W (positive integers), got (7,)')
  code, lines = run('--video', os.fspath(videos), '--out', os.fspath(tmp_path), '--online')
  assert code == 2 and lines[0].startswith('error: --online needs --tracker cotracker3')
  code, lines = run('--video', os.fspath(videos), '--out', os.fspath(tmp_path),
                    '--query_chunk', '8')
  assert code == 2 and lines[0].startswith('error: --query_chunk is for --tracker cotracker3')
  assert track.main(['--video', os.fspath(tmp_path / 'absent'), '--out',
                     os.fspath(tmp_path)]) == 2


def test_synthetic_videos_end_to_end(tmp_path):
  """`python -m tapkit.data.synthetic --video`, then `python -m tapkit.track` on its videos."""
  from tapkit.data import synthetic  # pylint: disable=g-import-not-at-top
  from tapkit.data import tapvid3d  # pylint: disable=g-import-not-at-top
  from tapkit.tracking import evaluate  # pylint: disable=g-import-not-at-top

  data_dir, out = tmp_path / 'synthetic', tmp_path / 'tracks'
  synthetic.main(['--out', os.fspath(data_dir), '--num_clips', '2', '--num_frames', '8',
                  '--height', '48', '--width', '64', '--num_tracks', '32', '--video'])
  status = track.main(['--tracker', 'lk', '--video', os.fspath(data_dir / 'video'), '--grid_size',
                       '4', '--format', 'tracks4d', '--out', os.fspath(out)])
  assert status == 0
  assert sorted(os.listdir(out)) == ['clip_0000.npz', 'clip_0001.npz']
  for name in ('clip_0000', 'clip_0001'):
    data = tracks4d_format.load_tracks4d_npz(out / f'{name}.npz')
    assert data['pred_tracks'].shape == (1, 8, 16, 2)
    np.testing.assert_array_equal(data['started_at'], 0)
    np.testing.assert_allclose(data['pred_tracks'][0, 0],
                               track.tracking.grid_queries(48, 64, 4)[:, 1:], atol=1e-5)
  # Points of the clip's exact tracks, tracked on the video, follow those tracks.
  clip = tapvid3d.load_clip(os.fspath(data_dir / 'synthetic' / 'clip_0000.npz'))
  gt_tracks, gt_visible = evaluate.clip_ground_truth(clip)
  start = np.flatnonzero(gt_visible[0])
  queries = tmp_path / 'queries.npy'
  np.save(queries, np.concatenate([np.zeros((len(start), 1)), gt_tracks[0, start]], 1))
  status = track.main(['--tracker', 'lk', '--video',
                       os.fspath(data_dir / 'video' / 'clip_0000.mp4'), '--queries',
                       os.fspath(queries), '--out', os.fspath(out / 'queried')])
  assert status == 0
  data = npz_io.read_npz(os.fspath(out / 'queried' / 'clip_0000.npz'))
  np.testing.assert_array_equal(data['frame_size'], [48, 64])
  both = gt_visible[:, start] & data['visibility']
  error = np.linalg.norm(data['tracks'] - gt_tracks[:, start], axis=-1)[both]
  assert both.sum() > 150 and np.median(error) < 1.5  # 0.74 px measured


def test_processes_split_the_videos(videos, tmp_path):
  names = ['a/x.mp4', 'b/x.mp4', 'c/y.mp4', 'd/z', 'e/x.gif']
  assert [track.process_videos(names, i, 2) for i in (0, 1)] == [
      [('a/x.mp4', 'x'), ('c/y.mp4', 'y'), ('e/x.gif', 'x_gif')],
      [('b/x.mp4', 'x_mp4'), ('d/z', 'z')]]
  with pytest.raises(ValueError, match='process index'):
    track.process_videos(names, 2, 2)
  # Two "processes" over the folder (texture.mp4, broken.mp4, frames/) write disjoint files
  # that together are the one-process output.
  outs = []
  for index in range(3):
    out = tmp_path / f'p{index}'
    status = track.main(['--video', os.fspath(videos), '--grid_size', '2', '--out',
                         os.fspath(out), '--process_index', str(index), '--process_count', '3'])
    outs.append(sorted(os.listdir(out)))
    assert status == (2 if outs[-1] == [] else 0)  # the process holding broken.mp4 only
  assert sorted(sum(outs, [])) == ['frames.npz', 'texture.npz']
  status = track.main(['--video', os.fspath(videos), '--grid_size', '2', '--out',
                       os.fspath(tmp_path / 'p'), '--process_index', '3', '--process_count', '4'])
  assert status == 0 and os.listdir(tmp_path / 'p') == []


def test_query_chunk_reaches_the_offline_cotracker(videos, tmp_path, monkeypatch):
  """--query_chunk is passed to the offline CoTracker3 tracker (0 = one call per video)."""
  made = []
  make_tracker = track.tracking.make_tracker

  def fake_make_tracker(name, checkpoint=None, **options):
    made.append((name, checkpoint, options))
    return make_tracker('lk')

  monkeypatch.setattr(track.tracking, 'make_tracker', fake_make_tracker)
  for chunk, want in (('0', {'query_chunk': 0}), (None, {})):
    extra = [] if chunk is None else ['--query_chunk', chunk]
    status = track.main(['--video', os.fspath(videos / 'texture.mp4'), '--tracker', 'cotracker3',
                         '--checkpoint', 'w.pth', '--grid_size', '2', '--out',
                         os.fspath(tmp_path / f'out{chunk}'), *extra])
    assert status == 0
    assert made[-1] == ('cotracker3', 'w.pth', want)
