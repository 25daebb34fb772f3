"""Tests for tapkit.viz.tracks2d: painting tracks on frames and writing videos."""

import subprocess

import numpy as np
import pytest
from PIL import Image

from tapkit.data.synthetic import generate_clip
from tapkit.viz import tracks2d


@pytest.fixture(scope='module')
def clip():
  return generate_clip(0, num_frames=6, height=48, width=64, num_tracks=32)


def _grey(num_frames=3, height=40, width=50):
  return np.full((num_frames, height, width, 3), 100, np.uint8)


def test_visible_points_take_their_track_colour():
  frames = _grey()
  tracks = np.array([[[10.0, 12.0], [30.0, 25.0]]] * 3)  # [T=3, N=2, 2], static
  colors = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
  out = tracks2d.paint_tracks(frames, tracks, None, colors, trail=0, radius=2)
  assert out.shape == frames.shape and out.dtype == np.uint8
  for t in range(3):
    np.testing.assert_array_equal(out[t, 12, 10], [255, 0, 0])
    np.testing.assert_array_equal(out[t, 25, 30], [0, 0, 255])
    # Far from both tracks nothing changes.
    np.testing.assert_array_equal(out[t, 38, 2], [100, 100, 100])
  np.testing.assert_array_equal(frames, 100)  # the input is not painted in place


def test_occluded_points_hollow_or_hidden():
  frames = _grey(num_frames=1)
  tracks = np.array([[[20.0, 20.0]]])
  visible = np.array([[False]])
  colors = np.array([[0, 255, 0]], np.uint8)
  hidden = tracks2d.paint_tracks(frames, tracks, visible, colors, occluded='hide', radius=4)
  np.testing.assert_array_equal(hidden, frames)
  hollow = tracks2d.paint_tracks(frames, tracks, visible, colors, occluded='hollow', radius=4)
  np.testing.assert_array_equal(hollow[0, 20, 20], [100, 100, 100])  # centre left empty
  np.testing.assert_array_equal(hollow[0, 20, 24], [0, 255, 0])  # on the ring
  with pytest.raises(ValueError, match='occluded'):
    tracks2d.paint_tracks(frames, tracks, visible, colors, occluded='ghost')


def test_trails_fade_and_skip_invisible_segments():
  frames = _grey(num_frames=4, height=20, width=60)
  xs = np.array([5.0, 20.0, 35.0, 50.0])
  tracks = np.stack([xs, np.full(4, 10.0)], -1)[:, None]  # [4, 1, 2], moving right
  colors = np.array([[255, 255, 0]], np.uint8)
  out = tracks2d.paint_tracks(frames, tracks, None, colors, trail=3, radius=1)
  last = out[3].astype(int)
  # Pixels halfway along each past segment are tinted towards yellow...
  mids = [last[10, 12], last[10, 27], last[10, 42]]
  assert all(m[2] < 100 and m[0] > 100 for m in mids)
  # ...older segments less so (they fade).
  assert mids[0][0] < mids[1][0] < mids[2][0]
  visible = np.ones((4, 1), bool)
  visible[1] = False  # segments 0-1 and 1-2 must disappear
  out = tracks2d.paint_tracks(frames, tracks, visible, colors, trail=3, radius=1)
  np.testing.assert_array_equal(out[3, 10, 12], [100, 100, 100])
  np.testing.assert_array_equal(out[3, 10, 27], [100, 100, 100])
  assert out[3, 10, 42, 2] < 100


def test_paint_clip_paints_at_projected_positions(clip):
  painted = tracks2d.paint_clip(clip, trail=4, radius=1.5)
  assert painted.shape == clip.frames.shape
  xy = tracks2d.project_points(clip.tracks_xyz, clip.intrinsics)
  colors = tracks2d.track_colors(xy, clip.visibility)
  t, n = np.nonzero(clip.visibility)
  assert len(t) > 20
  px = np.round(xy[t, n]).astype(int)
  h, w = clip.frame_size
  inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
  t, n, px = t[inside], n[inside], px[inside]
  got = painted[t, px[:, 1], px[:, 0]]
  # The last-drawn point wins where points overlap, so most (not all) match exactly.
  assert np.mean(np.all(got == colors[n], axis=-1)) > 0.8
  assert np.mean(np.any(got != clip.frames[t, px[:, 1], px[:, 0]], axis=-1)) > 0.8


