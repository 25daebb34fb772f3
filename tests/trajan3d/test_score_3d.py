"""`python -m trajan3d.score --video` in 3D (3DSPA) mode: tracks, depth, DINO, lifting, scores."""

import csv
import json
import os
import pathlib

import numpy as np
import pytest

from tapkit import cli
from tapkit.data import synthetic
from tapkit.io import video as video_io
from tapkit.models.depth import video as vd
from trajan3d import checkpoint
from trajan3d import input_pipeline
from trajan3d import model as model_lib
from trajan3d import score
from trajan3d import video_pipeline

REPO = pathlib.Path(__file__).resolve().parents[2]
FRAMES = 8
DINO_DIM = 32
GRID = 5  # 25 tracks per video


@pytest.fixture(scope='module')
def spa3d_checkpoint(tmp_path_factory):
  """A randomly initialised tiny 3DSPA reading DINO (32 wide) and depth features, as an
  official-layout .npz next to its config.json."""
  root = tmp_path_factory.mktemp('spa3d_ckpt')
  config = score.load_config_arg(str(REPO / 'configs/spa3d.py') + ':smoke')
  config.model.update({
      'kind': '3dspa', 'num_output_frames': FRAMES, 'num_latent_tokens': 4,
      'latent_token_dim': 8, 'num_frequencies': 4, 'track_token_dim': 16,
      'encoder_latent_dim': 16, 'decoder_num_channels': 128 + 32, 'num_heads': 2,
      'qkv_size': 16, 'input_track_mlp': 16, 'tracks_to_latents_mlp': 16,
      'decompress_mlp': 16, 'readout_mlp': 16})
  config.features.update({'dino': True, 'depth': True})
  config.evals.eval.update({'num_support': 16, 'num_query': 8})
  (root / 'config.json').write_text(config.to_json_best_effort())
  model = model_lib.build_model_from_config(config)
  params = video_pipeline.random_spa3d_params(model, FRAMES, DINO_DIM, True)
  path = root / '3dspa.npz'
  checkpoint.save_params_npz(path, {'params': params})
  return str(path)


@pytest.fixture(scope='module')
def video(tmp_path_factory):
  root = tmp_path_factory.mktemp('spa3d_videos')
  clip = synthetic.generate_clip((5, 0), FRAMES, 64, 64, 16)
  return video_io.write_video(os.fspath(root / 'scene.mp4'), clip.frames, fps=10)


def _run(spa3d_checkpoint, video, out_dir, recipe):
  out = out_dir / f'{recipe}.csv'
  rows = score.main(['--video', video, '--checkpoint', spa3d_checkpoint, '--recipe', recipe,
                     '--random_weights_for_testing', '--grid_size', str(GRID),
                     '--depth_input_size', '28', '--out', str(out),
                     '--report', str(out_dir / f'report_{recipe}')])
  return rows, out


@pytest.fixture(scope='module')
def runs(spa3d_checkpoint, video, tmp_path_factory):
  out_dir = tmp_path_factory.mktemp('spa3d_scores')
  return {r: _run(spa3d_checkpoint, video, out_dir, r) for r in video_pipeline.RECIPES}, out_dir


def test_cli_scores_both_recipes(runs, capsys):
  results, out_dir = runs
  for recipe, (rows, out) in results.items():
    assert len(rows) == 1
    row = rows[0]
    assert row['name'] == 'scene' and row['recipe'] == recipe
    assert row['num_frames'] == FRAMES and row['num_tracks'] == GRID * GRID
    assert 0.0 <= row['score'] <= 1.0 and np.isfinite(row['mean_error'])
    assert row['error_units'] == 'scene units' and row['depth'] == 'relative inverse'
    assert row['weights'] == score.RANDOM_LABEL
    table = list(csv.DictReader(open(out)))
    assert tuple(table[0]) == score.CSV_FIELDS + score.VIDEO_3D_FIELDS
    assert float(table[0]['score']) == pytest.approx(row['score'])
    assert table[0]['weights'].startswith('RANDOM')
    per_frame = list(csv.DictReader(open(str(out).replace('.csv', '_per_frame.csv'))))
    assert len(per_frame) == FRAMES
    html = (out_dir / f'report_{recipe}' / 'report.html').read_text()
    assert 'RANDOM' in html and 'Recipes' in html and 'frames into the depth model' in html
    assert (out_dir / f'report_{recipe}' / 'report.md').is_file()
  # Same tracks, different depth input scaling / precision / lifting: the errors differ.
  released, corrected = (results[r][0][0] for r in ('released', 'corrected'))
  assert released['mean_error'] != pytest.approx(corrected['mean_error'], rel=1e-3)


