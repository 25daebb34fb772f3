"""Tests for tapkit.viz.plots: score and training curves, event-file reading, bars, tables."""

import json
import os

import numpy as np
import pytest

from tapkit.viz import _common
from tapkit.viz import plots


def _distinct_colours(fig) -> int:
  return len(np.unique(_common.figure_to_array(fig).reshape(-1, 3), axis=0))


def test_score_curves_one_line_per_video(tmp_path):
  scores = {'real': np.linspace(0.9, 0.8, 16), 'generated': np.linspace(0.5, 0.2, 16),
            'sparse': (np.array([0, 4, 8]), np.array([0.3, 0.4, 0.35]))}
  fig = plots.plot_score_curves(scores, title='realism', ylabel='score',
                                path=tmp_path / 'scores.png')
  ax = fig.axes[0]
  lines = ax.get_lines()
  assert [line.get_label() for line in lines] == list(scores)
  np.testing.assert_allclose(lines[2].get_xdata(), [0, 4, 8])
  np.testing.assert_allclose(lines[1].get_ydata(), scores['generated'])
  assert _distinct_colours(fig) > 10
  assert (tmp_path / 'scores.png').read_bytes().startswith(b'\x89PNG')


def test_smooth_ema():
  np.testing.assert_array_equal(plots.smooth_ema([1.0, 5.0, 2.0], 0.0), [1.0, 5.0, 2.0])
  # Debiased: a constant stays constant from the first step.
  np.testing.assert_allclose(plots.smooth_ema(np.full(5, 3.0), 0.9), 3.0)
  out = plots.smooth_ema([0.0, np.nan, 10.0], 0.5)
  np.testing.assert_allclose(out, [0.0, 0.0, 10.0 * 0.5 / 0.75])
  with pytest.raises(ValueError):
    plots.smooth_ema([1.0], 1.0)


def test_training_curves_from_dict():
  metrics = {'train/loss': list(np.exp(-np.arange(50) / 10.0)),
             'eval/aj': (np.arange(0, 50, 10), np.array([0.1, 0.3, 0.4, 0.45, 0.5])),
             'lr': [1e-3] * 50, 'grad_norm': list(np.linspace(2, 1, 50))}
  fig = plots.plot_training_curves(metrics, smoothing=0.6, columns=2)
  assert len(fig.axes) == 4
  by_title = {ax.get_title(): ax for ax in fig.axes}
  assert set(by_title) == set(metrics)
  assert by_title['train/loss'].get_yscale() == 'log'
  assert by_title['eval/aj'].get_yscale() == 'linear'
  # Raw (faint) and smoothed curves.
  assert len(by_title['grad_norm'].get_lines()) == 2
  with pytest.raises(ValueError):
    plots.plot_training_curves({})


def test_tensorboard_scalars_tf2_tensors_and_simple_values(tmp_path):
  # One TensorFlow import (seconds) serves both summary kinds.
  tf = pytest.importorskip('tensorflow')
  from tensorboard.compat.proto import summary_pb2

  tf.config.set_visible_devices([], 'GPU')  # keep TF off any accelerator
  writer = tf.summary.create_file_writer(str(tmp_path / 'train'))
  with writer.as_default():  # TF2 / clu style: scalar tensors with plugin metadata
    for step in range(4):
      tf.summary.scalar('loss', 1.0 / (step + 1), step=step)
      tf.summary.text('note', 'not a scalar', step=step)
  writer.close()
  writer = tf.summary.create_file_writer(str(tmp_path / 'eval'))
  with writer.as_default():  # TF1 style: Summary.Value.simple_value
    for step in (20, 0, 10, 20):  # out of order, step 20 rewritten (restart)
      value = summary_pb2.Summary.Value(tag='aj', simple_value=0.5 + step / 100.0)
      proto = summary_pb2.Summary(value=[value]).SerializeToString()
      tf.summary.experimental.write_raw_pb(proto, step=step)
  writer.close()
  scalars = plots.load_tensorboard_scalars(tmp_path)
  assert set(scalars) == {'train/loss', 'eval/aj'}
  np.testing.assert_array_equal(scalars['train/loss'][0], [0, 1, 2, 3])
  np.testing.assert_allclose(scalars['train/loss'][1], [1, 0.5, 1 / 3, 0.25], rtol=1e-6)
  np.testing.assert_array_equal(scalars['eval/aj'][0], [0, 10, 20])
  np.testing.assert_allclose(scalars['eval/aj'][1], [0.5, 0.6, 0.7], rtol=1e-6)
  fig = plots.plot_training_curves(tmp_path)
  assert {ax.get_title() for ax in fig.axes} == {'train/loss', 'eval/aj'}


