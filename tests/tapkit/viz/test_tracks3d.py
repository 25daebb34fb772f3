"""Tests for tapkit.viz.tracks3d: frusta geometry, static 3D plot, offline HTML viewer."""

import json

import numpy as np
import pytest

from tapkit.data.synthetic import generate_clip
from tapkit.viz import _common
from tapkit.viz import tracks2d
from tapkit.viz import tracks3d


@pytest.fixture(scope='module')
def clip():
  return generate_clip(0, num_frames=6, height=48, width=64, num_tracks=32)


def _world_tracks(clip):
  c2w = np.linalg.inv(clip.extrinsics_w2c.astype(np.float64))
  return np.einsum('tij,tnj->tni', c2w[:, :3, :3], clip.tracks_xyz) + c2w[:, None, :3, 3]


def test_clip_points_are_static_in_the_world_for_static_points(clip):
  world = tracks3d.clip_points(clip)
  np.testing.assert_allclose(world, _world_tracks(clip), atol=1e-9)
  np.testing.assert_array_equal(tracks3d.clip_points(clip, world=False), clip.tracks_xyz)
  # The camera moves, but background tracks stay put in the world frame.
  static = ~clip.dynamic_mask
  assert static.any()
  assert np.abs(world[:, static] - world[:1, static]).max() < 1e-3
  moved = np.abs(clip.tracks_xyz[:, static] - clip.tracks_xyz[:1, static]).max()
  assert moved > 1e-3


def test_clip_wrappers(tmp_path, clip):
  for color_by in ('motion', 'track'):
    fig = tracks3d.plot_clip(clip, color_by=color_by)
    assert len(fig.axes[0].get_lines()) == 1 + 8 * 6
  page = open(tracks3d.clip_html(tmp_path / 'c.html', clip, title='clip'),
              encoding='utf-8').read()
  data = tracks3d.read_viewer_data(page)
  np.testing.assert_array_equal(np.array(data['visible'], bool), clip.visibility)
  assert data['cameras'] is not None
  # Same colours as the 2D painter, so the 3D view and the painted video match.
  xy = tracks2d.project_points(clip.tracks_xyz, clip.intrinsics)
  rgb = tracks2d.track_colors(xy, clip.visibility).astype(np.int64)
  np.testing.assert_array_equal(data['colors'], rgb @ np.array([65536, 256, 1]))


def _pose(yaw_deg: float, center) -> np.ndarray:
  """World-to-camera pose of a camera at `center` rotated by yaw about world y."""
  a = np.deg2rad(yaw_deg)
  c2w_rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
  w2c = np.eye(4)
  w2c[:3, :3] = c2w_rot.T
  w2c[:3, 3] = -c2w_rot.T @ np.asarray(center, np.float64)
  return w2c


def test_camera_centres_and_frustum_geometry():
  w2c = np.stack([_pose(0, [1.0, 2.0, 3.0]), _pose(30, [-1.0, 0.0, 0.5])])
  np.testing.assert_allclose(tracks3d.camera_centers(w2c), [[1, 2, 3], [-1, 0, 0.5]],
                             atol=1e-12)
  intr = np.array([50.0, 50.0, 31.5, 23.5])
  segs = tracks3d.frustum_segments(w2c, intr, scale=0.5)
  assert segs.shape == (2, 8, 2, 3)
  np.testing.assert_allclose(segs[:, :4, 0], np.broadcast_to(
      tracks3d.camera_centers(w2c)[:, None], (2, 4, 3)), atol=1e-12)
  # Base corners lie at depth `scale` and project onto the image corners' outer edges.
  corners = segs[:, :4, 1]
  cam = np.einsum('tij,tkj->tki', w2c[:, :3, :3], corners) + w2c[:, None, :3, 3]
  np.testing.assert_allclose(cam[..., 2], 0.5, atol=1e-12)
  xy = tracks2d.project_points(cam, intr)
  np.testing.assert_allclose(xy[0], [[-0.5, -0.5], [63.5, -0.5], [63.5, 47.5], [-0.5, 47.5]],
                             atol=1e-9)
  # The base edges close the rectangle.
  np.testing.assert_allclose(segs[:, 4:, 0], corners, atol=1e-12)
  np.testing.assert_allclose(segs[:, 4:, 1], np.roll(corners, -1, axis=1), atol=1e-12)
  assert tracks3d.default_image_size(intr) == (48, 64)


def test_up_vector(clip):
  # The synthetic world is z-up and its cameras are level up to a downward tilt.
  np.testing.assert_allclose(tracks3d.up_vector(clip.extrinsics_w2c), [0, 0, 1])
  np.testing.assert_allclose(tracks3d.up_vector(None), [0, -1, 0])  # OpenCV camera frame


