"""Bicubic resampling that reproduces torch's `F.interpolate(mode='bicubic', align_corners=False)`.

Position embeddings of DINO / DINOv2 ViTs are resized from the training grid (14×14 or 37×37) to the
patch grid of the input image, and each implementation calls torch differently:

| caller                              | argument                     | antialias |
| ----------------------------------- | ---------------------------- | --------- |
| DINO hub, DINOv2 hub (no registers) | scale_factor (n + 0.1) / G   | no        |
| DINOv2 hub with registers           | size n                       | yes       |
| transformers ViT / Dinov2           | size n                       | no        |
| transformers Dinov2WithRegisters    | size n                       | yes       |

`jax.image.resize` uses a different cubic kernel (a = -0.5, no index clamping) for the
non-antialiased case, so we build torch's 1-D weight matrices ourselves (in float32 arithmetic,
the order of operations of ATen's CPU kernels) and apply them separably. The weights depend only
on static sizes, so they are numpy constants at trace time and the resize is a differentiable
linear map of the embedding.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

_F32 = np.float32


def _cubic_conv1(x: np.float32, a: np.float32) -> np.float32:
  """Keys kernel for |x| <= 1: ((a + 2)|x| - (a + 3))|x|² + 1."""
  return ((a + _F32(2)) * x - (a + _F32(3))) * x * x + _F32(1)


def _cubic_conv2(x: np.float32, a: np.float32) -> np.float32:
  """Keys kernel for 1 < |x| < 2: ((a|x| - 5a)|x| + 8a)|x| - 4a."""
  return ((a * x - _F32(5) * a) * x + _F32(8) * a) * x - _F32(4) * a


def output_size(in_size: int, size: int | None, scale_factor: float | None) -> int:
  """The output length torch computes: `size`, or floor(in_size · scale_factor) (double)."""
  if (size is None) == (scale_factor is None):
    raise ValueError('interpolate: give exactly one of size and scale_factor')
  if size is not None:
    return int(size)
  return int(math.floor(float(in_size) * float(scale_factor)))


def _source_scale(in_size: int, out_size: int, scale_factor: float | None) -> np.float32:
  """ATen `compute_scales_value`: 1 / scale_factor when one is given, else in / out (float32)."""
  if scale_factor is not None and scale_factor > 0:
    return _F32(1.0 / float(scale_factor))
  return _F32(in_size) / _F32(out_size)


@functools.lru_cache(maxsize=256)
def bicubic_weights(in_size: int,
                    size: int | None = None,
                    scale_factor: float | None = None,
                    antialias: bool = False) -> np.ndarray:
  """1-D weight matrix W [out, in] with out = W @ in, as torch's CPU bicubic kernels compute it.

  Args:
    in_size: input length.
    size: output length (torch `size=`), or None.
    scale_factor: torch `scale_factor=` (output = floor(in·s), source scale 1/s), or None.
    antialias: torch `antialias=`. False: Keys a = -0.75, taps clamped to the border. True: the
      separable anti-aliasing filter (a = -0.5, stretched by the scale when downsampling, weights
      renormalised over the taps that fall inside the input).

  Returns:
    float32 [out, in].
  """
  out_size = output_size(in_size, size, scale_factor)
  if out_size <= 0 or in_size <= 0:
    raise ValueError(f'interpolate: empty resize {in_size} -> {out_size}')
  scale = _source_scale(in_size, out_size, scale_factor)
  weights = np.zeros((out_size, in_size), np.float32)
  if not antialias:
    a = _F32(-0.75)
    for i in range(out_size):
      # area_pixel_compute_source_index (cubic: no clamping at 0), then guard_index_and_lambda.
      real = scale * (_F32(i) + _F32(0.5)) - _F32(0.5)
      index = min(int(math.floor(real)), in_size - 1)
      t = min(max(real - _F32(index), _F32(0)), _F32(1))
      coeffs = (_cubic_conv2(t + _F32(1), a), _cubic_conv1(t, a),
                _cubic_conv1(_F32(1) - t, a), _cubic_conv2(_F32(2) - t, a))
      for k, c in enumerate(coeffs):
        j = min(max(index - 1 + k, 0), in_size - 1)
        weights[i, j] += c
    return weights

  # Anti-aliased path (ATen `_compute_indices_min_size_weights_aa` with the bicubic `aa_filter`).
  if out_size == in_size:
    # ATen's separable antialiased kernel skips every axis whose length does not change, whatever
    # the scale factor (the non-antialiased kernel does resample, see above).
    return np.eye(in_size, dtype=np.float32)
  a = _F32(-0.5)

  def aa_filter(x: np.float32) -> np.float32:
    x = abs(x)
    if x < _F32(1):
      return _cubic_conv1(x, a)
    if x < _F32(2):
      return _cubic_conv2(x, a)
    return _F32(0)

  support = _F32(2.0 * float(scale)) if scale >= 1.0 else _F32(2.0)
  invscale = _F32(1.0 / float(scale)) if scale >= 1.0 else _F32(1.0)
  max_taps = int(math.ceil(float(support))) * 2 + 1
  for i in range(out_size):
    center = _F32(float(scale) * (i + 0.5))
    xmin = max(int(float(center) - float(support) + 0.5), 0)
    xsize = min(int(float(center) + float(support) + 0.5), in_size) - xmin
    xsize = min(max(xsize, 0), max_taps)
    taps = [aa_filter(_F32((j + xmin - float(center) + 0.5) * float(invscale)))
            for j in range(xsize)]
    total = _F32(0)
    for w in taps:
      total = total + w
    for j, w in enumerate(taps):
      weights[i, xmin + j] = w / total if total != 0 else w
  return weights


def resize_bicubic_hwc(x: jax.Array,
                       size: tuple[int, int] | None = None,
                       scale_factor: tuple[float, float] | None = None,
                       antialias: bool = False) -> jax.Array:
  """Resize x [H, W, C] like torch `F.interpolate(x[None].permute(0,3,1,2), mode='bicubic', ...)`.

  Args:
    x: [H, W, C] float array (computed in float32, like the reference implementations).
    size: (out_h, out_w), or None.
    scale_factor: (s_h, s_w), or None (exactly one of size / scale_factor).
    antialias: torch's `antialias` flag.

  Returns:
    [out_h, out_w, C] float32.
  """
  h, w = x.shape[0], x.shape[1]
  if size is None and scale_factor is None:
    raise ValueError('resize_bicubic_hwc: give size or scale_factor')
  wh = bicubic_weights(h, None if size is None else size[0],
                       None if scale_factor is None else scale_factor[0], antialias)
  ww = bicubic_weights(w, None if size is None else size[1],
                       None if scale_factor is None else scale_factor[1], antialias)
  x = x.astype(jnp.float32)
  hi = jax.lax.Precision.HIGHEST
  # Separable: rows then columns; [Ho, H] x [H, W, C] -> [Ho, W, C] -> [Ho, Wo, C].
  y = jnp.einsum('oh,hwc->owc', jnp.asarray(wh), x, precision=hi)
  return jnp.einsum('pw,owc->opc', jnp.asarray(ww), y, precision=hi)
