"""Painting 2D point tracks on video frames, and writing the result as a video.

Conventions: frames are [T, H, W, 3] uint8; tracks are [T, N, 2] pixel coordinates
(x, y) with pixel centres at integers (the TAPVid-3D convention, see
tapkit/data/clip.py); visibility is [T, N] bool (True = visible). Tracks in other
layouts (e.g. TRAJAN's [N, T, 2] in [0, 1]) are converted with `to_pixels`.

Typical use:

  frames = paint_clip(clip, color_by='rainbow', trail=8)
  write_video('out.mp4', frames, fps=10)  # falls back to out.gif without ffmpeg
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np

from tapkit.data import geometry
from tapkit.data.clip import Clip
from tapkit.viz import _common

OCCLUDED_MODES = ('hollow', 'hide')
COLOR_MODES = ('rainbow', 'score', 'motion')


def project_points(points_xyz: Any, intrinsics: Any) -> np.ndarray:
  """Pinhole projection of camera-frame points [..., 3] (metres) to pixels [..., 2].

  `intrinsics` is (fx, fy, cx, cy) in pixels; x = fx * X / Z + cx, in float64.
  `geometry.project` with the 'nan' policy: points with Z <= 1e-9 (behind the
  camera) come out as NaN so they are never painted.
  """
  return geometry.project(np.asarray(points_xyz, np.float64),
                          np.asarray(intrinsics, np.float64).reshape(4),
                          behind='nan', min_depth=1e-9)


def to_pixels(tracks: Any, height: int, width: int, *, normalized: bool = True,
              tracks_first: bool = True) -> np.ndarray:
  """Converts model-layout tracks to this module's [T, N, 2] pixel layout.

  Args:
    tracks: [N, T, 2] (tracks_first) or [T, N, 2]; (x, y), normalised to [0, 1]
      (normalized=True, 0 = left/top edge, 1 = right/bottom edge) or pixels.
    height, width: frame size H, W in pixels.
    normalized: whether `tracks` is in [0, 1].
    tracks_first: whether the track axis comes before the time axis.

  Returns:
    [T, N, 2] float64 pixel coordinates, pixel centres at integers.
  """
  tracks = np.asarray(tracks, np.float64)
  if tracks_first:
    tracks = np.swapaxes(tracks, 0, 1)
  if normalized:
    # [0, 1] spans the image edges; pixel centre i sits at (i + 0.5) / size.
    tracks = tracks * np.array([width, height]) - 0.5
  return tracks


def motion_magnitude(tracks: Any, visible: Any | None = None) -> np.ndarray:
  """[N] mean displacement per frame (units of `tracks`) over consecutive visible frames.

  Args:
    tracks: [T, N, D] positions (pixels for 2D, metres for 3D).
    visible: [T, N] bool, or None for all visible.
  """
  tracks = np.asarray(tracks, np.float64)
  if visible is None:
    visible = np.ones(tracks.shape[:2], bool)
  visible = np.asarray(visible, bool)
  if tracks.shape[0] < 2:
    return np.zeros(tracks.shape[1])
  step = np.linalg.norm(np.diff(tracks, axis=0), axis=-1)  # [T-1, N]
  both = visible[1:] & visible[:-1] & np.isfinite(step)
  total = np.where(both, step, 0.0).sum(0)
  count = both.sum(0)
  return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _initial_y(tracks: np.ndarray, visible: np.ndarray) -> np.ndarray:
  """[N] y pixel of each track at its first visible frame (frame 0 if never visible)."""
  first = np.argmax(visible, axis=0)  # 0 when never visible
  y = tracks[first, np.arange(tracks.shape[1]), 1]
  return np.nan_to_num(y, nan=0.0)


def track_colors(tracks: Any, visible: Any | None = None, color_by: str = 'rainbow', *,
                 scores: Any | None = None, cmap: str | None = None,
                 vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
  """[N, 3] uint8 colour per track.

  Args:
    tracks: [T, N, 2] pixels.
    visible: [T, N] bool or None (all visible).
    color_by: 'rainbow' - hue by rank of the initial y (tapnet's demo colouring, so
      bands of tracks keep one hue across the image); 'score' - `scores` [N] through
      `cmap` (default 'RdYlGn', low red, high green); 'motion' - mean pixel
      displacement per frame through `cmap` (default 'plasma').
    scores: [N] per-track values for color_by='score'.
    cmap, vmin, vmax: colormap and its range (data range when None).
  """
  tracks = np.asarray(tracks, np.float64)
  if visible is None:
    visible = np.ones(tracks.shape[:2], bool)
  visible = np.asarray(visible, bool)
  if color_by == 'rainbow':
    return _common.rainbow_colors(_initial_y(tracks, visible), cmap or 'gist_rainbow')
  if color_by == 'score':
    if scores is None:
      raise ValueError("color_by='score' needs scores [N]")
    scores = np.asarray(scores, np.float64).reshape(-1)
    if scores.shape[0] != tracks.shape[1]:
      raise ValueError(f'scores has {scores.shape[0]} entries for {tracks.shape[1]} tracks')
    return _common.map_colors(scores, cmap or 'RdYlGn', vmin, vmax)
  if color_by == 'motion':
    return _common.map_colors(motion_magnitude(tracks, visible), cmap or 'plasma', vmin, vmax)
  raise ValueError(f'color_by must be one of {COLOR_MODES}, got {color_by!r}')


def paint_tracks(frames: Any, tracks: Any, visible: Any | None = None,
                 colors: Any | None = None, *, trail: int = 8, radius: float = 2.0,
                 line_width: int = 1, occluded: str = 'hollow',
                 trail_alpha: float = 0.8, scale: int = 1) -> np.ndarray:
  """Draws track points and fading trails on every frame.

  Args:
    frames: [T, H, W, 3] uint8 video (float in [0, 1] is accepted).
    tracks: [T, N, 2] (x, y) pixels, pixel centres at integers; NaN = unknown.
    visible: [T, N] bool, or None for all visible.
    colors: [N, 3] uint8 (or [N, 3] float in [0, 1]); None = rainbow by initial y.
    trail: number of past frames whose segments are drawn (0 = points only). A
      segment is drawn when both its end points are visible; older ones fade.
    radius: point radius in pixels.
    line_width: trail and hollow-circle width in pixels.
    occluded: 'hollow' draws occluded points as rings, 'hide' skips them.
    trail_alpha: opacity of the newest trail segment, in [0, 1].
    scale: paint on frames enlarged by this integer factor (nearest neighbour, so the
      video's pixels stay sharp) for legible tracks on small frames; `radius` and
      `line_width` are in the enlarged image's pixels.

  Returns:
    [T, H * scale, W * scale, 3] uint8 painted copy of `frames`.
  """
  from PIL import Image, ImageDraw  # Local import: drawing only.

  if occluded not in OCCLUDED_MODES:
    raise ValueError(f'occluded must be one of {OCCLUDED_MODES}, got {occluded!r}')
  frames = _common.to_uint8(frames)
  tracks = np.asarray(tracks, np.float64)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f'frames must be [T, H, W, 3], got {frames.shape}')
  if tracks.ndim != 3 or tracks.shape[-1] != 2 or tracks.shape[0] != frames.shape[0]:
    raise ValueError(f'tracks must be [T, N, 2] with T = {frames.shape[0]}, got {tracks.shape}')
  num_frames, num_tracks = tracks.shape[:2]
  visible = (np.ones((num_frames, num_tracks), bool) if visible is None
             else np.asarray(visible, bool))
  if visible.shape != (num_frames, num_tracks):
    raise ValueError(f'visible must be [T, N] = {(num_frames, num_tracks)}, got {visible.shape}')
  if colors is None:
    colors = track_colors(tracks, visible, 'rainbow')
  colors = _common.to_uint8(colors).reshape(num_tracks, 3)
  if scale != 1:
    frames = np.stack([_common.upscale_nearest(f, scale) for f in frames])
    tracks = _common.upscale_pixel_coords(tracks, scale)
  finite = np.all(np.isfinite(tracks), axis=-1)  # [T, N]
  out = np.empty_like(frames)
  for t in range(num_frames):
    base = Image.fromarray(frames[t]).convert('RGBA')
    # Trails go on a transparent overlay so fading segments blend with the frame.
    overlay = Image.new('RGBA', base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for age in range(min(trail, t), 0, -1):  # oldest first, so newer segments lie on top
      s = t - age
      ok = visible[s] & visible[s + 1] & finite[s] & finite[s + 1]
      alpha = int(255 * trail_alpha * (1.0 - (age - 1) / max(trail, 1)))
      for n in np.flatnonzero(ok):
        draw.line([tuple(tracks[s, n]), tuple(tracks[s + 1, n])],
                  fill=(*colors[n].tolist(), alpha), width=line_width)
    for n in range(num_tracks):
      if not finite[t, n]:
        continue
      x, y = tracks[t, n]
      box = [x - radius, y - radius, x + radius, y + radius]
      fill = tuple(colors[n].tolist()) + (255,)
      if visible[t, n]:
        draw.ellipse(box, fill=fill)
      elif occluded == 'hollow':
        draw.ellipse(box, outline=fill, width=line_width)
    out[t] = np.asarray(Image.alpha_composite(base, overlay).convert('RGB'))
  return out


def paint_clip(clip: Clip, *, color_by: str = 'rainbow', scores: Any | None = None,
               cmap: str | None = None, **paint_kwargs: Any) -> np.ndarray:
  """Projects a TAPVid-3D clip's 3D tracks with its intrinsics and paints them.

  Args:
    clip: a `Clip` with frames; `tracks_xyz` [T, N, 3] metres in the camera frame.
    color_by, scores, cmap: see `track_colors` (motion is measured in pixels).
    **paint_kwargs: forwarded to `paint_tracks` (trail, radius, occluded, ...).

  Returns:
    [T, H, W, 3] uint8 painted frames.
  """
  tracks = project_points(clip.tracks_xyz, clip.intrinsics)
  colors = track_colors(tracks, clip.visibility, color_by, scores=scores, cmap=cmap)
  return paint_tracks(clip.frames, tracks, clip.visibility, colors, **paint_kwargs)


def ffmpeg_executable() -> str | None:
  """Path of an ffmpeg binary (on PATH, else from the imageio-ffmpeg wheel), or None."""
  found = shutil.which('ffmpeg')
  if found:
    return found
  try:
    import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  try:
    return imageio_ffmpeg.get_ffmpeg_exe()
  except RuntimeError:  # The wheel exists but carries no binary for this platform.
    return None


def write_video(path: str | os.PathLike, frames: Any, fps: float = 10.0) -> str:
  """Writes [T, H, W, 3] frames as MP4 when ffmpeg is available, else as a GIF.

  Args:
    path: target file; '.mp4' (or any other suffix) falls back to the same name
      with '.gif' when no ffmpeg binary is found; '.gif' always writes a GIF.
    frames: [T, H, W, 3] uint8 (or float in [0, 1]).
    fps: frames per second.

  Returns:
    The path actually written (suffix may have changed to '.gif').
  """
  frames = _common.to_uint8(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
    raise ValueError(f'frames must be [T, H, W, 3] with T >= 1, got {frames.shape}')
  path = os.fspath(path)
  root, suffix = os.path.splitext(path)
  ffmpeg = ffmpeg_executable() if suffix.lower() != '.gif' else None
  if ffmpeg is None:
    path = root + '.gif'
  _common.make_parent_dir(path)
  if ffmpeg is not None:
    import mediapy  # pylint: disable=g-import-not-at-top

    mediapy.set_ffmpeg(ffmpeg)
    # H.264 with yuv420p needs even sides: pad by edge replication.
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
      frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode='edge')
    mediapy.write_video(path, frames, fps=fps)
    return path
  from PIL import Image  # pylint: disable=g-import-not-at-top

  images = [Image.fromarray(f) for f in frames]
  images[0].save(path, save_all=True, append_images=images[1:],
                 duration=max(int(round(1000.0 / fps)), 10), loop=0)
  return path
