"""Readers for the Probe3D evaluation datasets (spec d.2, d.3, d.6).

* SPair-71k, official layout: `PairAnnotation/{trn,val,test}/*.json`,
  `ImageAnnotation/<class>/<image>.json`, `JPEGImages/<class>/<image>.jpg`.
* NAVI as Probe3D's `resize_navi.py` leaves it:
  `<object>/<collection>/{images,depth}/downsampled_<id>.{jpg,png}` and
  `<object>/<collection>/annotations.json`.
* NYUv2 as Probe3D uses it: the test pickle (read only through a restricted
  unpickler that rebuilds numpy arrays, or after conversion to `.npz`) and
  GeoNet `.mat` training files.

Every reader validates what it returns and raises `DatasetFormatError` (a
ValueError) whose message starts with the file and names the field.
"""

from __future__ import annotations

import glob
import json
import math
import os
import pickle
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from dpov_jax.evaluate import matching
from dpov_jax.evaluate import metrics

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

SPAIR_CLASS_IDS = {
    'aeroplane': 1, 'bicycle': 2, 'bird': 3, 'boat': 4, 'bottle': 5,
    'bus': 6, 'car': 7, 'cat': 8, 'chair': 9, 'cow': 10, 'dog': 12,
    'horse': 13, 'motorbike': 14, 'person': 15, 'pottedplant': 16,
    'sheep': 17, 'train': 19, 'tvmonitor': 20,
}
SPAIR_SPLIT_DIRS = {'train': 'trn', 'valid': 'val', 'test': 'test'}


class DatasetFormatError(ValueError):
  """A malformed dataset file; `.path` and `.field` say where."""

  def __init__(self, path: str | os.PathLike[str], field: str, message: str):
    self.path = os.fspath(path)
    self.field = field
    super().__init__(f"{self.path}: field '{field}': {message}")


def _load_json(path: str) -> Any:
  try:
    with open(path, 'r', encoding='utf-8') as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise DatasetFormatError(path, '<file>', f'invalid JSON ({e})') from None
  except OSError as e:
    raise DatasetFormatError(path, '<file>', f'cannot read ({e})') from None


def _is_number(x: Any) -> bool:
  return (isinstance(x, (int, float)) and not isinstance(x, bool) and
          math.isfinite(x))


def _require(d: Mapping[str, Any], key: str, path: str) -> Any:
  if not isinstance(d, Mapping):
    raise DatasetFormatError(path, '<root>', 'expected a JSON object')
  if key not in d:
    raise DatasetFormatError(path, key, 'missing')
  return d[key]


def _numbers(value: Any, n: int, path: str, field: str) -> list[float]:
  if (not isinstance(value, (list, tuple)) or len(value) != n or
      not all(_is_number(v) for v in value)):
    raise DatasetFormatError(path, field, f'expected {n} finite numbers, '
                             f'got {value!r}')
  return [float(v) for v in value]


def normalize_image(rgb_uint8: np.ndarray) -> np.ndarray:
  """[H, W, 3] uint8 -> float32 (x / 255 - ImageNet mean) / std."""
  return ((rgb_uint8.astype(np.float32) / 255.0 - IMAGENET_MEAN) /
          IMAGENET_STD).astype(np.float32)


# ----------------------------------------------------------------------------
# SPair-71k.


def read_spair_image_annotation(path: str) -> dict[str, Any]:
  """Reads `ImageAnnotation/<class>/<image>.json`.

  Returns:
    {'filename': str, 'name': image name without extension,
     'kps': [K, 2] float64 (x, y) pixels (NaN where not annotated),
     'valid': [K] bool}; keypoint ids are "0".."K-1".
  """
  d = _load_json(path)
  filename = _require(d, 'filename', path)
  if not isinstance(filename, str) or not filename:
    raise DatasetFormatError(path, 'filename', 'expected a non-empty string')
  kps = _require(d, 'kps', path)
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
    xy[i] = _numbers(v, 2, path, f'kps.{i}')
    if np.any(xy[i] < 0):
      raise DatasetFormatError(path, f'kps.{i}', f'negative coordinate {v}')
  return {'filename': filename, 'name': filename.split('.')[0], 'kps': xy,
          'valid': ~np.isnan(xy[:, 0])}


