"""Tests for tapkit.viz.correspondences: matches drawn between two images."""

import numpy as np
import pytest
from PIL import Image

from tapkit.viz import correspondences


def test_side_by_side_layout():
  a = np.full((20, 30, 3), 10, np.uint8)
  b = np.full((25, 15), 200, np.uint8)  # greyscale is promoted to RGB
  canvas, offset = correspondences.side_by_side(a, b, gap=5)
  assert canvas.shape == (25, 50, 3) and offset == 35
  np.testing.assert_array_equal(canvas[0, 0], 10)
  np.testing.assert_array_equal(canvas[24, 40], 200)
  np.testing.assert_array_equal(canvas[22, 10], 255)  # padding below the shorter image


def test_correct_green_wrong_red(tmp_path):
  a = np.full((40, 40, 3), 128, np.uint8)
  b = np.full((40, 40, 3), 128, np.uint8)
  kp_a = np.array([[10.0, 10.0], [10.0, 30.0]])
  kp_b = np.array([[10.0, 10.0], [10.0, 30.0]])
  out = correspondences.draw_correspondences(a, b, kp_a, kp_b, [True, False], gap=0,
                                             line_alpha=1.0, path=tmp_path / 'm.png')
  assert out.shape == (40, 80, 3)
  np.testing.assert_array_equal(out[10, 10], correspondences.CORRECT_RGB)
  np.testing.assert_array_equal(out[10, 50], correspondences.CORRECT_RGB)  # B offset by 40
  np.testing.assert_array_equal(out[30, 30], correspondences.WRONG_RGB)  # along the line
  np.testing.assert_array_equal(out[20, 30], 128)  # between the lines nothing changes
  with Image.open(tmp_path / 'm.png') as png:
    np.testing.assert_array_equal(np.asarray(png.convert('RGB')), out)


def test_rainbow_without_flags_and_subsampling():
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, size=(32, 32, 3)).astype(np.uint8)
  kp = rng.uniform(2, 29, size=(50, 2))
  out = correspondences.draw_correspondences(img, img, kp, kp, max_matches=10)
  changed = np.any(out != correspondences.side_by_side(img, img)[0], axis=-1)
  assert changed.sum() > 50
  with pytest.raises(ValueError):
    correspondences.draw_correspondences(img, img, kp, kp[:3])
  with pytest.raises(ValueError, match='flags'):
    correspondences.draw_correspondences(img, img, kp, kp, np.ones(3, bool))


def test_drawn_on_enlarged_images():
  a = np.zeros((10, 12, 3), np.uint8)
  b = np.full((10, 12, 3), 50, np.uint8)
  out = correspondences.draw_correspondences(a, b, [[2.0, 3.0]], [[7.0, 5.0]], [True],
                                             radius=1.0, gap=6, scale=3)
  assert out.shape == (30, 3 * 12 + 6 + 3 * 12, 3)
  assert tuple(out[3 * 3 + 1, 3 * 2 + 1]) == correspondences.CORRECT_RGB
  assert tuple(out[3 * 5 + 1, 42 + 3 * 7 + 1]) == correspondences.CORRECT_RGB
  assert tuple(out[0, 45]) == (50, 50, 50)  # image B, enlarged
