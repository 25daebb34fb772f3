"""3DPoV clips straight from video frame folders: layouts, windows, on-the-fly tracking.

Frame-folder layouts (`LAYOUTS`; a video is a folder of sorted image frames):

  ytvos   <frames_root>/<video>/*.jpg                      (YouTube-VOS train/JPEGImages)
  co3d    <frames_root>/<category>/<sequence>/images/*     (video = category/sequence)
  dl3dv   <frames_root>/<video>/nerfstudio/images_4/*.png
  folder  <frames_root>/<video>/*.{jpg,jpeg,png}           (any other collection)

Windows of a video of M frames, T = clip frames, s = regular step, as the released loaders
sample them:

  ytvos   one random start per item (a new one every epoch in training): step s' = s if
          M >= T * s, else M // T (0: start 0, step 1); start uniform in {0, ..., M - T * s'};
          frames start + k * s', indices >= M replaced by M - 1.
  co3d, dl3dv
          deterministic non-overlapping windows: starts 0, T * s, 2 T * s, ... <= M - T * s,
          frames start + k * s (CO3D sequences under 10 frames are skipped).
  folder  ours: starts 0, T * s, ... while the clip fits ((T - 1) * s + 1 frames); a shorter
          video gives one window of T frames max(1, (M - 1) // (T - 1)) apart, clamped.

A window's frames are returned sorted and without repeats (a clamped index only repeats the
last frame, which `dpov_jax.data.clip_frame_positions` restores).

`python -m dpov_jax.prepare` tracks every window offline into tracks files. With
`config.data.tracker = 'on_the_fly'` the training pipeline instead reads clips from the frame
folders (`FrameClipSource` -> `LoadClip`), flips them, and tracks each clip with `TrackClip` (a
grid of grid_size² points queried on the clip's first frame), as the release does at every
training step.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import grain.python as grain
import numpy as np

from dpov_jax import data

# name -> (frames subfolder inside a video, folder depth of a video, window rule)
LAYOUTS = {
    'ytvos': ('', 1, 'random'),
    'co3d': ('images', 2, 'windows'),
    'dl3dv': ('nerfstudio/images_4', 1, 'windows'),
    'folder': ('', 1, 'fit'),
}
CO3D_MIN_FRAMES = 10


def _check_layout(layout: str) -> tuple[str, int, str]:
  if layout not in LAYOUTS:
    raise ValueError(f'layout must be one of {sorted(LAYOUTS)}, got {layout!r}')
  return LAYOUTS[layout]


def list_layout_videos(frames_root: str | os.PathLike, layout: str,
                       frames_subdir: str | None = None) -> list[str]:
  """Sorted video names (paths relative to `frames_root`) of a layout.

  A video is a folder at the layout's depth that holds the frames subfolder
  (`frames_subdir`, default the layout's); other folders (e.g. CO3D's set_lists) are ignored.

  Raises:
    FileNotFoundError: `frames_root` is not a folder.
  """
  default_subdir, depth, _ = _check_layout(layout)
  subdir = default_subdir if frames_subdir is None else frames_subdir
  root = os.fspath(frames_root)
  if not os.path.isdir(root):
    raise FileNotFoundError(f'frames_root {root} is not a directory')
  level = ['']
  for _ in range(depth):
    level = [os.path.join(v, n) if v else n for v in level
             for n in sorted(os.listdir(os.path.join(root, v)))
             if os.path.isdir(os.path.join(root, v, n))]
  return [v for v in level if os.path.isdir(os.path.join(root, v, subdir))]


def video_seed(seed: int, video: str) -> np.random.Generator:
  """A generator fixed by (seed, video name): the same windows whatever else is listed."""
  return np.random.default_rng([int(seed), zlib.crc32(video.encode('utf-8'))])


def random_window(num_frames: int, num_clip_frames: int, regular_step: int,
                  rng: np.random.Generator) -> np.ndarray:
  """[L <= T] sorted unique frame indices of one YouTube-VOS-style clip (module docstring)."""
  t, m = int(num_clip_frames), int(num_frames)
  step = int(regular_step) if m >= t * int(regular_step) else m // t
  if step == 0:
    start, step = 0, 1
  else:
    start = int(rng.integers(0, m - t * step + 1))
  return np.unique(np.minimum(start + step * np.arange(t), m - 1)).astype(np.int64)


def fixed_windows(num_frames: int, layout: str, num_clip_frames: int,
                  regular_step: int) -> list[np.ndarray]:
  """The deterministic windows of a co3d / dl3dv / folder video (module docstring)."""
  rule = _check_layout(layout)[2]
  t, s, m = int(num_clip_frames), int(regular_step), int(num_frames)
  if rule == 'random':
    raise ValueError("layout 'ytvos' has random windows: use random_window")
  if layout == 'co3d' and m < CO3D_MIN_FRAMES:
    return []
  if rule == 'windows':
    return [start + s * np.arange(t, dtype=np.int64) for start in range(0, m - t * s + 1, t * s)]
  span = (t - 1) * s + 1
  if m >= span:
    return [start + s * np.arange(t, dtype=np.int64) for start in range(0, m - span + 1, t * s)]
  step = max(1, (m - 1) // max(1, t - 1))
  return [np.unique(np.minimum(step * np.arange(t), m - 1)).astype(np.int64)]


def video_windows(num_frames: int, layout: str, num_clip_frames: int, regular_step: int, *,
                  seed: int = 0, video: str = '', windows_per_video: int = 1
                  ) -> list[np.ndarray]:
  """The windows tracked offline for one video: the fixed ones, or for ytvos
  `windows_per_video` random ones drawn from `video_seed(seed, video)`."""
  if _check_layout(layout)[2] != 'random':
    return fixed_windows(num_frames, layout, num_clip_frames, regular_step)
  rng = video_seed(seed, video)
  return [random_window(num_frames, num_clip_frames, regular_step, rng)
          for _ in range(int(windows_per_video))]


def track_window(tracker: Any, frames: np.ndarray, grid_size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Tracks a grid_size² grid queried on frame 0 of `frames` [L, H, W, 3] uint8.

  Returns:
    (tracks [L, N, 2] float32 pixels, visibility [L, N] bool); on frame 0 every track is set
    to its query point and visible, as the CoTracker predictor does.
  """
  result = tracker.track(frames, grid_size=int(grid_size), grid_query_frame=0)
  tracks = np.array(result.tracks, np.float32)
  vis = np.array(result.visible, bool)
  tracks[0] = result.queries[:, 1:]
  vis[0] = True
  return tracks, vis


