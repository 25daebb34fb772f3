"""3DPoV from raw frame folders: windows, offline preparation (lk tracker), on-the-fly tracking."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from configs import dpov as dpov_config
from dpov_jax import data, prepare, task, video_windows
from tapkit import tracking
from tapkit.data import dpov_tracks
from tapkit.train import loop

SIZE, FRAMES = 48, 9


@pytest.fixture(scope='module')
def frames_root(tmp_path_factory):
  """Two synthetic videos: frames/clip_<i>/<t>.png, 48 x 48, 9 frames."""
  root = tmp_path_factory.mktemp('dpov_raw')
  frames, _ = data.ensure_synthetic_windows(root / 'syn', 2, seed=0, num_frames=FRAMES,
                                            size=SIZE, grid_size=4)
  return frames


def test_window_rules():
  # ytvos: step s if M >= T s, else M // T; start uniform in [0, M - T s'].
  rng = np.random.default_rng(0)
  starts = {int(video_windows.random_window(100, 4, 10, rng)[0]) for _ in range(300)}
  assert starts == set(range(61))
  np.testing.assert_array_equal(video_windows.random_window(40, 4, 10, rng), [0, 10, 20, 30])
  w = video_windows.random_window(20, 4, 10, rng)  # s' = 5, start in {0}
  np.testing.assert_array_equal(w, [0, 5, 10, 15])
  np.testing.assert_array_equal(video_windows.random_window(2, 4, 10, rng), [0, 1])  # clamped
  # co3d / dl3dv: non-overlapping windows starting every T s, while start <= M - T s.
  wins = video_windows.fixed_windows(85, 'dl3dv', 4, 10)
  assert [w.tolist() for w in wins] == [[0, 10, 20, 30], [40, 50, 60, 70]]
  assert video_windows.fixed_windows(9, 'co3d', 2, 1) == []  # CO3D: < 10 frames skipped
  # folder: windows of (T - 1) s + 1 frames; a short video gives one shrunk window.
  assert [w.tolist() for w in video_windows.fixed_windows(9, 'folder', 3, 2)] == [[0, 2, 4]]
  assert [w.tolist() for w in video_windows.fixed_windows(3, 'folder', 3, 4)] == [[0, 1, 2]]
  seeded = video_windows.video_windows(100, 'ytvos', 4, 10, seed=3, video='a', windows_per_video=3)
  again = video_windows.video_windows(100, 'ytvos', 4, 10, seed=3, video='a', windows_per_video=3)
  assert [w.tolist() for w in seeded] == [w.tolist() for w in again]


def test_layout_listing(tmp_path):
  for rel in ('cat/seq1/images', 'cat/seq2/images', 'cat/set_lists', 'dog/seq3/images'):
    os.makedirs(tmp_path / rel)
  assert video_windows.list_layout_videos(tmp_path, 'co3d') == ['cat/seq1', 'cat/seq2',
                                                              'dog/seq3']
  with pytest.raises(ValueError, match='layout must be one of'):
    video_windows.list_layout_videos(tmp_path, 'kinetics')


def test_prepare_folder_with_lk_is_resumable(frames_root, tmp_path, capsys):
  frames_root = shutil.copytree(frames_root, tmp_path / 'frames')
  bad = frames_root / 'zz_broken'
  bad.mkdir()
  (bad / '00000.png').write_bytes(b'not a png')
  frames_root, out = str(frames_root), str(tmp_path / 'tracks')
  argv = ['--frames_root', frames_root, '--layout', 'folder', '--out', out, '--tracker', 'lk',
          '--grid_size', '4', '--num_frames', '3', '--regular_step', '2', '--input_size', '32']
  result = prepare.main(argv)
  assert (result['videos'], result['written'], result['skipped']) == (3, 2, 0)
  assert [v for v, _ in result['bad']] == ['zz_broken']
  assert 'zz_broken' in open(os.path.join(out, prepare.BAD_VIDEOS_FILE)).read()
  rec = dpov_tracks.read_tracks_file(os.path.join(out, 'clip_0000', 'window_000.npz'), grid_size=4)
  assert rec['tracks'].shape == (3, 16, 2) and rec['image_size'].tolist() == [32, 32]
  assert rec['frame_indices'].tolist() == [0, 2, 4]
  # Frame 0: CoTracker's 4 x 4 margin grid on the 32-px frames, every point visible.
  np.testing.assert_allclose(rec['tracks'][0], tracking.grid_queries(32, 32, 4)[:, 1:])
  assert rec['visibility'][0].all()
  # The synthetic camera moves smoothly: lk follows most points over 4 frames.
  assert rec['visibility'].mean() > 0.5
  mtime = os.path.getmtime(os.path.join(out, 'clip_0000', 'window_000.npz'))
  again = prepare.main(argv)
  assert (again['written'], again['skipped']) == (0, 2)
  assert os.path.getmtime(os.path.join(out, 'clip_0000', 'window_000.npz')) == mtime
  assert '2 already there, 1 bad videos skipped' in capsys.readouterr().out
  # The files train through the usual reader.
  src = data.FrameWindowSource(frames_root, out, input_size=24, num_clip_frames=3,
                               regular_step=2, grid_size=4)
  assert len(src) == 2 and src[0]['tracks'].shape == (3, 16, 2)


def _on_the_fly_config(frames_root):
  config = dpov_config.get_config('smoke')
  config.backbone.name = 'smoke'
  config.pretrain.steps = 0
  config.backbone.num_layers = 3
  config.optimizer.groups = ((r'^backbone/block_(1|2)/', 0.1), (r'^backbone/', 0.0))
  config.head.features = (16, 16)
  config.loss.update({'nmb_ref': 2, 'compare_period': 1})
  config.data.update({'input_size': 28, 'num_frames': 3, 'regular_step': 2, 'grid_size': 4,
                      'tracker': 'on_the_fly', 'tracker_name': 'lk', 'flip_prob': 1.0})
  config.data.sources.ytvos.frames_root = frames_root
  config.data.synthetic.num_train = 0
  config.evals = type(config.evals)()
  config.batch_size = 2
  config.total_steps = 1
  config.checkpoint.update({'every_steps': 1, 'async_save': False})
  return config


def test_on_the_fly_tracks_each_sampled_clip(frames_root, tmp_path):
  config = _on_the_fly_config(frames_root)
  source = task.train_source(config, str(tmp_path))
  assert len(source) == 2  # one item per ytvos video
  transforms = task.train_transforms(config)
  assert [type(t).__name__ for t in transforms] == ['LoadClip', 'RandomClipFlip', 'TrackClip']
  element = source[0]
  rng = np.random.default_rng(0)
  for t in transforms:
    element = t.random_map(element, rng) if hasattr(t, 'random_map') else t.map(element)
  assert element['frames'].shape == (3, 28, 28, 3)
  assert element['tracks'].shape == (3, 16, 2) and element['visibility'].shape == (3, 16)
  # Tracked after the (certain) flip: frame 0 holds the grid on the flipped frames.
  np.testing.assert_allclose(element['tracks'][0], tracking.grid_queries(28, 28, 4)[:, 1:])
  # The ytvos start (9 frames, T 3, s 2: start in 0..3) comes from the record's rng.
  raw = [np.asarray(Image.open(os.path.join(frames_root, 'clip_0000', f'{k:05d}.png')))
         for k in range(FRAMES)]
  flipped = element['frames'][0, :, ::-1]
  small = [np.asarray(Image.fromarray(f).resize((28, 28), Image.BILINEAR)) for f in raw]
  assert any(np.array_equal(flipped, small[k]) for k in range(4))


def test_on_the_fly_trains_a_step(frames_root, tmp_path):
  config = _on_the_fly_config(frames_root)
  config.data.sources.ytvos.frames_root = ''
  config.data.sources.dl3dv.update({'frames_root': frames_root, 'layout': 'folder',
                                    'frames_subdir': ''})
  state = loop.train(config, str(tmp_path), task.build_method(config, str(tmp_path)))
  assert int(state.step) == 1


def test_tracker_mode_is_checked(frames_root):
  config = _on_the_fly_config(frames_root)
  config.data.tracker = 'online'
  with pytest.raises(ValueError, match="config.data.tracker must be 'files' or 'on_the_fly'"):
    task.train_transforms(config)
