"""Tests for the numpy synthetic scene generator (tapkit.data.synthetic)."""

import dataclasses
import os

import numpy as np
import pytest

from tapkit.data import synthetic

T, H, W, N = 6, 48, 64, 64


@pytest.fixture(scope='module')
def sample() -> synthetic.SyntheticClip:
  return synthetic.synthesize_clip(3, T, H, W, N)


@pytest.fixture(scope='module')
def grid_sample() -> synthetic.SyntheticClip:
  return synthetic.synthesize_clip(5, T, H, W, query_mode='grid', grid_size=8)


def _project(xyz: np.ndarray, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(x, y) pixels [...] and depth of camera points xyz [..., 3]."""
  fx, fy, cx, cy = intrinsics.astype(np.float64)
  xyz = xyz.astype(np.float64)
  z = xyz[..., 2]
  safe = np.where(z > 0, z, 1.0)
  return np.stack([fx * xyz[..., 0] / safe + cx, fy * xyz[..., 1] / safe + cy], -1), z


def _render_at(sc: synthetic.SyntheticClip, t: int, x: float, y: float) -> dict:
  """Renders the single pixel whose centre is the sub-pixel position (x, y)."""
  fx, fy, cx, cy = sc.clip.intrinsics.astype(np.float64)
  return sc.scene.render(sc.clip.extrinsics_w2c[t], np.array([fx, fy, cx - x, cy - y]), t, 1, 1)


def test_shapes_and_dtypes(sample):
  clip = sample.clip
  assert clip.raw_frames.shape == (T, H, W, 3) and clip.raw_frames.dtype == np.uint8
  assert clip.depth.shape == (T, H, W) and clip.depth.dtype == np.float32
  assert clip.normals.shape == (T, H, W, 3) and clip.normals.dtype == np.float32
  assert clip.tracks_xyz.shape == (T, N, 3) and clip.tracks_xyz.dtype == np.float32
  assert clip.visibility.shape == (T, N) and clip.visibility.dtype == bool
  assert clip.queries_xyt.shape == (N, 3) and clip.queries_xyt.dtype == np.float32
  assert clip.intrinsics.shape == (4,) and clip.extrinsics_w2c.shape == (T, 4, 4)
  assert clip.object_ids.shape == (N,) and clip.object_ids.dtype == np.int32
  assert clip.dynamic_mask.shape == (N,) and clip.dynamic_mask.dtype == bool
  # Principal point at the image centre, pixel centres at integers.
  np.testing.assert_allclose(clip.intrinsics[2:], [(W - 1) / 2, (H - 1) / 2])
  # The sky encloses the scene: every pixel hits a surface at a finite depth.
  assert np.all(clip.depth > 0) and np.all(clip.depth < 2 * synthetic.SceneConfig().sky_radius)
  np.testing.assert_allclose(np.linalg.norm(clip.normals, axis=-1), 1.0, atol=1e-5)
  # Textured, not flat: every frame has many distinct colours.
  assert all(len(np.unique(f.reshape(-1, 3), axis=0)) > 500 for f in clip.raw_frames)
  # Both static and dynamic tracks with the default 50 % share on moving objects.
  assert 0.2 < clip.dynamic_mask.mean() < 0.8


def test_deterministic():
  a = synthetic.synthesize_clip((7, 2), T, H, W, N)
  b = synthetic.synthesize_clip((7, 2), T, H, W, N)
  c = synthetic.synthesize_clip((7, 3), T, H, W, N)
  for field in ('raw_frames', 'depth', 'normals', 'tracks_xyz', 'visibility', 'queries_xyt',
                'intrinsics', 'extrinsics_w2c', 'object_ids', 'dynamic_mask'):
    np.testing.assert_array_equal(getattr(a.clip, field), getattr(b.clip, field), err_msg=field)
  assert not np.array_equal(a.clip.raw_frames, c.clip.raw_frames)
  # More frames extend the same clip: the scene and camera do not depend on T.
  longer = synthetic.synthesize_clip((7, 2), T + 2, H, W, N)
  np.testing.assert_array_equal(longer.clip.raw_frames[:T], a.clip.raw_frames)
  np.testing.assert_array_equal(longer.clip.extrinsics_w2c[:T], a.clip.extrinsics_w2c)


def test_tracks_are_surface_points(sample):
  clip = sample.clip
  # Canonical points lie on their canonical shapes.
  for index, prim in enumerate(sample.scene.primitives):
    p = sample.track_local[sample.track_primitive == index]
    if not p.size:
      continue
    if prim.kind == synthetic.SPHERE:
      np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-9)
    elif prim.kind == synthetic.BOX:
      np.testing.assert_allclose(np.abs(p).max(axis=1), 1.0, atol=1e-9)
    else:
      np.testing.assert_allclose(p[:, 2], 0.0, atol=1e-9)
      assert np.all(np.abs(p[:, :2]) <= 1 + 1e-9)
  # Camera-frame tracks are the world points seen through the stored float32 poses.
  w2c = clip.extrinsics_w2c.astype(np.float64)
  cam = np.einsum('tij,tnj->tni', w2c[:, :3, :3], sample.tracks_world) + w2c[:, None, :3, 3]
  np.testing.assert_allclose(clip.tracks_xyz, cam, rtol=1e-6, atol=1e-5)
  np.testing.assert_array_equal(clip.object_ids, sample.scene.object_ids[sample.track_primitive])


def test_visible_points_are_drawn_where_they_project(sample):
  clip = sample.clip
  xy, z = _project(clip.tracks_xyz, clip.intrinsics)
  tt, nn = np.nonzero(clip.visibility)
  assert tt.size > 0.7 * T * N
  # Rounded pixel of the projection: same primitive for nearly all points (the
  # rest sit within half a pixel of a silhouette) and about the same depth.
  col = np.floor(xy[tt, nn, 0] + 0.5).astype(int)
  row = np.floor(xy[tt, nn, 1] + 0.5).astype(int)
  same = sample.primitive_ids[tt, row, col] == sample.track_primitive[nn]
  assert same.mean() > 0.9
  rel = np.abs(clip.depth[tt, row, col] - z[tt, nn]) / z[tt, nn]
  assert np.median(rel[same]) < 0.01
  # Exactly at the projection the renderer draws the point itself.
  rng = np.random.default_rng(0)
  for k in rng.choice(tt.size, size=40, replace=False):
    t, n = tt[k], nn[k]
    view = _render_at(sample, t, *xy[t, n])
    assert view['primitive_id'][0, 0] == sample.track_primitive[n]
    np.testing.assert_allclose(view['depth'][0, 0], z[t, n], rtol=1e-4)


def test_invisible_points_are_occluded_or_out_of_view(sample):
  clip = sample.clip
  xy, z = _project(clip.tracks_xyz, clip.intrinsics)
  inside = ((z > 0) & (xy[..., 0] >= -0.5) & (xy[..., 0] < W - 0.5) & (xy[..., 1] >= -0.5) &
            (xy[..., 1] < H - 0.5))
  assert not np.any(clip.visibility & ~inside)
  tt, nn = np.nonzero(inside & ~clip.visibility)
  assert tt.size > 0, 'expected some occlusions in this scene'
  for t, n in zip(tt, nn):
    view = _render_at(sample, t, *xy[t, n])
    # Something else is drawn, strictly in front of the point.
    assert view['depth'][0, 0] < z[t, n] * (1 - 1e-4)


def test_queries_are_exact_projections_at_visible_frames(sample):
  clip = sample.clip
  qt = clip.queries_xyt[:, 2].astype(int)
  np.testing.assert_array_equal(clip.queries_xyt[:, 2], qt)
  xy, z = _project(clip.tracks_xyz[qt, np.arange(N)], clip.intrinsics)
  np.testing.assert_allclose(xy, clip.queries_xyt[:, :2], atol=2e-3)
  assert np.all(z > 0)
  assert np.all(clip.visibility[qt, np.arange(N)])
  assert len(np.unique(qt)) > 1


def test_static_points_keep_world_position(sample):
  clip = sample.clip
  c2w = np.linalg.inv(clip.extrinsics_w2c.astype(np.float64))
  world = np.einsum('tij,tnj->tni', c2w[:, :3, :3], clip.tracks_xyz.astype(np.float64))
  world += c2w[:, None, :3, 3]
  static = ~clip.dynamic_mask
  assert static.sum() > 5
  np.testing.assert_allclose(world[:, static], np.broadcast_to(world[:1, static],
                                                               world[:, static].shape), atol=1e-5)
  # Dynamic points move (rigidly or not) by more than a millimetre.
  motion = np.linalg.norm(world[:, clip.dynamic_mask] - world[:1, clip.dynamic_mask], axis=-1)
  assert np.all(motion.max(axis=0) > 1e-3)


def test_deforming_object_is_not_rigid():
  config = synthetic.SceneConfig(num_objects=(0, 0), deforming_object=True)
  sc = synthetic.synthesize_clip(11, T, H, W, 128, dynamic_fraction=1.0, config=config)
  on_blob = sc.track_primitive == 2  # sky 0, ground 1, then the deforming sphere
  assert on_blob.sum() > 10 and np.all(sc.clip.dynamic_mask[on_blob])
  w = sc.tracks_world[:, on_blob]
  dist = np.linalg.norm(w[:, :, None] - w[:, None, :], axis=-1)  # [T, n, n]
  # Pairwise distances change over time: a rigid motion would keep them.
  assert np.abs(dist - dist[:1]).max() > 0.02


def test_depth_and_normals_match_geometry(sample):
  clip = sample.clip
  ground = sample.primitive_ids == 1
  assert ground.any()
  # The ground normal is the world up axis seen from each camera.
  up_cam = clip.extrinsics_w2c[:, :3, :3].astype(np.float64) @ np.array([0.0, 0.0, 1.0])
  for t in range(T):
    np.testing.assert_allclose(clip.normals[t][ground[t]],
                               np.broadcast_to(up_cam[t], clip.normals[t][ground[t]].shape),
                               atol=1e-5)
  # Ground depth: the camera-frame point (depth * ray) has world z = 0.
  fx, fy, cx, cy = clip.intrinsics.astype(np.float64)
  ys, xs = np.nonzero(ground[0])
  cam = np.stack([(xs - cx) / fx, (ys - cy) / fy, np.ones_like(xs, float)], -1)
  cam *= clip.depth[0][ys, xs, None]
  c2w = np.linalg.inv(clip.extrinsics_w2c[0].astype(np.float64))
  np.testing.assert_allclose((cam @ c2w[:3, :3].T + c2w[:3, 3])[:, 2], 0.0, atol=1e-4)
  # Normals face the camera.
  ray = np.stack([(np.arange(W)[None] - cx) / fx + 0 * np.arange(H)[:, None],
                  (np.arange(H)[:, None] - cy) / fy + 0 * np.arange(W)[None],
                  np.ones((H, W))], -1)
  assert np.all(np.einsum('thwc,hwc->thw', clip.normals, ray) <= 1e-6)


def test_grid_mode(grid_sample):
  clip = grid_sample.clip
  g = 8
  assert clip.num_tracks == g * g
  xs = np.floor((np.arange(g) + 0.5) * W / g)
  ys = np.floor((np.arange(g) + 0.5) * H / g)
  np.testing.assert_array_equal(clip.queries_xyt[:, 0], np.tile(xs, g))
  np.testing.assert_array_equal(clip.queries_xyt[:, 1], np.repeat(ys, g))
  np.testing.assert_array_equal(clip.queries_xyt[:, 2], 0)
  assert np.all(clip.visibility[0])
  # Grid queries are pixel centres: the rendered primitive and depth there are the track's.
  rows, cols = np.repeat(ys, g).astype(int), np.tile(xs, g).astype(int)
  np.testing.assert_array_equal(grid_sample.primitive_ids[0, rows, cols],
                                grid_sample.track_primitive)
  np.testing.assert_allclose(clip.depth[0, rows, cols], clip.tracks_xyz[0, :, 2], rtol=1e-4)


def test_static_only():
  sc = synthetic.synthesize_clip(4, T, H, W, N, dynamic=False)
  assert not sc.clip.dynamic_mask.any()
  assert not sc.scene.moving.any()
  np.testing.assert_allclose(sc.tracks_world, np.broadcast_to(sc.tracks_world[:1],
                                                              sc.tracks_world.shape), atol=1e-12)
  # Same layout as the dynamic twin at t = 0 (motion amplitudes zeroed only).
  dyn = synthetic.synthesize_clip(4, T, H, W, N)
  assert [p.kind for p in sc.scene.primitives] == [p.kind for p in dyn.scene.primitives]


@pytest.mark.parametrize('rotation_deg', [0.0, 35.0, -90.0])
def test_render_view_pair(rotation_deg):
  out = synthetic.render_view_pair(9, rotation_deg, H, W, num_pairs=200)
  rel = out['relative_rotation']
  angle = np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1, 1)))
  np.testing.assert_allclose(angle, abs(rotation_deg), atol=1e-6)
  np.testing.assert_allclose(rel, out['w2c_b'][:3, :3] @ out['w2c_a'][:3, :3].T, atol=1e-12)
  pairs = out['pairs'].astype(np.float64)
  assert pairs.shape == (200, 4)
  fx, fy, cx, cy = out['intrinsics'].astype(np.float64)
  xa, ya = pairs[:, 0].astype(int), pairs[:, 1].astype(int)
  np.testing.assert_array_equal(pairs[:, :2], np.stack([xa, ya], -1))
  # Back-project A's pixel with A's depth, move to camera B, project: B's pixel.
  depth_a = out['depth_a'][ya, xa].astype(np.float64)
  cam_a = np.stack([(xa - cx) / fx, (ya - cy) / fy, np.ones_like(depth_a)], -1) * depth_a[:, None]
  cam_b = cam_a @ out['relative_pose'][:3, :3].T + out['relative_pose'][:3, 3]
  proj_b = np.stack([fx * cam_b[:, 0] / cam_b[:, 2] + cx, fy * cam_b[:, 1] / cam_b[:, 2] + cy], -1)
  np.testing.assert_allclose(proj_b, pairs[:, 2:], atol=1e-2)
  # The point is what B draws there: B's depth at the rounded pixel mostly agrees
  # (tiny images: many pairs lie within half a pixel of a silhouette) ...
  col = np.floor(pairs[:, 2] + 0.5).astype(int)
  row = np.floor(pairs[:, 3] + 0.5).astype(int)
  rel_err = np.abs(out['depth_b'][row, col] - cam_b[:, 2]) / cam_b[:, 2]
  assert np.median(rel_err) < 0.03 and np.mean(rel_err < 0.1) > 0.8
  # ... and exactly at the projection B renders that depth.
  scene = synthetic.make_scene(np.random.default_rng(np.random.SeedSequence(9)),
                               dataclasses.replace(synthetic.SceneConfig(), dynamic=False))
  for k in range(0, 200, 10):
    k_shift = np.array([fx, fy, cx - pairs[k, 2], cy - pairs[k, 3]])
    one = scene.render(out['w2c_b'], k_shift, 0.0, 1, 1)
    np.testing.assert_allclose(one['depth'][0, 0], cam_b[k, 2], rtol=1e-4)
  if rotation_deg == 0:
    np.testing.assert_allclose(pairs[:, 2:], pairs[:, :2], atol=1e-3)
    np.testing.assert_array_equal(out['rgb_a'], out['rgb_b'])
  else:
    assert not np.array_equal(out['rgb_a'], out['rgb_b'])


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match='query_mode'):
    synthetic.synthesize_clip(0, T, H, W, N, query_mode='spiral')
  with pytest.raises(ValueError, match='grid_size'):
    synthetic.synthesize_clip(0, T, H, W, query_mode='grid', grid_size=H + 1)
  with pytest.raises(ValueError, match='num_tracks'):
    synthetic.synthesize_clip(0, T, H, W, 0)
  with pytest.raises(ValueError, match='dynamic_fraction'):
    synthetic.synthesize_clip(0, T, H, W, N, dynamic_fraction=1.5)
  with pytest.raises(ValueError, match='object_kinds'):
    synthetic.SceneConfig(object_kinds=('torus',))
  with pytest.raises(ValueError, match='camera_distance'):
    synthetic.SceneConfig(camera_distance=(2.0, 8.0))
  with pytest.raises(ValueError, match='rotation_deg'):
    synthetic.render_view_pair(0, 200.0, H, W)
  scene = synthetic.make_scene(np.random.default_rng(0))
  with pytest.raises(ValueError, match='intrinsics'):
    scene.render(np.eye(4), np.array([1.0, 1.0, 0.0]), 0, H, W)
  with pytest.raises(ValueError, match='w2c'):
    scene.render(np.eye(3), np.array([50.0, 50.0, 0.0, 0.0]), 0, H, W)


def test_clip_videos_line_up_with_the_exact_tracks(tmp_path, sample):
  from tapkit.io import video as video_io  # pylint: disable=g-import-not-at-top
  from tapkit.tracking import evaluate  # pylint: disable=g-import-not-at-top

  clip = sample.clip
  paths = synthetic.write_clip_videos(os.fspath(tmp_path), 'clip', clip.raw_frames, clip,
                                      viz=True)
  assert paths == [os.fspath(tmp_path / 'video' / 'clip.mp4'),
                   os.fspath(tmp_path / 'viz' / 'clip_tracks.mp4')]
  video = video_io.read_video(paths[0])
  assert video.frames.shape == (T, H, W, 3) and video.fps == synthetic.cli.VIDEO_FPS
  # The raw frames, up to H.264 noise; frame t is closest to frame t (no shift in time).
  error = np.abs(video.frames[:, None].astype(np.float32) -
                 clip.raw_frames[None].astype(np.float32)).mean(axis=(2, 3, 4))  # [T, T]
  assert error.diagonal().max() < 6.0
  np.testing.assert_array_equal(error.argmin(axis=1), np.arange(T))
  # The exact tracks are ground truth for the decoded video: the exact tracker scores 1.
  tracks, visible = evaluate.clip_ground_truth(clip)
  exact = evaluate.exact_tracker_for(tracks, visible, 'first')
  metrics = evaluate.evaluate_clip(exact, video.frames, tracks, visible, 'first')
  assert metrics == {'average_jaccard': 1.0, 'average_pts_within_thresh': 1.0,
                     'occlusion_accuracy': 1.0}
  # The painted video differs from the raw one where the tracks are.
  painted = video_io.read_video(paths[1]).frames
  assert painted.shape == video.frames.shape
  assert np.abs(painted.astype(np.float32) - video.frames).mean() > 1.0


def test_cli_writes_clips_deterministically(tmp_path):
  from tapkit.data import tapvid3d  # pylint: disable=g-import-not-at-top
  common = ['--seed', '3', '--num_frames', '16', '--height', str(H), '--width', str(W),
            '--num_tracks', '32', '--frames_format', 'raw']
  synthetic.main(['--out', os.fspath(tmp_path / 'a'), '--num_clips', '2', '--tracks4d',
                  '--video', '--viz'] + common)
  synthetic.main(['--out', os.fspath(tmp_path / 'b'), '--num_clips', '1'] + common)
  a0 = tapvid3d.load_clip(os.fspath(tmp_path / 'a' / 'synthetic' / 'clip_0000.npz'))
  b0 = tapvid3d.load_clip(os.fspath(tmp_path / 'b' / 'synthetic' / 'clip_0000.npz'))
  a1 = tapvid3d.load_clip(os.fspath(tmp_path / 'a' / 'synthetic' / 'clip_0001.npz'))
  direct = synthetic.generate_clip((3, 0), 16, H, W, 32)
  for field in ('tracks_xyz', 'visibility', 'queries_xyt', 'intrinsics', 'extrinsics_w2c'):
    np.testing.assert_array_equal(getattr(a0, field), getattr(b0, field))
    np.testing.assert_allclose(getattr(a0, field), getattr(direct, field))
  np.testing.assert_array_equal(a0.frames, direct.raw_frames)
  assert not np.array_equal(a0.tracks_xyz, a1.tracks_xyz)
  from tapkit.data import tracks4d_format

  t4d = tracks4d_format.load_tracks4d_npz(tmp_path / 'a' / 'tracks4d' / 'clip_0001.npz')
  assert t4d['pred_tracks'].shape == (1, 16, 32, 2)
  assert sorted(os.listdir(tmp_path / 'a' / 'video')) == ['clip_0000.mp4', 'clip_0001.mp4']
  assert sorted(os.listdir(tmp_path / 'a' / 'viz')) == ['clip_0000_tracks.mp4',
                                                        'clip_0001_tracks.mp4']
  from tapkit.io import video as video_io  # pylint: disable=g-import-not-at-top

  decoded = video_io.read_video(os.fspath(tmp_path / 'a' / 'video' / 'clip_0000.mp4')).frames
  assert decoded.shape == a0.frames.shape
  assert np.abs(decoded.astype(np.float32) - a0.frames).mean() < 6.0
  assert not os.path.exists(tmp_path / 'b' / 'video')
