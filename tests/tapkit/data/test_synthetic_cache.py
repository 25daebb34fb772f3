"""Tests for the on-demand synthetic data cache (tapkit.data.synthetic.cache)."""

import json
import pathlib

import numpy as np
import pytest

from tapkit.data import synthetic
from tapkit.data.synthetic import cache

SIZES = dict(num_frames=2, height=16, width=16, num_tracks=4)


class CountingWriter:
  """Writes `tracks_xyz` of each clip as <name>.npy plus a nested <name>/rgb.npy."""

  def __init__(self, fail_at: int | None = None):
    self.names = []
    self.fail_at = fail_at

  def __call__(self, clip, root: pathlib.Path, name: str) -> None:
    self.names.append(name)
    np.save(root / f'{name}.npy', clip.tracks_xyz)
    if self.fail_at is not None and len(self.names) == self.fail_at:
      raise RuntimeError('writer failed')
    (root / 'rgb' / name).mkdir(parents=True)
    np.save(root / 'rgb' / name / 'frames.npy', clip.frames)


def _manifest(directory: pathlib.Path) -> dict:
  return json.loads((directory / cache.MANIFEST).read_text())


def test_heldout_seed_rule():
  assert synthetic.heldout_seed(0) == 1_000_003
  assert synthetic.heldout_seed(42) == 1_000_045
  assert cache.HELDOUT_SEED_OFFSET == 1_000_003


def test_renders_reuses_and_extends(tmp_path):
  writer = CountingWriter()
  out = synthetic.ensure_clips(tmp_path / 'syn', 2, 7, writer=writer, record_format='test_v1',
                               description='test clips', **SIZES)
  assert out == tmp_path / 'syn'
  assert writer.names == ['clip_0000', 'clip_0001']
  for i in range(2):
    want = synthetic.generate_clip((7, i), 2, 16, 16, 4)
    np.testing.assert_array_equal(np.load(out / f'clip_{i:04d}.npy'), want.tracks_xyz)
    np.testing.assert_array_equal(np.load(out / 'rgb' / f'clip_{i:04d}' / 'frames.npy'),
                                  want.frames)
  manifest = _manifest(out)
  assert manifest['seed'] == 7 and manifest['record_format'] == 'test_v1'
  assert manifest['version'] == cache.GENERATOR_VERSION
  assert manifest['params'] == {'num_frames': 2, 'height': 16, 'width': 16, 'num_tracks': 4,
                                'query_mode': 'random', 'grid_size': 16, 'dynamic': True,
                                'dynamic_fraction': 0.5}
  assert manifest['clips'] == {'0': ['clip_0000.npy', 'rgb/clip_0000/frames.npy'],
                               '1': ['clip_0001.npy', 'rgb/clip_0001/frames.npy']}
  assert not (out / '.staging').exists()

  # Same parameters: nothing is rendered; one more clip: only that one.
  synthetic.ensure_clips(out, 2, 7, writer=writer, record_format='test_v1', **SIZES)
  assert len(writer.names) == 2
  synthetic.ensure_clips(out, 3, 7, writer=writer, record_format='test_v1', **SIZES)
  assert writer.names[2:] == ['clip_0002']
  # Fewer clips asked for: the rendered ones stay.
  synthetic.ensure_clips(out, 1, 7, writer=writer, record_format='test_v1', **SIZES)
  assert len(writer.names) == 3 and sorted(_manifest(out)['clips']) == ['0', '1', '2']
  # A deleted file: only its clip is rendered again.
  (out / 'rgb' / 'clip_0001' / 'frames.npy').unlink()
  synthetic.ensure_clips(out, 3, 7, writer=writer, record_format='test_v1', **SIZES)
  assert writer.names[3:] == ['clip_0001']


@pytest.mark.parametrize('change', [dict(seed=8), dict(record_format='test_v2'),
                                    dict(height=20)])