@pytest.mark.parametrize('color_by', ['time', 'motion', 'track'])
def test_plot_tracks_3d_draws_points_and_cameras(tmp_path, clip, color_by):
  path = tmp_path / f'{color_by}.png'
  fig = tracks3d.plot_tracks_3d(_world_tracks(clip), visible=clip.visibility,
                                color_by=color_by, w2c=clip.extrinsics_w2c,
                                intrinsics=clip.intrinsics, title='synthetic', path=path)
  image = _common.figure_to_array(fig)
  assert image.shape[-1] == 3
  colours = np.unique(image.reshape(-1, 3), axis=0)
  assert len(colours) > 50  # points, colour bar, frusta: far from a blank canvas
  assert path.read_bytes().startswith(b'\x89PNG')
  ax = fig.axes[0]
  # Trajectory + 8 frusta lines per drawn camera (6 frames -> 6 frusta).
  assert len(ax.get_lines()) == 1 + 8 * 6


def test_plot_tracks_3d_without_cameras(clip):
  fig = tracks3d.plot_tracks_3d(clip.tracks_xyz, visible=clip.visibility,
                                color_by='motion', motion=np.linspace(0, 1, 32))
  assert len(fig.axes[0].get_lines()) == 0
  assert len(np.unique(_common.figure_to_array(fig).reshape(-1, 3), axis=0)) > 20


def test_interactive_html_embeds_valid_data(tmp_path, clip):
  world = _world_tracks(clip)
  path = tracks3d.interactive_html(tmp_path / 'viewer.html', world, None,
                                   clip.extrinsics_w2c, clip.intrinsics, 'demo </script> <b>',
                                   visible=clip.visibility)
  page = open(path, encoding='utf-8').read()
  # Offline: no external scripts, styles or fetches.
  for needle in ('<script src', 'http://', 'https://', '<link', 'fetch('):
    assert needle not in page
  assert '<canvas' in page and 'id="play"' in page and 'type="range"' in page
  data = tracks3d.read_viewer_data(page)
  assert data['title'] == 'demo </script> <b>'  # survives the '</' escaping
  assert data['num_frames'] == 6 and data['num_points'] == 32 == data['total_points']
  pts = np.array(data['points']).reshape(6, 32, 3)
  vis = np.array(data['visible'], bool)
  np.testing.assert_array_equal(vis, clip.visibility)
  np.testing.assert_allclose(pts[vis], world[vis], atol=1e-4)
  assert len(data['colors']) == 32 and all(0 <= c < 2**24 for c in data['colors'])
  frusta = np.array(data['cameras']['frusta'])
  assert frusta.shape == (6, 8, 2, 3)
  np.testing.assert_allclose(data['cameras']['centers'],
                             tracks3d.camera_centers(clip.extrinsics_w2c), atol=1e-4)
  np.testing.assert_allclose(data['up'], [0, 0, 1])


def test_interactive_html_caps_and_per_frame_colours(tmp_path):
  rng = np.random.default_rng(0)
  points = rng.normal(size=(10, 500, 3))
  colors = rng.integers(0, 256, size=(10, 500, 3)).astype(np.uint8)
  page = open(tracks3d.interactive_html(tmp_path / 'a.html', points, colors, max_points=100),
              encoding='utf-8').read()
  data = tracks3d.read_viewer_data(page)
  assert data['num_points'] == 100 and data['total_points'] == 500
  idx = np.array(data['track_indices'])
  assert len(np.unique(idx)) == 100 and idx[0] == 0 and idx[-1] == 499
  packed = np.array(data['colors'])
  assert packed.shape == (10, 100)
  expect = colors[:, idx].astype(np.int64) @ np.array([65536, 256, 1])
  np.testing.assert_array_equal(packed, expect)
  assert data['cameras'] is None
  # max_values bounds frames x tracks.
  data = tracks3d.viewer_data(points, max_values=1000)
  assert data['num_points'] == 100
  assert len(json.dumps(data)) < 200_000
  with pytest.raises(ValueError, match='colors'):
    tracks3d.viewer_data(points, colors[0, :10])


def test_axis_labels_name_the_units(clip):
  fig = tracks3d.plot_tracks_3d(_world_tracks(clip), w2c=clip.extrinsics_w2c)
  ax = fig.axes[0]
  labels = [ax.get_xlabel(), ax.get_ylabel(), ax.get_zlabel()]
  assert all(label.endswith(' (m)') for label in labels), labels
  fig = tracks3d.plot_tracks_3d(clip.tracks_xyz, color_by='motion', units='arbitrary units')
  ax = fig.axes[0]
  labels = [ax.get_xlabel(), ax.get_ylabel(), ax.get_zlabel()]
  assert all(label.endswith(' (arbitrary units)') for label in labels), labels
  assert fig.axes[1].get_ylabel() == 'mean motion (arbitrary units / frame)'
