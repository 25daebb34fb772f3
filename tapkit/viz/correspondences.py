"""Two images side by side with lines between matched keypoints.

Keypoints are (x, y) pixels, pixel centres at integers, each in its own image.
Lines are green for correct and red for wrong matches when a correctness flag is
given (e.g. from the Probe3D correspondence protocol), else coloured by rank of
the keypoint's y in image A (same rainbow as the 2D tracks).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tapkit.viz import _common

CORRECT_RGB = (40, 200, 60)
WRONG_RGB = (230, 40, 40)


def side_by_side(image_a: Any, image_b: Any, gap: int = 8,
                 fill: int = 255) -> tuple[np.ndarray, int]:
  """Places two images left and right, top-aligned.

  Returns:
    ([max(Ha, Hb), Wa + gap + Wb, 3] uint8 canvas, x offset of image B in pixels).
  """
  a, b = _common.to_uint8(image_a), _common.to_uint8(image_b)
  a = np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a
  b = np.repeat(b[..., None], 3, -1) if b.ndim == 2 else b
  height = max(a.shape[0], b.shape[0])
  offset = a.shape[1] + gap
  canvas = np.full((height, offset + b.shape[1], 3), fill, np.uint8)
  canvas[:a.shape[0], :a.shape[1]] = a
  canvas[:b.shape[0], offset:] = b
  return canvas, offset


def draw_correspondences(image_a: Any, image_b: Any, keypoints_a: Any, keypoints_b: Any,
                         correct: Any | None = None, *, max_matches: int | None = 200,
                         radius: float = 2.5, line_width: int = 1, gap: int = 8,
                         line_alpha: float = 0.8, scale: int = 1,
                         path: str | os.PathLike | None = None) -> np.ndarray:
  """Draws matches between two images.

  Args:
    image_a, image_b: [Ha, Wa, 3] and [Hb, Wb, 3] uint8 (float in [0, 1] is accepted).
    keypoints_a, keypoints_b: [K, 2] (x, y) pixels in their own image.
    correct: [K] bool (True = correct match, green; False = wrong, red), or None.
    max_matches: draw at most this many matches (evenly subsampled), None = all.
    radius: keypoint marker radius in pixels.
    line_width: line width in pixels.
    gap: blank columns between the images.
    line_alpha: line opacity in [0, 1] (markers are opaque).
    scale: draw on images enlarged by this integer factor (nearest neighbour), so matches
      on small images stay legible; `radius`, `line_width` and `gap` are in the enlarged
      image's pixels.
    path: if given, also written there as PNG.

  Returns:
    [scale * max(Ha, Hb), scale * (Wa + Wb) + gap, 3] uint8 image.
  """
  from PIL import Image, ImageDraw  # Local import: drawing only.

  kp_a = np.asarray(keypoints_a, np.float64).reshape(-1, 2)
  kp_b = np.asarray(keypoints_b, np.float64).reshape(-1, 2)
  if kp_a.shape != kp_b.shape:
    raise ValueError(f'keypoint arrays differ: {kp_a.shape} vs {kp_b.shape}')
  num = kp_a.shape[0]
  if correct is not None:
    correct = np.asarray(correct, bool).reshape(-1)
    if correct.shape[0] != num:
      raise ValueError(f'correct has {correct.shape[0]} flags for {num} matches')
    colors = np.where(correct[:, None], np.array(CORRECT_RGB), np.array(WRONG_RGB))
  else:
    colors = _common.rainbow_colors(kp_a[:, 1])
  keep = np.arange(num)
  if max_matches is not None and num > max_matches:
    keep = np.unique(np.linspace(0, num - 1, max_matches).round().astype(int))
  if scale != 1:
    image_a = _common.upscale_nearest(_common.to_uint8(image_a), scale)
    image_b = _common.upscale_nearest(_common.to_uint8(image_b), scale)
    kp_a = _common.upscale_pixel_coords(kp_a, scale)
    kp_b = _common.upscale_pixel_coords(kp_b, scale)
  canvas, offset = side_by_side(image_a, image_b, gap)
  base = Image.fromarray(canvas).convert('RGBA')
  overlay = Image.new('RGBA', base.size, (0, 0, 0, 0))
  draw = ImageDraw.Draw(overlay)
  ok = np.all(np.isfinite(kp_a), 1) & np.all(np.isfinite(kp_b), 1)
  for k in keep[ok[keep]]:
    (xa, ya), (xb, yb) = kp_a[k], kp_b[k] + np.array([offset, 0.0])
    rgb = tuple(int(c) for c in colors[k])
    draw.line([(xa, ya), (xb, yb)], fill=rgb + (int(255 * line_alpha),), width=line_width)
    for x, y in ((xa, ya), (xb, yb)):
      draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=rgb + (255,))
  out = np.asarray(Image.alpha_composite(base, overlay).convert('RGB'))
  if path is not None:
    _common.save_image(out, path)
  return out
