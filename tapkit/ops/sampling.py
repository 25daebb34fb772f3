"""Bilinear sampling of images and feature maps at points (numpy or jax), and resizing.

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

Resizing (`resize`, jax) applies torch's 1-D interpolation matrices (`bilinear_matrix`,
`bicubic_matrix`, float64, cast to the input's dtype) separably. The ViT position-embedding
resize (`tapkit.models.vit.interpolate`) keeps its own float32 weights: it reproduces ATen's
float32 arithmetic (and antialiasing) bit for bit, which these float64 matrices do not.
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


# ----------------------------------------------------------------------------
# Separable resizing with torch F.interpolate semantics (no antialiasing).


def source_coords(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
  """[out] float64 source pixel coordinate that each output pixel reads, as torch computes it.

  align_corners=False: (dst + 0.5)·in/out − 0.5 (pixel areas aligned; may be negative at the
  first pixel); True: dst·(in − 1)/(out − 1) (first and last pixel centres aligned).
  """
  dst = np.arange(out_size, dtype=np.float64)
  if align_corners:
    return dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
  return (dst + 0.5) * (in_size / out_size) - 0.5


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
  """Keys cubic convolution weights [..., 4] for taps at offsets -1, 0, 1, 2."""
  def near(s):  # |s| <= 1
    return ((a + 2) * s - (a + 3)) * s * s + 1
  def far(s):  # 1 < |s| < 2
    return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def bicubic_matrix(in_size: int, out_size: int, align_corners: bool = False) -> np.ndarray:
  """[out, in] float64 matrix of torch bicubic interpolation along one axis.

  Source coordinates from `source_coords`; Keys a = −0.75, taps clamped to the border,
  no antialiasing (as F.interpolate(mode='bicubic')).
  """
  src = source_coords(in_size, out_size, align_corners)
  i0 = np.floor(src)
  w = _cubic_weights(src - i0)
  mat = np.zeros((out_size, in_size), np.float64)
  for k, off in enumerate((-1, 0, 1, 2)):
    idx = np.clip(i0 + off, 0, in_size - 1).astype(int)
    np.add.at(mat, (np.arange(out_size), idx), w[:, k])
  return mat


def bilinear_matrix(in_size: int, out_size: int, align_corners: bool = True) -> np.ndarray:
  """[out, in] float64 matrix of torch bilinear interpolation along one axis.

  The 'clamp_index' rule of `bilinear_sample`: align_corners=False clamps negative source
  coordinates to 0, and the upper tap's index is clamped to the last pixel.
  """
  src = source_coords(in_size, out_size, align_corners)
  if not align_corners:
    src = np.maximum(src, 0.0)
  i0 = np.minimum(np.floor(src).astype(int), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  t = src - i0
  mat = np.zeros((out_size, in_size), np.float64)
  np.add.at(mat, (np.arange(out_size), i0), 1.0 - t)
  np.add.at(mat, (np.arange(out_size), i1), t)
  return mat


def resize(x: Array, out_hw: tuple[int, int], mode: str = 'bilinear',
           align_corners: bool = False) -> Array:
  """Separable torch-style resize (jax) of [H, W, C] or [B, H, W, C] to out_hw = (oh, ow).

  The 1-D matrices of `bilinear_matrix` / `bicubic_matrix` are cast to x's dtype and applied
  with full-precision einsum, so the resize is a differentiable linear map of x.

  Args:
    x: [H, W, C] or [B, H, W, C] jax (or numpy) array.
    out_hw: output (height, width) in pixels.
    mode: 'bilinear' or 'bicubic'.
    align_corners: torch's flag (see `source_coords`).

  Returns:
    [oh, ow, C] or [B, oh, ow, C] jax array.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  if mode == 'bilinear':
    make = bilinear_matrix
  elif mode == 'bicubic':
    make = bicubic_matrix
  else:
    raise ValueError(f'unknown resize mode {mode!r}')
  if x.ndim not in (3, 4):
    raise ValueError(f'resize takes [H, W, C] or [B, H, W, C], got shape {x.shape}')
  my = jnp.asarray(make(x.shape[-3], out_hw[0], align_corners), x.dtype)
  mx = jnp.asarray(make(x.shape[-2], out_hw[1], align_corners), x.dtype)
  spec = 'Yy,yxc,Xx->YXc' if x.ndim == 3 else 'Yy,byxc,Xx->bYXc'
  return jnp.einsum(spec, my, x, mx, precision=jax.lax.Precision.HIGHEST)
