"""Bilinear sampling of images and feature maps at points, numpy or jax.

One implementation, `bilinear_sample`, serves every caller; what differs between them is
where coordinates come from and what happens at the border, and both are options:

Coordinates. `bilinear_sample` takes pixel-index coordinates: the centre of pixel (row i,
column j) is at x = j, y = i. `pixel_coords` converts normalised coordinates u in [0, 1]:
  * align_corners=False: x = u·size − 0.5, so 0 and 1 are the outer edges of the image
    (TRAJAN's `(pixel + 0.5) / size`; torch `grid_sample(align_corners=False)` with
    u = (g + 1) / 2 for a grid value g in [−1, 1]).
  * align_corners=True: x = u·(size − 1), so 0 and 1 are the centres of the first and last
    pixels (torch `grid_sample(align_corners=True)`).

Border (`padding`):
  * 'border': coordinates are clamped to [0, size − 1] before interpolating
    (torch `grid_sample(padding_mode='border')`).
  * 'zeros': taps that fall outside the image contribute zero
    (torch `grid_sample(padding_mode='zeros')`).
  * 'clamp_index': torch's `F.interpolate(mode='bilinear')` rule: negative coordinates are
    clamped to 0, and the upper neighbour's index is clamped to the last row / column while
    its weight is kept, so a coordinate in (size − 1, size) blends the last row with itself.

Arithmetic: with fx = x − floor(x), the two rows are interpolated first,
v(y0)·(1 − fx) + v(y0, x0 + 1)·fx, then blended with (1 − fy) and fy. Weights are computed
in the promoted dtype of the coordinates and the integer tap index (numpy: float32
coordinates give float64 weights; jax: float32 weights), and the result has the promoted
dtype of image and weights; callers cast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tapkit.ops.numeric import array_module

Array = Any  # np.ndarray or jax.Array.

PADDING_MODES = ('border', 'zeros', 'clamp_index')


def pixel_coords(u: Array, size: int, *, align_corners: bool) -> Array:
  """Normalised coordinates u (0 .. 1 across the image) -> pixel-index coordinates.

  Args:
    u: [...] normalised coordinates along one axis.
    size: the image's length along that axis, in pixels.
    align_corners: False: 0 and 1 are the image edges (x = u·size − 0.5); True: they are the
      centres of the first and last pixels (x = u·(size − 1)).

  Returns:
    [...] pixel-index coordinates (pixel j has its centre at j), u's dtype.
  """
  if align_corners:
    return u * (size - 1)
  return u * size - 0.5


def _gather(image: Array, yi: Array, xi: Array, xp) -> Array:
  """image [..., H, W, C] at integer (yi, xi) [..., N] (same leading axes) -> [..., N, C]."""
  if image.ndim == 3:
    return image[yi, xi]
  lead = image.shape[:-3]
  flat = image.reshape((-1,) + image.shape[-3:])
  batch = flat.shape[0]
  b = xp.arange(batch).reshape(batch, 1)
  out = flat[b, yi.reshape(batch, -1), xi.reshape(batch, -1)]
  return out.reshape(lead + yi.shape[len(lead):] + image.shape[-1:])


def bilinear_sample(image: Array, x: Array, y: Array, *, padding: str = 'border') -> Array:
  """Bilinear interpolation of an image / feature map at points (see the module docstring).

  Args:
    image: [..., H, W, C] numpy or jax array.
    x, y: [..., N] pixel-index coordinates (column, row; pixel centres at integers), with the
      same leading axes as `image` (e.g. maps [T, H, W, C] with points [T, N]).
    padding: one of PADDING_MODES.

  Returns:
    [..., N, C] interpolated values (numpy or jax, like `image`).
  """
  if padding not in PADDING_MODES:
    raise ValueError(f'padding must be one of {PADDING_MODES}, got {padding!r}')
  xp = array_module(image)
  if image.ndim < 3:
    raise ValueError(f'image must be [..., H, W, C], got shape {image.shape}')
  if x.shape != y.shape or x.shape[:-1] != image.shape[:-3]:
    raise ValueError(f'x, y must be [..., N] with the leading axes of image '
                     f'{image.shape[:-3]}, got {x.shape} and {y.shape}')
  h, w = image.shape[-3], image.shape[-2]
  if padding == 'border':
    x = xp.clip(x, 0.0, w - 1.0)
    y = xp.clip(y, 0.0, h - 1.0)
  elif padding == 'clamp_index':
    x = xp.maximum(x, 0.0)
    y = xp.maximum(y, 0.0)
  index_dtype = np.int64 if xp is np else xp.int32
  x0 = xp.floor(x).astype(index_dtype)
  y0 = xp.floor(y).astype(index_dtype)
  fx = (x - x0)[..., None]  # [..., N, 1]
  fy = (y - y0)[..., None]
  x1, y1 = x0 + 1, y0 + 1
  taps = []
  for yi, xi in ((y0, x0), (y0, x1), (y1, x0), (y1, x1)):
    tap = _gather(image, xp.clip(yi, 0, h - 1), xp.clip(xi, 0, w - 1), xp)
    if padding == 'zeros':
      inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
      tap = tap * inside[..., None]
    taps.append(tap)
  v00, v01, v10, v11 = taps
  top = v00 * (1 - fx) + v01 * fx
  bottom = v10 * (1 - fx) + v11 * fx
  return top * (1 - fy) + bottom * fy
