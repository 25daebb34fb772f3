"""NAVI as Probe3D's `resize_navi.py` leaves it:
`<object>/<collection>/{images,depth}/downsampled_<id>.{jpg,png}` and
`<object>/<collection>/annotations.json`."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import ImageOps

from dpov_jax.evaluate import matching
from dpov_jax.evaluate.readers.common import (DatasetFormatError, finite_numbers, is_number,
                                              load_json, normalize_image)
from tapkit.io import batch as batch_lib
from tapkit.io import image as image_io


def read_navi_annotations(path: str) -> dict[str, dict[str, Any]]:
  """Reads a collection's `annotations.json`: image id -> validated entry.

  Each entry needs `filename` (str), `image_size` [h, w] (positive),
  `camera.focal_length` (> 0, pixels of the original image), `camera.q`
  [w, x, y, z] (non-zero), `camera.t` [x, y, z] (mm); `split` is optional.
  """
  data = load_json(path)
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
        not all(is_number(v) and v > 0 for v in size)):
      raise DatasetFormatError(path, f'{where}.image_size',
                               f'expected [h, w] > 0, got {size!r}')
    cam = a.get('camera')
    if not isinstance(cam, Mapping):
      raise DatasetFormatError(path, f'{where}.camera', 'missing or not an '
                               'object')
    f = cam.get('focal_length')
    if not is_number(f) or f <= 0:
      raise DatasetFormatError(path, f'{where}.camera.focal_length',
                               f'expected a positive number, got {f!r}')
    q = finite_numbers(cam.get('q'), 4, path, f'{where}.camera.q')
    if sum(v * v for v in q) == 0:
      raise DatasetFormatError(path, f'{where}.camera.q', 'zero quaternion')
    finite_numbers(cam.get('t'), 3, path, f'{where}.camera.t')
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
  v = image_io.read_image(path, mode=None)
  if v.ndim != 2 or v.dtype not in (np.uint16, np.int32, np.uint8):
    raise DatasetFormatError(path, '<depth>', f'expected a single-channel '
                             f'16-bit PNG, got {v.dtype} {v.shape}')
  v = v.astype(np.float64)
  with np.errstate(divide='ignore'):
    depth_mm = np.where(v > 0, 65535.0 * 10.0 / np.where(v > 0, v, 1.0), 0.0)
  return (depth_mm / 1000.0).astype(np.float32)


def parse_navi(root: str, batch: batch_lib.BatchRun | None = None
               ) -> dict[str, dict[str, dict[str, Any]]]:
  """object -> collection -> {'views': [ids], 'annotations': {id: entry}}.

  Collections `multiview_*` and `wild_set`; image ids are the original
  images' names (ids containing '_' skipped, as Probe3D), or the
  `downsampled_<id>` names when the originals are gone; views sorted by id
  (Probe3D keeps `os.listdir` order). With `batch`, a collection whose
  `annotations.json` is malformed is recorded there and skipped; without
  it, the first one raises.
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
    if batch is None:
      anns = read_navi_annotations(ann_path)
    else:
      anns = batch.run(ann_path, lambda ann_path=ann_path: read_navi_annotations(ann_path))
      if anns is None:
        continue
    for img_id in ids:
      if img_id not in anns:
        raise DatasetFormatError(ann_path, 'filename', f'no entry for image '
                                 f'{img_id!r}')
    data.setdefault(obj, {})[coll] = {'views': ids, 'annotations': anns}
  return data


def navi_instances(data: Mapping[str, Any],
                   split: str) -> list[tuple[str, str, str]]:
  """(object, collection, image id) for a split, before the [::4].

  train: first 90% of each object's multiview scenes; valid: the rest; trainval: all
  multiview; test: all wild_set images (as Probe3D)."""
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
  """Probe3D `compute_normal`: [H, W] depth -> [H, W, 3] unit normals.

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
  """One NAVI view prepared as Probe3D's NAVI dataset does.

  Returns:
    'image' [size, size, 3] normalised float32, 'depth' [size, size] metres,
    'snorm' [size, size, 3], 'xyz_grid' [size, size, 3] metres,
    'intrinsics' [3, 3] = diag(f, f, 1) at `size` px, 'Rt' [4, 4] metres.
  """
  base = os.path.join(root, obj, coll)
  with image_io.open_image(os.path.join(base, 'images',
                                        f'downsampled_{img_id}.jpg')) as im:
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