def read_spair_pair_annotation(path: str) -> dict[str, Any]:
  """Reads `PairAnnotation/<split>/*.json` (fields of d.2).

  Returns:
    {'filename', 'pair_id', 'src_name', 'trg_name', 'category',
     'src_bndbox', 'trg_bndbox' ([x0, y0, x1, y1]), 'trg_imsize' ([w, h, ...]),
     'viewpoint_variation' (0, 1, 2), and 'src_kps'/'trg_kps' [K, 2] when the
     file has them (the protocol itself uses the image annotations)}.
  """
  d = _load_json(path)
  filename = _require(d, 'filename', path)
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
  category = _require(d, 'category', path)
  if category not in SPAIR_CLASS_IDS:
    raise DatasetFormatError(path, 'category', f'unknown class {category!r}')
  if cls_in_name != category:
    raise DatasetFormatError(path, 'filename', f'class {cls_in_name!r} does '
                             f'not match category {category!r}')
  out = {'filename': filename, 'pair_id': parts[0], 'src_name': parts[1],
         'trg_name': parts[2], 'category': category}
  for key in ('src_bndbox', 'trg_bndbox'):
    box = _numbers(_require(d, key, path), 4, path, key)
    if box[2] < box[0] or box[3] < box[1]:
      raise DatasetFormatError(path, key, f'expected x0 <= x1, y0 <= y1, got '
                               f'{box}')
    out[key] = box
  imsize = _require(d, 'trg_imsize', path)
  if (not isinstance(imsize, (list, tuple)) or len(imsize) < 2 or
      not all(_is_number(v) and v > 0 for v in imsize[:2])):
    raise DatasetFormatError(path, 'trg_imsize', f'expected [w, h, c] with '
                             f'positive w, h, got {imsize!r}')
  out['trg_imsize'] = [float(v) for v in imsize]
  vp = _require(d, 'viewpoint_variation', path)
  if isinstance(vp, bool) or vp not in (0, 1, 2):
    raise DatasetFormatError(path, 'viewpoint_variation',
                             f'expected 0, 1 or 2, got {vp!r}')
  out['viewpoint_variation'] = int(vp)
  for key in ('src_kps', 'trg_kps'):
    if key in d:
      v = d[key]
      if not isinstance(v, list):
        raise DatasetFormatError(path, key, 'expected a list of [x, y]')
      out[key] = np.array([_numbers(p, 2, path, f'{key}.{i}')
                           for i, p in enumerate(v)]).reshape(-1, 2)
  if 'src_kps' in out and 'trg_kps' in out and (
      len(out['src_kps']) != len(out['trg_kps'])):
    raise DatasetFormatError(path, 'trg_kps', 'src_kps and trg_kps differ in '
                             'length')
  return out


