"""Metric writers: TensorBoard event files, the INFO log and a JSON-lines file.

The TensorBoard writer builds the event protos with the `tensorboard` package's own
protobufs and file writer, so neither TensorFlow nor `clu.metric_writers` (which imports
TensorFlow, ~7 s) is imported by training or by any command line. The writers keep clu's
`MetricWriter` method names (`write_scalars`, `write_images`, `write_texts`, ...), so an
evaluator written against clu's interface works unchanged.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np


class MetricWriter:
  """Base writer: every method accepts its values and records nothing.

  Subclasses override what they record (scalars, images, texts, histograms); the rest
  stay no-ops, so a writer never fails on a summary kind it does not store.
  """

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    del step, scalars

  def write_summaries(self, step: int, values: Mapping[str, Any],
                      metadata: Mapping[str, Any] | None = None) -> None:
    """Writes the scalar entries of `values` (clu's raw-summary call)."""
    del metadata
    scalars = {k: v for k, v in values.items() if np.ndim(v) == 0}
    if scalars:
      self.write_scalars(step, scalars)

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    del step, images

  def write_videos(self, step: int, videos: Mapping[str, Any]) -> None:
    del step, videos

  def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int) -> None:
    del step, audios, sample_rate

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    del step, texts

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Mapping[str, int] | None = None) -> None:
    del step, arrays, num_buckets

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    del hparams

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


class JsonlWriter(MetricWriter):
  """Appends `{"step": s, name: value, ...}` lines to a file (scalars only)."""

  def __init__(self, path: str | os.PathLike):
    self._path = os.fspath(path)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    row = {'step': int(step), **{k: float(np.asarray(v)) for k, v in scalars.items()}}
    with open(self._path, 'a') as f:
      f.write(json.dumps(row) + '\n')


class LoggingWriter(MetricWriter):
  """Logs scalars at INFO as `[step] name=value, ...` (clu's LoggingWriter format)."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    values = [f'{k}={float(np.asarray(v)):.6g}' for k, v in sorted(scalars.items())]
    logging.info('[%d] %s', step, ', '.join(values))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    logging.info('[Hyperparameters] %s', dict(hparams))


def _png(image: np.ndarray) -> bytes:
  """PNG bytes of an [H, W, C] (C in 1, 3, 4) image; floats are taken in [0, 1]."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = (np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  if image.shape[-1] == 1:
    image = image[..., 0]
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


# Distinguishes event files a process opens within the same second.
_FILE_COUNTER = itertools.count()


class _EventFile:
  """One TensorBoard event file: TFRecord-framed `Event` protos, flushed after every event.

  Written with tensorboard's protos and record framing only. tensorboard's own
  `EventFileWriter` opens files through `tensorboard.compat.tf`, which imports TensorFlow
  whenever it is installed (~7 s and ~0.5 GB per process); this file needs neither.
  """

  def __init__(self, logdir: str | os.PathLike):
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer import record_writer  # pylint: disable=g-import-not-at-top
    os.makedirs(logdir, exist_ok=True)
    self._event_pb2 = event_pb2
    name = (f'events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.'
            f'{os.getpid()}.{next(_FILE_COUNTER)}')
    self.path = os.path.join(os.fspath(logdir), name)
    self._records = record_writer.RecordWriter(open(self.path, 'wb'))
    # The first record names the format version, as TensorFlow's writers do.
    self.add_event(event_pb2.Event(file_version='brain.Event:2'))

  def add_event(self, event: Any) -> None:
    event.wall_time = time.time()
    self._records.write(event.SerializeToString())
    self._records.flush()

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    if not self._records.closed:
      self._records.close()