def test_released_lifting_reproduces_the_golden_through_the_cli_path(golden, require_reference):
  path = require_reference('VDA goldens', golden / 'vda') / 'spa_lift.npz'
  with np.load(path, allow_pickle=False) as z:
    case = {k: z[k] for k in z.files}
  tracks_2d, depth = case['tracks_2d'], case['depth']  # [40, 6, 2], [6, 24, 32, 1]
  visible = np.ones(tracks_2d.shape[:2], bool)
  clip = video_pipeline.clip_from_tracks(tracks_2d, visible, depth[..., 0], 'released')
  np.testing.assert_allclose(np.swapaxes(clip.tracks_xyz, 0, 1), case['tracks_3d'], rtol=0,
                             atol=1e-5)
  feats = clip.extras[input_pipeline.TRACK_FEATURES['depth_features']]  # [T, N, 256]
  assert feats.shape == (6, 40, 256) and not feats[..., 3:].any()
  np.testing.assert_allclose(np.swapaxes(feats[..., :3], 0, 1), case['depth_features_0_3'],
                             rtol=0, atol=1e-5)
  np.testing.assert_allclose(clip.intrinsics, [32, 32, 16, 12])


def test_recipes_differ_where_expected():
  depth = np.full((2, 6, 8), 2.0, np.float32)  # relative inverse depth 2 -> Z = 0.5
  depth[1, :, :4] = 0.0  # no depth on the left half of frame 1
  tracks = np.array([[[3.5, 2.5], [1.0, 2.0]], [[6.0, 4.0], [6.0, 4.0]]], np.float32)
  visible = np.ones((2, 2), bool)
  rel = video_pipeline.lift_tracks(tracks, visible, depth, 'released')
  cor = video_pipeline.lift_tracks(tracks, visible, depth, 'corrected')
  met = video_pipeline.lift_tracks(tracks, visible, depth, 'corrected', metric=True, focal=4.0)
  np.testing.assert_allclose(rel.tracks_xyz[0, 0], [(3.5 - 4) * 2 / 8, (2.5 - 3) * 2 / 8, 2.0])
  np.testing.assert_allclose(cor.tracks_xyz[0, 0], [0.0, 0.0, 0.5])  # centre (3.5, 2.5)
  np.testing.assert_allclose(met.tracks_xyz[1, 0], [2.5 * 2 / 4, 1.5 * 2 / 4, 2.0])
  np.testing.assert_allclose(cor.intrinsics, [8, 8, 3.5, 2.5])
  np.testing.assert_allclose(rel.intrinsics, [8, 8, 4, 3])
  # Released: the zero is lifted to the camera centre and stays visible; corrected: no depth.
  np.testing.assert_array_equal(rel.visible, [[True, True], [True, True]])
  np.testing.assert_array_equal(cor.visible, [[True, False], [True, True]])
  np.testing.assert_allclose(cor.tracks_xyz[0, 1], 0.0)
  np.testing.assert_allclose(rel.depth_features[0, :, :3], [[2, 0.2, 0], [0, 0, -2]])
  np.testing.assert_allclose(cor.depth_features[0, :, :3], [[0.5, 0.05, 0], [0, 0, 0]])


