"""A classical, weight-free point tracker: pyramidal Lucas-Kanade with a forward-backward check.

This is a baseline, not a learned tracker: it follows image patches by local gradient
matching (OpenCV's `calcOpticalFlowPyrLK`), so it handles small, smooth motion of textured
points well, and fails on textureless regions, large jumps, strong appearance change and
long occlusions, where learned trackers (CoTracker3) do much better. Visibility is not
predicted from appearance; a point counts as visible when

  * LK converged from the point's last reliable observation to the new frame,
  * tracking the result back lands within `fb_threshold` pixels of where it started
    (forward-backward consistency; occluded or drifting points usually fail it), and
  * the result lies inside the frame.

A point that fails is marked occluded and keeps its last reliable observation as its
anchor: every later frame is matched directly against that anchor frame, so a point that
reappears near where it was lost (a short occlusion, a static camera) is picked up again,
provided its whole matching window then lies inside the frame.
While lost, its reported position is LK's estimate from the anchor when LK converged,
else the previous frame's position.

Queries may lie in any frame: each point is tracked forward from its query frame and,
with `backward=True`, backward from it as well. Without `backward`, frames before a
query frame report the query position as occluded.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tapkit.tracking import api


@dataclasses.dataclass
class LucasKanadeTracker:
  """Pyramidal Lucas-Kanade tracker (module docstring).

  Attributes:
    win_size: side of the matching window in pixels (at every pyramid level).
    max_level: number of pyramid levels above the full-resolution image.
    fb_threshold: forward-backward error (pixels) above which a point counts as lost.
    max_iterations, epsilon: LK stopping criteria per level.
    min_eigen_threshold: OpenCV's minimum spatial-gradient eigenvalue (per window
      pixel); flatter windows are not tracked.
  """

  win_size: int = 21
  max_level: int = 3
  fb_threshold: float = 1.5
  max_iterations: int = 30
  epsilon: float = 0.01
  min_eigen_threshold: float = 1e-4
  name: str = 'lk'

  def __post_init__(self):
    if self.win_size < 3:
      raise ValueError(f'win_size must be >= 3, got {self.win_size}')
    if self.max_level < 0:
      raise ValueError(f'max_level must be >= 0, got {self.max_level}')
    if not self.fb_threshold > 0:
      raise ValueError(f'fb_threshold must be > 0, got {self.fb_threshold}')

  def _flow(self, image0: np.ndarray, image1: np.ndarray,
            points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LK from image0 to image1: points [M, 2] -> (new points [M, 2], converged [M])."""
    import cv2  # pylint: disable=g-import-not-at-top

    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, self.max_iterations,
                self.epsilon)
    new, status, _ = cv2.calcOpticalFlowPyrLK(
        image0, image1, points.reshape(-1, 1, 2).astype(np.float32), None,
        winSize=(self.win_size, self.win_size), maxLevel=self.max_level, criteria=criteria,
        minEigThreshold=self.min_eigen_threshold)
    new = new.reshape(-1, 2)
    ok = status.reshape(-1).astype(bool) & np.all(np.isfinite(new), axis=-1)
    return new, ok

  def _sweep(self, gray: np.ndarray, order: np.ndarray, query_frames: np.ndarray,
             query_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tracks every point through the frames `order`, starting at its query frame.

    Args:
      gray: [T, H, W] uint8 grey frames.
      order: [K] frame indices in tracking order (increasing or decreasing).
      query_frames: [N] int frame index of each query.
      query_xy: [N, 2] query positions.

    Returns:
      positions [T, N, 2] (NaN at frames not reached) and visible [T, N].
    """
    num_frames, height, width = gray.shape
    num = query_xy.shape[0]
    positions = np.full((num_frames, num, 2), np.nan, np.float32)
    visible = np.zeros((num_frames, num), bool)
    anchor_frame = np.full(num, -1, np.int64)  # last reliable frame, -1 = not started
    anchor_xy = np.zeros((num, 2), np.float32)
    previous = None
    for frame in order:
      started = anchor_frame >= 0
      for anchor in np.unique(anchor_frame[started]):
        idx = np.flatnonzero(started & (anchor_frame == anchor))
        new, ok = self._flow(gray[anchor], gray[frame], anchor_xy[idx])
        back, ok_back = self._flow(gray[frame], gray[anchor], new)
        error = np.linalg.norm(back - anchor_xy[idx], axis=-1)
        inside = ((new[:, 0] >= -0.5) & (new[:, 0] <= width - 0.5) &
                  (new[:, 1] >= -0.5) & (new[:, 1] <= height - 0.5))
        good = ok & ok_back & (error < self.fb_threshold) & inside
        if anchor != previous:
          # Re-acquiring a lost point: its whole window must lie inside the frame (windows
          # cut by the border lock onto replicated border pixels).
          half = self.win_size // 2
          good &= ((new[:, 0] >= half) & (new[:, 0] <= width - 1 - half) &
                   (new[:, 1] >= half) & (new[:, 1] <= height - 1 - half))
        positions[frame, idx] = np.where(ok[:, None], new, positions[previous, idx])
        visible[frame, idx] = good
        anchor_frame[idx[good]] = frame
        anchor_xy[idx[good]] = new[good]
      new_points = query_frames == frame
      positions[frame, new_points] = query_xy[new_points]
      visible[frame, new_points] = True
      anchor_frame[new_points] = frame
      anchor_xy[new_points] = query_xy[new_points]
      previous = frame
    return positions, visible

  def track(self, frames: np.ndarray, queries: np.ndarray | None = None, *,
            grid_size: int = api.DEFAULT_GRID_SIZE, grid_query_frame: int = 0,
            backward: bool = False) -> api.TrackResult:
    """Tracks points through frames [T, H, W, 3] uint8; see `api.Tracker.track`."""
    import cv2  # pylint: disable=g-import-not-at-top

    frames = api.check_frames(frames)
    queries = api.resolve_queries(frames, queries, grid_size, grid_query_frame)
    num_frames = frames.shape[0]
    gray = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames])
    query_frames = np.floor(queries[:, 0]).astype(np.int64)
    query_xy = queries[:, 1:].astype(np.float32)
    tracks, visible = self._sweep(gray, np.arange(num_frames), query_frames, query_xy)
    before = np.arange(num_frames)[:, None] < query_frames[None, :]  # [T, N]
    if backward:
      back_tracks, back_visible = self._sweep(gray, np.arange(num_frames)[::-1], query_frames,
                                              query_xy)
      tracks = np.where(before[..., None], back_tracks, tracks)
      visible = np.where(before, back_visible, visible)
    else:
      tracks = np.where(before[..., None], query_xy[None], tracks)
      visible = visible & ~before
    return api.TrackResult(tracks=tracks, visible=visible, queries=queries)


def make(checkpoint: str | None = None, **options) -> LucasKanadeTracker:
  """`make_tracker('lk', **options)`; LK has no weights, so `checkpoint` must be None."""
  if checkpoint is not None:
    raise ValueError(f"the 'lk' tracker has no weights; got checkpoint={checkpoint!r}")
  return LucasKanadeTracker(**options)