def test_project_points_and_to_pixels():
  intr = np.array([100.0, 100.0, 31.5, 23.5])
  xy = tracks2d.project_points(np.array([[0.0, 0.0, 2.0], [1.0, -1.0, 2.0], [0, 0, -1.0]]),
                               intr)
  np.testing.assert_allclose(xy[0], [31.5, 23.5])
  np.testing.assert_allclose(xy[1], [81.5, -26.5])
  assert np.all(np.isnan(xy[2]))  # behind the camera
  model = np.array([[[0.5, 0.5], [0.0, 1.0]]])  # [N=1, T=2, 2] normalised
  px = tracks2d.to_pixels(model, height=48, width=64)
  assert px.shape == (2, 1, 2)
  np.testing.assert_allclose(px[0, 0], [31.5, 23.5])  # image centre
  np.testing.assert_allclose(px[1, 0], [-0.5, 47.5])  # left / bottom edges


def test_track_colour_modes():
  tracks = np.zeros((3, 3, 2))
  tracks[:, :, 1] = [[30.0, 10.0, 20.0]]  # initial y: track 1 top, 0 bottom
  tracks[:, 2, 0] = [0.0, 5.0, 10.0]  # track 2 moves 5 px / frame
  rainbow = tracks2d.track_colors(tracks)
  assert len({tuple(c) for c in rainbow}) == 3
  np.testing.assert_array_equal(rainbow[1], tracks2d.track_colors(tracks[:, [1]])[0])
  scores = tracks2d.track_colors(tracks, color_by='score', scores=[0.0, 0.5, 1.0])
  assert scores[0, 0] > scores[0, 1]  # low score red (RdYlGn)
  assert scores[2, 1] > scores[2, 0]  # high score green
  np.testing.assert_allclose(tracks2d.motion_magnitude(tracks), [0.0, 0.0, 5.0])
  motion = tracks2d.track_colors(tracks, color_by='motion')
  np.testing.assert_array_equal(motion[0], motion[1])
  assert not np.array_equal(motion[0], motion[2])
  with pytest.raises(ValueError, match='scores'):
    tracks2d.track_colors(tracks, color_by='score')


def test_motion_magnitude_ignores_invisible_steps():
  tracks = np.array([[[0.0, 0.0]], [[3.0, 4.0]], [[100.0, 4.0]]])
  visible = np.array([[True], [True], [False]])
  np.testing.assert_allclose(tracks2d.motion_magnitude(tracks, visible), [5.0])


def test_write_video_falls_back_to_gif(tmp_path, monkeypatch, clip):
  monkeypatch.setattr(tracks2d, 'ffmpeg_executable', lambda: None)
  frames = tracks2d.paint_clip(clip)
  path = tracks2d.write_video(tmp_path / 'sub' / 'tracks.mp4', frames, fps=5)
  assert path.endswith('tracks.gif')
  with Image.open(path) as gif:
    assert gif.n_frames == clip.num_frames
    assert gif.size == (64, 48)
    first = np.asarray(gif.convert('RGB'), np.float64)
  assert first.std() > 5.0  # a real picture, not a blank frame


def test_write_video_mp4_when_ffmpeg_exists(tmp_path, clip):
  if tracks2d.ffmpeg_executable() is None:
    pytest.skip('no ffmpeg binary (neither on PATH nor from imageio-ffmpeg)')
  frames = tracks2d.paint_clip(clip)[:, :47, :63]  # odd sides are padded for H.264
  path = tracks2d.write_video(tmp_path / 'tracks.mp4', frames, fps=5)
  assert path.endswith('.mp4')
  # Decode with the same binary (mediapy's reader passes options newer ffmpegs dropped).
  raw = subprocess.run([tracks2d.ffmpeg_executable(), '-v', 'error', '-i', path, '-f',
                        'rawvideo', '-pix_fmt', 'rgb24', '-'], capture_output=True,
                       check=True, timeout=60).stdout
  video = np.frombuffer(raw, np.uint8).reshape(-1, 48, 64, 3)
  assert video.shape[0] == clip.num_frames
  # Lossy, but close to the painted frames.
  assert np.abs(video[:, :47, :63].astype(float) - frames).mean() < 12.0


def test_paint_on_enlarged_frames():
  frames = np.zeros((2, 16, 20, 3), np.uint8)
  frames[:, 4, 5] = (10, 20, 30)  # one marked pixel
  tracks = np.array([[[2.0, 3.0]], [[12.0, 8.0]]])  # [T=2, N=1, 2]
  colors = np.array([[255, 0, 0]], np.uint8)
  out = tracks2d.paint_tracks(frames, tracks, colors=colors, trail=0, radius=1.0, scale=4)
  assert out.shape == (2, 64, 80, 3)
  # Nearest neighbour: the marked pixel becomes a sharp 4 x 4 block.
  np.testing.assert_array_equal(out[0, 16:20, 20:24], np.full((4, 4, 3), (10, 20, 30)))
  # The point is drawn at the pixel centre's new position: (x + 0.5) * 4 - 0.5.
  assert tuple(out[0, 13, 9]) == (255, 0, 0) and tuple(out[1, 33, 49]) == (255, 0, 0)
  assert tuple(out[0, 33, 49]) == (0, 0, 0)
