"""Curves, bars and tables: per-frame scores, training curves, benchmark summaries.

Table cells are formatted by `tapkit.viz.tables` (shared with the text reports).

All functions return a matplotlib `Figure` on an Agg canvas (no display needed)
and save it as PNG when given `path`. Training scalars can be read from a
TensorBoard event directory (`load_tensorboard_scalars`, which parses the event
files with tensorboard's protobufs and never imports TensorFlow, so it cannot
touch a GPU) or from the engine's JSON-lines file (`load_jsonl_scalars`).
"""

from __future__ import annotations

import glob
import json
import math
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tapkit.viz import _common

# A series is either values (x = 0, 1, ...) or a (steps, values) pair.
Series = Sequence[float] | np.ndarray | tuple[Sequence[float], Sequence[float]]


def _xy(series: Any) -> tuple[np.ndarray, np.ndarray]:
  """(x [M], y [M]) float arrays of a series given as values or (steps, values)."""
  if isinstance(series, tuple) and len(series) == 2 and np.ndim(series[0]) == 1:
    x, y = np.asarray(series[0], np.float64), np.asarray(series[1], np.float64)
  else:
    y = np.asarray(series, np.float64).reshape(-1)
    x = np.arange(y.shape[0], dtype=np.float64)
  if x.shape != y.shape:
    raise ValueError(f'steps and values differ in length: {x.shape} vs {y.shape}')
  return x, y


def smooth_ema(values: Any, weight: float) -> np.ndarray:
  """Debiased exponential moving average (TensorBoard's smoothing), NaNs skipped.

  Args:
    values: [M] values.
    weight: in [0, 1); 0 returns the values unchanged.
  """
  values = np.asarray(values, np.float64)
  if not 0.0 <= weight < 1.0:
    raise ValueError(f'smoothing weight must lie in [0, 1), got {weight}')
  out = np.empty_like(values)
  acc, norm = 0.0, 0.0
  for i, v in enumerate(values):
    if np.isfinite(v):
      acc = weight * acc + (1.0 - weight) * v
      norm = weight * norm + (1.0 - weight)
    out[i] = acc / norm if norm > 0 else np.nan
  return out


def plot_score_curves(scores: Mapping[str, Series], *, title: str = '',
                      ylabel: str = 'score', xlabel: str = 'frame',
                      ylim: tuple[float, float] | None = None,
                      figsize: tuple[float, float] = (7.0, 4.0),
                      path: str | os.PathLike | None = None) -> Figure:
  """One line per video of a per-frame score (e.g. realism or reconstruction error).

  Args:
    scores: name -> [T] values (x = frame index) or (frames [T], values [T]).
    title, ylabel, xlabel, ylim, figsize: figure options.
    path: if given, also saved there as PNG.
  """
  fig = _common.new_figure(*figsize)
  ax = fig.add_subplot()
  for name, series in scores.items():
    x, y = _xy(series)
    ax.plot(x, y, marker='o' if len(x) <= 30 else None, ms=3, lw=1.5, label=str(name))
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if ylim is not None:
    ax.set_ylim(*ylim)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  if scores:
    ax.legend(fontsize='small', loc='best')
  fig.tight_layout()
  if path is not None:
    _common.save_figure(fig, path)
  return fig


def plot_score_panels(panels: Sequence[tuple[str, Mapping[str, Series]]], *,
                      title: str = '', xlabel: str = 'frame',
                      ylims: Sequence[tuple[float, float] | None] | None = None,
                      max_legend: int = 12, figsize: tuple[float, float] = (8.0, 6.0),
                      dpi: int = 100, path: str | os.PathLike | None = None) -> Figure:
  """Per-frame scores of several videos, one panel per score, stacked on a shared x axis.

  Args:
    panels: (y label, {video label: [T] values or (frames, values)}) per panel,
      top to bottom.
    title: title of the top panel.
    xlabel: label of the bottom axis.
    ylims: optional y range per panel (None = automatic).
    max_legend: the top panel gets a legend when it has at most this many lines.
    figsize, dpi: figure size in inches and resolution.
    path: if given, also saved there as PNG.
  """
  if not panels:
    raise ValueError('no panels to plot')
  fig = _common.new_figure(*figsize, dpi=dpi)
  axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
  for i, (ax, (ylabel, series)) in enumerate(zip(axes, panels)):
    for name, values in series.items():
      ax.plot(*_xy(values), label=str(name))
    ax.set_ylabel(ylabel)
    if ylims is not None and ylims[i] is not None:
      ax.set_ylim(*ylims[i])
  axes[-1].set_xlabel(xlabel)
  if len(panels[0][1]) <= max_legend:
    axes[0].legend(fontsize=7)
  if title:
    axes[0].set_title(title)
  fig.tight_layout()
  if path is not None:
    _common.save_figure(fig, path)
  return fig


