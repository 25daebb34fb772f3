"""TracksTo4D input files from raw videos: the official CoTracker preprocessing, any tracker.

The TracksTo4D preprocessing tracks a 15 x 15 grid (CoTracker's margin grid) queried at frames
0, 20, 40, ... (< T - 1) and one more grid at the last frame T - 1, every grid with backward
tracking, one tracker call per query frame, and concatenates the tracks:

  pred_tracks      [1, T, P, 2]  (x, y) pixels of the frames as read, P = 225 x query frames
  pred_visibility  [1, T, P]     as the tracker reports it
  started_at       [1, 1, P]     query frame of each track

No `Ks_all`: `tracks4d.infer` then uses the generic intrinsics from the track extent (focal
(mx + my) / 2, principal point (mx / 2, my / 2)), as `--generic_intrinsics` does.

    from tapkit import tracking
    path = track_video_file(tracking.make_tracker('lk'), 'clip.mp4', 'runs/t4d_in/clip.npz')

`retrack` instead replaces the tracks of an existing TracksTo4D file (e.g. exact synthetic
tracks) by a tracker's, started from the same query frames and positions, keeping its
cameras, intrinsics and ground truth.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from tapkit.data import tracks4d_format
from tapkit.io import video as video_io

GRID_SIZE = 15
QUERY_EVERY = 20


def query_frames(num_frames: int, every: int = QUERY_EVERY) -> list[int]:
  """Frames of the query grids: 0, every, 2 every, ... (< T - 1), then T - 1."""
  if num_frames < 1 or every < 1:
    raise ValueError(f'num_frames and query_every must be >= 1, got {num_frames}, {every}')
  return list(range(0, num_frames - 1, every)) + [num_frames - 1]


def track_frames(tracker: Any, frames: np.ndarray, grid_size: int = GRID_SIZE,
                 every: int = QUERY_EVERY) -> dict[str, np.ndarray]:
  """The TracksTo4D input arrays (module docstring) of frames [T, H, W, 3] uint8."""
  tracks, visible, started = [], [], []
  for q in query_frames(frames.shape[0], every):
    result = tracker.track(frames, grid_size=grid_size, grid_query_frame=q, backward=True)
    tracks.append(result.tracks)  # [T, n, 2]
    visible.append(result.visible)  # [T, n]
    started.append(np.full((result.num_tracks,), q, np.float32))
  return {'pred_tracks': np.concatenate(tracks, 1)[None].astype(np.float32),
          'pred_visibility': np.concatenate(visible, 1)[None].astype(bool),
          'started_at': np.concatenate(started)[None, None]}


def track_queries(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
  """[P, 3] float32 (t, x, y) query of each track of TracksTo4D `arrays`: its frame
  `started_at` and its `pred_tracks` position there."""
  tracks = np.asarray(arrays['pred_tracks'], np.float32)[0]  # [T, P, 2]
  started = np.asarray(arrays['started_at'])[0, 0].astype(np.int64)  # [P]
  xy = tracks[started, np.arange(tracks.shape[1])]  # [P, 2]
  return np.concatenate([started[:, None].astype(np.float32), xy], -1)


def retrack(tracker: Any, frames: np.ndarray,
            arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """TracksTo4D `arrays` with `tracker`'s tracks of frames [T, H, W, 3] uint8 in place of theirs.

  Track p is queried at its frame `started_at[p]`, at its position there in `pred_tracks`, and
  tracked both ways. pred_tracks / pred_visibility become the tracker's; every other field
  (started_at, Ks_all, Ms_all, GT_depth_tracks_all (the depth of the true point, which the
  tracker is meant to follow), GT_mask_tracks_all) is kept.
  """
  num_frames = np.shape(arrays['pred_tracks'])[1]
  if frames.shape[0] != num_frames:
    raise ValueError(f'frames has {frames.shape[0]} frames, the tracks {num_frames}')
  result = tracker.track(frames, track_queries(arrays), backward=True)
  return {**arrays, 'pred_tracks': result.tracks[None].astype(np.float32),
          'pred_visibility': result.visible[None].astype(bool)}


def track_video_file(tracker: Any, video_path: str, out_path: str, *,
                     grid_size: int = GRID_SIZE, every: int = QUERY_EVERY,
                     max_frames: int | None = None,
                     resize: tuple[int, int] | None = None) -> str:
  """Reads a video (file or frame folder, `tapkit.io.video.read_video`), tracks it
  (`track_frames`) and writes the TracksTo4D `.npz` to `out_path`; returns it.

  Raises:
    BadFileError: naming the video when it cannot be read.
  """
  video = video_io.read_video(video_path, max_frames=max_frames, resize=resize)
  arrays = track_frames(tracker, video.frames, grid_size, every)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  tracks4d_format.save_tracks4d_npz(out_path, arrays)
  return out_path
