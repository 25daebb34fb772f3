"""Point tracking on videos: one interface over a classical and learned trackers.

  api        TrackResult, the Tracker protocol, grid_queries, make_tracker
  lk         'lk': pyramidal Lucas-Kanade with a forward-backward check (no weights)
  cotracker  'cotracker3' / 'cotracker3_online': CoTracker3 (Flax) behind this interface
  exact      'exact': returns given ground truth (plumbing tests)
  evaluate   TAP-Vid 2D metrics of a tracker on clips with exact tracks

    from tapkit import tracking
    result = tracking.make_tracker('lk').track(frames, grid_size=20)
"""

from tapkit.tracking import cotracker, exact, lk
from tapkit.tracking.api import (DEFAULT_GRID_SIZE, TRACKERS, Tracker, TrackResult,
                                 grid_queries, make_tracker, register)

register('lk', lk.make)
register('exact', exact.make)
register('cotracker3', cotracker.make_offline)
register('cotracker3_online', cotracker.make_online)

__all__ = ['DEFAULT_GRID_SIZE', 'TRACKERS', 'Tracker', 'TrackResult', 'grid_queries',
           'make_tracker', 'register']
