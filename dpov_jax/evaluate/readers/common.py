"""Shared pieces of the Probe3D dataset readers: the error type, JSON field checks and the
ImageNet normalisation."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from tapkit.io import BadFileError
from tapkit.io import jsonfile


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class DatasetFormatError(BadFileError):
  """A malformed dataset file; `.path` and `.field` say where (a `tapkit.io.BadFileError`)."""

  def __init__(self, path: str | os.PathLike[str], field: str, message: str):
    super().__init__(path, field, message)


def load_json(path: str) -> Any:
  """A dataset JSON file, size and nesting bounded (`tapkit.io.jsonfile`)."""
  try:
    return jsonfile.read_json(path)
  except BadFileError as e:
    raise DatasetFormatError(path, '<file>', e.detail) from None


def is_number(x: Any) -> bool:
  return (isinstance(x, (int, float)) and not isinstance(x, bool) and
          math.isfinite(x))


def require_key(d: Mapping[str, Any], key: str, path: str) -> Any:
  if not isinstance(d, Mapping):
    raise DatasetFormatError(path, '<root>', 'expected a JSON object')
  if key not in d:
    raise DatasetFormatError(path, key, 'missing')
  return d[key]


def finite_numbers(value: Any, n: int, path: str, field: str) -> list[float]:
  if (not isinstance(value, (list, tuple)) or len(value) != n or
      not all(is_number(v) for v in value)):
    raise DatasetFormatError(path, field, f'expected {n} finite numbers, '
                             f'got {value!r}')
  return [float(v) for v in value]


def normalize_image(rgb_uint8: np.ndarray) -> np.ndarray:
  """[H, W, 3] uint8 -> float32 (x / 255 - ImageNet mean) / std."""
  return ((rgb_uint8.astype(np.float32) / 255.0 - IMAGENET_MEAN) /
          IMAGENET_STD).astype(np.float32)

