"""SPair-71k, official layout: `PairAnnotation/{trn,val,test}/*.json`,
`ImageAnnotation/<class>/<image>.json`, `JPEGImages/<class>/<image>.jpg`."""

from __future__ import annotations

import glob
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from dpov_jax.evaluate import matching
from dpov_jax.evaluate import metrics
from dpov_jax.evaluate.readers.common import (DatasetFormatError, finite_numbers, is_number,
                                              load_json, normalize_image, require_key)
from tapkit.io import batch as batch_lib
from tapkit.io import image as image_io

SPAIR_CLASS_IDS = {
    'aeroplane': 1, 'bicycle': 2, 'bird': 3, 'boat': 4, 'bottle': 5,
    'bus': 6, 'car': 7, 'cat': 8, 'chair': 9, 'cow': 10, 'dog': 12,
    'horse': 13, 'motorbike': 14, 'person': 15, 'pottedplant': 16,
    'sheep': 17, 'train': 19, 'tvmonitor': 20,
}
SPAIR_SPLIT_DIRS = {'train': 'trn', 'valid': 'val', 'test': 'test'}


def read_spair_image_annotation(path: str) -> dict[str, Any]:
  """Reads `ImageAnnotation/<class>/<image>.json`.

  Returns:
    {'filename': str, 'name': image name without extension,
     'kps': [K, 2] float64 (x, y) pixels (NaN where not annotated),
     'valid': [K] bool}; keypoint ids are "0".."K-1".
  """
  d = load_json(path)
  filename = require_key(d, 'filename', path)
  if not isinstance(filename, str) or not filename:
    raise DatasetFormatError(path, 'filename', 'expected a non-empty string')
  kps = require_key(d, 'kps', path)
  if not isinstance(kps, Mapping) or not kps:
    raise DatasetFormatError(path, 'kps', 'expected a non-empty object '
                             '"0".."K-1" -> [x, y] or null')
  k = len(kps)
  if set(kps) != {str(i) for i in range(k)}:
    raise DatasetFormatError(path, 'kps', f'keys must be "0".."{k - 1}", got '
                             f'{sorted(kps)[:5]}...')
  xy = np.full((k, 2), np.nan)
  for i in range(k):
    v = kps[str(i)]
    if v is None:
      continue
    xy[i] = finite_numbers(v, 2, path, f'kps.{i}')
    if np.any(xy[i] < 0):
      raise DatasetFormatError(path, f'kps.{i}', f'negative coordinate {v}')
  return {'filename': filename, 'name': filename.split('.')[0], 'kps': xy,
          'valid': ~np.isnan(xy[:, 0])}


def read_spair_pair_annotation(path: str) -> dict[str, Any]:
  """Reads `PairAnnotation/<split>/*.json` (the fields Probe3D uses).

  Returns:
    {'filename', 'pair_id', 'src_name', 'trg_name', 'category',
     'src_bndbox', 'trg_bndbox' ([x0, y0, x1, y1]), 'trg_imsize' ([w, h, ...]),
     'viewpoint_variation' (0, 1, 2), and 'src_kps'/'trg_kps' [K, 2] when the
     file has them (the protocol itself uses the image annotations)}.
  """
  d = load_json(path)
  filename = require_key(d, 'filename', path)
  if not isinstance(filename, str) or ':' not in filename:
    raise DatasetFormatError(path, 'filename',
                             f'expected "ID-<src>-<trg>:<class>", got '
                             f'{filename!r}')
  stem, cls_in_name = filename.split(':', 1)
  parts = stem.split('-')
  if len(parts) != 3 or not all(parts):
    raise DatasetFormatError(path, 'filename',
                             f'expected "ID-<src>-<trg>:<class>", got '
                             f'{filename!r}')
  category = require_key(d, 'category', path)
  if category not in SPAIR_CLASS_IDS:
    raise DatasetFormatError(path, 'category', f'unknown class {category!r}')
  if cls_in_name != category:
    raise DatasetFormatError(path, 'filename', f'class {cls_in_name!r} does '
                             f'not match category {category!r}')
  out = {'filename': filename, 'pair_id': parts[0], 'src_name': parts[1],
         'trg_name': parts[2], 'category': category}
  for key in ('src_bndbox', 'trg_bndbox'):
    box = finite_numbers(require_key(d, key, path), 4, path, key)
    if box[2] < box[0] or box[3] < box[1]:
      raise DatasetFormatError(path, key, f'expected x0 <= x1, y0 <= y1, got '
                               f'{box}')
    out[key] = box
  imsize = require_key(d, 'trg_imsize', path)
  if (not isinstance(imsize, (list, tuple)) or len(imsize) < 2 or
      not all(is_number(v) and v > 0 for v in imsize[:2])):
    raise DatasetFormatError(path, 'trg_imsize', f'expected [w, h, c] with '
                             f'positive w, h, got {imsize!r}')
  out['trg_imsize'] = [float(v) for v in imsize]
  vp = require_key(d, 'viewpoint_variation', path)
  if isinstance(vp, bool) or vp not in (0, 1, 2):
    raise DatasetFormatError(path, 'viewpoint_variation',
                             f'expected 0, 1 or 2, got {vp!r}')
  out['viewpoint_variation'] = int(vp)
  for key in ('src_kps', 'trg_kps'):
    if key in d:
      v = d[key]
      if not isinstance(v, list):
        raise DatasetFormatError(path, key, 'expected a list of [x, y]')
      out[key] = np.array([finite_numbers(p, 2, path, f'{key}.{i}')
                           for i, p in enumerate(v)]).reshape(-1, 2)
  if 'src_kps' in out and 'trg_kps' in out and (
      len(out['src_kps']) != len(out['trg_kps'])):
    raise DatasetFormatError(path, 'trg_kps', 'src_kps and trg_kps differ in '
                             'length')
  return out


