"""The TensorFlow-free writers: event files TensorBoard can read, progress hooks."""

import glob
import logging

import numpy as np
import pytest

from tapkit.train import progress, writers
from tapkit.viz import plots


def _events(logdir):
  from tensorboard.compat.proto import event_pb2
  events = []
  for path in glob.glob(str(logdir / '*tfevents*')):
    events += [event_pb2.Event.FromString(r) for r in plots._tfrecords(path)]
  return events


def test_tensorboard_writer_scalars_images_texts_histograms(tmp_path):
  w = writers.TensorBoardWriter(tmp_path)
  w.write_scalars(1, {'train/loss': np.float32(0.5), 'lr': 1e-3})
  w.write_scalars(2, {'train/loss': 0.25})
  w.write_images(2, {'img': np.zeros((2, 4, 6, 3), np.float32)})
  w.write_texts(2, {'note': 'hello'})
  w.write_histograms(2, {'h': np.arange(10.0)}, {'h': 5})
  w.close()
  scalars = plots.load_tensorboard_scalars(tmp_path)
  assert set(scalars) == {'train/loss', 'lr'}
  np.testing.assert_array_equal(scalars['train/loss'][0], [1, 2])
  np.testing.assert_allclose(scalars['train/loss'][1], [0.5, 0.25])
  values = {v.tag: v for e in _events(tmp_path) if e.HasField('summary') for v in e.summary.value}
  assert (values['img/1'].image.height, values['img/1'].image.width) == (4, 6)
  assert values['img/1'].image.encoded_image_string[:4] == b'\x89PNG'
  assert values['note'].tensor.string_val == [b'hello']
  assert list(values['h'].histo.bucket) == [2, 2, 2, 2, 2]
  assert values['h'].histo.sum == 45.0


def test_create_writer_writes_jsonl_and_log(tmp_path, caplog):
  w = writers.create_writer(tmp_path)
  with caplog.at_level(logging.INFO):
    w.write_scalars(3, {'a': 1.5})
  w.close()
  assert writers.read_jsonl(tmp_path / 'metrics.jsonl') == [{'step': 3, 'a': 1.5}]
  assert '[3] a=1.5' in caplog.text
  assert plots.load_tensorboard_scalars(tmp_path)['a'][1].tolist() == [1.5]


class _Recorder(writers.MetricWriter):

  def __init__(self):
    self.rows = []

  def write_scalars(self, step, scalars):
    self.rows.append((step, sorted(scalars)))


def test_report_progress_every_steps_and_last():
  rec = _Recorder()
  hook = progress.ReportProgress(num_train_steps=7, writer=rec, every_steps=3)
  fired = [s for s in range(0, 8) if hook(s)]
  assert fired == [3, 6, 7]  # the first call only starts the clock
  assert rec.rows == [(s, ['steps_per_sec', 'uptime']) for s in (3, 6, 7)]
  with pytest.raises(ValueError, match='every_steps'):
    progress.ReportProgress(num_train_steps=7, writer=None, every_steps=0)


def test_format_seconds():
  assert [progress.format_seconds(s) for s in (5, 65, 7380)] == ['5s', '1m05s', '2h03m']
