"""3D tracks and camera trajectories: a static matplotlib view and an offline HTML viewer.

Conventions (see /ARCHITECTURE.md): points are [T, N, 3] metres in one frame
(a world frame, or the camera frame for TAPVid-3D `tracks_xyz`); camera poses
are world-to-camera [T, 4, 4] in OpenCV axes (x right, y down, z forward);
intrinsics are (fx, fy, cx, cy) in pixels. "Up" for display defaults to the
cameras' mean up direction (-y of each camera, in the world), else -y.

`interactive_html` writes ONE self-contained file: a small vanilla-JS canvas viewer
(perspective projection, drag to orbit, wheel to zoom, time slider, play button,
camera frusta as lines) with the data embedded as JSON in a
`<script type="application/json" id="tapkit-data">` element. To keep files small
it keeps at most `max_points` tracks and at most `max_values` (frame, track)
points in all, subsampling tracks evenly; coordinates are rounded to 0.1 mm.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from tapkit.data import geometry
from tapkit.data.clip import Clip
from tapkit.viz import _common
from tapkit.viz import tracks2d

# Defaults bounding the embedded data of `interactive_html` (a 100k-point file is ~2 MB).
DEFAULT_MAX_POINTS = 2000
DEFAULT_MAX_VALUES = 100_000
_DECIMALS = 4  # metres -> 0.1 mm


def _as_poses(w2c: Any | None, num_frames: int) -> np.ndarray | None:
  if w2c is None:
    return None
  w2c = np.asarray(w2c, np.float64)
  if w2c.shape == (4, 4):
    w2c = np.broadcast_to(w2c, (num_frames, 4, 4))
  if w2c.ndim != 3 or w2c.shape[1:] != (4, 4):
    raise ValueError(f'w2c must be [T, 4, 4], got {w2c.shape}')
  return w2c


def camera_centers(w2c: Any) -> np.ndarray:
  """[T, 3] camera centres in the world (metres) from world-to-camera poses [T, 4, 4]."""
  # X_cam = R X_world + t is 0 at the centre: C = -R^T t, the translation of c2w.
  return geometry.invert_pose(np.asarray(w2c, np.float64))[..., :3, 3]


def default_image_size(intrinsics: Any) -> tuple[int, int]:
  """(H, W) implied by a centred principal point, cx = (W - 1) / 2, cy = (H - 1) / 2."""
  _, _, cx, cy = np.asarray(intrinsics, np.float64).reshape(4)
  return max(int(round(2 * cy + 1)), 2), max(int(round(2 * cx + 1)), 2)


def frustum_segments(w2c: Any, intrinsics: Any | None = None,
                     image_size: tuple[int, int] | None = None,
                     scale: float = 0.2) -> np.ndarray:
  """Line segments [..., 8, 2, 3] (world metres) drawing each camera's viewing pyramid.

  Args:
    w2c: [..., 4, 4] world-to-camera poses.
    intrinsics: (fx, fy, cx, cy) pixels; None = 60 degree horizontal field of view
      on a 4:3 image.
    image_size: (H, W) pixels; None = implied by the principal point.
    scale: depth (metres along the optical axis) of the pyramid's base.

  Returns:
    Four edges from the centre to the image corners, then the four base edges.
  """
  w2c = np.asarray(w2c, np.float64)
  if intrinsics is None:
    width, height = 4.0, 3.0
    fx = fy = 0.5 * width / np.tan(np.deg2rad(30.0))
    intrinsics = (fx, fy, (width - 1) / 2, (height - 1) / 2)
    image_size = (3, 4)
  fx, fy, cx, cy = np.asarray(intrinsics, np.float64).reshape(4)
  height, width = image_size or default_image_size(intrinsics)
  # Outer edges of the corner pixels, at depth `scale`.
  us = np.array([-0.5, width - 0.5, width - 0.5, -0.5])
  vs = np.array([-0.5, -0.5, height - 0.5, height - 0.5])
  corners_cam = np.stack([(us - cx) / fx * scale, (vs - cy) / fy * scale,
                          np.full(4, scale)], -1)  # [4, 3]
  rot, trans = w2c[..., :3, :3], w2c[..., :3, 3]
  # X_world = R^T (X_cam - t).
  corners = np.einsum('...ji,...kj->...ki', rot, corners_cam - trans[..., None, :])
  center = camera_centers(w2c)[..., None, :]  # [..., 1, 3]
  center = np.broadcast_to(center, corners.shape)
  spokes = np.stack([center, corners], -2)  # [..., 4, 2, 3]
  base = np.stack([corners, np.roll(corners, -1, axis=-2)], -2)
  return np.concatenate([spokes, base], -3)


def up_vector(w2c: Any | None = None) -> np.ndarray:
  """[3] display "up": minus the cameras' mean y axis in the world, else (0, -1, 0).

  Snapped to the nearest signed world axis when within 30 degrees of it.
  """
  if w2c is not None:
    w2c = np.asarray(w2c, np.float64).reshape(-1, 4, 4)
    up = -w2c[:, 1, :3].mean(0)  # Row 1 of R is the camera y axis in world coordinates.
    norm = np.linalg.norm(up)
    if norm > 1e-6:
      up = up / norm
      # Cameras usually look slightly down, which tilts their mean y axis; snap to
      # a world axis within 30 degrees so that, e.g., a z-up world stays upright.
      axis = int(np.argmax(np.abs(up)))
      if abs(up[axis]) > np.cos(np.deg2rad(30.0)):
        return np.sign(up[axis]) * np.eye(3)[axis]
      return up
  return np.array([0.0, -1.0, 0.0])


def _display_basis(up: np.ndarray) -> np.ndarray:
  """[3, 3] right-handed rows (e1, e2, up) with `up` last (becomes matplotlib's z)."""
  up = up / np.linalg.norm(up)
  e1 = np.eye(3)[np.argmin(np.abs(up))]
  e1 = e1 - up * (e1 @ up)
  e1 /= np.linalg.norm(e1)
  return np.stack([e1, np.cross(up, e1), up])


def _axis_label(v: np.ndarray, fallback: str, units: str = 'm') -> str:
  axis = int(np.argmax(np.abs(v)))
  name = ('' if v[axis] > 0 else '-') + 'xyz'[axis] if abs(v[axis]) > 0.999 else fallback
  return f'{name} ({units})'



def _subsample(num: int, keep: int) -> np.ndarray:
  """Evenly spaced indices of `keep` out of `num` items (all when keep >= num)."""
  if keep >= num:
    return np.arange(num)
  return np.unique(np.linspace(0, num - 1, max(keep, 1)).round().astype(int))


def plot_tracks_3d(points: Any, *, visible: Any | None = None, color_by: str = 'time',
                   colors: Any | None = None, motion: Any | None = None,
                   w2c: Any | None = None, intrinsics: Any | None = None,
                   image_size: tuple[int, int] | None = None,
                   frustum_scale: float | None = None, num_frusta: int = 8,
                   max_points: int = 400, drop_outliers: bool = True,
                   cmap: str | None = None, title: str = '',
                   elev: float = 25.0, azim: float = -60.0,
                   figsize: tuple[float, float] = (7.0, 6.0), units: str = 'm',
                   path: str | os.PathLike | None = None) -> Figure:
  """Static 3D view of point tracks and (optionally) the camera trajectory.

  Args:
    points: [T, N, 3] metres.
    visible: [T, N] bool, or None for all; hidden points are not drawn.
    color_by: 'time' (each point by its frame), 'motion' (each track by `motion`
      [N], e.g. a predicted motion level in [0, 1], else by its mean 3D
      displacement per frame) or 'track' (`colors` [N, 3], default rainbow).
    colors: [N, 3] uint8 colours for color_by='track'.
    motion: [N] per-track values for color_by='motion'.
    w2c: [T, 4, 4] world-to-camera poses of the same world, or None.
    intrinsics, image_size: for the frusta (see `frustum_segments`).
    frustum_scale: frustum depth in metres; None = 8% of the scene's extent
      (2nd-98th percentile box of points and camera centres).
    num_frusta: how many evenly spaced frames get a frustum (the trajectory is
      always drawn whole).
    max_points: tracks kept (evenly subsampled) to keep the plot legible.
    drop_outliers: hide points outside the 2nd-98th percentile box (of points and
      camera centres) grown by 25% of its largest side, so a few far points (a sky
      dome, depth outliers) do not shrink the scene to a dot.
    cmap: colormap (default 'viridis' for time, 'coolwarm' for motion).
    title, elev, azim, figsize: figure options.
    units: length unit of `points` for the axis labels: 'm' for metric data, e.g.
      'arbitrary units' for a prediction known only up to scale.
    path: if given, also saved there as PNG.

  Returns:
    The matplotlib Figure (Agg canvas).
  """
  points = np.asarray(points, np.float64)
  if points.ndim != 3 or points.shape[-1] != 3:
    raise ValueError(f'points must be [T, N, 3], got {points.shape}')
  num_frames, num_tracks = points.shape[:2]
  visible = (np.ones((num_frames, num_tracks), bool) if visible is None
             else np.asarray(visible, bool))
  visible = visible & np.all(np.isfinite(points), -1)
  poses = _as_poses(w2c, num_frames)
  basis = _display_basis(up_vector(poses))
  keep = _subsample(num_tracks, max_points)

  pts = points[:, keep] @ basis.T  # [T, K, 3] in display axes
  vis = visible[:, keep]
  centers = None if poses is None else camera_centers(poses) @ basis.T
  if drop_outliers and vis.any():
    anchors = pts[vis] if centers is None else np.concatenate([pts[vis], centers])
    lo, hi = np.percentile(anchors, 2, axis=0), np.percentile(anchors, 98, axis=0)
    margin = 0.25 * (hi - lo).max()
    vis = vis & np.all((pts >= lo - margin) & (pts <= hi + margin), axis=-1)
  fig = _common.new_figure(*figsize)
  ax = fig.add_subplot(projection='3d')
  t_idx = np.broadcast_to(np.arange(num_frames)[:, None], vis.shape)
  if color_by == 'time':
    sc = ax.scatter(pts[vis][:, 0], pts[vis][:, 1], pts[vis][:, 2], c=t_idx[vis],
                    cmap=cmap or 'viridis', s=4, vmin=0, vmax=max(num_frames - 1, 1),
                    depthshade=False)
    fig.colorbar(sc, ax=ax, shrink=0.6, label='frame')
  elif color_by in ('motion', 'track'):
    if color_by == 'motion':
      values = (tracks2d.motion_magnitude(points, visible) if motion is None
                else np.asarray(motion, np.float64).reshape(-1))[keep]
      track_rgb = _common.map_colors(values, cmap or 'coolwarm') / 255.0
      label = 'motion' if motion is not None else f'mean motion ({units} / frame)'
      mappable = _scalar_mappable(values, cmap or 'coolwarm')
      fig.colorbar(mappable, ax=ax, shrink=0.6, label=label)
    else:
      rgb = (_common.rainbow_colors(np.arange(num_tracks)) if colors is None
             else _common.to_uint8(colors).reshape(num_tracks, 3))
      track_rgb = rgb[keep] / 255.0
    point_rgb = np.broadcast_to(track_rgb[None], vis.shape + (3,))
    ax.scatter(pts[vis][:, 0], pts[vis][:, 1], pts[vis][:, 2], c=point_rgb[vis], s=4,
               depthshade=False)
  else:
    raise ValueError(f"color_by must be 'time', 'motion' or 'track', got {color_by!r}")

  shown = [pts[vis]]
  if centers is not None:
    shown.append(centers)
    _, extent = _robust_extent(np.concatenate(shown))
    scale = frustum_scale if frustum_scale is not None else 0.08 * extent
    ax.plot(centers[:, 0], centers[:, 1], centers[:, 2], color='k', lw=1.0, label='camera')
    frame_cmap = colormaps['viridis']
    for t in _subsample(num_frames, num_frusta):
      segs = frustum_segments(poses[t], intrinsics, image_size, scale) @ basis.T
      color = frame_cmap(t / max(num_frames - 1, 1))
      for seg in segs:
        ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=color, lw=0.8)
    ax.legend(loc='upper left', fontsize='small')
  _set_equal_axes(ax, np.concatenate(shown) if shown[0].size or len(shown) > 1
                  else np.zeros((1, 3)))
  for set_label, v, fallback in zip((ax.set_xlabel, ax.set_ylabel, ax.set_zlabel), basis,
                                    ('e1', 'e2', 'up')):
    set_label(_axis_label(v, fallback, units))
  ax.view_init(elev=elev, azim=azim)
  if title:
    ax.set_title(title)
  if path is not None:
    _common.save_figure(fig, path)
  return fig


