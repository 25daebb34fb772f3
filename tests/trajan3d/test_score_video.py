"""`python -m trajan3d.score --video`: grid-tracked raw videos scored by a tiny TRAJAN."""

import csv
import os
import pathlib

import jax
import numpy as np
import pytest

from tapkit import cli
from tapkit import tracking
from tapkit.data import synthetic
from tapkit.io import video as video_io
from trajan3d import checkpoint
from trajan3d import model as model_lib
from trajan3d import score

REPO = pathlib.Path(__file__).resolve().parents[2]
FRAMES = 8


@pytest.fixture(scope='module')
def trajan_checkpoint(tmp_path_factory):
  """A randomly initialised tiny TRAJAN (2D) as an official-layout .npz next to its
  config.json."""
  root = tmp_path_factory.mktemp('trajan_ckpt')
  config = score.load_config_arg(str(REPO / 'configs/trajan.py') + ':smoke')
  config.model.update({
      'num_output_frames': FRAMES, 'num_latent_tokens': 4, 'latent_token_dim': 8,
      'num_frequencies': 4, 'track_token_dim': 16, 'encoder_latent_dim': 16,
      'decoder_num_channels': 128 + 32, 'num_heads': 2, 'qkv_size': 16,
      'input_track_mlp': 16, 'tracks_to_latents_mlp': 16, 'decompress_mlp': 16,
      'readout_mlp': 16})
  config.evals.eval.update({'num_support': 16, 'num_query': 8})
  (root / 'config.json').write_text(config.to_json_best_effort())
  model = model_lib.build_model_from_config(config)
  inputs = model_lib.example_inputs(model, num_frames=FRAMES)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), inputs)
  path = root / 'trajan.npz'
  checkpoint.save_params_npz(path, params)
  return str(path)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp('score_videos')
  clip = synthetic.generate_clip((5, 0), 12, 40, 48, 16)
  video_io.write_video(os.fspath(root / 'scene.mp4'), clip.frames, fps=10)
  video_io.write_video(os.fspath(root / 'frames'), clip.frames, fps=10)  # a frame folder
  return root, clip


def test_track_video_clip_is_a_grid_on_frame_0(videos):
  root, clip = videos
  got = score.track_video_clip(tracking.make_tracker('lk'), os.fspath(root / 'frames'), 5,
                               max_frames=FRAMES)
  assert got.name == 'frames' and got.image_size == (40, 48)
  assert got.tracks_uv.shape == (FRAMES, 25, 2) and got.visibility.shape == (FRAMES, 25)
  np.testing.assert_array_equal(got.query_frames, 0)
  np.testing.assert_allclose(got.queries_xyt[:, :2], tracking.grid_queries(40, 48, 5)[:, 1:])
  np.testing.assert_allclose(got.tracks_uv[0], got.queries_xyt[:, :2], atol=1e-4)


def test_score_videos_with_lk(trajan_checkpoint, videos, tmp_path, capsys):
  root, _ = videos
  out = str(tmp_path / 'scores.csv')
  rows = score.main(['--video', os.fspath(root), '--tracker', 'lk', '--grid_size', '6',
                     '--checkpoint', trajan_checkpoint, '--out', out])
  assert sorted(r['name'] for r in rows) == ['frames', 'scene']
  for r in rows:
    assert r['num_frames'] == FRAMES and r['num_tracks'] == 36
    assert 0 <= r['score'] <= 1 and np.isfinite(r['mean_error'])
  # One CSV row per video, as printed.
  table = list(csv.DictReader(open(out)))
  assert [float(r['score']) for r in table] == pytest.approx([r['score'] for r in rows])
  assert 'wrote' in capsys.readouterr().out


def test_score_needs_exactly_one_input(trajan_checkpoint, tmp_path):
  with pytest.raises((SystemExit, cli.UserError)):
    score.main(['--checkpoint', trajan_checkpoint, '--out', str(tmp_path / 's.csv')])
  with pytest.raises((SystemExit, cli.UserError)):
    score.main(['--tracks', 'a.npz', '--video', 'b.mp4', '--checkpoint', trajan_checkpoint,
                '--out', str(tmp_path / 's.csv')])