class SPairDataset:
  """SPair-71k with Probe3D's pair selection (seed-20 shuffle, 200 per class and bin).

  Pair files are read in sorted path order (Probe3D uses `glob` order, which
  depends on the file system; sorting makes the seed-20 shuffle
  reproducible).
  """

  def __init__(self, root: str, split: str = 'test',
               batch: batch_lib.BatchRun | None = None):
    """Reads the split's pair annotations.

    Args:
      root: the SPair-71k folder.
      split: 'trn', 'val' or 'test' names (`SPAIR_SPLIT_DIRS`).
      batch: when given, a malformed annotation, image or pair is recorded there (file
        and reason) and skipped; without it, the first one raises.
    """
    if split not in SPAIR_SPLIT_DIRS:
      raise ValueError(f'unknown SPair split {split!r}')
    self.root = root
    self.batch = batch
    pair_dir = os.path.join(root, 'PairAnnotation', SPAIR_SPLIT_DIRS[split])
    if not os.path.isdir(pair_dir):
      raise FileNotFoundError(f'SPair pair annotations not found: {pair_dir}')
    files = sorted(glob.glob(os.path.join(pair_dir, '*.json')))
    if batch is None:
      self.pairs = [read_spair_pair_annotation(p) for p in files]
    else:
      read = [batch.run(p, lambda p=p: read_spair_pair_annotation(p)) for p in files]
      self.pairs = [p for p in read if p is not None]
    self._image_annotations: dict[tuple[str, str], dict[str, Any]] = {}

  def image_annotation(self, category: str, name: str) -> dict[str, Any]:
    key = (category, name)
    if key not in self._image_annotations:
      path = os.path.join(self.root, 'ImageAnnotation', category,
                          f'{name}.json')
      if not os.path.isfile(path):
        raise FileNotFoundError(f'SPair image annotation not found: {path}')
      ann = read_spair_image_annotation(path)
      if ann['name'] != name:
        raise DatasetFormatError(path, 'filename', f'{ann["filename"]!r} '
                                 f'does not name image {name!r}')
      self._image_annotations[key] = ann
    return self._image_annotations[key]

  def select(self, category: str | None = None, vp_diff: int | None = None,
             num_instances: int | None = 200,
             seed: int = 20) -> list[dict[str, Any]]:
    """Filter by class, then by viewpoint level; shuffle (seed) and keep n."""
    sel = [p for p in self.pairs if category is None or
           p['category'] == category]
    if vp_diff is not None:
      sel = [p for p in sel if p['viewpoint_variation'] == vp_diff]
    if num_instances:
      random.seed(seed)
      random.shuffle(sel)
      sel = sel[:num_instances]
    return sel

  def _image(self, category: str, name: str) -> np.ndarray:
    path = os.path.join(self.root, 'JPEGImages', category, f'{name}.jpg')
    arr = image_io.read_image(path, mode=None)
    if arr.ndim != 3 or arr.shape[-1] != 3:
      raise DatasetFormatError(path, '<image>', f'expected RGB, got '
                               f'{arr.shape}')
    return arr

  def load_pair(self, pair: Mapping[str, Any], image_size: int = 800,
                bin_name: Any = None) -> matching.KeypointPair:
    """Preprocesses one pair as Probe3D (no bbox crop).

    Images are padded at the bottom/right to a square with white, resized to
    image_size (PIL bicubic, antialiased) and normalised; keypoints are
    truncated to integers, scaled by image_size / side and truncated again.
    """
    cat = pair['category']
    imgs, kps, valid = [], [], []
    for name in (pair['src_name'], pair['trg_name']):
      img = pad_square(self._image(cat, name), 255)
      side = img.shape[0]
      pil = Image.fromarray(img).resize((image_size, image_size),
                                        Image.Resampling.BICUBIC)
      imgs.append(normalize_image(np.asarray(pil)))
      ann = self.image_annotation(cat, name)
      k, v = spair_scale_keypoints(ann['kps'], ann['valid'], side, image_size)
      kps.append(k)
      valid.append(v)
    if len(kps[0]) != len(kps[1]):
      raise DatasetFormatError(
          os.path.join(self.root, 'ImageAnnotation', cat), 'kps',
          f'{pair["src_name"]} and {pair["trg_name"]} have different '
          'keypoint counts')
    tau = metrics.spair_threshold_scale(pair['trg_bndbox'], pair['trg_imsize'])
    return matching.KeypointPair(
        imgs[0], imgs[1], kps[0], kps[1], valid[0], valid[1], tau, cat,
        pair['viewpoint_variation'] if bin_name is None else bin_name)

  def probe3d_groups(self, image_size: int = 800, num_instances: int = 200,
                     classes: Sequence[str] | None = None
                     ) -> dict[tuple[str, str], list[matching.KeypointPair]]:
    """(class, bin) -> pairs for `matching.run_keypoint_protocol`."""
    classes = list(SPAIR_CLASS_IDS) if classes is None else list(classes)
    groups = {}
    for cat in classes:
      for vp, name in ((0, '0'), (1, '1'), (2, '2'), (None, 'all')):
        sel = self.select(cat, vp, num_instances)
        if sel:
          groups[(cat, name)] = self._load_pairs(sel, image_size, name)
    return {k: v for k, v in groups.items() if v}

  def _load_pairs(self, sel: Sequence[Mapping[str, Any]], image_size: int, bin_name: Any
                  ) -> list[matching.KeypointPair]:
    """`load_pair` of each; with a batch, failing pairs are recorded and skipped."""
    if self.batch is None:
      return [self.load_pair(p, image_size, bin_name) for p in sel]
    loaded = [self.batch.run(f'{self.root} pair {p["filename"]}',
                             lambda p=p: self.load_pair(p, image_size, bin_name))
              for p in sel]
    return [p for p in loaded if p is not None]


  def dpov_val_groups(
      self, image_size: int = 224,
      counts: Mapping[int, int] | None = None,
  ) -> dict[tuple[str, str], list[matching.KeypointPair]]:
    """3DPoV's in-training check (`KeypointMatchingModule`): all classes pooled, per viewpoint
    level the first 2200 / 1800 / 1000 pairs after the seed-20 shuffle.

    Use with `matching.run_keypoint_protocol(..., protocol='3dpov_val')`.
    """
    counts = {0: 2200, 1: 1800, 2: 1000} if counts is None else counts
    groups = {}
    for vp, n in counts.items():
      sel = self.select(None, vp, n)
      if sel:
        groups[('all', str(vp))] = self._load_pairs(sel, image_size, str(vp))
    return {k: v for k, v in groups.items() if v}


def pad_square(image: np.ndarray, value: int) -> np.ndarray:
  """Pads [H, W, ...] at the bottom/right to a max(H, W) square."""
  h, w = image.shape[:2]
  s = max(h, w)
  pad = [(0, s - h), (0, s - w)] + [(0, 0)] * (image.ndim - 2)
  return np.pad(image, pad, constant_values=value)


def spair_scale_keypoints(kps: np.ndarray, valid: np.ndarray, side: int,
                          image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Probe3D keypoint processing: int(int(kp) * image_size / side).

  Args:
    kps: [K, 2] raw pixel keypoints (NaN where missing).
    valid: [K] annotated flags.
    side: padded square side of the original image.
    image_size: resized side.

  Returns:
    [K, 2] int64 keypoints (0 where missing), [K] bool valid.
  """
  k = np.where(valid[:, None], kps, 0.0)
  k = np.trunc(k).astype(np.int64)
  k = np.trunc(k * image_size / side).astype(np.int64)
  return k, np.asarray(valid, bool)
