"""3DPoV clips straight from video frame folders: on-the-fly loading and tracking.

Layouts and windows: `dpov_jax.video_windows`.

`python -m dpov_jax.prepare` tracks every window offline into tracks files. With
`config.data.tracker = 'on_the_fly'` the training pipeline instead reads clips from the frame
folders (`FrameClipSource` -> `LoadClip`), flips them, and tracks each clip with `TrackClip` (a
grid of grid_size² points queried on the clip's first frame), as the release does at every
training step.
"""

from __future__ import annotations

import os
from typing import Any

import grain.python as grain
import numpy as np

from dpov_jax import data
from dpov_jax import video_windows


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
    subdir = video_windows.LAYOUTS[layout][0] if frames_subdir is None else frames_subdir
    self._records: list[tuple[list[str], np.ndarray]] = []
    for video in video_windows.list_layout_videos(frames_root, layout, subdir):
      try:
        files = data.list_frames(os.path.join(frames_root, video, subdir))
      except data.TracksFileError:
        continue  # no frames: nothing to sample
      if video_windows.LAYOUTS[layout][2] == 'random':
        self._records.append((files, np.zeros((0,), np.int64)))
      else:
        self._records += [(files, w) for w in
                          video_windows.fixed_windows(len(files), layout, num_clip_frames, regular_step)]
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
      window = video_windows.random_window(len(files), self.num_clip_frames, self.regular_step, rng)
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