class TensorBoardWriter(MetricWriter):
  """Writes TensorBoard event files into `logdir` without TensorFlow.

  Scalars are `simple_value` summaries, images ([H, W, C] or a batch [B, H, W, C], uint8 or
  floats in [0, 1]) PNG-encoded image summaries (one tag per batch element), texts text-plugin
  tensors, histograms `HistogramProto`s with `num_buckets` (default 30) equal-width buckets.
  Videos and audio are not recorded.
  """

  def __init__(self, logdir: str | os.PathLike):
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    self._writer = _EventFile(logdir)

  def _add(self, step: int, values: Sequence[Any]) -> None:
    event = self._event_pb2.Event(step=int(step), summary=self._summary_pb2.Summary(value=values))
    self._writer.add_event(event)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    value = self._summary_pb2.Summary.Value
    self._add(step, [value(tag=k, simple_value=float(np.asarray(v))) for k, v in scalars.items()])

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    summary = self._summary_pb2.Summary
    values = []
    for tag, batch in images.items():
      batch = np.asarray(batch)
      batch = batch[None] if batch.ndim == 3 else batch  # [B, H, W, C]
      for i, image in enumerate(batch):
        proto = summary.Image(height=image.shape[0], width=image.shape[1],
                              colorspace=image.shape[2], encoded_image_string=_png(image))
        values.append(summary.Value(tag=tag if len(batch) == 1 else f'{tag}/{i}', image=proto))
    self._add(step, values)

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2  # pylint: disable=g-import-not-at-top
    summary = self._summary_pb2
    metadata = summary.SummaryMetadata(
        plugin_data=summary.SummaryMetadata.PluginData(plugin_name='text'))
    values = [summary.Summary.Value(
        tag=tag, metadata=metadata,
        tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING,
                                      tensor_shape=tensor_shape_pb2.TensorShapeProto(),
                                      string_val=[text.encode()]))
              for tag, text in texts.items()]
    self._add(step, values)

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Mapping[str, int] | None = None) -> None:
    values = []
    for tag, array in arrays.items():
      array = np.asarray(array, np.float64).ravel()
      array = array[np.isfinite(array)]
      if not array.size:
        continue
      counts, edges = np.histogram(array, bins=(num_buckets or {}).get(tag, 30))
      proto = self._summary_pb2.HistogramProto(
          min=float(array.min()), max=float(array.max()), num=float(array.size),
          sum=float(array.sum()), sum_squares=float(np.sum(array * array)),
          bucket_limit=edges[1:].tolist(), bucket=counts.astype(np.float64).tolist())
      values.append(self._summary_pb2.Summary.Value(tag=tag, histo=proto))
    if values:
      self._add(step, values)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class MultiWriter(MetricWriter):
  """Forwards every call to each of `writers`."""

  def __init__(self, writers: Sequence[MetricWriter]):
    self._writers = list(writers)

  def write_scalars(self, step, scalars):
    for w in self._writers:
      w.write_scalars(step, scalars)

  def write_summaries(self, step, values, metadata=None):
    for w in self._writers:
      w.write_summaries(step, values, metadata)

  def write_images(self, step, images):
    for w in self._writers:
      w.write_images(step, images)

  def write_videos(self, step, videos):
    for w in self._writers:
      w.write_videos(step, videos)

  def write_audios(self, step, audios, *, sample_rate):
    for w in self._writers:
      w.write_audios(step, audios, sample_rate=sample_rate)

  def write_texts(self, step, texts):
    for w in self._writers:
      w.write_texts(step, texts)

  def write_histograms(self, step, arrays, num_buckets=None):
    for w in self._writers:
      w.write_histograms(step, arrays, num_buckets)

  def write_hparams(self, hparams):
    for w in self._writers:
      w.write_hparams(hparams)

  def flush(self):
    for w in self._writers:
      w.flush()

  def close(self):
    for w in self._writers:
      w.close()


def create_writer(workdir: str | os.PathLike) -> MetricWriter:
  """Process 0: TensorBoard (`<workdir>/events.out.tfevents.*`) + logging +
  `<workdir>/metrics.jsonl`; other processes: logging only."""
  if jax.process_index() > 0:
    return LoggingWriter()
  workdir = os.fspath(workdir)
  return MultiWriter([LoggingWriter(), TensorBoardWriter(workdir),
                      JsonlWriter(os.path.join(workdir, 'metrics.jsonl'))])


def read_jsonl(path: str | os.PathLike) -> list[dict[str, float]]:
  """Rows of a metrics.jsonl file."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
