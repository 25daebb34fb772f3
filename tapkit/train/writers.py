"""Metric writers: clu's default (TensorBoard + logging) plus a JSON-lines file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from clu import metric_writers


def hide_gpus_from_tf() -> None:
  """Stops TensorFlow (used by the TensorBoard writer) from grabbing GPU memory."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TF already initialised its devices; nothing to change any more.


class JsonlWriter(metric_writers.MetricWriter):
  """Appends `{"step": s, name: value, ...}` lines to a file (scalars only)."""

  def __init__(self, path: str | os.PathLike):
    self._path = os.fspath(path)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    row = {'step': int(step), **{k: float(np.asarray(v)) for k, v in scalars.items()}}
    with open(self._path, 'a') as f:
      f.write(json.dumps(row) + '\n')

  def write_summaries(self, step, values, metadata=None):
    scalars = {k: v for k, v in values.items() if np.ndim(v) == 0}
    if scalars:
      self.write_scalars(step, scalars)

  def write_images(self, step, images):
    pass  # Images go to TensorBoard only.

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def create_writer(workdir: str | os.PathLike) -> metric_writers.MetricWriter:
  """Process 0: TensorBoard + logging + `<workdir>/metrics.jsonl`; others: logging."""
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(just_logging=True)
  hide_gpus_from_tf()
  return metric_writers.MultiWriter([
      metric_writers.create_default_writer(os.fspath(workdir), asynchronous=True),
      JsonlWriter(os.path.join(os.fspath(workdir), 'metrics.jsonl')),
  ])


def read_jsonl(path: str | os.PathLike) -> list[dict[str, float]]:
  """Rows of a metrics.jsonl file."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
