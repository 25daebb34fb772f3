"""Tests for tapkit.viz._common: colour mapping and headless figure rendering."""

import io

import numpy as np
from PIL import Image

from tapkit.viz import _common


def test_map_colors_range_and_nan():
  rgb = _common.map_colors([0.0, 0.5, 1.0, np.nan], 'gray')
  assert rgb.dtype == np.uint8 and rgb.shape == (4, 3)
  np.testing.assert_array_equal(rgb[0], [0, 0, 0])
  np.testing.assert_array_equal(rgb[2], [255, 255, 255])
  np.testing.assert_array_equal(rgb[3], [128, 128, 128])  # NaN -> grey
  clipped = _common.map_colors([-5.0, 5.0], 'gray', vmin=0.0, vmax=1.0)
  np.testing.assert_array_equal(clipped, [[0, 0, 0], [255, 255, 255]])


def test_rainbow_follows_rank_of_initial_y():
  colours = _common.rainbow_colors([50.0, 10.0, 30.0])
  again = _common.rainbow_colors([1000.0, -3.0, 7.0])  # same order, other values
  np.testing.assert_array_equal(colours, again)
  assert len({tuple(c) for c in colours}) == 3


def test_to_uint8():
  np.testing.assert_array_equal(_common.to_uint8(np.array([-0.5, 0.5, 2.0])), [0, 128, 255])
  np.testing.assert_array_equal(_common.to_uint8(np.array([-3, 300])), [0, 255])


def test_figure_rendering_is_headless(tmp_path):
  fig = _common.new_figure(2.0, 1.5, dpi=50)
  fig.add_subplot().plot([0, 1], [0, 1], color='red')
  image = _common.figure_to_array(fig)
  assert image.shape == (75, 100, 3)
  assert np.any((image[..., 0] > 200) & (image[..., 1] < 80))  # the red line is there
  with Image.open(io.BytesIO(_common.figure_to_png(fig))) as png:
    assert png.format == 'PNG' and png.size[0] > 10
  path = _common.save_image(image, tmp_path / 'a' / 'b.png')
  with Image.open(path) as png:
    np.testing.assert_array_equal(np.asarray(png.convert('RGB')), image)
