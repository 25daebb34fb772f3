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
  assert '1 of 3 videos failed' in err and 'broken.mp4' in err
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
  assert code == 2 and lines == ['error: --resize must be H,W (positive integers), got (7,)']
  code, lines = run('--video', os.fspath(videos), '--out', os.fspath(tmp_path), '--online')
  assert code == 2 and lines[0].startswith('error: --online needs --tracker cotracker3')
  assert track.main(['--video', os.fspath(tmp_path / 'absent'), '--out',
                     os.fspath(tmp_path)]) == 2