def _scalar_mappable(values: np.ndarray, cmap: str):
  from matplotlib.cm import ScalarMappable  # pylint: disable=g-import-not-at-top
  from matplotlib.colors import Normalize  # pylint: disable=g-import-not-at-top

  finite = values[np.isfinite(values)]
  lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
  return ScalarMappable(Normalize(lo, hi if hi > lo else lo + 1.0), cmap)


def _extent(xyz: np.ndarray) -> float:
  if xyz.size == 0:
    return 1.0
  span = float(np.max(xyz.max(0) - xyz.min(0)))
  return span if span > 1e-9 else 1.0


def _robust_extent(xyz: np.ndarray) -> tuple[np.ndarray, float]:
  """(centre [3], largest side) of the 2nd-98th percentile box of points [M, 3].

  Percentiles keep a few far points (e.g. a sky dome) from shrinking the scene.
  """
  if xyz.size == 0:
    return np.zeros(3), 1.0
  lo, hi = np.percentile(xyz, 2, axis=0), np.percentile(xyz, 98, axis=0)
  span = float(np.max(hi - lo))
  return (lo + hi) / 2, span if span > 1e-9 else 1.0


def _set_equal_axes(ax, xyz: np.ndarray) -> None:
  """Same metres per unit on all three axes, so shapes are not distorted."""
  lo, hi = xyz.min(0), xyz.max(0)
  mid, half = (lo + hi) / 2, max(_extent(xyz) / 2, 1e-3) * 1.05
  ax.set_xlim(mid[0] - half, mid[0] + half)
  ax.set_ylim(mid[1] - half, mid[1] + half)
  ax.set_zlim(mid[2] - half, mid[2] + half)
  ax.set_box_aspect((1, 1, 1))


