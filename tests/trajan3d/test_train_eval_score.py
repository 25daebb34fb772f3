"""TRAJAN/3DSPA training task, TAPVid-3D evaluation and realism score (tiny shapes)."""

import csv
import json
import math
import os
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from tapkit import evaluate
from tapkit.data import tapvid3d
from tapkit.train import compile_cache
from tapkit.train import evaluators as evaluators_lib
from tapkit.train import loop
from trajan3d import evaluate_tapvid3d
from trajan3d import features
from trajan3d import input_pipeline
from trajan3d import losses
from trajan3d import score
from trajan3d import task

REPO = pathlib.Path(__file__).resolve().parents[2]
FRAMES, SIZE, TRACKS = 8, 32, 24


def tiny_config(synthetic_dir: str, total_steps: int = 3):
  config = score.load_config_arg(str(REPO / 'configs/spa3d.py') + ':smoke')
  config.model.update({
      'num_output_frames': FRAMES, 'num_latent_tokens': 4, 'latent_token_dim': 8,
      'num_frequencies': 4, 'track_token_dim': 16, 'encoder_latent_dim': 16,
      'decoder_num_channels': 128 + 48, 'num_heads': 2, 'qkv_size': 16,
      'input_track_mlp': 16, 'tracks_to_latents_mlp': 16, 'decompress_mlp': 16,
      'readout_mlp': 16})
  config.data.update({'num_frames': FRAMES, 'num_support': 8, 'num_query': 6})
  config.data.synthetic.update({'dir': synthetic_dir, 'num_train': 2, 'num_eval': 2,
                                'num_frames': FRAMES,
                                'height': SIZE, 'width': SIZE, 'num_tracks': TRACKS})
  config.evals.eval.update({'every_steps': 2, 'num_clips': 2, 'num_support': 8, 'num_query': 6})
  config.total_steps = total_steps
  config.batch_size = 2
  config.log_every = 1
  config.optimizer.warmup_steps = 1
  config.checkpoint.update({'every_steps': 2, 'async_save': False})
  return config


# A module-scoped fixture is built once per xdist worker: one group keeps the file's tests on one
# worker under `--dist loadgroup` (the README's test command), so the expensive run is made once.
pytestmark = pytest.mark.xdist_group('trajan3d_train')


