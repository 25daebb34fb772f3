"""tapkit.io.video: writing, reading back, resampling, and errors naming the file."""

import os

import numpy as np
import pytest

from tapkit.io import BadFileError
from tapkit.io import video as video_io

T, H, W = 20, 34, 48


@pytest.fixture(scope='module')
def frames():
  """[T, H, W, 3] frames whose red channel encodes the frame index (10 * t)."""
  x = np.linspace(0, 255, W).astype(np.uint8)
  out = np.zeros((T, H, W, 3), np.uint8)
  out[..., 1] = x[None, None, :]
  out[..., 0] = (10 * np.arange(T)).astype(np.uint8)[:, None, None]
  return out


def _frame_ids(frames):
  h, w = frames.shape[1:3]
  return np.round(frames[:, h // 2, w // 2, 0].astype(float) / 10).astype(int)


@pytest.mark.parametrize('suffix', ['.mp4', '.webm', '.avi', '.mov', '.gif', ''])
def test_roundtrip(tmp_path, frames, suffix):
  path = video_io.write_video(os.fspath(tmp_path / f'clip{suffix}'), frames, fps=10)
  video = video_io.read_video(path)
  assert video.frames.shape == (T, H, W, 3) and video.frames.dtype == np.uint8
  assert video.path == path
  # Folders carry no rate; files keep theirs.
  assert video.fps == pytest.approx(video_io.FOLDER_FPS if suffix == '' else 10.0)
  np.testing.assert_array_equal(_frame_ids(video.frames), np.arange(T))
  error = np.abs(video.frames.astype(int) - frames).mean()
  assert error < (0.01 if suffix in ('', '.gif') else 4.0)


def test_odd_sides_are_padded(tmp_path, frames):
  path = video_io.write_video(os.fspath(tmp_path / 'odd.mp4'), frames[:, :33, :47], fps=10)
  video = video_io.read_video(path)
  assert video.frames.shape == (T, 34, 48, 3)


def test_fps_stride_max_frames_resize(tmp_path, frames):
  path = video_io.write_video(os.fspath(tmp_path / 'clip.mp4'), frames, fps=10)
  # 10 -> 4 fps picks source frames round(k * 2.5): 0, 3, 5, 8, 10, 13, 15, 18.
  video = video_io.read_video(path, fps=4)
  assert video.fps == pytest.approx(4.0)
  np.testing.assert_array_equal(_frame_ids(video.frames), [0, 3, 5, 8, 10, 13, 15, 18])
  video = video_io.read_video(path, fps=5, stride=2, max_frames=3, resize=(16, 20))
  assert video.frames.shape == (3, 16, 20, 3)
  assert video.fps == pytest.approx(2.5)
  np.testing.assert_array_equal(_frame_ids(video.frames), [0, 4, 8])
  # A rate above the source's keeps every frame.
  assert video_io.read_video(path, fps=30).frames.shape[0] == T
  with pytest.raises(ValueError, match='stride'):
    video_io.read_video(path, stride=0)
  with pytest.raises(ValueError, match='resize'):
    video_io.read_video(path, resize=(16,))


def test_folder_natural_order(tmp_path, frames):
  from PIL import Image

  folder = tmp_path / 'frames'
  folder.mkdir()
  for t in range(12):
    Image.fromarray(frames[t]).save(folder / f'{t}.png')
  (folder / 'notes.txt').write_text('not a frame')
  video = video_io.read_video(folder)
  np.testing.assert_array_equal(_frame_ids(video.frames), np.arange(12))  # 2 before 10


def test_corrupt_and_empty_files_name_the_file(tmp_path, frames):
  path = video_io.write_video(os.fspath(tmp_path / 'clip.mp4'), frames, fps=10)
  truncated = tmp_path / 'truncated.mp4'
  truncated.write_bytes(open(path, 'rb').read()[:300])
  for bad in (truncated, tmp_path / 'empty.mp4', tmp_path / 'text.gif',
              tmp_path / 'missing.mp4'):
    if bad.name == 'empty.mp4':
      bad.write_bytes(b'')
    elif bad.name == 'text.gif':
      bad.write_bytes(b'GIF89a not really')
    with pytest.raises(BadFileError) as info:
      video_io.read_video(bad)
    assert str(info.value).startswith(os.fspath(bad))
  empty_dir = tmp_path / 'nothing'
  empty_dir.mkdir()
  with pytest.raises(BadFileError, match='no frames'):
    video_io.read_video(empty_dir)


def test_mixed_frame_sizes(tmp_path, frames):
  from PIL import Image

  folder = tmp_path / 'mixed'
  folder.mkdir()
  Image.fromarray(frames[0]).save(folder / '0.png')
  Image.fromarray(frames[1, :10]).save(folder / '1.png')
  with pytest.raises(BadFileError, match="frame 1"):
    video_io.read_video(folder)


def test_list_videos(tmp_path, frames):
  video_io.write_video(os.fspath(tmp_path / 'b.mp4'), frames[:3], fps=10)
  video_io.write_video(os.fspath(tmp_path / 'a.gif'), frames[:3], fps=10)
  video_io.write_video(os.fspath(tmp_path / 'seq'), frames[:3], fps=10)
  (tmp_path / 'readme.txt').write_text('x')
  assert video_io.list_videos(tmp_path) == [
      os.fspath(tmp_path / n) for n in ('a.gif', 'b.mp4', 'seq')]
  assert video_io.list_videos(tmp_path / 'seq') == [os.fspath(tmp_path / 'seq')]
  assert video_io.list_videos(tmp_path / 'b.mp4') == [os.fspath(tmp_path / 'b.mp4')]
  with pytest.raises(BadFileError, match='not a video'):
    video_io.list_videos(tmp_path / 'readme.txt')
  with pytest.raises(BadFileError, match='no such'):
    video_io.list_videos(tmp_path / 'absent')
