"""The point-tracker interface: results, the `Tracker` protocol, query grids, the registry.

Conventions (shared by every tracker):
  frames   [T, H, W, 3] uint8 RGB video.
  queries  [N, 3] float32 (t, x, y): query frame index and the pixel position of the
           point in that frame; pixel centres at integers (x = 0 is the centre of the
           leftmost column).
  tracks   [T, N, 2] float32 (x, y) pixels, same convention, for every frame.
  visible  [T, N] bool, True where the point is predicted visible.

    tracker = make_tracker('lk')
    result = tracker.track(frames, grid_size=20)             # a 20 x 20 grid at frame 0
    result = tracker.track(frames, queries=np.array([[5, 100.0, 40.0]]), backward=True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

TRACKERS = ('lk', 'cotracker3', 'cotracker3_online', 'exact')
DEFAULT_GRID_SIZE = 30


@dataclasses.dataclass
class TrackResult:
  """What a tracker returns (module docstring for the conventions).

  Attributes:
    tracks: [T, N, 2] float32 (x, y) pixels of the input frames.
    visible: [T, N] bool.
    queries: [N, 3] float32 (t, x, y) the tracks were started from.
  """

  tracks: np.ndarray
  visible: np.ndarray
  queries: np.ndarray

  def __post_init__(self):
    self.tracks = np.asarray(self.tracks, np.float32)
    self.visible = np.asarray(self.visible, bool)
    self.queries = np.asarray(self.queries, np.float32)
    if self.tracks.ndim != 3 or self.tracks.shape[-1] != 2:
      raise ValueError(f'tracks must be [T, N, 2], got {self.tracks.shape}')
    if self.visible.shape != self.tracks.shape[:2]:
      raise ValueError(f'visible must be [T, N] = {self.tracks.shape[:2]}, got '
                       f'{self.visible.shape}')
    if self.queries.shape != (self.tracks.shape[1], 3):
      raise ValueError(f'queries must be [N, 3] = {(self.tracks.shape[1], 3)}, got '
                       f'{self.queries.shape}')

  @property
  def num_frames(self) -> int:
    return int(self.tracks.shape[0])

  @property
  def num_tracks(self) -> int:
    return int(self.tracks.shape[1])

  @property
  def query_frames(self) -> np.ndarray:
    """[N] int64 query frame of each track (t rounded down, as trackers index frames)."""
    return np.floor(self.queries[:, 0]).astype(np.int64)


class Tracker(Protocol):
  """A point tracker: `make_tracker(name)` returns one."""

  name: str

  def track(self, frames: np.ndarray, queries: np.ndarray | None = None, *,
            grid_size: int = DEFAULT_GRID_SIZE, grid_query_frame: int = 0,
            backward: bool = False) -> TrackResult:
    """Tracks points through `frames` [T, H, W, 3] uint8.

    Args:
      frames: the video.
      queries: [N, 3] (t, x, y) points to track; None = a `grid_queries` grid of
        `grid_size` x `grid_size` points at frame `grid_query_frame`.
      grid_size: side of the query grid when `queries` is None.
      grid_query_frame: frame of the query grid.
      backward: also track each point backwards in time from its query frame; without
        it, what a tracker returns before a query frame is tracker-specific (see each
        tracker).
    """


def grid_queries(height: int, width: int, grid_size: int, query_frame: int = 0) -> np.ndarray:
  """[grid_size^2, 3] float32 (t, x, y) queries on CoTracker's evenly spaced grid.

  grid_size 1 gives the single point (W / 2, H / 2). Otherwise the grid keeps a margin
  m = W / 64 from the image border on both axes (the width-based margin is used for y
  too, as CoTracker does): x_j = linspace(m, W - m, grid_size),
  y_i = linspace(m, H - m, grid_size), evaluated in float32 the way torch.linspace does
  (the first half counted up from the start, the second half down from the end); points
  in row-major order (index = grid_size * i + j, x fastest).
  """
  if int(grid_size) != grid_size or grid_size < 1:
    raise ValueError(f'grid_size must be an integer >= 1, got {grid_size}')
  if height < 1 or width < 1:
    raise ValueError(f'height and width must be >= 1, got {height} x {width}')
  if grid_size == 1:
    xy = np.array([[width / 2, height / 2]], np.float32)
  else:
    margin = np.float32(width / 64)
    ys = _torch_linspace(margin, np.float32(height) - margin, grid_size)
    xs = _torch_linspace(margin, np.float32(width) - margin, grid_size)
    gy, gx = np.meshgrid(ys, xs, indexing='ij')
    xy = np.stack([gx.reshape(-1), gy.reshape(-1)], -1)
  t = np.full((xy.shape[0], 1), query_frame, np.float32)
  return np.concatenate([t, xy.astype(np.float32)], -1)


def _torch_linspace(start: np.float32, end: np.float32, steps: int) -> np.ndarray:
  """[steps] float32 linspace as torch computes it on CPU."""
  start, end = np.float32(start), np.float32(end)
  step = np.float32((end - start) / np.float32(steps - 1))
  k = np.arange(steps)
  half = steps // 2
  low = start + k.astype(np.float32) * step
  high = end - (steps - 1 - k).astype(np.float32) * step
  return np.where(k < half, low, high).astype(np.float32)


def check_frames(frames: Any) -> np.ndarray:
  """[T, H, W, 3] uint8 frames, or ValueError naming `frames`."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[:3]) < 1:
    raise ValueError(f'frames must be [T, H, W, 3] with T, H, W >= 1, got {frames.shape}')
  if frames.dtype != np.uint8:
    raise ValueError(f'frames must be uint8, got {frames.dtype}')
  return frames


