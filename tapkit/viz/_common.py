"""Helpers shared by the visualisation modules: headless figures, colours, PNG bytes.

Figures are built with `matplotlib.figure.Figure` and rendered by the Agg canvas
directly instead of through `pyplot`, so nothing here needs a display or changes
the process-wide matplotlib backend (notebooks keep their inline backend).
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(width_in: float = 6.4, height_in: float = 4.8, dpi: int = 100) -> Figure:
  """A matplotlib Figure attached to an Agg canvas (no display, no pyplot state)."""
  fig = Figure(figsize=(width_in, height_in), dpi=dpi)
  FigureCanvasAgg(fig)
  return fig


def figure_to_array(fig: Figure) -> np.ndarray:
  """Renders `fig` to [H, W, 3] uint8 RGB (H, W in pixels = inches * dpi)."""
  canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def figure_to_png(fig: Figure, dpi: int | None = None) -> bytes:
  """PNG bytes of `fig`, cropped to its content."""
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=dpi, bbox_inches='tight')
  return buf.getvalue()


def image_to_png(image: np.ndarray) -> bytes:
  """PNG bytes of an [H, W, 3] / [H, W] uint8 image (float images in [0, 1] are scaled)."""
  from PIL import Image  # Local import: only needed when writing images.

  buf = io.BytesIO()
  Image.fromarray(to_uint8(image)).save(buf, format='PNG')
  return buf.getvalue()


def upscale_nearest(image: Any, factor: int) -> np.ndarray:
  """[H * f, W * f, ...] copy of an [H, W, ...] image, each pixel repeated f x f (no blur)."""
  factor = int(factor)
  if factor < 1:
    raise ValueError(f'factor must be a positive integer, got {factor}')
  image = np.asarray(image)
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def upscale_pixel_coords(xy: Any, factor: int) -> np.ndarray:
  """(x, y) pixel coordinates [..., 2] (centres at integers) in an image `upscale_nearest`d.

  Pixel i spans [i - 0.5, i + 0.5]; scaled by f it spans [f i - 0.5, f (i + 1) - 0.5], so
  its centre moves to f (i + 0.5) - 0.5.
  """
  return (np.asarray(xy, np.float64) + 0.5) * int(factor) - 0.5


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int | None = None) -> str:
  """Writes `fig` as PNG (or any format matplotlib infers from the suffix); returns the path."""
  path = os.fspath(path)
  make_parent_dir(path)
  fig.savefig(path, dpi=dpi, bbox_inches='tight')
  return path


def save_image(image: np.ndarray, path: str | os.PathLike) -> str:
  """Writes an [H, W, 3] image as PNG; returns the path."""
  path = os.fspath(path)
  make_parent_dir(path)
  with open(path, 'wb') as f:
    f.write(image_to_png(image))
  return path


def make_parent_dir(path: str) -> None:
  """Creates the folder that will hold file `path`, if it names one."""
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)


def to_uint8(image: Any) -> np.ndarray:
  """uint8 view of an image: floats are taken as [0, 1] and clipped, ints clipped to [0, 255]."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  if np.issubdtype(image.dtype, np.floating):
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  return np.clip(image, 0, 255).astype(np.uint8)


def map_colors(values: Any, cmap: str = 'viridis', vmin: float | None = None,
               vmax: float | None = None) -> np.ndarray:
  """Maps values [...] through a matplotlib colormap to [..., 3] uint8 RGB.

  NaNs get grey. vmin / vmax default to the finite min / max of `values`.
  """
  values = np.asarray(values, dtype=np.float64)
  finite = np.isfinite(values)
  if vmin is None:
    vmin = float(values[finite].min()) if finite.any() else 0.0
  if vmax is None:
    vmax = float(values[finite].max()) if finite.any() else 1.0
  span = vmax - vmin if vmax > vmin else 1.0
  normed = np.clip((np.where(finite, values, vmin) - vmin) / span, 0.0, 1.0)
  rgb = colormaps[cmap](normed)[..., :3]
  rgb = np.where(finite[..., None], rgb, 0.5)
  return to_uint8(rgb)


def rainbow_colors(initial_y: Any, cmap: str = 'gist_rainbow') -> np.ndarray:
  """[N, 3] uint8 colours ordered by rank of each track's initial y (pixels or any unit).

  Ranking (rather than the raw value) spreads hues evenly however the tracks are
  distributed over the image, so neighbouring tracks stay distinguishable.
  """
  initial_y = np.asarray(initial_y, dtype=np.float64).reshape(-1)
  n = initial_y.shape[0]
  if n == 0:
    return np.zeros((0, 3), np.uint8)
  ranks = np.empty(n, np.float64)
  ranks[np.argsort(initial_y, kind='stable')] = np.arange(n)
  # ranks / n lies in [0, 1): cyclic maps such as 'hsv' would repeat the first hue at 1.
  return map_colors(ranks / max(n, 1), cmap, vmin=0.0, vmax=1.0)