def plot_training_curves(metrics: Mapping[str, Series] | str | os.PathLike, *,
                         smoothing: float = 0.0, log_scale: Sequence[str] = ('loss',),
                         columns: int = 3, title: str = '', min_points_to_smooth: int = 5,
                         path: str | os.PathLike | None = None) -> Figure:
  """A grid of training curves, one panel per metric.

  Args:
    metrics: name -> values per step, or (steps, values); or a TensorBoard
      event directory / a JSON-lines metrics file, read with
      `load_tensorboard_scalars` / `load_jsonl_scalars`.
    smoothing: EMA weight in [0, 1); the raw curve stays visible, faint. Series with
      fewer than `min_points_to_smooth` points (e.g. a few evaluations) are drawn as
      logged, with a marker per point, so their last point is the logged value.
    log_scale: metrics whose name contains one of these substrings and whose
      values are all positive get a log y axis.
    columns: panels per row.
    title: figure title.
    path: if given, also saved there as PNG.
  """
  if isinstance(metrics, (str, os.PathLike)):
    source = os.fspath(metrics)
    metrics = (load_tensorboard_scalars(source) if os.path.isdir(source)
               else load_jsonl_scalars(source))
  names = sorted(metrics)
  if not names:
    raise ValueError('no metrics to plot')
  cols = max(1, min(columns, len(names)))
  rows = math.ceil(len(names) / cols)
  fig = _common.new_figure(4.0 * cols, 3.0 * rows)
  for i, name in enumerate(names):
    ax = fig.add_subplot(rows, cols, i + 1)
    x, y = _xy(metrics[name])
    few = len(x) < min_points_to_smooth
    if smoothing > 0 and not few:
      ax.plot(x, y, color='C0', alpha=0.25, lw=1)
      ax.plot(x, smooth_ema(y, smoothing), color='C0', lw=1.5)
    else:
      ax.plot(x, y, color='C0', lw=1.5, marker='o' if few else None, ms=4)
    finite = y[np.isfinite(y)]
    if any(s in name for s in log_scale) and finite.size and np.all(finite > 0):
      ax.set_yscale('log')
    ax.set_title(name, fontsize='medium')
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  if path is not None:
    _common.save_figure(fig, path)
  return fig


def _tfrecords(path: str):
  """Yields the payloads of a TFRecord file: [len u64][crc u32][data][crc u32] records.

  CRCs are not checked; a truncated last record (a file still being written)
  ends the iteration instead of failing.
  """
  with open(path, 'rb') as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        return
      (length,) = struct.unpack('<Q', header[:8])
      data = f.read(length)
      if len(data) < length or len(f.read(4)) < 4:
        return
      yield data


def _tensor_scalar(tensor) -> float | None:
  """The single value of a scalar TensorProto (as written by tf.summary.scalar)."""
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top

  array = tensor_util.make_ndarray(tensor)
  if array.size != 1 or not np.issubdtype(array.dtype, np.number):
    return None
  return float(array.reshape(()))


