"""python -m tapkit.depth on tiny inputs with the tiny test model."""

import os

import numpy as np
import pytest

from tapkit import cli
from tapkit import depth as depth_cli
from tapkit.io import read_npz, write_npz
from tapkit.train import compile_cache

# The CLI runs here compile the same 32-frame window program and the same random
# initialisation; JAX's persistent compilation cache (bit-identical programs) lets the file
# compile each once, so its tests share one xdist worker.
pytestmark = pytest.mark.xdist_group('depth_cli')


@pytest.fixture(scope='module', autouse=True)
def _compile_once(tmp_path_factory):
  with compile_cache.compilation_cache(tmp_path_factory.mktemp('jax_cache')):
    yield


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('depth_inputs')
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (5, 20, 30, 3), dtype=np.uint8)
  folder = root / 'clip_frames'
  folder.mkdir()
  for i, frame in enumerate(frames):
    Image.fromarray(frame).save(folder / f'{i}.png')
  np.save(root / 'clip.npy', frames)
  np.save(root / 'bad.npy', np.zeros((4, 5), np.float32))
  return root, frames


def test_random_weights_run_and_bad_files_listed(inputs, tmp_path, capsys):
  root, frames = inputs
  out = tmp_path / 'out'
  status = depth_cli.main(['--video', str(root / 'clip_frames'), str(root / 'clip.npy'),
                           str(root / 'bad.npy'), '--random_weights_for_testing',
                           '--encoder', 'tiny', '--input_size', '28', '--out', str(out)])
  captured = capsys.readouterr()
  assert status == 0
  assert 'RANDOM WEIGHTS, TESTING ONLY' in captured.out and 'meaningless' in captured.err
  assert 'window 1/1' in captured.out
  assert 'processed 2 of 3 video(s); 1 failed' in captured.err and 'bad.npy' in captured.err
  a = read_npz(out / 'clip_frames_depth.npz')
  b = read_npz(out / 'clip_depth.npz')
  assert a['depth'].shape == (5, 20, 30) and a['depth'].dtype == np.float32
  assert float(a['fps']) > 0 and int(a['random_weights']) == 1 and int(a['metric']) == 0
  np.testing.assert_array_equal(a['depth'], b['depth'])  # PNG frames are lossless
  assert np.all(np.isfinite(a['depth'])) and np.all(a['depth'] >= 0)


def test_checkpoint_run_equals_random_weights_and_viz(inputs, tmp_path):
  torch = pytest.importorskip('torch')
  from tapkit.models.depth import convert, vda  # pylint: disable=g-import-not-at-top
  root, _ = inputs
  config = vda.get_vda_config('tiny')
  sd = convert.export_vda_state_dict(vda.init_vda_params(config), config)
  ckpt = tmp_path / 'tiny.pth'
  torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, ckpt)
  common = ['--video', str(root / 'clip.npy'), '--encoder', 'tiny', '--input_size', '28',
            '--max_frames', '3']
  assert depth_cli.main(common + ['--checkpoint', str(ckpt), '--out', str(tmp_path / 'a'),
                                  '--viz']) == 0
  assert depth_cli.main(common + ['--random_weights_for_testing', '--out',
                                  str(tmp_path / 'b')]) == 0
  a = read_npz(tmp_path / 'a' / 'clip_depth.npz')
  b = read_npz(tmp_path / 'b' / 'clip_depth.npz')
  assert a['depth'].shape == (3, 20, 30) and int(a['random_weights']) == 0
  np.testing.assert_allclose(a['depth'], b['depth'], rtol=0, atol=1e-6)
  assert os.path.getsize(tmp_path / 'a' / 'clip_depth.mp4') > 0


def test_nothing_processed_and_bad_arguments(inputs, tmp_path, capsys):
  root, _ = inputs
  assert depth_cli.main(['--video', str(root / 'bad.npy'), '--random_weights_for_testing',
                         '--encoder', 'tiny', '--out', str(tmp_path)]) == 2
  assert 'no video could be processed' in capsys.readouterr().err
  with pytest.raises(cli.UserError, match='exactly one of --checkpoint'):
    depth_cli.main(['--video', str(root / 'clip.npy'), '--out', str(tmp_path)])
  write_npz(tmp_path / 'x.npz', {'a': np.zeros(1)})
  assert depth_cli.main(['--video', str(root / 'clip.npy'), '--checkpoint',
                         str(tmp_path / 'missing.pth'), '--out', str(tmp_path)]) == 2
