"""Fixtures of the tapkit tests: `moving_texture`, a translating random texture with exactly
known point tracks (trackers, video I/O, the tracking CLI)."""

import numpy as np
import pytest


def _moving_texture(num_frames=10, height=64, width=80, step=(2, 1), seed=0):
  """Frames [T, H, W, 3] uint8 of a smooth random texture translated by `step` (dx, dy)
  whole pixels per frame; a pixel at (x, y) in frame 0 is at (x + t dx, y + t dy) in t."""
  from scipy import ndimage

  rng = np.random.default_rng(seed)
  pad = max(abs(step[0]), abs(step[1])) * num_frames + 4
  canvas = rng.uniform(0, 255, (height + 2 * pad, width + 2 * pad, 3))
  canvas = ndimage.gaussian_filter(canvas, (1.5, 1.5, 0))
  canvas = (canvas - canvas.min()) / (canvas.max() - canvas.min()) * 255
  frames = np.stack([canvas[pad - t * step[1]:pad - t * step[1] + height,
                            pad - t * step[0]:pad - t * step[0] + width]
                     for t in range(num_frames)])
  return frames.astype(np.uint8)


@pytest.fixture(scope='session')
def moving_texture():
  """The frame generator `moving_texture(num_frames=10, height=64, width=80, step=(2, 1))`."""
  return _moving_texture


@pytest.fixture(scope='session')
def texture():
  """10 frames of 64 x 80 moving by (2, 1) px per frame."""
  return _moving_texture()