def load_tensorboard_scalars(logdir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads every scalar from the event files under `logdir` (recursively).

  Both TF1 `simple_value` summaries and TF2 scalar tensors (clu / tf.summary)
  are read; event files of sub-directories (e.g. 'train', 'eval') prefix their
  tags with the sub-directory name. Parsed with tensorboard's protobufs, so
  TensorFlow is not imported.

  Returns:
    tag -> (steps [M] int64, values [M] float64), sorted by step; for repeated
    steps (a restarted run) the last written value wins.
  """
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top

  logdir = os.fspath(logdir)
  files = sorted(glob.glob(os.path.join(logdir, '**', '*tfevents*'), recursive=True))
  if not files:
    raise FileNotFoundError(f'no TensorBoard event files under {logdir}')
  found: dict[str, dict[int, float]] = {}
  for file in files:
    rel = os.path.relpath(os.path.dirname(file), logdir)
    prefix = '' if rel == '.' else rel.replace(os.sep, '/') + '/'
    for record in _tfrecords(file):
      event = event_pb2.Event.FromString(record)
      if not event.HasField('summary'):
        continue
      for value in event.summary.value:
        kind = value.WhichOneof('value')
        if kind == 'simple_value':
          scalar = float(value.simple_value)
        elif kind == 'tensor' and value.metadata.plugin_data.plugin_name in ('', 'scalars'):
          # TF2 writes the plugin name only with a tag's first value, hence ''.
          scalar = _tensor_scalar(value.tensor)
        else:
          scalar = None
        if scalar is not None:
          found.setdefault(prefix + value.tag, {})[int(event.step)] = scalar
  return {tag: (np.array(sorted(by_step), np.int64),
                np.array([by_step[s] for s in sorted(by_step)], np.float64))
          for tag, by_step in found.items()}


def load_jsonl_scalars(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads a JSON-lines metrics file ({"step": s, name: value, ...} per line).

  Returns:
    name -> (steps [M] int64, values [M] float64) in file order.
  """
  series: dict[str, tuple[list[int], list[float]]] = {}
  with open(path) as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f'{path}:{line_no}: not JSON: {e}') from None
      if not isinstance(row, dict) or 'step' not in row:
        raise ValueError(f'{path}:{line_no}: expected an object with a "step" key')
      for name, value in row.items():
        if name != 'step' and isinstance(value, (int, float)):
          steps, values = series.setdefault(name, ([], []))
          steps.append(int(row['step']))
          values.append(float(value))
  return {k: (np.array(s, np.int64), np.array(v, np.float64)) for k, (s, v) in series.items()}


def plot_bars(values: Mapping[str, float] | Mapping[str, Mapping[str, float]], *,
              errors: Mapping[str, Any] | None = None, title: str = '',
              ylabel: str = '', annotate: bool = True, fmt: str = '.3g',
              figsize: tuple[float, float] | None = None,
              path: str | os.PathLike | None = None) -> Figure:
  """Bar chart: {label: value}, or grouped {group: {series: value}}.

  Args:
    values: flat mapping (one bar per label) or nested (one group of bars per
      outer key, one colour per inner key; missing entries leave gaps).
    errors: same structure as `values`, error-bar half-widths (optional).
    annotate: write each value above its bar with format `fmt`.
    title, ylabel, figsize: figure options.
    path: if given, also saved there as PNG.
  """
  groups = list(values)
  nested = bool(groups) and isinstance(values[groups[0]], Mapping)
  if nested:
    series = list(dict.fromkeys(k for g in groups for k in values[g]))
  else:
    series = ['']
  table = np.array([[values[g].get(s, np.nan) if nested else values[g] for s in series]
                    for g in groups], np.float64).reshape(len(groups), len(series))
  err = None
  if errors is not None:
    err = np.array([[errors.get(g, {}).get(s, np.nan) if nested else errors.get(g, np.nan)
                     for s in series] for g in groups], np.float64)
  fig = _common.new_figure(*(figsize or (max(4.0, 0.9 * len(groups) * len(series) + 2), 4.0)))
  ax = fig.add_subplot()
  width = 0.8 / len(series)
  x = np.arange(len(groups))
  for j, name in enumerate(series):
    pos = x - 0.4 + width * (j + 0.5)
    bars = ax.bar(pos, table[:, j], width, yerr=None if err is None else err[:, j],
                  label=name or None, color=f'C{j}', capsize=3)
    if annotate:
      ax.bar_label(bars, labels=['' if not np.isfinite(v) else format(v, fmt)
                                 for v in table[:, j]], fontsize='small', padding=2)
  ax.set_xticks(x, [str(g) for g in groups], rotation=20 if len(groups) > 4 else 0)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  if nested:
    ax.legend(fontsize='small')
  ax.grid(axis='y', alpha=0.3)
  fig.tight_layout()
  if path is not None:
    _common.save_figure(fig, path)
  return fig