@pytest.fixture(scope='module', autouse=True)
def _compile_cache(tmp_path_factory):
  """JAX's persistent compilation cache for this file's tests (as the quickstart uses it).

  The resumed run builds a new method, so its step and evaluation are new functions for
  jit, and the offline evaluation / scoring CLIs build the model's apply again: the cache
  gives them the programs compiled before (bit-identical executables) instead of
  compiling them again.
  """
  with compile_cache.compilation_cache(tmp_path_factory.mktemp('jax_cache')):
    yield


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A workdir trained for 3 steps, then resumed to 4 (returns workdir, clips dir)."""
  root = tmp_path_factory.mktemp('t3d')
  syn, workdir = str(root / 'syn'), str(root / 'work')
  config = tiny_config(syn, total_steps=3)
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort())
  state = loop.train(config, workdir, task.build_method(config, workdir))
  assert int(state.step) == 3
  config.total_steps = 4
  state = loop.train(config, workdir, task.build_method(config, workdir))
  return workdir, os.path.join(syn, 'eval'), state


def test_losses_match_hand_computed_values():
  pred = jnp.zeros((1, 1, 2, 3))
  target = jnp.asarray([[[[1.0, 2.0, -1.0], [5.0, 5.0, 5.0]]]])
  vis = jnp.asarray([[[[1.0], [0.0]]]])
  logits = jnp.zeros((1, 1, 2, 1))
  cfg = {'position': 'l1', 'huber_delta': 0.1, 'position_weight': 5000.0,
         'visibility_weight': 1e-8, 'visibility_normalizer': 'visible',
         'certainty_weight': 0.0, 'certainty_threshold': 0.1}
  total, aux = losses.track_losses(pred, logits, logits, target, vis, cfg)
  # L1 over the one visible point: 1 + 2 + 1; BCE(0) = log 2 per point, 2 points / 1 visible.
  assert float(aux['loss_position']) == pytest.approx(4.0)
  assert float(aux['loss_visibility']) == pytest.approx(2 * np.log(2), rel=1e-6)
  assert float(total) == pytest.approx(5000 * 4.0 + 1e-8 * 2 * np.log(2), rel=1e-6)
  cfg.update(visibility_normalizer='all', position='huber', position_weight=1.0,
             visibility_weight=1.0)
  total, aux = losses.track_losses(pred, logits, logits, target, vis, cfg)
  # Huber(d, 0.1) = 0.1 * (|d| - 0.05): 0.095 + 0.195 + 0.095.
  assert float(aux['loss_position']) == pytest.approx(0.385, rel=1e-5)
  assert float(aux['loss_visibility']) == pytest.approx(np.log(2), rel=1e-6)
  assert float(aux['mean_error']) == pytest.approx(np.sqrt(6.0), rel=1e-6)


def test_features_shapes_and_bilinear_exactness():
  t, h, w = 3, 5, 7
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  maps = np.broadcast_to((2.0 * xx + 3.0 * yy)[None, ..., None], (t, h, w, 1))
  xy_px = np.asarray([[[1.5, 2.25]] * t, [[4.0, 0.5]] * t], np.float32)  # [N=2, T, 2]
  norm = (xy_px + 0.5) / np.asarray([w, h], np.float32)
  got = features.sample_feature_maps(maps, norm)[..., 0]
  np.testing.assert_allclose(got[0], 2 * 1.5 + 3 * 2.25, rtol=1e-6)
  np.testing.assert_allclose(got[1], 2 * 4.0 + 3 * 0.5, rtol=1e-6)
  depth = np.full((t, h, w), 2.0, np.float32)
  depth[:, :, 5:] = 8.0  # an occlusion edge at x = 4.5
  feats = features.depth_features(depth, xy_px)
  assert feats.shape == (2, t, 256) and np.all(np.isfinite(feats))
  # Scalar 0 (log depth) of track 0: sin(log 2 * s_0), s_0 = 0.25.
  assert feats[0, 0, 0] == pytest.approx(np.sin(np.log(2.0) * 0.25), rel=1e-5)
  # Scalar 3 (edge strength) is 0 far from the edge, log 4 next to it.
  assert feats[0, 0, 3 * 64] == pytest.approx(0.0, abs=1e-6)
  assert feats[1, 0, 3 * 64] == pytest.approx(np.sin(np.log(4.0) * 0.25), rel=1e-5)


def test_smoke_train_resumes_and_evaluates(trained):
  workdir, _, state = trained
  assert int(state.step) == 4
  steps = sorted(int(p.name) for p in pathlib.Path(workdir, 'checkpoints').iterdir()
                 if p.name.isdigit())
  assert steps[-1] == 4 and 3 in steps
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  losses_by_step = [r['step'] for r in rows if 'train/loss' in r]
  assert losses_by_step == [1, 2, 3, 4]  # The second run started at step 4 (resumed).
  evals = [r for r in rows if 'eval/average_jaccard' in r]
  assert evals and all(0.0 <= r['eval/average_jaccard'] <= 1.0 for r in evals)


def test_offline_evaluation_repeats_the_last_training_time_eval(trained, capsys):
  workdir, _, _ = trained
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  last = [r for r in rows if 'eval/average_jaccard' in r][-1]
  assert last['step'] == 4  # the last step of the resumed run, its latest checkpoint
  trained_metrics = {k[len('eval/'):]: v for k, v in last.items() if k.startswith('eval/')}
  assert set(trained_metrics) == {'average_jaccard', 'occlusion_accuracy',
                                  'average_pts_within_thresh', 'mean_error'}
  out = evaluate.main(['--workdir', workdir, '--eval', 'eval'])
  assert (out['eval'], out['type'], out['step']) == ('eval', 'trajan3d.held_out', 4)
  assert 'eval (trajan3d.held_out) at step 4' in capsys.readouterr().out
  assert set(out['metrics']) == set(trained_metrics)
  for key, value in trained_metrics.items():
    assert math.isfinite(value), key
    assert out['metrics'][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
  assert 0.0 <= out['metrics']['average_jaccard'] <= 1.0 and out['metrics']['mean_error'] > 0
  with open(os.path.join(workdir, 'eval_eval.json')) as f:
    assert json.load(f)['metrics'] == out['metrics']


def test_evaluate_writes_tapvid3d_layout(trained, tmp_path):
  workdir, clips, _ = trained
  out = str(tmp_path / 'pred')
  results = evaluate_tapvid3d.main([
      '--checkpoint', workdir, '--tapvid3d_dir', clips, '--glob', '*.npz', '--out', out,
      '--no_progress'])
  for name in ('clip_0000.npz', 'clip_0001.npz'):
    pred = tapvid3d.load_predictions(os.path.join(out, name))
    gt = tapvid3d.load_clip(os.path.join(out + '_heldout_gt', name))
    full = tapvid3d.load_clip(os.path.join(clips, name))
    # Held-out: 6 query tracks of 24, time first, same frames as the clip.
    assert pred.tracks_xyz.shape == (FRAMES, 6, 3) == gt.tracks_xyz.shape
    assert pred.visibility.shape == (FRAMES, 6) and pred.visibility.dtype == np.bool_
    assert full.tracks_xyz.shape == (FRAMES, TRACKS, 3)
  saved = json.load(open(os.path.join(out, 'results.json')))
  assert saved['protocol'] == 'heldout' and saved['failed_files'] == []
  assert saved['num_videos'] == {'.': 2}
  aj = saved['overall']['median']['average_jaccard']
  assert 0.0 <= aj <= 1.0 and aj == results['overall']['median']['average_jaccard']
  results = evaluate_tapvid3d.main([
      '--checkpoint', workdir, '--tapvid3d_dir', clips, '--glob', '*.npz', '--out',
      str(tmp_path / 'self'), '--protocol', 'self', '--no_progress'])
  pred = tapvid3d.load_predictions(str(tmp_path / 'self' / 'clip_0000.npz'))
  assert pred.tracks_xyz.shape == (FRAMES, TRACKS, 3)
  assert results['failed_files'] == []


def test_score_clean_vs_corrupted(trained, tmp_path):
  workdir, clips, _ = trained
  clean = score.load_track_file(os.path.join(clips, 'clip_0000.npz'))
  bad = score.corrupt_track_set(clean, seed=1, jitter=0.2, teleport_fraction=1.0,
                                teleport_scale=1.0)
  np.savez(tmp_path / 'corrupted.npz', tracks=bad.tracks, visibility=bad.visibility,
           fx_fy_cx_cy=clean.intrinsics, frame_size=np.asarray(clean.frame_size))
  out = str(tmp_path / 'scores.csv')
  rows = score.main(['--tracks', os.path.join(clips, 'clip_0000.npz'),
                     str(tmp_path / 'corrupted.npz'), '--checkpoint', workdir,
                     '--out', out, '--plot', str(tmp_path / 'scores.png')])
  assert [r['name'] for r in rows] == ['clip_0000', 'corrupted']
  assert all(np.isfinite(r['score']) and 0 <= r['score'] <= 1 for r in rows)
  assert rows[1]['mean_error'] > rows[0]['mean_error']
  table = list(csv.DictReader(open(out)))
  assert [float(r['score']) for r in table] == pytest.approx([r['score'] for r in rows])
  per_frame = list(csv.DictReader(open(str(tmp_path / 'scores_per_frame.csv'))))
  assert len(per_frame) == 2 * FRAMES
  assert os.path.getsize(tmp_path / 'scores.png') > 1000


def test_malformed_track_files_give_clear_errors(tmp_path):
  t, n = 4, 3
  good = {'tracks': np.zeros((t, n, 3), np.float32), 'visibility': np.ones((t, n), bool)}
  cases = {
      'missing.npz': ({'tracks': good['tracks']}, "field 'visibility' missing"),
      'shape.npz': ({**good, 'visibility': np.ones((t, n + 1))}, 'field "visibility"'),
      'dims.npz': ({**good, 'tracks': np.zeros((t, n, 4))}, 'field "tracks"'),
      'nan.npz': ({**good, 'tracks': np.full((t, n, 3), np.nan, np.float32)},
                  'non-finite'),
      'object.npz': ({**good, 'tracks': np.array([None, 1], dtype=object)},
                     "field 'tracks' cannot be read without pickle"),
      'focal.npz': ({**good, 'fx_fy_cx_cy': np.asarray([0.0, 1.0, 2.0, 2.0])},
                    'field "fx_fy_cx_cy"'),
  }
  for name, (arrays, message) in cases.items():
    path = tmp_path / name
    np.savez(path, **arrays)
    with pytest.raises(score.TrackFileError, match=message) as err:
      score.load_track_file(path)
    assert name in str(err.value)
  (tmp_path / 'text.npz').write_text('not a zip')
  with pytest.raises(score.TrackFileError, match='text.npz: not an .npz'):
    score.load_track_file(tmp_path / 'text.npz')
  # 2D tracks cannot be scored by a 3D model without depth and intrinsics.
  np.savez(tmp_path / 'flat.npz', tracks=np.zeros((t, n, 2)), visibility=good['visibility'])
  flat = score.load_track_file(tmp_path / 'flat.npz')
  with pytest.raises(input_pipeline.TrackFileError, match='"depth"'):
    input_pipeline.model_tracks(flat, 'xyz')


def test_build_method_rejects_unknown_keys_by_full_name(tmp_path):
  config = tiny_config(str(tmp_path / 'synthetic'))
  config.loss.visibility_wieght = 1.0
  with pytest.raises(ValueError, match=r"config key 'loss.visibility_wieght' is not known; did "
                                       r"you mean 'loss.visibility_weight'\?"):
    task.build_method(config, str(tmp_path))
  config = tiny_config(str(tmp_path / 'synthetic'))
  config.data.dir = '/data'  # the old name of data.train_dir
  with pytest.raises(ValueError, match=r"config key 'data.dir' is not known; did you mean one "
                                       r"of 'data.eval_dir', 'data.train_dir'\?"):
    task.build_method(config, str(tmp_path))
  config = tiny_config(str(tmp_path / 'synthetic'))
  config.eval = {'every_steps': 2}  # the section's name before config.evals
  with pytest.raises(ValueError, match=r"config key 'eval' is not known; did you mean "
                                       r"'evals'\?"):
    task.build_method(config, str(tmp_path))


def test_held_out_evaluator_names_bad_keys_and_missing_clips(tmp_path):
  config = tiny_config(str(tmp_path / 'synthetic'))
  config.evals.eval.num_clip = 2
  with pytest.raises(ValueError, match=r"config key 'evals.eval.num_clip' is not known; did "
                                       r"you mean 'evals.eval.num_clips'\?"):
    evaluators_lib.build(config, str(tmp_path), 'eval')
  config = tiny_config(str(tmp_path / 'synthetic'))
  config.data.synthetic.num_eval = 0  # no held-out clips rendered, no data.eval_dir
  with pytest.raises(FileNotFoundError, match='trajan3d.held_out found no .npz clips'):
    evaluators_lib.build(config, str(tmp_path), 'eval')
