"""The 'exact' tracker: returns ground-truth tracks it was given, for plumbing tests.

    tracker = make_tracker('exact', tracks=gt_tracks, visible=gt_visible, queries=gt_queries)

It looks at the frames only to check their number; metrics of its output against the
same ground truth are perfect by construction (average Jaccard 1), which tests the
path from a tracker to files and metrics without the noise of a real tracker.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tapkit.tracking import api


@dataclasses.dataclass
class ExactTracker:
  """Returns fixed tracks.

  Attributes:
    tracks: [T, N, 2] (x, y) pixels.
    visible: [T, N] bool.
    queries: [N, 3] (t, x, y), or None: each track's first visible frame (0 if never
      visible) and its position there.
  """

  tracks: np.ndarray
  visible: np.ndarray
  queries: np.ndarray | None = None
  name: str = 'exact'

  def __post_init__(self):
    self.tracks = np.asarray(self.tracks, np.float32)
    self.visible = np.asarray(self.visible, bool)
    if self.queries is None:
      first = np.where(self.visible.any(0), np.argmax(self.visible, axis=0), 0)
      xy = self.tracks[first, np.arange(self.tracks.shape[1])]
      self.queries = np.concatenate([first[:, None].astype(np.float32), xy], -1)
    # Validates shapes.
    api.TrackResult(tracks=self.tracks, visible=self.visible, queries=self.queries)

  def track(self, frames: np.ndarray, queries: np.ndarray | None = None, *,
            grid_size: int = api.DEFAULT_GRID_SIZE, grid_query_frame: int = 0,
            backward: bool = False) -> api.TrackResult:
    """The stored tracks; `queries`, when given, must be [N, 3] like the stored ones and
    are returned as the result's queries. Grid options and `backward` are ignored."""
    del grid_size, grid_query_frame, backward
    frames = api.check_frames(frames)
    if frames.shape[0] != self.tracks.shape[0]:
      raise ValueError(f'frames has {frames.shape[0]} frames, the exact tracks '
                       f'{self.tracks.shape[0]}')
    if queries is None:
      queries = self.queries
    elif np.shape(queries) != np.shape(self.queries):
      raise ValueError(f'queries must be {np.shape(self.queries)} like the exact tracks, got '
                       f'{np.shape(queries)}')
    return api.TrackResult(tracks=self.tracks.copy(), visible=self.visible.copy(),
                           queries=np.asarray(queries, np.float32))


def make(checkpoint: str | None = None, **options) -> ExactTracker:
  """`make_tracker('exact', tracks=..., visible=..., queries=None)`."""
  if checkpoint is not None:
    raise ValueError(f"the 'exact' tracker has no weights; got checkpoint={checkpoint!r}")
  missing = [k for k in ('tracks', 'visible') if k not in options]
  if missing:
    raise ValueError(f"the 'exact' tracker needs options tracks= and visible=; missing {missing}")
  return ExactTracker(**options)