def test_dino_sampling_recipes():
  maps = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1) * [1.0, -1.0]  # [T, h, w, 2]
  tracks = np.array([[[0.0, 0.0], [27.0, 13.0]]], np.float32)  # one track, 2 frames, 56 px
  rel = video_pipeline.sample_patch_features(maps, tracks, (56, 56), 'released')
  cor = video_pipeline.sample_patch_features(maps, tracks, (56, 56), 'corrected')
  # Released: pixel 0 -> patch coordinate 0; (27, 13) px -> (27 / 14, 13 / 14).
  np.testing.assert_allclose(rel[0, 0], maps[0, 0, 0])
  np.testing.assert_allclose(rel[0, 1, 0], 16 + 13 / 14 * 4 + 27 / 14, rtol=1e-5)
  # Corrected: patch (i, j) has its centre at pixel 14 j + 6.5: pixel 27 -> 27.5/14 - 0.5.
  np.testing.assert_allclose(cor[0, 0], maps[0, 0, 0])  # clamped at the border
  np.testing.assert_allclose(cor[0, 1, 0], 16 + (13.5 / 14 - 0.5) * 4 + (27.5 / 14 - 0.5),
                             rtol=1e-5)


def test_released_grid_queries():
  q = video_pipeline.released_grid_queries(40, 60, 4)
  assert q.shape == (16, 3) and not q[:, 0].any()
  np.testing.assert_allclose(q[:4, 1], [7.5, 22.5, 37.5, 52.5])
  np.testing.assert_allclose(q[::4, 2], [5, 15, 25, 35])


def test_released_depth_divides_by_255_twice_in_half_precision(video):
  frames = video_io.read_video(video).frames[:2]
  released = video_pipeline.load_depth_model(None, 'released', input_size=28,
                                             random_weights=True)
  corrected = video_pipeline.load_depth_model(None, 'corrected', input_size=28,
                                              random_weights=True)
  assert released.predictor.dtype == video_pipeline.released_half_dtype()
  assert corrected.predictor.dtype == np.float32
  d_rel, d_cor = released(frames), corrected(frames)
  assert d_rel.shape == d_cor.shape == frames.shape[:3]
  assert np.isfinite(d_rel).all() and np.isfinite(d_cor).all()
  # The corrected model fed frames / 255 is the released input (up to half precision).
  same_input = np.stack(list(vd.iter_video_depth(corrected.predictor,
                                                 frames.astype(np.float32) / 255.0)))
  assert np.abs(d_rel - same_input).max() < 0.05 * (np.abs(same_input).max() + 1e-6)
  assert np.abs(d_cor - same_input).max() > 1e-3


def test_missing_checkpoint_files_exit_2(spa3d_checkpoint, video, tmp_path, capsys):
  base = ['--video', video, '--checkpoint', spa3d_checkpoint, '--out', str(tmp_path / 's.csv')]
  for extra, flag in ((['--depth_checkpoint', str(tmp_path / 'vda.pth')], '--depth_checkpoint'),
                      ([], '--depth_checkpoint'),
                      (['--checkpoint', str(tmp_path / 'none.npz')], 'none.npz')):
    with pytest.raises(SystemExit) as e:
      cli.run(score.main, base + extra)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and flag in err[0], err


def test_mode_selection(spa3d_checkpoint, video, tmp_path):
  # A 3DSPA model with features cannot be scored on 2D tracks.
  with pytest.raises(cli.UserError, match='2D tracks'):
    score.main(['--video', video, '--checkpoint', spa3d_checkpoint, '--mode', '2d',
                '--out', str(tmp_path / 's.csv')])
  config = json.loads((pathlib.Path(spa3d_checkpoint).parent / 'config.json').read_text())
  assert config['model']['kind'] == '3dspa'


def test_config_video_section_names_the_checkpoints_and_flags_win():
  args = score.parse_args(['--video', 'v.mp4', '--config', 'configs/spa3d_video.py',
                           '--recipe', 'released', '--out', 'o.csv'])
  ckpt, options = score.video_options(args)
  assert ckpt == 'checkpoints/3dspa_ckpt.npz'
  assert options.recipe == 'released' and options.tracker == 'cotracker3'
  assert options.depth_checkpoint == 'checkpoints/video_depth_anything_vitb.pth'
  assert options.dino_checkpoint.endswith('model.safetensors')
  assert options.grid_size == video_pipeline.RELEASED_GRID_SIZE
  assert options.depth_encoder is None and options.depth_input_size == 518
