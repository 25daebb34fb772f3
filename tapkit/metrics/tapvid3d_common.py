"""Definitions shared by the TAPVid-3D metric modules: thresholds, output keys,
error types and input checks.

`tapkit.metrics.tapvid3d` (the global scalings) and `tapkit.metrics.tapvid3d_local`
(the local-neighbourhood scaling) both build on these; import them from
`tapkit.metrics.tapvid3d`, which re-exports every public name.
"""

from __future__ import annotations

import numpy as np

# The five pixel thresholds of TAP-Vid, in the order the outputs are listed.
PIXEL_THRESHOLDS = (1, 2, 4, 8, 16)

# Metric-space thresholds (metres) used with use_fixed_metric_threshold=True.
# Official values: 0.01 * delta**2, i.e. quadratic in delta.
PIXEL_TO_FIXED_METRIC_THRESH = {1: 0.01, 2: 0.04, 4: 0.16, 8: 0.64, 16: 2.56}

# Output keys in the official insertion order.
METRIC_KEYS = (
    ('occlusion_accuracy',)
    + tuple(
        key
        for delta in PIXEL_THRESHOLDS
        for key in (f'pts_within_{delta}', f'jaccard_{delta}')
    )
    + ('average_jaccard', 'average_pts_within_thresh')
)

SCALINGS = (
    'median',
    'mean',
    'none',
    'per_trajectory',
    'local_neighborhood',
    'reproduce_2d',
    'median_on_queries',
)


class UnsupportedInputError(ValueError, AssertionError):
  """A call the official code rejects with an `assert` (e.g. batched local).

  Subclasses AssertionError as well, so callers written against the official
  code keep catching it.
  """


class MissingQueryPointsError(ValueError, TypeError):
  """`query_points` is None for a scaling that needs query frames.

  The official code fails with a TypeError (indexing None) at this point.
  """


class QueryFrameError(ValueError, IndexError):
  """A query frame is not finite or lies outside [-t, t) after rounding.

  Negative frames in [-t, -1] wrap around as in the official numpy indexing;
  frames >= t make the official code raise IndexError.
  """


def as_occlusion(x: np.ndarray, name: str) -> np.ndarray:
  """Returns occlusion flags as bool; accepts bool or numeric 0/1 arrays.

  Other values (e.g. probabilities) are rejected: the official code would treat
  them inconsistently (unequal to both flags, yet "occluded" when non-zero).
  """
  x = np.asarray(x)
  if x.dtype == np.bool_:
    return x
  if np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x):
    if np.all((x == 0) | (x == 1)):
      return x.astype(np.bool_)
  raise ValueError(
      f'{name} must be a boolean array (True = occluded) or hold only 0/1; '
      f'got dtype {x.dtype}.'
  )


def as_coordinates(x: np.ndarray, name: str) -> np.ndarray:
  """Returns `x` as a real floating array, keeping float16/32/64 as given.

  The dtype is kept because the official code computes distances in the input
  dtype (float32 files are judged in float32).
  """
  x = np.asarray(x)
  if np.issubdtype(x.dtype, np.floating):
    return x
  if (np.issubdtype(x.dtype, np.integer)
      or np.issubdtype(x.dtype, np.bool_)):
    return x.astype(np.float64)
  raise ValueError(f'{name} must be a real numeric array; got {x.dtype}.')


def broadcast_prediction(
    pred: np.ndarray, gt: np.ndarray, name: str
) -> np.ndarray:
  """Broadcasts a prediction to the ground truth's shape.

  The official arithmetic does this implicitly (e.g. one predicted track
  scored against every ground-truth track); anything else is a clear error.
  """
  try:
    return np.broadcast_to(pred, gt.shape)
  except ValueError:
    raise ValueError(
        f'{name} of shape {pred.shape} (canonical layout) does not match or '
        f'broadcast to the ground truth shape {gt.shape}.'
    ) from None


def average_over_thresholds(values: list[np.ndarray]) -> np.ndarray:
  """Mean over the five thresholds (one sequential sum, as np.stack + mean)."""
  return np.mean(np.stack(values, axis=0), axis=0)