def clip_points(clip: Clip, world: bool = True) -> np.ndarray:
  """[T, N, 3] metres: a clip's tracks in the world frame (via `extrinsics_w2c`).

  With world=False, or when the clip has no extrinsics, the per-frame camera-frame
  `tracks_xyz` are returned unchanged.
  """
  points = np.asarray(clip.tracks_xyz, np.float64)
  if not world or clip.extrinsics_w2c is None:
    return points
  c2w = np.linalg.inv(np.asarray(clip.extrinsics_w2c, np.float64))
  return np.einsum('tij,tnj->tni', c2w[:, :3, :3], points) + c2w[:, None, :3, 3]


def _clip_rainbow(clip: Clip) -> np.ndarray:
  """[N, 3] uint8: the 2D painter's colours (rank of initial image y), so views match."""
  xy = tracks2d.project_points(clip.tracks_xyz, clip.intrinsics)
  return tracks2d.track_colors(xy, clip.visibility, 'rainbow')


def plot_clip(clip: Clip, **kwargs: Any) -> Figure:
  """`plot_tracks_3d` of a clip: world tracks, visibility, cameras and intrinsics.

  color_by='track' defaults to the colours `tracks2d.paint_clip` uses.
  """
  kwargs.setdefault('image_size', clip.frame_size if clip.has_frames else None)
  if kwargs.get('color_by') == 'track' and kwargs.get('colors') is None:
    kwargs['colors'] = _clip_rainbow(clip)
  return plot_tracks_3d(clip_points(clip), visible=clip.visibility, w2c=clip.extrinsics_w2c,
                        intrinsics=clip.intrinsics, **kwargs)