class SPairDataset:
  """SPair-71k with Probe3D's pair selection (d.2).

  Pair files are read in sorted path order (Probe3D uses `glob` order, which
  depends on the file system; sorting makes the seed-20 shuffle
  reproducible).
  """

  def __init__(self, root: str, split: str = 'test'):
    if split not in SPAIR_SPLIT_DIRS:
      raise ValueError(f'unknown SPair split {split!r}')
    self.root = root
    pair_dir = os.path.join(root, 'PairAnnotation', SPAIR_SPLIT_DIRS[split])
    if not os.path.isdir(pair_dir):
      raise FileNotFoundError(f'SPair pair annotations not found: {pair_dir}')
    files = sorted(glob.glob(os.path.join(pair_dir, '*.json')))
    self.pairs = [read_spair_pair_annotation(p) for p in files]
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
    with Image.open(path) as im:
      arr = np.array(im)
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
          groups[(cat, name)] = [self.load_pair(p, image_size, name)
                                 for p in sel]
    return groups


  def dpov_val_groups(
      self, image_size: int = 224,
      counts: Mapping[int, int] | None = None,
  ) -> dict[tuple[str, str], list[matching.KeypointPair]]:
    """3DPoV's in-training check (d.2): all classes pooled, per viewpoint
    level the first 2200 / 1800 / 1000 pairs after the seed-20 shuffle.

    Use with `matching.run_keypoint_protocol(..., protocol='3dpov_val')`.
    """
    counts = {0: 2200, 1: 1800, 2: 1000} if counts is None else counts
    groups = {}
    for vp, n in counts.items():
      sel = self.select(None, vp, n)
      if sel:
        groups[('all', str(vp))] = [self.load_pair(p, image_size, str(vp))
                                    for p in sel]
    return groups


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


# ----------------------------------------------------------------------------
# NAVI.


