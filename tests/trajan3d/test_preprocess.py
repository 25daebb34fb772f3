"""Numpy preprocessing of tracks, with hand-made numbers."""

import numpy as np
import pytest

from tapkit.data import geometry
from trajan3d import preprocess


def test_normalize_and_denormalize_pixels():
  px = np.asarray([[0.0, 0.0], [99.5, 49.5], [9.5, 19.5]])
  norm = preprocess.normalize_pixel_tracks(px, width=100, height=50)
  np.testing.assert_allclose(norm, [[0.005, 0.01], [1.0, 1.0], [0.1, 0.4]],
                             rtol=1e-6)
  assert norm.dtype == np.float32
  # The colab multiplies back without removing the half pixel.
  np.testing.assert_allclose(
      preprocess.denormalize_tracks(norm, 100, 50), px + 0.5, rtol=1e-6)


def test_pad_or_crop_time():
  a = np.arange(6).reshape(3, 2)
  np.testing.assert_array_equal(preprocess.pad_or_crop_time(a, 5),
                                [[0, 1], [2, 3], [4, 5], [0, 0], [0, 0]])
  np.testing.assert_array_equal(preprocess.pad_or_crop_time(a, 2),
                                [[0, 1], [2, 3]])
  np.testing.assert_array_equal(
      preprocess.pad_or_crop_time(a, 3, axis=1), [[0, 1, 0], [2, 3, 0],
                                                  [4, 5, 0]])


def test_lift_and_project_roundtrip():
  depth = np.full((1, 4, 6), 2.0, np.float32)
  depth[0, :, 3:] = 4.0
  intr = np.asarray([100.0, 50.0, 3.0, 2.0])
  xy = np.asarray([[[3.0, 2.0], [1.0, 0.0], [2.5, 1.0]]], np.float32)
  xyz = preprocess.lift_tracks_to_3d(xy, depth, intr)
  # (3, 2) at the principal point, depth 4; (1, 0): X = -2*2/100, Y = -2*2/50;
  # (2.5, 1): bilinear between depth 2 (x=2) and 4 (x=3) -> 3.
  np.testing.assert_allclose(
      xyz[0], [[0, 0, 4], [-0.04, -0.08, 2], [-0.5 * 3 / 100, -3 / 50, 3]],
      rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(geometry.project(xyz, intr), xy,
                             atol=1e-5)
  # Already-sampled per-point depth.
  z = np.asarray([[1.0, 2.0, 3.0]])
  np.testing.assert_allclose(
      preprocess.lift_tracks_to_3d(xy, z, intr)[..., 2], z)