def test_other_parameters_render_again(tmp_path, change):
  out = tmp_path / 'syn'
  synthetic.ensure_clips(out, 3, 7, writer=CountingWriter(), record_format='test_v1', **SIZES)
  (out / 'user_file.txt').write_text('kept')
  args = {'seed': 7, 'record_format': 'test_v1', **SIZES, **change}
  writer = CountingWriter()
  synthetic.ensure_clips(out, 2, args.pop('seed'), writer=writer, **args)
  assert writer.names == ['clip_0000', 'clip_0001']
  # The old clip 2 is gone (with its folder); files the cache did not write stay.
  assert not (out / 'clip_0002.npy').exists() and not (out / 'rgb' / 'clip_0002').exists()
  assert (out / 'user_file.txt').read_text() == 'kept'
  assert sorted(_manifest(out)['clips']) == ['0', '1']
  height = change.get('height', 16)
  seed = change.get('seed', 7)
  np.testing.assert_array_equal(np.load(out / 'rgb' / 'clip_0001' / 'frames.npy'),
                                synthetic.generate_clip((seed, 1), 2, height, 16, 4).frames)


def test_missing_manifest_renders_everything(tmp_path):
  out = tmp_path / 'syn'
  out.mkdir()
  np.save(out / 'clip_0000.npy', np.zeros(3))  # e.g. left by an older run
  writer = CountingWriter()
  synthetic.ensure_clips(out, 1, 7, writer=writer, record_format='test_v1', **SIZES)
  assert writer.names == ['clip_0000']
  assert np.load(out / 'clip_0000.npy').shape == (2, 4, 3)


def test_interrupted_writer_leaves_no_listed_clip(tmp_path):
  out = tmp_path / 'syn'
  with pytest.raises(RuntimeError, match='writer failed'):
    synthetic.ensure_clips(out, 3, 7, writer=CountingWriter(fail_at=2), record_format='test_v1',
                           **SIZES)
  assert sorted(_manifest(out)['clips']) == ['0']
  assert not (out / 'clip_0001.npy').exists()  # still in the staging folder
  writer = CountingWriter()
  synthetic.ensure_clips(out, 3, 7, writer=writer, record_format='test_v1', **SIZES)
  assert writer.names == ['clip_0001', 'clip_0002']
  assert not (out / '.staging').exists()


def test_errors(tmp_path):
  with pytest.raises(ValueError, match='num_clips'):
    synthetic.ensure_clips(tmp_path, -1, 0, writer=CountingWriter(), record_format='x')
  with pytest.raises(RuntimeError, match='wrote no file for clip 0'):
    synthetic.ensure_clips(tmp_path / 'empty', 1, 0, writer=lambda clip, root, name: None,
                           record_format='x', **SIZES)


def test_cached_clip_renders_the_written_clip_again(tmp_path):
  directory = synthetic.ensure_clips(tmp_path / 'c', 2, 7, writer=CountingWriter(),
                                     record_format='counting', **SIZES)
  clip = synthetic.cached_clip(directory, 1)
  np.testing.assert_array_equal(clip.tracks_xyz, np.load(directory / 'clip_0001.npy'))
  np.testing.assert_array_equal(clip.frames,
                                np.load(directory / 'rgb' / 'clip_0001' / 'frames.npy'))
  assert clip.frames.shape == (2, 16, 16, 3)


def test_cached_clip_errors(tmp_path):
  with pytest.raises(ValueError, match='no synthetic-data manifest'):
    synthetic.cached_clip(tmp_path, 0)
  directory = synthetic.ensure_clips(tmp_path / 'c', 1, 7, writer=CountingWriter(),
                                     record_format='counting', **SIZES)
  with pytest.raises(ValueError, match='lists clips'):
    synthetic.cached_clip(directory, 3)
  manifest = _manifest(directory)
  manifest['version'] = -1
  (directory / cache.MANIFEST).write_text(json.dumps(manifest))
  with pytest.raises(ValueError, match='version -1'):
    synthetic.cached_clip(directory, 0)
