"""3DPoV fine-tuning through the engine: data reader, training steps, resume, EMA, export."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import dpov as dpov_config
from tapkit.models import vit as bb
from dpov_jax import data, export, match_eval, task
from dpov_jax import loss as pov_loss
from tapkit.train import checkpoint as engine_ckpt
from tapkit.train import compile_cache, launch, loop

MOMENTUM = 0.9


def _tiny_config(total_steps: int):
  config = dpov_config.get_config('smoke')
  config.backbone.name = 'smoke'  # width 32 (the preset's `tiny` is wider); random init:
  config.pretrain.steps = 0  # the pre-trained start is tested in test_pretrain.py
  config.backbone.num_layers = 3  # block_0 frozen, blocks 1-2 trained
  config.optimizer.groups = ((r'^backbone/block_(1|2)/', 0.1), (r'^backbone/', 0.0))
  config.head.features = (16, 16)
  config.loss.update({'nmb_ref': 2, 'compare_period': 1})
  config.data.update({'input_size': 56, 'num_frames': 3, 'regular_step': 1,
                      'grid_size': 4})
  config.data.synthetic.update({'num_train': 4, 'num_eval': 2})
  config.evals.eval.update({'every_steps': 2, 'num_clips': 2, 'batch_size': 2})
  config.ema.momentum = MOMENTUM
  config.batch_size = 2
  config.total_steps = total_steps
  config.log_every = 1
  config.checkpoint.update({'every_steps': 1, 'keep': 10, 'async_save': False})
  return config


# A module-scoped fixture is built once per xdist worker: one group keeps the file's tests on one
# worker under `--dist loadgroup` (the README's test command), so the expensive run is made once.
pytestmark = pytest.mark.xdist_group('dpov_train')


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """Trains 2 steps, then resumes to 3 (checkpoints 1, 2, 3).

  The resumed run builds a new method, so its step is a new function for jit: JAX's
  persistent compilation cache (as the quickstart uses it) gives it the first run's
  compiled programs (the same executables) instead of compiling them again.
  """
  workdir = str(tmp_path_factory.mktemp('dpov'))
  with compile_cache.compilation_cache(tmp_path_factory.mktemp('jax_cache')):
    config = _tiny_config(2)
    launch.save_config(config, workdir)
    loop.train(config, workdir, task.build_method(config, workdir))
    config = _tiny_config(3)
    state = loop.train(config, workdir, task.build_method(config, workdir))
  return workdir, config, state


def _flat(tree):
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_steps_resume_and_frozen_blocks(run):
  workdir, config, state = run
  assert int(state.step) == 3
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints'))
                if s.isdigit()) == [1, 2, 3]
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  losses = [r['train/loss'] for r in rows if 'train/loss' in r]
  assert len(losses) == 3 and all(np.isfinite(losses)) and all(l > 0 for l in losses)
  # Resumed run really continued from checkpoint 2: step 3 differs from it.
  _, s2 = engine_ckpt.load_state_numpy(workdir, 2)
  start = _flat(task.initial_backbone_params(config))
  final = _flat(jax.device_get(state.params['backbone']))
  at2 = _flat(s2['params']['backbone'])
  assert set(start) == set(final)
  for name, value in final.items():
    if name.startswith(('block_1/', 'block_2/')):
      if not name.endswith('gamma'):
        assert not np.allclose(value, start[name]), name  # trained
    else:
      np.testing.assert_array_equal(value, start[name], err_msg=name)  # frozen
  assert not np.allclose(final['block_2/mlp/fc1/kernel'], at2['block_2/mlp/fc1/kernel'])


def test_teacher_is_ema_of_student(run):
  workdir, _, _ = run
  _, s1 = engine_ckpt.load_state_numpy(workdir, 1)
  _, s2 = engine_ckpt.load_state_numpy(workdir, 2)
  for name, p2 in _flat(s2['params']).items():
    e1, e2 = _flat(s1['ema_params'])[name], _flat(s2['ema_params'])[name]
    np.testing.assert_allclose(e2, MOMENTUM * e1 + (1 - MOMENTUM) * p2, rtol=1e-5, atol=1e-7,
                               err_msg=name)
  # The frozen parts of the teacher equal the student's.
  np.testing.assert_array_equal(s2['ema_params']['backbone']['block_0']['mlp']['fc1']['kernel'],
                                s2['params']['backbone']['block_0']['mlp']['fc1']['kernel'])
  assert not np.array_equal(s2['ema_params']['head']['linear_0']['kernel'],
                            s2['params']['head']['linear_0']['kernel'])


def test_eval_hook_and_match_eval_cli(run, capsys):
  workdir, _, _ = run
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  evals = [r for r in rows if 'eval/match_acc' in r]
  assert [r['step'] for r in evals] == [2, 3]
  assert 0.0 <= evals[-1]['eval/match_acc'] <= 1.0
  out = match_eval.main(['--workdir', workdir])
  assert out['step'] == 3
  assert out['rows']['student @ 3']['acc'] == pytest.approx(evals[-1]['eval/match_acc'])
  assert 'start backbone' in capsys.readouterr().out


@pytest.mark.parametrize('layout,ext', [('transformers', '.safetensors'), ('hub', '.npz')])
def test_export_round_trip(run, tmp_path, layout, ext):
  workdir, config, state = run
  out = str(tmp_path / f'backbone{ext}')
  export.main(['--workdir', workdir, '--out', out, '--layout', layout])
  meta = json.load(open(out + '.json'))
  assert meta['num_layers'] == 3 and meta['step'] == 3
  cfg = task.backbone_config(config)
  module, params = bb.load_checkpoint(out, arch=cfg)
  images = jax.random.normal(jax.random.PRNGKey(0), (2, 56, 56, 3))
  ours = task.build_backbone(config).apply(
      {'params': jax.device_get(state.params['backbone'])}, images)
  np.testing.assert_array_equal(np.asarray(module.apply({'params': params}, images)),
                                np.asarray(ours))


def test_groups_must_match_trainable_blocks():
  config = _tiny_config(1)
  config.optimizer.groups = ((r'^backbone/block_(10|11)/', 0.1), (r'^backbone/', 0.0))
  with pytest.raises(ValueError, match='config.optimizer.groups'):
    task.check_trainable_groups(config, task.backbone_config(config))
  config.optimizer.groups = ((r'^backbone/block_(1|2)/', 0.1), (r'^backbone/', 0.0))
  names = task.check_trainable_groups(config, task.backbone_config(config))
  assert names and all(n.startswith(('backbone/block_1/', 'backbone/block_2/')) for n in names)


def test_default_preset_groups_and_curriculum():
  config = dpov_config.get_config('default')
  cfg = task.backbone_config(config)
  assert (cfg.name, cfg.num_layers, cfg.num_register_tokens) == ('dinov2_vitb14_reg', 12, 4)
  names = task.check_trainable_groups(config, cfg)
  assert len(names) == 2 * 18  # per block: 2 norms x 2, 4 attn x 2, 2 mlp x 2, 2 layerscales
  steps = jnp.arange(0, 3000)
  ours = np.asarray(task.frames_to_compare(steps, 1085))
  ref = np.asarray([pov_loss.released_frames_to_compare(int(s)) for s in steps])
  np.testing.assert_array_equal(ours, ref)


def test_reachable_curriculum_values_are_those_the_steps_take():
  # The loss compiles one branch per curriculum value the run reaches: the smoke run's 300
  # steps (period 1085, T = 4) take values 0 and 1 only; longer runs reach the clip at T - 2.
  for total, period, t in ((300, 1085, 4), (1, 1085, 4), (1087, 1085, 4), (5000, 1085, 4),
                           (40, 7, 6), (10, 3, 2)):
    counter = np.asarray(task.frames_to_compare(jnp.arange(total), period))
    taken = set(np.clip(counter, 0, t - 2).tolist())
    reach = task.reachable_frames_to_compare(total, period, t)
    assert set(reach) == taken, (total, period, t)
  assert list(task.reachable_frames_to_compare(300, 1085, 4)) == [0, 1]
  assert list(task.reachable_frames_to_compare(0, 1085, 4)) == [0, 1, 2]  # unknown length


# ------------------------------------------------------------------------------------ data


def _write_video(root, video, num_frames, hw):
  d = root / 'frames' / video
  d.mkdir(parents=True)
  for t in range(num_frames):
    rgb = np.full((*hw, 3), 10 * t, np.uint8)
    rgb[0, 0] = 255  # marks the top-left corner
    Image.fromarray(rgb).save(d / f'{t:05d}.png')


def _tracks(num_frames, n):
  g = np.random.default_rng(0)
  return g.uniform(0, 20, (num_frames, n, 2)).astype(np.float32)


def test_clip_frame_positions():
  np.testing.assert_array_equal(data.clip_frame_positions(31, 4, 10), [0, 10, 20, 30])
  np.testing.assert_array_equal(data.clip_frame_positions(30, 4, 10), [0, 9, 18, 27])
  np.testing.assert_array_equal(data.clip_frame_positions(2, 4, 10), [0, 1, 1, 1])


def test_frame_window_source_resize_crop_and_flip(tmp_path):
  _write_video(tmp_path, 'vid', 5, (40, 60))
  tracks = np.zeros((5, 4, 2), np.float32)
  tracks[:, :, 0] = [0.0, 29.5, 59.0, 10.0]  # x in a 60-px-wide, 40-px-high frame
  tracks[:, :, 1] = [0.0, 19.5, 39.0, 5.0]
  vis = np.ones((5, 4), bool)
  vis[2, 3] = False
  data.write_tracks_file(tmp_path / 'tracks' / 'vid' / 'w0.npz', tracks, vis,
                         np.arange(5), (40, 60))
  src = data.FrameWindowSource(tmp_path / 'frames', tmp_path / 'tracks', input_size=20,
                               num_clip_frames=3, regular_step=2, grid_size=2)
  rec = src[0]
  assert rec['frames'].shape == (3, 20, 20, 3) and rec['frames'].dtype == np.uint8
  # Frames 0, 2, 4 of the window; resize maps x' = (x + 0.5) * 20 / 60 - 0.5.
  np.testing.assert_allclose(rec['tracks'][0, :, 0], (tracks[0, :, 0] + 0.5) / 3 - 0.5,
                             rtol=1e-6)
  np.testing.assert_allclose(rec['tracks'][0, :, 1], (tracks[0, :, 1] + 0.5) / 2 - 0.5,
                             rtol=1e-6)
  assert rec['visibility'][:, 3].tolist() == [True, False, True]
  assert rec['frames'][1, 10, 10, 0] == 20  # video frame 2
  crop = data.FrameWindowSource(tmp_path / 'frames', tmp_path / 'tracks', input_size=20,
                                num_clip_frames=3, regular_step=2, grid_size=2,
                                transform='center_crop')[0]
  # Central 20 x 20 of 40 x 60: top 10, left 20; only the centre point stays inside.
  np.testing.assert_allclose(crop['tracks'][0, 1], [9.5, 9.5])
  assert crop['visibility'][0].tolist() == [False, True, False, False]
  flipped = data.RandomClipFlip(1.0).random_map(rec, np.random.default_rng(0))
  np.testing.assert_allclose(flipped['tracks'][..., 0], 19 - rec['tracks'][..., 0])
  np.testing.assert_array_equal(flipped['frames'], rec['frames'][:, :, ::-1])


def test_mixture_proportional_and_ratios():
  from tapkit.data.pipeline import SequenceSource
  a, b = SequenceSource(['a'] * 30, 'a'), SequenceSource(['b'] * 10, 'b')
  prop = data.MixtureSource({'a': a, 'b': b})
  assert len(prop) == 40 and prop.locate(29) == ('a', 29) and prop.locate(30) == ('b', 0)
  assert prop.probabilities == {'a': 0.75, 'b': 0.25}
  mix = data.MixtureSource({'a': a, 'b': b}, {'a': 0.2, 'b': 0.8}, mode='ratios', seed=3)
  names = [mix.locate(i)[0] for i in range(2000)]
  assert abs(names.count('b') / 2000 - 0.8) < 0.03
  assert names == [mix.locate(i)[0] for i in range(2000)]  # deterministic
  with pytest.raises(ValueError, match='ratio'):
    data.MixtureSource({'a': a}, {'a': 0.0}, mode='ratios')


def test_frame_indices_beyond_folder(tmp_path):
  _write_video(tmp_path, 'v', 2, (8, 8))
  data.write_tracks_file(tmp_path / 'tracks' / 'v' / 'w.npz', np.zeros((3, 1, 2)),
                         np.ones((3, 1), bool), np.arange(3), (8, 8))
  src = data.FrameWindowSource(tmp_path / 'frames', tmp_path / 'tracks', input_size=8,
                               num_clip_frames=2, regular_step=1, grid_size=1)
  with pytest.raises(data.TracksFileError, match="frame_indices': reaches 2 but .* has 2 frames"):
    src[0]


# ------------------------------------------------------------------------------ strict config


def test_build_method_rejects_unknown_keys_by_full_name(tmp_path):
  config = _tiny_config(1)
  config.loss.teacher_refrence_grad = False
  with pytest.raises(ValueError, match=r"config key 'loss.teacher_refrence_grad' is not known; "
                                       r"did you mean 'loss.teacher_reference_grad'\?"):
    task.build_method(config, str(tmp_path))
  config = _tiny_config(1)
  config.data.num_clip_frames = 3  # the old name of data.num_frames
  with pytest.raises(ValueError, match=r"config key 'data.num_clip_frames' is not known"):
    task.build_method(config, str(tmp_path))
  config = _tiny_config(1)
  config.data.sources.mine = dict(config.data.sources.ytvos.to_dict(), tracks_rot='x')
  with pytest.raises(ValueError, match=r"'data.sources.mine.tracks_rot' is not known; did you "
                                       r"mean 'data.sources.mine.tracks_root'\?"):
    task.build_method(config, str(tmp_path))
  with pytest.raises(ValueError, match=r"config key 'loss.crop_ration' is not known"):
    pov_loss.LossConfig.from_config({'crop_ration': 0.5})
  assert pov_loss.LossConfig.from_config({'nmb_ref': 3}) == pov_loss.LossConfig(nmb_ref=3)


def test_train_dir_is_a_named_source_in_the_synthetic_layout(tmp_path):
  config = _tiny_config(1)
  roots = task.synthetic_roots(config, str(tmp_path), 'train', 2)
  config.data.synthetic.num_train = 0
  config.data.train_dir = os.path.dirname(roots[0])
  source = task.train_source(config, str(tmp_path))
  reference = task._window_source(config, *roots, name='reference')
  assert source.names == ['train'] and len(source) == len(reference) > 0
  np.testing.assert_array_equal(source[0]['tracks'], reference[0]['tracks'])