def test_tensorboard_missing_dir(tmp_path):
  with pytest.raises(FileNotFoundError):
    plots.load_tensorboard_scalars(tmp_path)


def test_jsonl_scalars(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  rows = [{'step': 1, 'loss': 2.0}, {'step': 2, 'loss': 1.5, 'aj': 0.2}, {'step': 3, 'aj': 0.3}]
  path.write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
  scalars = plots.load_jsonl_scalars(path)
  np.testing.assert_array_equal(scalars['loss'][0], [1, 2])
  np.testing.assert_allclose(scalars['aj'][1], [0.2, 0.3])
  fig = plots.plot_training_curves(os.fspath(path))
  assert len(fig.axes) == 2
  path.write_text('{"loss": 1}\n')
  with pytest.raises(ValueError, match='step'):
    plots.load_jsonl_scalars(path)


def test_bars_flat_and_grouped(tmp_path):
  fig = plots.plot_bars({'TRAJAN': 0.61, '3DSPA': 0.68}, ylabel='AJ')
  ax = fig.axes[0]
  heights = [p.get_height() for p in ax.patches]
  np.testing.assert_allclose(heights, [0.61, 0.68])
  assert [t.get_text() for t in ax.texts] == ['0.61', '0.68']
  grouped = {'ADT': {'ours': 0.3, 'paper': 0.32}, 'PStudio': {'ours': 0.2}}
  fig = plots.plot_bars(grouped, errors={'ADT': {'ours': 0.01}}, path=tmp_path / 'b.png')
  ax = fig.axes[0]
  assert len(ax.patches) == 4  # 2 groups x 2 series, the missing one is NaN
  assert [t.get_text() for t in ax.get_legend().get_texts()] == ['ours', 'paper']
  assert (tmp_path / 'b.png').stat().st_size > 1000


def test_score_panels(tmp_path):
  panels = [('Jaccard', {'a': [0.1, 0.5, 0.9], 'b': ([0, 2], [0.2, 0.4])}),
            ('error', {'a': [3.0, 2.0, 1.0]})]
  fig = plots.plot_score_panels(panels, title='per frame', ylims=[(0, 1), None],
                                path=tmp_path / 'p.png')
  top, bottom = fig.axes
  assert [ln.get_label() for ln in top.get_lines()] == ['a', 'b']
  np.testing.assert_allclose(top.get_lines()[1].get_xdata(), [0, 2])
  assert top.get_ylim() == (0, 1) and top.get_title() == 'per frame'
  assert bottom.get_ylabel() == 'error' and bottom.get_xlabel() == 'frame'
  assert top.get_legend() is not None
  assert (tmp_path / 'p.png').stat().st_size > 1000


def test_short_eval_curves_are_drawn_as_logged_with_markers():
  metrics = {'eval/aj': (np.array([100, 200, 400]), np.array([0.02, 0.06, 0.097])),
             'train/loss': list(np.exp(-np.arange(20) / 5.0))}
  fig = plots.plot_training_curves(metrics, smoothing=0.6, columns=2)
  by_title = {ax.get_title(): ax for ax in fig.axes}
  (line,) = by_title['eval/aj'].get_lines()  # one unsmoothed line
  assert line.get_marker() == 'o'
  np.testing.assert_array_equal(line.get_ydata(), [0.02, 0.06, 0.097])  # ends at the logged
  assert len(by_title['train/loss'].get_lines()) == 2  # long series: raw + smoothed
