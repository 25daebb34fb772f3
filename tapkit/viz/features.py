"""PCA colour maps of backbone features (DINO-style "first three components as RGB").

The PCA is fitted jointly over all feature vectors of a batch (optionally only the
foreground ones), so one colour means the same feature direction in every image:
that is what makes maps of two frames, or of a model before and after
fine-tuning on the same images, comparable.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tapkit.ops import sampling
from tapkit.viz import _common


def fit_pca(vectors: Any, num_components: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """Principal directions of vectors [M, D].

  Signs are fixed so that each component's largest-magnitude loading is
  positive, which makes colours reproducible across runs and libraries.

  Returns:
    (mean [D], components [num_components, D]) in float64, by decreasing variance.
  """
  vectors = np.asarray(vectors, np.float64)
  if vectors.ndim != 2 or vectors.shape[0] < 1:
    raise ValueError(f'vectors must be [M, D] with M >= 1, got {vectors.shape}')
  dim = vectors.shape[1]
  if not 1 <= num_components <= dim:
    raise ValueError(f'num_components must lie in [1, D = {dim}], got {num_components}')
  mean = vectors.mean(0)
  centred = vectors - mean
  # Eigen-decomposition of the D x D covariance: cheap for many tokens, D <= ~2k.
  cov = centred.T @ centred / max(vectors.shape[0] - 1, 1)
  eigval, eigvec = np.linalg.eigh(cov)
  comps = eigvec[:, np.argsort(eigval)[::-1][:num_components]].T
  signs = np.sign(comps[np.arange(num_components), np.argmax(np.abs(comps), axis=1)])
  return mean, comps * np.where(signs == 0, 1.0, signs)[:, None]


def resize_bilinear(images: Any, size: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of [B, h, w, C] to [B, H, W, C] with aligned pixel centres.

  Output pixel i samples input coordinate (i + 0.5) * h / H - 0.5, clamped at the
  borders ('border' padding of `tapkit.ops.sampling.bilinear_sample`), i.e. each feature
  cell covers the image patch it was computed from.
  """
  images = np.asarray(images, np.float64)
  height, width = size
  batch = images.shape[0]
  ys = sampling.source_coords(images.shape[1], height, align_corners=False)  # [H]
  xs = sampling.source_coords(images.shape[2], width, align_corners=False)  # [W]
  grid_y, grid_x = np.meshgrid(ys, xs, indexing='ij')
  flat = lambda g: np.broadcast_to(g.reshape(1, -1), (batch, height * width))
  out = sampling.bilinear_sample(images, flat(grid_x), flat(grid_y), padding='border')
  return out.reshape(batch, height, width, images.shape[-1])


def pca_rgb(features: Any, mask: Any | None = None, *,
            image_size: tuple[int, int] | None = None, interpolation: str = 'nearest',
            percentile: float = 1.0, background: float = 0.0) -> np.ndarray:
  """Colours features by their first three principal components, fitted jointly.

  Args:
    features: [B, h, w, D] feature maps (e.g. ViT patch tokens reshaped to the
      patch grid); a single map [h, w, D] is treated as B = 1.
    mask: [B, h, w] bool foreground (True = fit and colour), or None for all.
      Resized to the grid with nearest neighbours if given at another size.
    image_size: (H, W) output size in pixels; None keeps (h, w).
    interpolation: 'nearest' (crisp patches) or 'bilinear' upsampling.
    percentile: each component is scaled so its [p, 100 - p] percentile range
      over the fitted vectors maps to [0, 1], so outliers don't wash colours out.
    background: grey level in [0, 1] of masked-out pixels.

  Returns:
    [B, H, W, 3] float32 RGB in [0, 1].
  """
  features = np.asarray(features, np.float64)
  if features.ndim == 3:
    features = features[None]
    mask = None if mask is None else np.asarray(mask)[None]
  if features.ndim != 4:
    raise ValueError(f'features must be [B, h, w, D], got {features.shape}')
  batch, h, w, dim = features.shape
  if mask is None:
    mask = np.ones((batch, h, w), bool)
  mask = np.asarray(mask, bool)
  if mask.shape[1:] != (h, w):
    mask = resize_nearest(mask[..., None].astype(np.float64), (h, w))[..., 0] > 0.5
  if mask.shape != (batch, h, w):
    raise ValueError(f'mask must be [B, h, w] = {(batch, h, w)}, got {mask.shape}')
  flat = features.reshape(-1, dim)
  fit = flat[mask.reshape(-1)]
  if fit.shape[0] == 0:
    raise ValueError('mask selects no feature vectors')
  num = min(3, dim)
  mean, comps = fit_pca(fit, num)
  proj = (flat - mean) @ comps.T  # [B*h*w, num]
  lo = np.percentile(proj[mask.reshape(-1)], percentile, axis=0)
  hi = np.percentile(proj[mask.reshape(-1)], 100.0 - percentile, axis=0)
  rgb = np.clip((proj - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
  if num < 3:  # D < 3: repeat the last component so the map stays RGB.
    rgb = np.concatenate([rgb, np.repeat(rgb[:, -1:], 3 - num, axis=1)], axis=1)
  rgb = np.where(mask.reshape(-1, 1), rgb, background).reshape(batch, h, w, 3)
  if image_size is not None and tuple(image_size) != (h, w):
    if interpolation == 'nearest':
      rgb = resize_nearest(rgb, image_size)
    elif interpolation == 'bilinear':
      rgb = resize_bilinear(rgb, image_size)
    else:
      raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
  return rgb.astype(np.float32)


def resize_nearest(images: Any, size: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of [B, h, w, C] to [B, H, W, C] (pixel-centre aligned)."""
  images = np.asarray(images)
  height, width = size
  ys = np.minimum(((np.arange(height) + 0.5) * images.shape[1] / height).astype(int),
                  images.shape[1] - 1)
  xs = np.minimum(((np.arange(width) + 0.5) * images.shape[2] / width).astype(int),
                  images.shape[2] - 1)
  return images[:, ys][:, :, xs]


def pca_figure(images: Any, features: Any, mask: Any | None = None, *,
               titles: list[str] | None = None, alpha: float | None = None,
               path: str | os.PathLike | None = None, **pca_kwargs: Any) -> Figure:
  """Two rows: the images, and their jointly fitted PCA maps (optionally overlaid).

  Args:
    images: [B, H, W, 3] uint8 (or float in [0, 1]).
    features: [B, h, w, D] feature maps of those images.
    mask: [B, h, w] bool foreground, or None.
    titles: one title per image.
    alpha: if given, the second row blends PCA colours over the image with this
      opacity instead of showing them alone.
    path: if given, also saved there as PNG.
    **pca_kwargs: forwarded to `pca_rgb` (interpolation, percentile, background).
  """
  images = _common.to_uint8(images)
  batch, height, width = images.shape[:3]
  maps = pca_rgb(features, mask, image_size=(height, width), **pca_kwargs)
  if alpha is not None:
    maps = alpha * maps + (1.0 - alpha) * images / 255.0
  fig = _common.new_figure(2.5 * batch, 2.5 * 2 * height / width + 0.3)
  for b in range(batch):
    for row, panel in enumerate((images[b], maps[b])):
      ax = fig.add_subplot(2, batch, row * batch + b + 1)
      ax.imshow(panel)
      ax.set_axis_off()
      if row == 0 and titles is not None:
        ax.set_title(titles[b], fontsize='small')
  fig.tight_layout()
  if path is not None:
    _common.save_figure(fig, path)
  return fig