def resolve_queries(frames: np.ndarray, queries: Any | None, grid_size: int,
                    grid_query_frame: int) -> np.ndarray:
  """The [N, 3] float32 (t, x, y) queries a tracker works on: the given ones (checked:
  finite, t in [0, T)), or a grid at `grid_query_frame`."""
  num_frames, height, width = frames.shape[:3]
  if queries is None:
    if not 0 <= grid_query_frame < num_frames:
      raise ValueError(f'grid_query_frame must lie in [0, {num_frames}), got {grid_query_frame}')
    return grid_queries(height, width, grid_size, grid_query_frame)
  queries = np.asarray(queries, np.float32)
  if queries.ndim != 2 or queries.shape[1] != 3 or queries.shape[0] < 1:
    raise ValueError(f'queries must be [N, 3] (t, x, y) with N >= 1, got {queries.shape}')
  if not np.all(np.isfinite(queries)):
    raise ValueError('queries hold non-finite values')
  t = np.floor(queries[:, 0])
  if np.any(t < 0) or np.any(t >= num_frames):
    raise ValueError(f'query frames must lie in [0, {num_frames}), got range '
                     f'[{queries[:, 0].min()}, {queries[:, 0].max()}]')
  return queries


_REGISTRY: dict[str, Callable[..., Tracker]] = {}


def register(name: str, factory: Callable[..., Tracker]) -> None:
  """Makes `make_tracker(name, checkpoint, **options)` call `factory(checkpoint, **options)`."""
  _REGISTRY[name] = factory


def make_tracker(name: str, checkpoint: str | None = None, **options: Any) -> Tracker:
  """A tracker by name.

  Args:
    name: 'lk' (classical pyramidal Lucas-Kanade, no weights), 'cotracker3' (offline
      CoTracker3, needs `checkpoint`), 'cotracker3_online' (streaming CoTracker3, needs
      `checkpoint`), 'exact' (returns ground truth given as options, for tests).
    checkpoint: weights file of a learned tracker.
    **options: tracker-specific options (see each tracker's class).
  """
  if name not in _REGISTRY:
    raise ValueError(f'tracker must be one of {sorted(_REGISTRY)}, got {name!r}')
  return _REGISTRY[name](checkpoint, **options)