def clip_html(path: str | os.PathLike, clip: Clip, colors: Any | None = None,
              title: str = '', **kwargs: Any) -> str:
  """`interactive_html` of a clip: world tracks, visibility, cameras and intrinsics.

  `colors` defaults to the colours `tracks2d.paint_clip` uses.
  """
  kwargs.setdefault('image_size', clip.frame_size if clip.has_frames else None)
  if colors is None:
    colors = _clip_rainbow(clip)
  return interactive_html(path, clip_points(clip), colors, clip.extrinsics_w2c,
                          clip.intrinsics, title, visible=clip.visibility, **kwargs)


def _pack_rgb(rgb: np.ndarray) -> list[int]:
  rgb = rgb.astype(np.int64)
  return (rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]).tolist()


def viewer_data(points: Any, colors: Any | None = None, w2c: Any | None = None,
                intrinsics: Any | None = None, title: str = '', *,
                visible: Any | None = None, image_size: tuple[int, int] | None = None,
                max_points: int = DEFAULT_MAX_POINTS,
                max_values: int = DEFAULT_MAX_VALUES, fps: float = 10.0) -> dict[str, Any]:
  """The JSON-ready dict embedded by `interactive_html` (see there for arguments).

  Keys: title, num_frames, num_points, total_points (before subsampling),
  track_indices [K], points [T][3K] (flat x, y, z; hidden points are 0),
  visible [T][K] (0/1), colors [K] or [T][K] (0xRRGGBB ints), up [3], center [3],
  radius, fps, cameras (None or {centers [T][3], frusta [T][8][2][3]}).
  """
  points = np.asarray(points, np.float64)
  if points.ndim != 3 or points.shape[-1] != 3:
    raise ValueError(f'points must be [T, N, 3], got {points.shape}')
  num_frames, num_tracks = points.shape[:2]
  if num_frames < 1:
    raise ValueError('points must have at least one frame')
  vis = (np.ones((num_frames, num_tracks), bool) if visible is None
         else np.asarray(visible, bool))
  if vis.shape != (num_frames, num_tracks):
    raise ValueError(f'visible must be [T, N] = {(num_frames, num_tracks)}, got {vis.shape}')
  keep_count = min(max_points, max(max_values // num_frames, 1))
  keep = _subsample(num_tracks, keep_count)
  pts = points[:, keep]
  vis = vis[:, keep] & np.all(np.isfinite(pts), -1)
  pts = np.where(vis[..., None], pts, 0.0)  # JSON has no NaN; `visible` marks these.

  if colors is None:
    rgb = _common.rainbow_colors(np.arange(num_tracks))[keep]
  else:
    colors = np.asarray(colors)
    if colors.shape == (num_tracks, 3):
      rgb = _common.to_uint8(colors)[keep]
    elif colors.shape == (num_frames, num_tracks, 3):
      rgb = _common.to_uint8(colors)[:, keep]
    else:
      raise ValueError(f'colors must be [N, 3] or [T, N, 3] with T, N = {num_frames}, '
                       f'{num_tracks}; got {colors.shape}')

  poses = _as_poses(w2c, num_frames)
  shown = pts[vis]
  cameras = None
  if poses is not None:
    centers = camera_centers(poses)
    shown = np.concatenate([shown, centers])
    scale = 0.08 * _robust_extent(shown)[1]
    frusta = frustum_segments(poses, intrinsics, image_size, scale)
    cameras = {'centers': np.round(centers, _DECIMALS).tolist(),
               'frusta': np.round(frusta, _DECIMALS).tolist()}
  if shown.size == 0:
    shown = np.zeros((1, 3))
  center, extent = _robust_extent(shown)
  radius = float(max(0.5 * np.sqrt(3.0) * extent, 1e-3))  # half-diagonal of the robust box
  return {
      'title': str(title),
      'num_frames': int(num_frames),
      'num_points': int(len(keep)),
      'total_points': int(num_tracks),
      'track_indices': keep.tolist(),
      'points': np.round(pts.reshape(num_frames, -1), _DECIMALS).tolist(),
      'visible': vis.astype(np.int8).tolist(),
      'colors': _pack_rgb(rgb),
      'up': np.round(up_vector(poses), 6).tolist(),
      'center': np.round(center, _DECIMALS).tolist(),
      'radius': radius,
      'fps': float(fps),
      'cameras': cameras,
  }


def interactive_html(path: str | os.PathLike, points: Any, colors: Any | None = None,
                     w2c: Any | None = None, intrinsics: Any | None = None, title: str = '',
                     *, visible: Any | None = None,
                     image_size: tuple[int, int] | None = None,
                     max_points: int = DEFAULT_MAX_POINTS,
                     max_values: int = DEFAULT_MAX_VALUES, fps: float = 10.0) -> str:
  """Writes a self-contained, offline HTML 3D viewer of tracks and cameras.

  Args:
    path: output .html file.
    points: [T, N, 3] metres.
    colors: [N, 3] or [T, N, 3] uint8 (or float [0, 1]); None = rainbow by track.
    w2c: [T, 4, 4] world-to-camera poses in the points' frame, or None.
    intrinsics: (fx, fy, cx, cy) pixels for the frusta (None = 60 degree FOV).
    title: page and viewer title.
    visible: [T, N] bool, or None for all; hidden points are not drawn.
    image_size: (H, W) pixels for the frusta; None = implied by the principal point.
    max_points: at most this many tracks are embedded (evenly subsampled).
    max_values: at most this many (frame, track) points are embedded in all, so a
      long clip keeps fewer tracks (at least one).
    fps: playback speed of the play button.

  Returns:
    The path written.
  """
  data = viewer_data(points, colors, w2c, intrinsics, title, visible=visible,
                     image_size=image_size, max_points=max_points, max_values=max_values,
                     fps=fps)
  # '</' inside a script element would end it early; JSON allows the escaped form.
  payload = json.dumps(data, separators=(',', ':')).replace('</', '<\\/')
  page = (_VIEWER_TEMPLATE.replace('__TITLE__', html.escape(title or '3D tracks'))
          .replace('__DATA__', payload))
  path = os.fspath(path)
  _common.make_parent_dir(path)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(page)
  return path


def read_viewer_data(page: str) -> dict[str, Any]:
  """Parses the JSON embedded by `interactive_html` back out of the page text."""
  start_tag = '<script type="application/json" id="tapkit-data">'
  start = page.index(start_tag) + len(start_tag)
  end = page.index('</script>', start)
  return json.loads(page[start:end])


_VIEWER_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
  html, body { margin: 0; height: 100%; background: #15171c; color: #ddd;
               font: 13px sans-serif; overflow: hidden; }
  #bar { position: absolute; left: 0; right: 0; bottom: 0; height: 40px; display: flex;
         align-items: center; gap: 10px; padding: 0 10px; background: #22252d; }
  #bar input[type=range] { flex: 1; }
  #info { position: absolute; left: 10px; top: 8px; pointer-events: none; }
  button { min-width: 64px; }
  canvas { display: block; cursor: grab; }
</style>
</head>
<body>
<canvas id="view"></canvas>
<div id="info"></div>
<div id="bar">
  <button id="play">Play</button>
  <input id="time" type="range" min="0" max="0" step="1" value="0">
  <span id="label"></span>
  <label><input id="trails" type="checkbox" checked> trails</label>
  <label><input id="allcams" type="checkbox" checked> all cameras</label>
</div>
<script type="application/json" id="tapkit-data">__DATA__</script>
<script>
(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('tapkit-data').textContent);
  const canvas = document.getElementById('view');
  const ctx = canvas.getContext('2d');
  const slider = document.getElementById('time');
  const playButton = document.getElementById('play');
  const label = document.getElementById('label');
  const trails = document.getElementById('trails');
  const allCams = document.getElementById('allcams');
  const T = data.num_frames, K = data.num_points;
  const TRAIL = 10;  // frames of history drawn behind each point
  slider.max = String(T - 1);
  document.getElementById('info').textContent = (data.title ? data.title + ' - ' : '') +
      K + ' of ' + data.total_points + ' tracks, ' + T + ' frames. Drag to orbit, wheel to zoom, arrows step, space plays.';

  // Per-point CSS colours, computed once.
  const hex = (c) => '#' + c.toString(16).padStart(6, '0');
  const perFrame = Array.isArray(data.colors[0]);
  const colors = perFrame ? data.colors.map((row) => row.map(hex)) : data.colors.map(hex);
  const colorOf = (t, k) => (perFrame ? colors[t][k] : colors[k]);

  // Orbit camera around data.center; `up` is the display vertical.
  const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2],
                           a[0] * b[1] - a[1] * b[0]];
  const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
  const norm = (a) => scale(a, 1 / Math.hypot(a[0], a[1], a[2]));
  const up = norm(data.up);
  const seed = Math.abs(up[0]) < 0.9 ? [1, 0, 0] : [0, 1, 0];
  const e1 = norm(sub(seed, scale(up, dot(seed, up))));
  const e2 = cross(up, e1);
  const view = {yaw: 0.8, pitch: 0.45, dist: 2.6 * data.radius, fov: 50 * Math.PI / 180};
  let t = 0, playing = null;

  let eye, right, camUp, fwd, focal;
  function setupView() {
    const cp = Math.cos(view.pitch);
    const dir = [0, 1, 2].map((i) => cp * (Math.cos(view.yaw) * e1[i] + Math.sin(view.yaw) *
                                           e2[i]) + Math.sin(view.pitch) * up[i]);
    eye = [0, 1, 2].map((i) => data.center[i] + view.dist * dir[i]);
    fwd = scale(dir, -1);
    right = norm(cross(fwd, up));
    camUp = cross(right, fwd);
    focal = 0.5 * Math.min(canvas.width, canvas.height) / Math.tan(view.fov / 2);
  }
  // World point -> [screen x, screen y, depth] or null when behind the eye.
  function project(p) {
    const d = sub(p, eye);
    const z = dot(d, fwd);
    if (z < 1e-4 * view.dist) return null;
    return [canvas.width / 2 + focal * dot(d, right) / z,
            canvas.height / 2 - focal * dot(d, camUp) / z, z];
  }
  function point(s, k) {
    const row = data.points[s];
    return [row[3 * k], row[3 * k + 1], row[3 * k + 2]];
  }
  function line(a, b) {
    const pa = project(a), pb = project(b);
    if (!pa || !pb) return;
    ctx.beginPath(); ctx.moveTo(pa[0], pa[1]); ctx.lineTo(pb[0], pb[1]); ctx.stroke();
  }
  function drawCamera(s, color, width) {
    ctx.strokeStyle = color; ctx.lineWidth = width;
    for (const seg of data.cameras.frusta[s]) line(seg[0], seg[1]);
  }

  function draw() {
    setupView();
    ctx.fillStyle = '#15171c';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    // Cameras: trajectory, faint frusta for all frames, the current one bright.
    if (data.cameras) {
      const c = data.cameras.centers;
      ctx.strokeStyle = '#8a8f9c'; ctx.lineWidth = 1;
      for (let s = 1; s < T; s++) line(c[s - 1], c[s]);
      if (allCams.checked) {
        const every = Math.max(1, Math.round(T / 12));
        for (let s = 0; s < T; s += every) drawCamera(s, 'rgba(160,165,180,0.35)', 1);
      }
      drawCamera(t, '#ffffff', 2);
    }
    // Trails: segments between consecutive visible frames, older ones fainter.
    if (trails.checked) {
      ctx.lineWidth = 1.5;
      for (let age = Math.min(TRAIL, t); age >= 1; age--) {
        const s = t - age;
        ctx.globalAlpha = 0.7 * (1 - (age - 1) / TRAIL);
        for (let k = 0; k < K; k++) {
          if (!data.visible[s][k] || !data.visible[s + 1][k]) continue;
          ctx.strokeStyle = colorOf(s + 1, k);
          line(point(s, k), point(s + 1, k));
        }
      }
      ctx.globalAlpha = 1;
    }
    // Points of the current frame, far to near so near ones stay on top.
    const shown = [];
    for (let k = 0; k < K; k++) {
      if (!data.visible[t][k]) continue;
      const p = project(point(t, k));
      if (p) shown.push([p, k]);
    }
    shown.sort((a, b) => b[0][2] - a[0][2]);
    for (const [p, k] of shown) {
      const r = Math.max(1.5, Math.min(6, 0.012 * data.radius * focal / p[2]));
      ctx.fillStyle = colorOf(t, k);
      ctx.fillRect(p[0] - r, p[1] - r, 2 * r, 2 * r);
    }
    label.textContent = 'frame ' + t + ' / ' + (T - 1);
  }

  function resize() {
    canvas.width = window.innerWidth;
    canvas.height = Math.max(50, window.innerHeight - 40);
    draw();
  }
  function setTime(s) { t = Math.max(0, Math.min(T - 1, s)); slider.value = String(t); draw(); }
  function togglePlay() {
    if (playing) { clearInterval(playing); playing = null; playButton.textContent = 'Play'; return; }
    playButton.textContent = 'Pause';
    playing = setInterval(() => setTime((t + 1) % T), 1000 / Math.max(1, data.fps));
  }

  let drag = null;
  canvas.addEventListener('mousedown', (e) => { drag = [e.clientX, e.clientY]; });
  window.addEventListener('mouseup', () => { drag = null; });
  window.addEventListener('mousemove', (e) => {
    if (!drag) return;
    view.yaw -= 0.008 * (e.clientX - drag[0]);
    view.pitch = Math.max(-1.5, Math.min(1.5, view.pitch + 0.008 * (e.clientY - drag[1])));
    drag = [e.clientX, e.clientY];
    draw();
  });
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    view.dist = Math.max(1e-3 * data.radius, view.dist * Math.exp(0.001 * e.deltaY));
    draw();
  }, {passive: false});
  window.addEventListener('keydown', (e) => {
    if (e.target === slider) return;  // the slider handles its own arrow keys
    if (e.key === 'ArrowRight') setTime(t + 1);
    else if (e.key === 'ArrowLeft') setTime(t - 1);
    else if (e.key === ' ') { e.preventDefault(); togglePlay(); }
  });
  slider.addEventListener('input', () => setTime(parseInt(slider.value, 10)));
  playButton.addEventListener('click', togglePlay);
  trails.addEventListener('change', draw);
  allCams.addEventListener('change', draw);
  window.addEventListener('resize', resize);
  resize();
})();
</script>
</body>
</html>
"""
