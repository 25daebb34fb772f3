"""Figures and the Markdown report file of the evaluation.

Tables (Markdown + CSV, the paper's layout: rows = models) are written with
`tapkit.viz.tables`. Pure formatting and drawing; the CLI (`python -m dpov_jax.evaluate`) computes the numbers.
Images handed in here are ImageNet-normalised float32 [H, W, 3] unless said otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image

from dpov_jax.evaluate import readers
from tapkit.viz import correspondences
from tapkit.viz import features as viz_features
from tapkit.viz import plots


def write_markdown(sections: Sequence[tuple[str, str]], title: str, path: str) -> str:
  """`# title` then per (heading, body) a `## heading` section; returns the path."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  parts = [f'# {title}', '']
  for heading, body in sections:
    parts += [f'## {heading}', '', body, '']
  with open(path, 'w') as f:
    f.write('\n'.join(parts))
  return path


# ----------------------------------------------------------------------------
# Images.


def denormalize(image: np.ndarray) -> np.ndarray:
  """ImageNet-normalised [H, W, 3] float -> uint8 RGB."""
  rgb = image * readers.IMAGENET_STD + readers.IMAGENET_MEAN
  return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colorize(values: np.ndarray, cmap: str = 'magma', vmin: float | None = None,
             vmax: float | None = None, mask: np.ndarray | None = None) -> np.ndarray:
  """[H, W] values -> [H, W, 3] uint8 through a colormap; masked-out pixels grey."""
  values = np.asarray(values, np.float64)
  mask = np.isfinite(values) if mask is None else (np.asarray(mask, bool) & np.isfinite(values))
  if vmin is None:
    vmin = float(values[mask].min()) if mask.any() else 0.0
  if vmax is None:
    vmax = float(values[mask].max()) if mask.any() else 1.0
  t = np.clip((np.where(mask, values, vmin) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
  rgb = (colormaps[cmap](t)[..., :3] * 255.0 + 0.5).astype(np.uint8)
  rgb[~mask] = 128
  return rgb


def normals_rgb(normals: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
  """[H, W, >=3] normals -> uint8 RGB of (n / |n| + 1) / 2; masked-out pixels grey."""
  n = np.asarray(normals, np.float64)[..., :3]
  n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-8)
  rgb = ((n + 1.0) * 0.5 * 255.0 + 0.5).astype(np.uint8)
  if mask is not None:
    rgb[~np.asarray(mask, bool)] = 128
  return rgb


def image_grid(rows: Sequence[Sequence[np.ndarray]], gap: int = 4) -> np.ndarray:
  """Tiles uint8 [H, W, 3] panels (all of one size) into a white-gapped grid."""
  h, w = rows[0][0].shape[:2]
  ncol = max(len(r) for r in rows)
  out = np.full((len(rows) * (h + gap) - gap, ncol * (w + gap) - gap, 3), 255, np.uint8)
  for i, row in enumerate(rows):
    for j, panel in enumerate(row):
      out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = panel
  return out


def save_png(image: np.ndarray, path: str, scale: int = 1) -> str:
  """Writes a uint8 image (nearest-upscaled by `scale`, for tiny test images)."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  pil = Image.fromarray(image)
  if scale > 1:
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
  pil.save(path)
  return path


def _upscale(size: int) -> int:
  """Integer factor that brings a small panel to >= 160 px."""
  return max(1, -(-160 // size))


def depth_figure(examples: Mapping[str, np.ndarray], max_depth: float, path: str) -> str:
  """Rows = test images; columns: image | gt depth | predicted depth | |error| (m).

  Depth panels share one colour scale [0, max gt]; the error scale is [0, max gt / 4].
  """
  valid = examples['depth'] > 0  # depth targets (examples['valid'] is the normals' mask)
  top = float(examples['depth'][valid].max()) if valid.any() else max_depth
  rows = []
  for i in range(examples['image'].shape[0]):
    gt, pred, v = examples['depth'][i], examples['pred'][i], valid[i]
    rows.append([denormalize(examples['image'][i]),
                 colorize(gt, 'magma_r', 0.0, top, v),
                 colorize(pred, 'magma_r', 0.0, top),
                 colorize(np.abs(pred - gt), 'inferno', 0.0, top / 4, v)])
  return save_png(image_grid(rows), path, _upscale(rows[0][0].shape[0]))


def normals_figure(examples: Mapping[str, np.ndarray], path: str) -> str:
  """Rows = test images; columns: image | gt normals | predicted | angular error (0-60 deg)."""
  rows = []
  for i in range(examples['image'].shape[0]):
    gt, pred, v = examples['normals'][i], examples['pred'][i][..., :3], examples['valid'][i]
    cos = (pred * gt).sum(-1) / np.maximum(
        np.linalg.norm(pred, axis=-1) * np.linalg.norm(gt, axis=-1), 1e-8)
    err = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    rows.append([denormalize(examples['image'][i]), normals_rgb(gt, v), normals_rgb(pred),
                 colorize(err, 'inferno', 0.0, 60.0, v)])
  return save_png(image_grid(rows), path, _upscale(rows[0][0].shape[0]))


def keypoint_figure(src_image: np.ndarray, trg_image: np.ndarray, src_kps: np.ndarray,
                    pred_kps: np.ndarray, correct: np.ndarray, path: str) -> str:
  """Source keypoints joined to their predicted target positions (green = correct)."""
  scale = _upscale(src_image.shape[0])
  a = np.asarray(Image.fromarray(denormalize(src_image)).resize(
      (src_image.shape[1] * scale, src_image.shape[0] * scale), Image.Resampling.NEAREST))
  b = np.asarray(Image.fromarray(denormalize(trg_image)).resize(
      (trg_image.shape[1] * scale, trg_image.shape[0] * scale), Image.Resampling.NEAREST))
  correspondences.draw_correspondences(a, b, (np.asarray(src_kps) + 0.5) * scale - 0.5,
                                       (np.asarray(pred_kps) + 0.5) * scale - 0.5, correct,
                                       path=path)
  return path


def pca_figure(images: np.ndarray, feature_maps: np.ndarray, titles: Sequence[str],
               path: str) -> str:
  """Images and the first 3 principal components of their features, fitted jointly."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig = viz_features.pca_figure(np.stack([denormalize(x) for x in images]), feature_maps,
                                titles=list(titles), path=path)
  plt.close(fig)
  return path


def bar_figure(values: Mapping[str, Mapping[str, float]], title: str, ylabel: str,
               path: str) -> str:
  """Grouped bars {column: {model: value}} (model comparison per bin / metric)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig = plots.plot_bars(values, title=title, ylabel=ylabel, fmt='.1f', path=path)
  plt.close(fig)
  return path


def loss_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str,
                path: str) -> str:
  """Training loss per model against steps."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5, 3.2))
  for name, (steps, values) in curves.items():
    ax.plot(steps, values, label=name)
  ax.set_xlabel('step')
  ax.set_ylabel('train loss')
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small')
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path