def read_navi_annotations(path: str) -> dict[str, dict[str, Any]]:
  """Reads a collection's `annotations.json`: image id -> validated entry.

  Each entry needs `filename` (str), `image_size` [h, w] (positive),
  `camera.focal_length` (> 0, pixels of the original image), `camera.q`
  [w, x, y, z] (non-zero), `camera.t` [x, y, z] (mm); `split` is optional.
  """
  data = _load_json(path)
  if not isinstance(data, list):
    raise DatasetFormatError(path, '<root>', 'expected a list of images')
  out = {}
  for i, a in enumerate(data):
    where = f'[{i}]'
    if not isinstance(a, Mapping):
      raise DatasetFormatError(path, where, 'expected an object')
    fn = a.get('filename')
    if not isinstance(fn, str) or not fn:
      raise DatasetFormatError(path, f'{where}.filename', 'missing or not a '
                               'string')
    size = a.get('image_size')
    if (not isinstance(size, (list, tuple)) or len(size) != 2 or
        not all(_is_number(v) and v > 0 for v in size)):
      raise DatasetFormatError(path, f'{where}.image_size',
                               f'expected [h, w] > 0, got {size!r}')
    cam = a.get('camera')
    if not isinstance(cam, Mapping):
      raise DatasetFormatError(path, f'{where}.camera', 'missing or not an '
                               'object')
    f = cam.get('focal_length')
    if not _is_number(f) or f <= 0:
      raise DatasetFormatError(path, f'{where}.camera.focal_length',
                               f'expected a positive number, got {f!r}')
    q = _numbers(cam.get('q'), 4, path, f'{where}.camera.q')
    if sum(v * v for v in q) == 0:
      raise DatasetFormatError(path, f'{where}.camera.q', 'zero quaternion')
    _numbers(cam.get('t'), 3, path, f'{where}.camera.t')
    out[fn.split('.')[0]] = dict(a)
  return out


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
  """[w, x, y, z] (need not be unit) -> [3, 3] rotation."""
  w, x, y, z = (float(v) for v in q)
  s = 2.0 / (w * w + x * x + y * y + z * z)
  return np.array([
      [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
      [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
      [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)]])


def navi_pose(annotation: Mapping[str, Any]) -> np.ndarray:
  """Rt = T(t) R(q) as [4, 4], translation converted mm -> metres."""
  rt = np.eye(4)
  rt[:3, :3] = quaternion_to_matrix(annotation['camera']['q'])
  rt[:3, 3] = np.asarray(annotation['camera']['t'], np.float64) / 1000.0
  return rt


def read_navi_depth(path: str) -> np.ndarray:
  """16-bit PNG v -> depth metres = 65535 * 10 / v / 1000; 0 = missing."""
  with Image.open(path) as im:
    v = np.array(im)
  if v.ndim != 2 or v.dtype not in (np.uint16, np.int32, np.uint8):
    raise DatasetFormatError(path, '<depth>', f'expected a single-channel '
                             f'16-bit PNG, got {v.dtype} {v.shape}')
  v = v.astype(np.float64)
  with np.errstate(divide='ignore'):
    depth_mm = np.where(v > 0, 65535.0 * 10.0 / np.where(v > 0, v, 1.0), 0.0)
  return (depth_mm / 1000.0).astype(np.float32)


def parse_navi(root: str) -> dict[str, dict[str, dict[str, Any]]]:
  """object -> collection -> {'views': [ids], 'annotations': {id: entry}}.

  Collections `multiview_*` and `wild_set`; image ids are the original
  images' names (ids containing '_' skipped, as Probe3D), or the
  `downsampled_<id>` names when the originals are gone; views sorted by id
  (Probe3D keeps `os.listdir` order).
  """
  data: dict[str, dict[str, dict[str, Any]]] = {}
  colls = (glob.glob(os.path.join(root, '*', 'multiview_*')) +
           glob.glob(os.path.join(root, '*', 'wild_set')))
  for cpath in sorted(colls):
    obj, coll = os.path.normpath(cpath).split(os.sep)[-2:]
    img_dir = os.path.join(cpath, 'images')
    if not os.path.isdir(img_dir):
      raise FileNotFoundError(f'NAVI collection without images/: {cpath}')
    names = sorted(os.listdir(img_dir))
    # Probe3D: ids of the original images ('jpg' in the name, id = text
    # before the first '.', ids containing '_' such as the downsampled_
    # copies skipped).
    ids = [n.split('.')[0] for n in names if 'jpg' in n]
    ids = [i for i in ids if '_' not in i]
    if not ids:
      # Trees where the full-size originals were deleted after resizing.
      ids = [n[len('downsampled_'):].split('.')[0] for n in names
             if 'jpg' in n and n.startswith('downsampled_')]
      ids = [i for i in ids if '_' not in i]
    ann_path = os.path.join(cpath, 'annotations.json')
    anns = read_navi_annotations(ann_path)
    for img_id in ids:
      if img_id not in anns:
        raise DatasetFormatError(ann_path, 'filename', f'no entry for image '
                                 f'{img_id!r}')
    data.setdefault(obj, {})[coll] = {'views': ids, 'annotations': anns}
  return data


def navi_instances(data: Mapping[str, Any],
                   split: str) -> list[tuple[str, str, str]]:
  """(object, collection, image id) for a split (d.3), before the [::4]."""
  if split not in ('train', 'valid', 'trainval', 'test'):
    raise ValueError(f'unknown NAVI split {split!r}')
  out = []
  for obj in sorted(data):
    scenes = list(data[obj])
    if 'wild_set' not in scenes or len(scenes) == 1:
      continue
    if split == 'test':
      out += [(obj, 'wild_set', i) for i in data[obj]['wild_set']['views']]
      continue
    mv = sorted(s for s in scenes if 'multiview' in s)
    n_train = int(0.9 * len(mv))
    mv = {'train': mv[:n_train], 'valid': mv[n_train:], 'trainval': mv}[split]
    for s in mv:
      out += [(obj, s, i) for i in data[obj][s]['views']]
  return out


def navi_pairs(data: Mapping[str, Any], instances: Sequence[tuple[str, str,
                                                                  str]],
               max_angle: float = 120.0, seed: int = 8,
               keep_every: int = 4) -> list[tuple[str, str, str, str, float]]:
  """Draws a partner in (0, max_angle] degrees for every instance, keeps [::4].

  Partners are drawn uniformly among the eligible views of the same
  object/collection from the full list (Probe3D draws with torch.manual_seed(8)
  and multinomial; we use numpy's default_rng(seed), so the partners differ
  from Probe3D's while following the same distribution).

  Returns:
    (object, collection, id_0, id_1, relative angle deg) per kept instance.
  """
  rng = np.random.default_rng(seed)
  groups: dict[tuple[str, str], list[str]] = {}
  for obj, coll, img in instances:
    groups.setdefault((obj, coll), []).append(img)
  partner = {}
  for (obj, coll), ids in groups.items():
    anns = data[obj][coll]['annotations']
    rots = np.stack([navi_pose(anns[i])[:3, :3] for i in ids])
    for a, img in enumerate(ids):
      rel = np.einsum('ij,njk->nik', rots[a], rots.transpose(0, 2, 1))
      tr = np.trace(rel, axis1=1, axis2=2)
      ang = np.degrees(np.arccos(np.clip(0.5 * tr - 0.5, -1, 1)))
      # The view itself is excluded explicitly: its float angle may come out
      # as a tiny positive number instead of 0.
      ok = (ang > 0) & (ang <= max_angle)
      ok[a] = False
      if not ok.any():
        raise ValueError(f'NAVI {obj}/{coll}/{img}: no partner view within '
                         f'(0, {max_angle}] degrees')
      j = int(rng.choice(np.flatnonzero(ok)))
      partner[(obj, coll, img)] = (ids[j], float(ang[j]))
  out = []
  for obj, coll, img in list(instances)[::keep_every]:
    j, ang = partner[(obj, coll, img)]
    out.append((obj, coll, img, j, ang))
  return out


def _torch_nearest_index(in_size: int, out_size: int) -> np.ndarray:
  return np.minimum(np.floor(np.arange(out_size) * in_size / out_size)
                    .astype(int), in_size - 1)


def _resize_nearest(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
  iy = _torch_nearest_index(x.shape[0], out_hw[0])
  ix = _torch_nearest_index(x.shape[1], out_hw[1])
  return x[iy][:, ix]


def _resize_short_center_crop(x: np.ndarray, size: int) -> np.ndarray:
  """torchvision Resize(size, nearest) then CenterCrop(size) of [H, W, ...]."""
  h, w = x.shape[:2]
  if h <= w:
    oh, ow = size, int(size * w / h)
  else:
    oh, ow = int(size * h / w), size
  x = _resize_nearest(x, (oh, ow))
  top = int(round((oh - size) / 2.0))
  left = int(round((ow - size) / 2.0))
  return x[top:top + size, left:left + size]


def depth_to_normals(depth: np.ndarray, focal: float) -> np.ndarray:
  """Probe3D `compute_normal` (d.5): [H, W] depth -> [H, W, 3] unit normals.

  Missing depth (0) is set to 1e6 before differencing; border pixels and
  pixels without depth get zero normals.
  """
  mask = depth > 0
  d = np.where(mask, depth, 1e6).astype(np.float64)
  h, w = d.shape
  grid = matching.pixel_grid(h, w)
  xyz = np.concatenate([grid * d[..., None] / focal, d[..., None]], -1)
  c = xyz[1:-1, 1:-1]
  dl = xyz[1:-1, :-2] - c
  dt = xyz[:-2, 1:-1] - c
  dr = xyz[1:-1, 2:] - c
  db = xyz[2:, 1:-1] - c
  n = np.zeros_like(xyz)
  n[1:-1, 1:-1] = (np.cross(dl, dt) + np.cross(dt, dr) + np.cross(dr, db) +
                   np.cross(db, dl)) / 4.0
  n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
  return (n * mask[..., None]).astype(np.float32)


def navi_bbox_crop(depth: np.ndarray) -> tuple[slice, slice]:
  """Square crop around the valid-depth box (Probe3D `bbox_crop`).

  The box size is max index - min index (one less than the extent, as
  Probe3D); the square is centred if it fits, else shifted inside.
  """
  ys, xs = np.nonzero(depth > 0)
  if ys.size == 0:
    raise ValueError('bbox crop of an image without valid depth')
  tl = np.array([ys.min(), xs.min()])
  box = np.array([ys.max(), xs.max()]) - tl
  side = box.max()
  if side > min(depth.shape):
    raise ValueError('aspect ratio prevents a square crop')
  pad = side - box
  tl_c = tl - pad // 2
  if (tl_c >= 0).all() and (tl_c + side <= np.array(depth.shape)).all():
    start = tl_c
  else:
    start = np.maximum(tl - pad, 0)
  return (slice(start[0], start[0] + side), slice(start[1], start[1] + side))


def load_navi_view(root: str, obj: str, coll: str, img_id: str,
                   annotation: Mapping[str, Any], size: int = 512,
                   bbox_crop: bool = True) -> dict[str, np.ndarray]:
  """One NAVI view prepared as Probe3D (d.3).

  Returns:
    'image' [size, size, 3] normalised float32, 'depth' [size, size] metres,
    'snorm' [size, size, 3], 'xyz_grid' [size, size, 3] metres,
    'intrinsics' [3, 3] = diag(f, f, 1) at `size` px, 'Rt' [4, 4] metres.
  """
  base = os.path.join(root, obj, coll)
  with open(os.path.join(base, 'images', f'downsampled_{img_id}.jpg'),
            'rb') as f:
    with Image.open(f) as im:
      rgb = np.asarray(ImageOps.exif_transpose(im).convert('RGB'))
  depth = read_navi_depth(os.path.join(base, 'depth',
                                       f'downsampled_{img_id}.png'))
  valid = depth[depth > 0]
  if valid.size == 0:
    raise DatasetFormatError(os.path.join(base, 'depth', img_id), '<depth>',
                             'no valid depth')
  min_depth = valid.min()
  image = _resize_short_center_crop(normalize_image(rgb), size)
  depth = _resize_short_center_crop(depth, size)
  orig_h, orig_w = annotation['image_size']
  fx = float(annotation['camera']['focal_length']) * min(image.shape[:2]) / min(
      orig_h, orig_w)
  h, w = image.shape[:2]
  grid = matching.pixel_grid(h, w)
  # Principal point at the centre (Probe3D writes 0.5 * h into cx).
  xyz = np.stack([(grid[..., 0] - 0.5 * h) * depth / fx,
                  (grid[..., 1] - 0.5 * w) * depth / fx, depth], -1)
  if bbox_crop:
    sy, sx = navi_bbox_crop(depth)
    image, depth, xyz = image[sy, sx], depth[sy, sx], xyz[sy, sx]
  crop_hw = depth.shape
  snorm = depth_to_normals(depth, fx)
  image = _resize_nearest(image, (size, size))
  depth = _resize_nearest(depth, (size, size)).copy()
  snorm = _resize_nearest(snorm, (size, size))
  xyz = _resize_nearest(xyz, (size, size))
  final_fx = fx * size / min(crop_hw)
  depth[depth < min_depth] = 0
  return {'image': image, 'depth': depth, 'snorm': snorm,
          'xyz_grid': xyz.astype(np.float32),
          'intrinsics': np.diag([final_fx, final_fx, 1.0]),
          'Rt': navi_pose(annotation)}


def load_navi_pair(root: str, data: Mapping[str, Any],
                   pair: tuple[str, str, str, str, float],
                   size: int = 512) -> dict[str, np.ndarray]:
  """Pair dict for `matching.run_correspondence_protocol`."""
  obj, coll, i0, i1, _ = pair
  anns = data[obj][coll]['annotations']
  v0 = load_navi_view(root, obj, coll, i0, anns[i0], size)
  v1 = load_navi_view(root, obj, coll, i1, anns[i1], size)
  out = {f'{k}_0': v for k, v in v0.items()}
  out.update({f'{k}_1': v for k, v in v1.items()})
  out['Rt_01'] = v1['Rt'] @ np.linalg.inv(v0['Rt'])
  return out


# ----------------------------------------------------------------------------
# NYUv2.

NYU_FIELDS = ('depths', 'images', 'snorms', 'scene_types', 'train_indices',
              'test_indices')


def _np_reconstruct():
  from numpy._core import multiarray  # pylint: disable=g-import-not-at-top
  return multiarray._reconstruct  # pylint: disable=protected-access


def _np_scalar():
  from numpy._core import multiarray  # pylint: disable=g-import-not-at-top
  return multiarray.scalar


_NYU_PICKLE_GLOBALS = {
    ('numpy._core.multiarray', '_reconstruct'): _np_reconstruct,
    ('numpy.core.multiarray', '_reconstruct'): _np_reconstruct,
    ('numpy._core.multiarray', 'scalar'): _np_scalar,
    ('numpy.core.multiarray', 'scalar'): _np_scalar,
    ('numpy', 'ndarray'): lambda: np.ndarray,
    ('numpy', 'dtype'): lambda: np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Resolves only numpy array/scalar/dtype constructors; nothing else."""

  def find_class(self, module: str, name: str):
    factory = _NYU_PICKLE_GLOBALS.get((module, name))
    if factory is None:
      raise pickle.UnpicklingError(f'refusing to load global {module}.{name}')
    return factory()

  def persistent_load(self, pid):
    raise pickle.UnpicklingError('persistent ids are not allowed')


def _validate_nyu(data: Mapping[str, Any], path: str) -> dict[str, np.ndarray]:
  for k in NYU_FIELDS:
    if k not in data:
      raise DatasetFormatError(path, k, 'missing')
  depths = np.asarray(data['depths'])
  images = np.asarray(data['images'])
  snorms = np.asarray(data['snorms'])
  if depths.ndim != 3 or not np.issubdtype(depths.dtype, np.floating):
    raise DatasetFormatError(path, 'depths', f'expected float [N, H, W], got '
                             f'{depths.dtype} {depths.shape}')
  n, h, w = depths.shape
  if images.shape != (n, 3, h, w) or images.dtype != np.uint8:
    raise DatasetFormatError(path, 'images', f'expected uint8 {(n, 3, h, w)}, '
                             f'got {images.dtype} {images.shape}')
  if snorms.shape != (n, 3, h, w):
    raise DatasetFormatError(path, 'snorms', f'expected {(n, 3, h, w)}, got '
                             f'{snorms.shape}')
  out = {'depths': depths, 'images': images,
         'snorms': snorms.astype(np.float32)}
  scenes = [np.asarray(s).reshape(-1)[0] if np.asarray(s).size else ''
            for s in data['scene_types']]
  if len(scenes) != n:
    raise DatasetFormatError(path, 'scene_types', f'expected {n} entries, got '
                             f'{len(scenes)}')
  out['scene_types'] = np.asarray([str(s) for s in scenes])
  for k in ('train_indices', 'test_indices'):
    idx = np.asarray(data[k]).reshape(-1)
    if not np.issubdtype(idx.dtype, np.integer) or (
        idx.size and (idx.min() < 0 or idx.max() >= n)):
      raise DatasetFormatError(path, k, f'expected integer indices in [0, {n})')
    out[k] = idx.astype(np.int64)
  return out


def read_nyu_test(path: str) -> dict[str, np.ndarray]:
  """Reads Probe3D's `nyuv2_snorm_all` (as `.npz`, or the `.pkl` restricted).

  Returns:
    'depths' [N, H, W] metres, 'images' [N, 3, H, W] uint8, 'snorms'
    [N, 3, H, W], 'scene_types' [N] str, 'train_indices', 'test_indices'.
  """
  if path.endswith('.npz'):
    from tapkit.data import safe_npz  # pylint: disable=g-import-not-at-top
    return _validate_nyu(safe_npz.read_npz(path), path)
  try:
    with open(path, 'rb') as f:
      data = _NumpyOnlyUnpickler(f).load()
  except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as e:
    raise DatasetFormatError(path, '<pickle>', f'not a numpy-only pickle ({e})'
                             ) from None
  if not isinstance(data, Mapping):
    raise DatasetFormatError(path, '<root>', 'expected a dict')
  return _validate_nyu(data, path)


def nyu_test_items(data: Mapping[str, np.ndarray], center_crop: bool = False
                   ) -> list[dict[str, np.ndarray]]:
  """Test-split views: depth > 10 m -> 0; optional columns 80:-80 crop.

  Returns:
    per test index {'image' [H, W', 3] normalised, 'depth' [H, W'],
    'snorm' [3, H, W'], 'nyu_index'}.
  """
  items = []
  for i in data['test_indices']:
    image = normalize_image(np.transpose(data['images'][i], (1, 2, 0)))
    depth = np.where(data['depths'][i] > 10, 0, data['depths'][i])
    snorm = data['snorms'][i]
    if center_crop:
      image, depth, snorm = image[:, 80:-80], depth[:, 80:-80], snorm[...,
                                                                       80:-80]
    items.append({'image': image, 'depth': depth.astype(np.float32),
                  'snorm': snorm, 'nyu_index': int(i)})
  return items


GEONET_BAD_INDICES = (21181, 6919)


def geonet_file_list(directory: str, split: str = 'trainval') -> list[str]:
  """Sorted GeoNet `.mat` names minus entries 21181 then 6919 (d.6).

  Split 'train' drops every 20th remaining file, 'valid' keeps only them.
  """
  names = sorted(os.listdir(directory))
  if len(names) <= max(GEONET_BAD_INDICES):
    raise ValueError(f'{directory}: expected more than '
                     f'{max(GEONET_BAD_INDICES)} GeoNet files, got '
                     f'{len(names)}')
  for i in GEONET_BAD_INDICES:  # descending, so the second index is intact.
    del names[i]
  if split == 'train':
    return [x for i, x in enumerate(names) if i % 20 != 0]
  if split == 'valid':
    return [x for i, x in enumerate(names) if i % 20 == 0]
  if split == 'trainval':
    return names
  raise ValueError(f'unknown GeoNet split {split!r}')


def read_geonet_mat(path: str, max_depth: float = 10.0
                    ) -> dict[str, np.ndarray]:
  """GeoNet `.mat`: 'img' (restored to uint8), 'depth' (> max -> 0), 'norm'.

  Returns:
    'image' [480, 640, 3] uint8, 'depth' [480, 640] metres, 'snorm'
    [480, 640, 3].
  """
  import scipy.io  # pylint: disable=g-import-not-at-top
  try:
    m = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for corrupt files.
    raise DatasetFormatError(path, '<file>', f'not a .mat file ({e})') from None
  for k in ('img', 'depth', 'norm'):
    if k not in m:
      raise DatasetFormatError(path, k, 'missing')
  img = np.asarray(m['img'], np.float64)[:480, :640]
  depth = np.asarray(m['depth'], np.float64)[:480, :640]
  norm = np.asarray(m['norm'], np.float32)[:480, :640]
  if img.ndim != 3 or img.shape[-1] != 3:
    raise DatasetFormatError(path, 'img', f'expected [H, W, 3], got '
                             f'{img.shape}')
  if depth.shape != img.shape[:2]:
    raise DatasetFormatError(path, 'depth', f'shape {depth.shape} != image')
  if norm.shape != img.shape:
    raise DatasetFormatError(path, 'norm', f'shape {norm.shape} != image')
  img = img + 2 * np.array([122.175, 116.169, 103.508])
  # astype(uint8) as Probe3D (wraps out-of-range values like numpy does).
  img = img.astype(np.int64).astype(np.uint8)
  depth = np.where(depth > max_depth, 0, depth)
  return {'image': img, 'depth': depth.astype(np.float32), 'snorm': norm}
