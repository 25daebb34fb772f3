"""NYUv2 as Probe3D uses it: the test pickle (read only through the one restricted unpickler,
`tapkit.io.unpickle`, with a numpy-arrays-only allow-list, or after conversion to `.npz`) and
GeoNet `.mat` training files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from dpov_jax.evaluate.readers.common import DatasetFormatError, normalize_image
from tapkit.io import BadFileError
from tapkit.io import matfile
from tapkit.io import npz as npz_io
from tapkit.io import unpickle


NYU_FIELDS = ('depths', 'images', 'snorms', 'scene_types', 'train_indices',
              'test_indices')


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
    return _validate_nyu(npz_io.read_npz(path), path)
  try:
    with open(path, 'rb') as f:
      data = unpickle.load(f, unpickle.numpy_array_globals(), source=path, field='<pickle>')
  except OSError as e:
    raise DatasetFormatError(path, '<file>', f'cannot read ({e})') from None
  except BadFileError as e:
    raise DatasetFormatError(path, '<pickle>', f'not a numpy-only pickle ({e.detail})'
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
  """Sorted GeoNet `.mat` names minus entries 21181 then 6919 (as Probe3D).

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
  try:
    m = matfile.read_mat(path, ('img', 'depth', 'norm'))
  except BadFileError as e:
    raise DatasetFormatError(path, e.field or '<file>', e.detail) from None
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
