"""3DPoV as an engine `Method`: EMA teacher-student ordering loss on tracked video patches.

Parameters: {'backbone': ViT params (tapkit.models.vit names, e.g. backbone/block_11/attn/...),
'head': ProjectionHead params (head/linear_0..3)}. The engine keeps `state.ema_params`, the EMA of
both (config.ema.momentum, 0.99), which is the teacher; `config.optimizer.groups`
freezes the backbone except its last `backbone.trainable_blocks` blocks, which train at lr/10,
while the head trains at lr. Frozen parameters are equal in student and teacher.

One step, batch {'frames' [B, T, H, W, 3] uint8, 'tracks' [B, T, N, 2] float32 input
pixels, 'visibility' [B, T, N] bool}:
  1. normalise the frames (data.normalize_frames) and run the student backbone on all B*T frames
     independently -> maps [B, T, Sh, Sw, D] (final-norm patch tokens);
  2. run the teacher backbone (ema_params, no gradient) on frame 0 of each clip -> [B, Sh, Sw, D];
  3. `loss.pov3d_loss`: sample at the tracks, heads + L2, references from the student maps,
     hard/soft diffsort, permutation cross-entropy over the compared frames.
The compared frames follow the released curriculum (`loss.compare_schedule='released'`):
frames_to_compare = 0 at step 0, then (step - 1) // compare_period + 1, clamped to [0, T - 2];
a `lax.switch` over the T - 1 possible frame sets keeps them static for the sorter.
Without config.ema.momentum the teacher is the current student (no gradient) - the release's
`use_EMA_teacher=False`.

Known deviation: the engine's AdamW applies weight decay (1e-5) to every trainable parameter,
while the release exempts biases and 1-D parameters; at lr <= 1e-6 the difference per step is
below 1e-11 relative.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import grain.python as grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from tapkit.data import synthetic
from tapkit.models import vit as bb
from dpov_jax import data
from dpov_jax import loss as pov_loss
from dpov_jax import matcher as matcher_lib
from dpov_jax import video_clips
from tapkit.train import config as config_lib
from tapkit.train import loop, optim
from tapkit.train import precision as precision_lib

# The config file whose base preset lists every key this method reads.
CONFIG_FILE = 'configs/dpov.py'

# Where `python -m dpov_jax.pretrain` leaves the pre-trained starting backbone of a run.
PRETRAIN_DIR = 'pretrain'
BACKBONE_FILE = 'backbone.safetensors'


def pretrained_path(workdir: str | os.PathLike) -> str:
  """<workdir>/pretrain/backbone.safetensors (absolute)."""
  return os.path.abspath(os.path.join(os.fspath(workdir), PRETRAIN_DIR, BACKBONE_FILE))


def uses_pretraining(config: ml_collections.ConfigDict) -> bool:
  """True when the run's starting backbone comes from dpov_jax/pretrain.py.

  That is the case with `pretrain.steps > 0` and no `backbone.init_checkpoint`.
  """
  steps = int(config.get('pretrain', {}).get('steps', 0) or 0)
  return steps > 0 and not config.backbone.get('init_checkpoint', '')


def backbone_config(config: ml_collections.ConfigDict) -> bb.BackboneConfig:
  """The BackboneConfig of `config.backbone` (preset, source semantics, depth override)."""
  c = config.backbone
  overrides = {}
  if int(c.num_layers) > 0:
    overrides['num_layers'] = int(c.num_layers)
  return bb.get_config(c.name, source=c.source, **overrides)


def build_backbone(config: ml_collections.ConfigDict) -> bb.VisionTransformer:
  """The ViT with `config.remat` and the compute dtype of `config.precision`.

  Only the backbone computes in that dtype; its output tokens are float32 (final LayerNorm), so
  the projection head, the 3DPoV sorting network and the cross-entropy run in float32: the
  soft ranks compare small differences of projected distances, which bfloat16's 8-bit
  mantissa would round away.
  """
  return bb.VisionTransformer(backbone_config(config), remat=config.remat,
                              dtype=precision_lib.compute_dtype(config))


def initial_backbone_params(config: ml_collections.ConfigDict,
                            workdir: str | os.PathLike | None = None) -> dict:
  """The starting backbone: `backbone.init_checkpoint` if set; else, with `pretrain.steps > 0`,
  the pre-trained <workdir>/pretrain/backbone.safetensors (written by `python -m
  dpov_jax.pretrain`, never trained here); else the random init of the preset from
  PRNGKey(backbone.init_seed) (identical in every run with the config).

  Raises:
    FileNotFoundError naming the file and the command that writes it when the config
    pre-trains and the file is missing.
  """
  cfg = backbone_config(config)
  path = config.backbone.init_checkpoint
  if not path and uses_pretraining(config):
    if workdir is None:
      raise ValueError('this config pre-trains its backbone (pretrain.steps > 0): the starting '
                       'backbone lives in the run directory, pass workdir')
    path = pretrained_path(workdir)
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f'{path}: the pre-trained starting backbone is missing (config.pretrain.steps='
          f'{int(config.pretrain.steps)} > 0 and no config.backbone.init_checkpoint). Pre-train '
          'it first, with the same --config and --config.* overrides as this run: python -m '
          f'dpov_jax.pretrain --config configs/dpov.py:smoke --workdir {workdir}. Or start '
          'from weights (--config.backbone.init_checkpoint=FILE) or from the random init '
          '(--config.pretrain.steps=0).')
  if path:
    _, params = bb.load_checkpoint(path, arch=cfg)
    return jax.tree.map(np.asarray, params)
  return bb.init_params(cfg, jax.random.PRNGKey(int(config.backbone.init_seed)))


def check_trainable_groups(config: ml_collections.ConfigDict, cfg: bb.BackboneConfig) -> list[str]:
  """Checks that optimizer.groups trains exactly the last `trainable_blocks` backbone blocks.

  Returns:
    the '/'-joined names of the trainable backbone parameters.
  Raises:
    ValueError naming config.optimizer.groups when the groups do something else.
  """
  k = int(config.backbone.trainable_blocks)
  shapes = {'backbone': bb.param_shapes(cfg)}
  mults = optim.param_lr_mults(shapes, tuple(config.optimizer.groups))
  flat = jax.tree_util.tree_flatten_with_path(mults)[0]
  want = {f'block_{i}' for i in range(max(cfg.num_layers - k, 0), cfg.num_layers)}
  trainable, wrong = [], []
  for path, mult in flat:
    name = optim.path_str(path)
    block = name.split('/')[1]
    should = block in want
    if (mult > 0) != should:
      wrong.append(f'{name} (lr_mult {mult:g})')
    if mult > 0:
      trainable.append(name)
  if wrong:
    blocks = '|'.join(str(i) for i in sorted(int(b.split('_')[1]) for b in want))
    raise ValueError(
        f'config.optimizer.groups={tuple(config.optimizer.groups)} does not train exactly the '
        f'last backbone.trainable_blocks={k} of {cfg.num_layers} blocks; wrong: {wrong[:6]}. Use '
        f"((r'^backbone/block_({blocks})/', 0.1), (r'^backbone/', 0.0)).")
  return trainable


def frames_to_compare(step: jax.Array, period: int) -> jax.Array:
  """The released code's curriculum counter: 0 at step 0, then (step - 1) // period + 1."""
  step = jnp.asarray(step, jnp.int32)
  return jnp.where(step <= 0, 0, (step - 1) // period + 1)


def reachable_frames_to_compare(total_steps: int, period: int, num_frames: int) -> range:
  """The curriculum values (clipped to [0, T - 2]) that steps 0 .. total_steps - 1 reach.

  The counter never decreases, so they form a range; without a known number of steps
  (total_steps <= 0) every value 0 .. T - 2.
  """
  top = max(num_frames - 2, 0)
  if total_steps <= 0:
    return range(top + 1)
  # This runs while the loss is traced: evaluate the schedule eagerly on constants.
  with jax.ensure_compile_time_eval():
    clip = lambda s: min(int(frames_to_compare(jnp.asarray(s), period)), top)
    return range(clip(0), clip(total_steps - 1) + 1)


def _loss_config(config: ml_collections.ConfigDict) -> pov_loss.LossConfig:
  return pov_loss.LossConfig.from_config(config.loss)


def make_loss_fn(module: bb.VisionTransformer, head: pov_loss.ProjectionHead,
                 config: ml_collections.ConfigDict):
  """loss_fn(params, batch, rng, state) -> (loss, aux) for the engine."""
  cfg = module.config
  lcfg = _loss_config(config)
  schedule = lcfg.compare_schedule
  period = int(lcfg.compare_period)
  total_steps = int(config.get('total_steps', 0) or 0)
  if schedule not in ('released', 'all_frames'):
    raise ValueError(f"config.loss.compare_schedule must be 'released' or 'all_frames', got "
                     f'{schedule!r}')

  def maps_of(backbone_params, frames):
    # frames [F, H, W, 3] float32 -> [F, Sh, Sw, D]
    tokens = module.apply({'params': backbone_params}, frames)
    return bb.tokens_to_feature_map(tokens, cfg.grid_size(*frames.shape[1:3]),
                                    cfg.num_prefix_tokens)

  groups = tuple(config.optimizer.groups)

  def without_frozen_grad(student: dict) -> dict:
    # The optimizer zeroes the gradients of parameters with lr_mult 0 (the frozen patch
    # embedding, tokens and first blocks): stopping them here skips their backward pass
    # (through the frozen blocks of all B*T frames), which changes no update.
    mults = optim.param_lr_mults(student, groups)
    return jax.tree.map(lambda p, m: p if m > 0 else jax.lax.stop_gradient(p), student, mults)

  def loss_fn(params, batch, rng, state):
    params = without_frozen_grad(params)
    frames = data.normalize_frames(batch['frames'])  # [B, T, H, W, 3]
    b, t, h, w, _ = frames.shape
    if t < 2:
      raise ValueError(f'config.data.num_frames must be >= 2, got {t}')
    teacher = state.ema_params if state.ema_params is not None else params
    teacher = jax.lax.stop_gradient(teacher)
    maps = maps_of(params['backbone'], frames.reshape(b * t, h, w, 3))
    maps = maps.reshape(b, t, *maps.shape[1:])  # [B, T, Sh, Sw, D]
    if lcfg.symmetric:
      tmaps = maps_of(teacher['backbone'], frames.reshape(b * t, h, w, 3))
      tmaps = tmaps.reshape(b, t, *tmaps.shape[1:])  # [B, T, Sh, Sw, D]
    else:
      tmaps = maps_of(teacher['backbone'], frames[:, 0])  # [B, Sh, Sw, D]
    tracks = batch['tracks'].astype(jnp.float32)
    vis = batch['visibility'].astype(bool)

    def objective(frame_set):
      def run(operands):
        head_s, head_t, m, tm = operands
        value, _ = pov_loss.pov3d_loss(
            {'params': head_s}, {'params': head_t}, m, tm, tracks, vis, rng,
            image_size=(h, w), patch_size=cfg.patch_size, frames=frame_set, config=lcfg,
            head=head)
        return value
      return run

    operands = (params['head'], teacher['head'], maps, tmaps)
    if schedule == 'all_frames':
      sets = [tuple(range(1, t))]
      ftc = jnp.zeros((), jnp.int32)
      value = objective(sets[0])(operands)
    else:
      # Only the curriculum values this run's steps reach get a branch (each branch holds
      # the whole sorting loss, so an unreachable one would only cost compile time).
      reachable = reachable_frames_to_compare(total_steps, period, t)
      sets = [pov_loss.compared_frames(k, t, 'released') for k in reachable]
      ftc = jnp.clip(frames_to_compare(state.step, period), reachable.start,
                     reachable.stop - 1) - reachable.start
      value = jax.lax.switch(ftc, [objective(s) for s in sets], operands)
    num_compared = jnp.asarray([len(s) for s in sets], jnp.float32)[
        0 if schedule == 'all_frames' else ftc]
    feats = maps.reshape(-1, maps.shape[-1])
    aux = {
        'frames_compared': num_compared,
        # Collapse monitor: mean over channels of the std over all tokens of the student maps.
        'feature_std': jnp.mean(jnp.std(feats, axis=0)),
        'visible_frac': jnp.mean((vis[:, :1] & vis).astype(jnp.float32)),
    }
    return value, aux

  return loss_fn


def _window_source(config: ml_collections.ConfigDict, frames_root: str, tracks_root: str,
                   name: str, frames_subdir: str = '', transform: str = 'resize'
                   ) -> data.FrameWindowSource:
  d = config.data
  return data.FrameWindowSource(
      frames_root, tracks_root, input_size=int(d.input_size),
      num_clip_frames=int(d.num_frames), regular_step=int(d.regular_step),
      grid_size=int(d.grid_size), frames_subdir=frames_subdir, transform=transform, name=name)


def synthetic_frames_per_clip(config: ml_collections.ConfigDict) -> int:
  """Rendered frames per synthetic clip: exactly one clip of T frames every regular_step."""
  return (int(config.data.num_frames) - 1) * int(config.data.regular_step) + 1


def synthetic_roots(config: ml_collections.ConfigDict, workdir: str, split: str,
                    num_clips: int | None = None) -> tuple[str, str]:
  """(frames_root, tracks_root) of the synthetic `split` clips, rendered into
  <workdir>/synthetic/<split> if missing (data.synthetic.num_{train,eval} by default)."""
  syn = config.data.synthetic
  if num_clips is None:
    num_clips = int(syn.num_train if split == 'train' else syn.num_eval)
  seed = int(syn.seed) if split == 'train' else synthetic.heldout_seed(int(syn.seed))
  return data.ensure_synthetic_windows(
      os.path.join(workdir, 'synthetic', split), num_clips, seed=seed,
      num_frames=synthetic_frames_per_clip(config), size=int(config.data.input_size),
      grid_size=int(config.data.grid_size), desc=f'synthetic {split} clips')


def _synthetic(config: ml_collections.ConfigDict, workdir: str, split: str,
               num_clips: int) -> data.FrameWindowSource:
  roots = synthetic_roots(config, workdir, split, num_clips)
  return _window_source(config, *roots, name=f'synthetic_{split}')


def tracker_mode(config: ml_collections.ConfigDict) -> str:
  """config.data.tracker, checked: 'files' or 'on_the_fly'."""
  mode = config.data.tracker
  if mode not in ('files', 'on_the_fly'):
    raise ValueError(f"config.data.tracker must be 'files' or 'on_the_fly', got {mode!r}")
  return mode


def train_transforms(config: ml_collections.ConfigDict) -> list[grain.Transformation]:
  """The per-record transforms: (on the fly: read the clip) -> random flip -> (on the fly:
  track the flipped clip with config.data.tracker_name)."""
  d = config.data
  transforms: list[grain.Transformation] = []
  on_the_fly = tracker_mode(config) == 'on_the_fly'
  if on_the_fly:
    transforms.append(video_clips.LoadClip(int(d.input_size), int(d.num_frames),
                                           int(d.regular_step)))
  if float(d.flip_prob) > 0:
    transforms.append(data.RandomClipFlip(float(d.flip_prob)))
  if on_the_fly:
    from tapkit import tracking  # pylint: disable=g-import-not-at-top
    tracker = tracking.make_tracker(d.tracker_name, d.tracker_checkpoint or None)
    transforms.append(video_clips.TrackClip(tracker, int(d.grid_size)))
  return transforms


def train_source(config: ml_collections.ConfigDict, workdir: str | None
                 ) -> data.MixtureSource:
  """The mixture of data.train_dir, the named data.sources and the synthetic clips.

  data.train_dir holds <train_dir>/frames/<clip>/ and <train_dir>/tracks/<clip>/*.npz, the
  layout the synthetic clips are rendered in; it is the source 'train'. With data.tracker
  'on_the_fly' the real sources and train_dir yield frame windows (`video_clips`), tracked by
  `train_transforms`, and the tracks files are not read.
  """
  sources, ratios = {}, {}
  on_the_fly = tracker_mode(config) == 'on_the_fly'
  d = config.data
  if d.train_dir:
    root = d.train_dir
    if on_the_fly:
      sources['train'] = video_clips.FrameClipSource(
          os.path.join(root, 'frames'), 'folder', num_clip_frames=int(d.num_frames),
          regular_step=int(d.regular_step), name='train')
    else:
      sources['train'] = _window_source(config, os.path.join(root, 'frames'),
                                        os.path.join(root, 'tracks'), 'train')
    ratios['train'] = float(d.train_ratio)
  for name, src in d.sources.items():
    if on_the_fly:
      if not src.frames_root:
        continue
      sources[name] = video_clips.FrameClipSource(
          src.frames_root, src.layout, num_clip_frames=int(d.num_frames),
          regular_step=int(d.regular_step), frames_subdir=src.frames_subdir,
          transform=src.transform, name=name)
      ratios[name] = float(src.ratio)
      continue
    if not src.tracks_root:
      continue
    if not src.frames_root:
      raise ValueError(f'config.data.sources.{name}.frames_root is empty but tracks_root is set')
    sources[name] = _window_source(config, src.frames_root, src.tracks_root, name,
                                   src.frames_subdir, src.transform)
    ratios[name] = float(src.ratio)
  syn = config.data.synthetic
  if int(syn.num_train) > 0:
    if not workdir:
      raise ValueError('synthetic data (config.data.synthetic.num_train > 0) are rendered '
                       'into the workdir, but none was given')
    sources['synthetic'] = _synthetic(config, workdir, 'train', int(syn.num_train))
    ratios['synthetic'] = float(syn.ratio)
  return data.MixtureSource(sources, ratios, mode=config.data.mixture, seed=int(config.seed))


def eval_clips(config: ml_collections.ConfigDict, workdir: str,
               num_clips: int | None = None) -> dict[str, np.ndarray]:
  """Held-out synthetic clips for match_eval (rendered into <workdir>/synthetic/eval); the first
  `num_clips` (default data.synthetic.num_eval) of them."""
  n = int(num_clips or config.data.synthetic.num_eval)
  source = _synthetic(config, workdir, 'eval', n)
  return matcher_lib.stack_eval_clips([source[i] for i in range(n)])


def build_method(config: ml_collections.ConfigDict, workdir: str) -> loop.Method:
  """The 3DPoV fine-tuning task (module docstring).

  `workdir` is the run directory: synthetic clips are rendered into <workdir>/synthetic, and a
  config that pre-trains its backbone (`uses_pretraining`) starts from
  <workdir>/pretrain/backbone.safetensors, which `python -m dpov_jax.pretrain` must have
  written first (this function trains nothing and raises, naming that command, without it).

  Raises:
    ValueError: naming the full key when `config` holds a key that configs/dpov.py does not
      define (entries of data.sources are checked against the first one there).
  """
  config_lib.check_config(config, config_lib.method_reference(CONFIG_FILE),
                          any_name=('data.sources',))
  module = build_backbone(config)
  cfg = module.config
  head = pov_loss.ProjectionHead(tuple(config.head.features))
  trainable = check_trainable_groups(config, cfg)
  logging.info('3DPoV: %d trainable backbone tensors (%s ...), head at lr %g.', len(trainable),
               trainable[:2], config.optimizer.lr)
  if int(config.loss.nmb_ref) > 1 and int(config.batch_size) < 2:
    raise ValueError('config.batch_size must be >= 2: external references (loss.nmb_ref > 1) '
                     'come from the other clips of the batch')
  crop = pov_loss.reference_crop_patches((config.data.input_size,) * 2, cfg.patch_size,
                                         float(config.loss.crop_ratio))
  grid = cfg.grid_size(config.data.input_size, config.data.input_size)
  if min(crop) < 1 or crop[0] > grid[0]:
    raise ValueError(f'config.loss.crop_ratio={config.loss.crop_ratio} gives a {crop} patch crop '
                     f'on the {grid} token grid of a {config.data.input_size}-px input')
  start = initial_backbone_params(config, workdir)
  start_dev = jax.tree.map(jnp.asarray, start)

  def init_fn(rng: jax.Array, batch: Mapping[str, Any]) -> dict:
    del batch
    head_params = head.init(rng, jnp.zeros((1, cfg.hidden_size), jnp.float32))['params']
    return {'backbone': start_dev, 'head': head_params}

  transforms = train_transforms(config)
  return loop.Method(init_fn=init_fn, loss_fn=make_loss_fn(module, head, config),
                     train_source=train_source(config, workdir), train_transforms=transforms)