class FrameClipSource(grain.RandomAccessDataSource):
  """Frame folders of one layout, one record per window (ytvos: per video).

  Record: {'frame_files': [M] str (the video's sorted frames), 'window': [L] int64 (empty
  for ytvos: `LoadClip` draws a start), 'crop': bool (center_crop transform)}.
  """

  def __init__(self, frames_root: str | os.PathLike, layout: str, *, num_clip_frames: int,
               regular_step: int, frames_subdir: str | None = None,
               transform: str = 'resize', name: str = 'frames'):
    if transform not in data.TRANSFORMS:
      raise ValueError(f'data source {name!r}: transform must be one of {data.TRANSFORMS}, '
                       f'got {transform!r}')
    subdir = LAYOUTS[layout][0] if frames_subdir is None else frames_subdir
    self._records: list[tuple[list[str], np.ndarray]] = []
    for video in list_layout_videos(frames_root, layout, subdir):
      try:
        files = data.list_frames(os.path.join(frames_root, video, subdir))
      except data.TracksFileError:
        continue  # no frames: nothing to sample
      if LAYOUTS[layout][2] == 'random':
        self._records.append((files, np.zeros((0,), np.int64)))
      else:
        self._records += [(files, w) for w in
                          fixed_windows(len(files), layout, num_clip_frames, regular_step)]
    if not self._records:
      raise FileNotFoundError(f'data source {name!r}: no {layout} videos with frames (and '
                              f'windows) under {os.fspath(frames_root)}')
    self._crop, self._name = transform == 'center_crop', name

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict[str, Any]:
    files, window = self._records[int(index)]
    return {'frame_files': np.asarray(files), 'window': window, 'crop': np.bool_(self._crop)}

  def __repr__(self) -> str:
    return f'FrameClipSource(name={self._name!r}, n={len(self._records)})'


class LoadClip(grain.RandomMapTransform):
  """Reads a `FrameClipSource` record's clip: [T, S, S, 3] uint8 'frames' (the ytvos start
  drawn from the record's rng); records that already hold frames pass unchanged."""

  def __init__(self, input_size: int, num_clip_frames: int, regular_step: int):
    self.input_size, self.num_clip_frames = int(input_size), int(num_clip_frames)
    self.regular_step = int(regular_step)

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    if 'frame_files' not in element:
      return element
    files = [str(f) for f in element['frame_files']]
    window = element['window']
    if len(window) == 0:
      window = random_window(len(files), self.num_clip_frames, self.regular_step, rng)
    pos = data.clip_frame_positions(len(window), self.num_clip_frames, self.regular_step)
    transform = 'center_crop' if bool(element['crop']) else 'resize'
    frames, _ = data.read_clip_frames(files, window[pos], self.input_size, transform)
    return {'frames': frames}


class TrackClip(grain.MapTransform):
  """Tracks every clip in the pipeline: 'tracks' [T, N, 2] and 'visibility' [T, N] of a
  grid_size² grid on frame 0 (`track_window`), replacing any stored tracks."""

  def __init__(self, tracker: Any, grid_size: int):
    self._tracker, self._grid = tracker, int(grid_size)

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    tracks, vis = track_window(self._tracker, np.asarray(element['frames']), self._grid)
    return {**element, 'tracks': tracks, 'visibility': vis}
