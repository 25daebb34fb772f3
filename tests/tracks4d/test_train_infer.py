"""TracksTo4D training task, engine smoke run + resume, and the inference CLI pieces."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tracks4d as t4d_config
from tapkit.data import synthetic, tapvid3d, tracks4d_format
from tapkit.train import checkpoint as engine_ckpt
from tapkit.train import compile_cache, launch, loop
from tapkit.train.state import TrainState
from tapkit.viz import tracks3d
from tracks4d import infer, losses, task


def _tiny_config(total_steps: int):
  config = t4d_config.get_config('smoke')
  config.model.update({'width': 16, 'num_heads': 2, 'head_dim': 8, 'mlp_dim': 32,
                       'num_bases': 4, 'camera_kernel_size': 3})
  config.data.update({'max_points': 24, 'min_points': 4, 'first_phase_frames': 16})
  config.data.synthetic.update({'num_train': 2, 'num_eval': 1, 'num_frames': 16,
                                'height': 32, 'width': 40, 'num_tracks': 60})
  config.schedule.update({'camera_init_until_epoch': 1, 'clamp_from_epoch': 1})
  config.evals.eval.update({'every_steps': 2, 'max_frames': 16, 'max_points': 40})
  config.optimizer.warmup_steps = 1
  config.total_steps = total_steps
  config.log_every = 1
  config.checkpoint.every_steps = 2
  config.checkpoint.async_save = False
  return config


# A module-scoped fixture is built once per xdist worker: one group keeps the file's tests on one
# worker under `--dist loadgroup` (the README's test command), so the expensive run is made once.
pytestmark = pytest.mark.xdist_group('tracks4d_train')


@pytest.fixture(scope='module', autouse=True)
def _compile_cache(tmp_path_factory):
  """JAX's persistent compilation cache for this file's tests: the resumed run and
  `infer_video` build the step, the evaluation and the model's apply again, and get the
  programs compiled before (bit-identical executables) instead of compiling them again."""
  with compile_cache.compilation_cache(tmp_path_factory.mktemp('jax_cache')):
    yield


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('t4d_run'))
  config = _tiny_config(total_steps=4)
  launch.save_config(config, workdir)
  state = loop.train(config, workdir, task.build_method(config, workdir))
  return workdir, config, state


def _metric_rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_smoke_train_writes_checkpoint_and_resumes(trained_workdir):
  workdir, config, state = trained_workdir
  assert int(state.step) == 4
  step, saved = engine_ckpt.load_state_numpy(workdir)
  assert step == 4
  # Steps 0-1 are the camera-initialisation epoch (2 files, batch 1); then total loss.
  rows = _metric_rows(workdir)
  phase = {r['step']: r['train/camera_init_phase'] for r in rows if 'train/camera_init_phase' in r}
  assert phase[1] == 1.0 and phase[4] == 0.0
  evals = [r for r in rows if 'eval/ate' in r]
  assert [r['step'] for r in evals] == [2, 4]
  assert np.isfinite(evals[-1]['eval/ate']) and evals[-1]['eval/ate'] > 0
  assert 0 < evals[-1]['eval/abs_rel'] < 10

  # Resume: same workdir, longer run -> restores step 4 and continues to 6.
  config6 = _tiny_config(total_steps=6)
  state6 = loop.train(config6, workdir, task.build_method(config6, workdir))
  assert int(state6.step) == 6
  assert engine_ckpt.load_state_numpy(workdir)[0] == 6
  steps = [r['step'] for r in _metric_rows(workdir) if 'train/loss' in r]
  assert steps[-2:] == [5, 6] and steps.count(3) == 1  # no step was redone
  changed = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()),
                         state6.params, saved['params'])
  assert max(jax.tree.leaves(changed)) > 0


def test_sample_windows_fixed_shapes():
  clip = synthetic.generate_clip((3, 0), 30, 32, 40, 80)
  arrays = tracks4d_format.clip_to_tracks4d(clip)
  transform = task.SampleWindows(max_points=50, first_phase_frames=22, max_cameras=26,
                                 random_windows=True)
  out = transform.random_map({'arrays': arrays, 'path': 'x'}, np.random.default_rng(0))
  assert out['fixed/tracks'].shape == (50, 3, 22)
  assert out['fixed/visible'].shape == (22, 50)
  assert out['random/tracks'].shape == (50, 3, 25)
  assert out['random/frame_mask'].shape == (25,)
  num_f = int(out['random/frame_mask'].sum())
  assert 20 <= num_f <= 25
  assert not out['random/visible'][num_f:].any()  # padded frames are invisible
  n_real = int(out['fixed/num_points'])
  assert 0 < n_real <= 50 and out['fixed/point_mask'].sum() == n_real
  assert not out['fixed/visible'][:, n_real:].any()  # padded points are invisible


def test_loss_phases_switch_by_step():
  net = task.build_model({'width': 16, 'num_layers': 1, 'num_heads': 2, 'head_dim': 8,
                          'mlp_dim': 32, 'num_bases': 4, 'camera_kernel_size': 3})
  rng = np.random.default_rng(0)
  n, f = 12, 16
  tracks = np.concatenate([rng.uniform(-0.5, 0.5, (1, n, 2, f)), np.ones((1, n, 1, f))], 2)
  batch = {'fixed/tracks': jnp.asarray(tracks, jnp.float32),
           'fixed/visible': jnp.ones((1, f, n), bool),
           'fixed/point_mask': jnp.ones((1, n), bool),
           'fixed/frame_mask': jnp.ones((1, f), bool)}
  params = net.init(jax.random.PRNGKey(0), batch['fixed/tracks'])['params']
  phases = task.PhaseSteps(steps_per_epoch=1, camera_init_until=3, clamp_from=5,
                           random_window_from=-1)
  loss_fn = jax.jit(task.make_loss_fn(net, phases, {}, 100.0, random_windows=False))
  out = net.apply({'params': params}, batch['fixed/tracks'])
  init = float(losses.camera_init_loss(out.translations, out.rotations))
  total = float(losses.loss_terms(out, batch['fixed/tracks'], batch['fixed/visible'])['loss_total'])

  def state(step, done=0):
    return TrainState(step=jnp.asarray(step), params=params, opt_state=None, ema_params=None,
                      extra={'camera_init_done': jnp.asarray(done)}, rng=None,
                      skipped_steps=None, consecutive_bad=None)

  loss0, (aux0, extra0) = loss_fn(params, batch, None, state(0))
  np.testing.assert_allclose(float(loss0), init, rtol=1e-5)
  assert float(aux0['camera_init_phase']) == 1.0 and int(extra0['camera_init_done']) == 0
  # Flag set: the warm-up is over even before its last step.
  loss_done, _ = loss_fn(params, batch, None, state(1, done=1))
  np.testing.assert_allclose(float(loss_done), total, rtol=1e-5)
  loss4, _ = loss_fn(params, batch, None, state(4))
  np.testing.assert_allclose(float(loss4), total, rtol=1e-5)
  loss6, _ = loss_fn(params, batch, None, state(6))
  np.testing.assert_allclose(float(loss6), min(total, 100.0), rtol=1e-5)

  # Random windows from step 2 on: the 'random/' sample (here 12 of 14 frames real)
  # replaces the fixed one; padded frames are left out of the losses.
  f2 = 14
  rtracks = np.concatenate([tracks[..., :12], np.repeat(tracks[..., 11:12], 2, -1)], -1)
  rvis = np.arange(f2) < 12
  batch.update({'random/tracks': jnp.asarray(rtracks, jnp.float32),
                'random/visible': jnp.asarray(np.broadcast_to(rvis[None, :, None], (1, f2, n))),
                'random/point_mask': jnp.ones((1, n), bool),
                'random/frame_mask': jnp.asarray(rvis[None])})
  phases_r = task.PhaseSteps(1, camera_init_until=0, clamp_from=100, random_window_from=2)
  loss_fn_r = jax.jit(task.make_loss_fn(net, phases_r, {}, 100.0, random_windows=True))
  # Random windows are padded to a fixed length; the frame mask makes the real frames'
  # outputs and losses those of the unpadded window.
  fmask = batch['random/frame_mask']
  out_r = net.apply({'params': params}, batch['random/tracks'], None, fmask)
  total_r = float(losses.loss_terms(out_r, batch['random/tracks'],
                                    batch['random/visible'] & fmask[:, :, None])['loss_total'])
  loss_r1, (aux_r1, _) = loss_fn_r(params, batch, None, state(1))
  loss_r3, (aux_r3, _) = loss_fn_r(params, batch, None, state(3))
  np.testing.assert_allclose(float(loss_r1), total, rtol=1e-5)
  np.testing.assert_allclose(float(loss_r3), total_r, rtol=1e-5)
  assert float(aux_r1['random_window']) == 0.0 and float(aux_r3['random_window']) == 1.0
  assert total_r != pytest.approx(total)


def test_default_preset_is_the_paper_network():
  config = t4d_config.get_config()
  net = task.build_model(config.model)
  shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, 4, 3, 22)))
  assert sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)) == 12_826_325
  assert (config.batch_size, config.optimizer.lr, config.data.max_points) == (1, 1e-4, 100)
  assert (config.data.first_phase_frames, config.data.max_cameras) == (22, 50)
  with pytest.raises(ValueError, match=r"config key 'model.widht' is not known; did you mean "
                                       r"'model.width'\?"):
    task.build_model({'widht': 3})


def test_build_method_rejects_unknown_keys_by_full_name(tmp_path):
  config = _tiny_config(total_steps=1)
  config.loss.reprojection_dynamic_cof = 1.0
  with pytest.raises(ValueError, match=r"config key 'loss.reprojection_dynamic_cof' is not "
                                       r"known; did you mean 'loss.reprojection_dynamic_coeff'\?"):
    task.build_method(config, str(tmp_path))
  config = _tiny_config(total_steps=1)
  config.data.synthetic.num_train_clips = 2  # the old name
  with pytest.raises(ValueError, match=r"'data.synthetic.num_train_clips' is not known; did "
                                       r"you mean 'data.synthetic.num_train'\?"):
    task.build_method(config, str(tmp_path))
  config = _tiny_config(total_steps=1)
  config.evals.eval.max_frame = 3
  with pytest.raises(ValueError, match=r"'evals.eval.max_frame' is not known; did you mean "
                                       r"'evals.eval.max_frames'\?"):
    loop.train(config, str(tmp_path / 'run'), task.build_method(config, str(tmp_path / 'run')))


@pytest.mark.parametrize('finetune_steps', [0, 2])
def test_infer_writes_outputs(trained_workdir, tmp_path, finetune_steps):
  workdir, _, _ = trained_workdir
  clip = synthetic.generate_clip((11, 0), 16, 32, 40, 60)
  t4d_path = str(tmp_path / 'video_t4d.npz')
  tracks4d_format.save_tracks4d_npz(t4d_path, tracks4d_format.clip_to_tracks4d(clip))
  tapvid_path = str(tmp_path / 'video_tapvid.npz')
  tapvid3d.save_clip(tapvid_path, clip, frames_format='raw')
  out_dir = str(tmp_path / 'out')
  bad_path = str(tmp_path / 'broken.npz')
  with open(bad_path, 'wb') as f:
    f.write(b'PK\x03\x04 truncated')
  result = infer.run(os.path.join(workdir, 'checkpoints', '4'),
                     [t4d_path, bad_path, tapvid_path], out_dir,
                     finetune_steps=finetune_steps, max_points=40)

  assert result['checkpoint'].endswith('(step 4)')
  # The bad clip is listed with its reason; the clips after it are still processed.
  assert [f['video'] for f in result['failed']] == [bad_path]
  assert 'broken.npz' in result['failed'][0]['reason']
  rows = result['videos']
  assert [r['video'] for r in rows] == ['video_t4d', 'video_tapvid']
  for r in rows:
    assert r['num_frames'] == 16 and 0 < r['num_points'] <= 40
    assert np.isfinite(r['ate']) and np.isfinite(r['abs_rel']) and r['pixel_error'] > 0
  # Both input kinds describe the same clip: identical predictions.
  assert rows[0]['ate'] == pytest.approx(rows[1]['ate'], rel=1e-5)
  if finetune_steps:
    assert 'before_finetune' in rows[0] and rows[0]['finetune_loss_first'] > 0
  with open(os.path.join(out_dir, 'metrics.json')) as f:
    saved = json.load(f)
  assert saved['mean']['ate'] == pytest.approx(np.mean([r['ate'] for r in rows]))

  n, f = rows[0]['num_points'], 16
  with np.load(os.path.join(out_dir, 'video_t4d.npz')) as z:
    expected = {'points_world': (f, n, 3), 'points_static': (n, 3), 'points_camera': (f, n, 3),
                'depths': (f, n), 'w2c': (f, 4, 4), 'c2w': (f, 4, 4), 'intrinsics': (f, 3, 3),
                'focal_factor': (f,), 'motion_level': (n,), 'visible': (f, n),
                'tracks_normalised': (f, n, 2), 'track_indices': (n,), 'frame_start': ()}
    assert set(z.files) == set(infer.OUTPUT_KEYS) == set(expected)
    for key, shape in expected.items():
      assert z[key].shape == shape, key
    np.testing.assert_allclose(np.einsum('fij,fjk->fik', z['w2c'], z['c2w']),
                               np.broadcast_to(np.eye(4), (f, 4, 4)), atol=1e-4)
    # Camera-frame points = w2c applied to world points; depth is their z.
    cam = np.einsum('fij,fnj->fni', z['w2c'][:, :3, :3], z['points_world']) + z['w2c'][:, None, :3, 3]
    np.testing.assert_allclose(cam, z['points_camera'], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(z['depths'], z['points_camera'][..., 2], rtol=1e-6)
    assert (z['motion_level'] > 0).all()
    np.testing.assert_allclose(z['intrinsics'][0, 0, 0], clip.intrinsics[0], rtol=1e-6)
  with open(os.path.join(out_dir, 'video_t4d.html')) as fh:
    data = tracks3d.read_viewer_data(fh.read())
  assert data['num_frames'] == f and data['num_points'] == n
  assert len(data['cameras']['centers']) == f
  assert len(data['colors']) == n


def test_load_model_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='checkpoint not found'):
    infer.load_model(tmp_path / 'missing.pt')
  (tmp_path / 'checkpoints').mkdir()
  with pytest.raises(FileNotFoundError, match='config.json'):
    infer.load_model(tmp_path)
  bad = tmp_path / 'bad.npz'
  np.savez(bad, foo=np.zeros(3))
  with pytest.raises(ValueError, match='bad.npz.*neither a TracksTo4D'):
    task.load_clip_arrays(bad)
