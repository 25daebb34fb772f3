"""Self-supervised dense pre-training of a small ViT on video frames (the smoke run's "DINO").

3DPoV fine-tunes a backbone that already has good features (DINOv2 in the paper): its ordering
loss makes the student reproduce the teacher's ranking of reference patches, which refines
features but cannot create them. From a random init the released objective only moves the tokens
towards a degenerate spread of similarities (README, "3DPoV learning signal"). No pretrained
weights exist for the tiny CPU backbones, so the smoke preset first pre-trains one with this
image-level objective (our addition, not part of 3DPoV) and fine-tunes that with 3DPoV, the way the
paper fine-tunes DINOv2. Runs with a `backbone.init_checkpoint` never pre-train.

Objective (dense crop contrast, in the spirit of DenseCL / VADeR): for every frame two views are
cut as random square crops of side s * (H - 1), s ~ U[min_scale, 1], at a uniform offset, resized
back to H x W (bilinear), each with its own contrast and brightness jitter. Query points on a
jittered k x k grid of view 1 (k^2 = num_points) are mapped through the crop geometry into view 2
(points that leave view 2 are dropped). Backbone features are read at the points exactly as the
3DPoV loss and match_eval read them (latent tracking: bilinear on the final-norm token grid) and
L2-normalised; the loss is the symmetric InfoNCE over all valid points of the batch (each point's
positive is its own position in the other view, every other point of every frame is a negative)
at temperature `temperature`. All backbone parameters train; no head, no teacher.

    python -m dpov_jax.pretrain --config configs/dpov.py:smoke --workdir /tmp/dpov
    python -m dpov_jax.train --config configs/dpov.py:smoke --workdir /tmp/dpov

The first command trains <workdir>/pretrain (an engine run: checkpoints, resume, TensorBoard) for
`pretrain.steps` steps and writes <workdir>/pretrain/backbone.safetensors (torch.hub names, loads
with `tapkit.models.vit.load_checkpoint`); it does nothing when that file exists. The second one
fine-tunes with 3DPoV from that file: with `pretrain.steps > 0` and no `backbone.init_checkpoint`
it expects the file and stops with an error naming the first command when it is missing (it
never pre-trains by itself). Frames: every image under the synthetic train clips' frame folders
and under each configured source's frames_root (all frames of the videos, not only the tracked
clips), resized to the input size.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np
from etils import epy

from tapkit.io import image as image_io
from tapkit.ops import numeric
from tapkit.train import launch

# Loaded on first use, so `--help` and flag mistakes answer without importing JAX.
with epy.lazy_imports():
  import jax
  import jax.numpy as jnp
  import optax

  from dpov_jax import data
  from dpov_jax import loss as pov_loss
  from dpov_jax import task
  from tapkit.models import vit as bb
  from tapkit.train import loop


# ---------------------------------------------------------------------------
# Data: single frames.
# ---------------------------------------------------------------------------


class FrameSource:
  """Every frame image under some folders, as {'image': [H, W, 3] uint8} at the input size.

  A grain random-access source (`len` and `[index]`; grain's source type is a protocol).
  """

  def __init__(self, roots: Sequence[str | os.PathLike], size: int):
    self._roots = [os.path.abspath(os.fspath(r)) for r in roots]
    files = []
    for root in self._roots:
      if not os.path.isdir(root):
        raise FileNotFoundError(f'pretrain frames: {root} is not a directory')
      files += sorted(str(p) for p in pathlib.Path(root).rglob('*')
                      if p.suffix.lower() in data.FRAME_EXTENSIONS)
    if not files:
      raise FileNotFoundError(f'pretrain frames: no {"/".join(data.FRAME_EXTENSIONS)} images '
                              f'under {self._roots}')
    self._files = files
    self._size = int(size)

  def __len__(self) -> int:
    return len(self._files)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    path = self._files[int(index)]
    with image_io.open_image(path) as image:
      rgb = image.convert('RGB')
      if rgb.size != (self._size, self._size):
        rgb = rgb.resize((self._size, self._size), Image.BILINEAR)
      return {'image': np.asarray(rgb, np.uint8)}

  def __repr__(self) -> str:
    return f'FrameSource(roots={self._roots!r}, n={len(self._files)}, size={self._size})'


def frame_roots(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """The frames of data.train_dir, of every configured source and the synthetic train frames
  (rendered if needed)."""
  roots = [os.path.join(config.data.train_dir, 'frames')] if config.data.train_dir else []
  for name, src in config.data.get('sources', {}).items():
    if src.get('tracks_root'):
      if not src.get('frames_root'):
        raise ValueError(f'config.data.sources.{name}.frames_root is empty but tracks_root is set')
      roots.append(src.frames_root)
  if int(config.data.synthetic.num_train) > 0:
    roots.append(task.synthetic_roots(config, workdir, 'train')[0])
  if not roots:
    raise ValueError('pretraining needs frames: set config.data.synthetic.num_train > 0 or a '
                     'source under config.data.sources')
  return roots


# ---------------------------------------------------------------------------
# The objective.
# ---------------------------------------------------------------------------


def random_view(image: jax.Array, key: jax.Array, *, min_scale: float, contrast: float,
                brightness: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One augmented view of a normalised image [H, W, 3].

  Returns:
    (view [H, W, 3], scale [], offset [2] (x, y)): view pixel p (x, y) shows source pixel
    offset + scale * p.
  """
  h, w = image.shape[:2]
  k_scale, k_off, k_con, k_bri = jax.random.split(key, 4)
  scale = jax.random.uniform(k_scale, (), minval=min_scale, maxval=1.0)
  extent = jnp.asarray([w - 1, h - 1], jnp.float32)
  offset = jax.random.uniform(k_off, (2,)) * (1.0 - scale) * extent
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing='ij')
  coords = [offset[1] + scale * ys, offset[0] + scale * xs]
  view = jnp.stack([jax.scipy.ndimage.map_coordinates(image[..., c], coords, order=1)
                    for c in range(image.shape[-1])], axis=-1)
  mean = jnp.mean(view)
  factor = jax.random.uniform(k_con, (), minval=1.0 - contrast, maxval=1.0 + contrast)
  shift = jax.random.uniform(k_bri, (), minval=-brightness, maxval=brightness)
  return (view - mean) * factor + mean + shift, scale, offset


def grid_points(key: jax.Array, batch: int, num_points: int, image_size: tuple[int, int],
                jitter_px: float) -> jax.Array:
  """[batch, num_points, 2] (x, y): a k x k grid of cell centres (k^2 = num_points), jittered."""
  k = int(round(num_points**0.5))
  if k * k != num_points:
    raise ValueError(f'config.pretrain.num_points must be a square, got {num_points}')
  h, w = image_size
  jx, jy = np.meshgrid(np.arange(k), np.arange(k), indexing='xy')
  base = np.stack([(jx.ravel() + 0.5) * w / k, (jy.ravel() + 0.5) * h / k], -1) - 0.5
  jitter = jax.random.uniform(key, (batch, num_points, 2), minval=-jitter_px, maxval=jitter_px)
  return jnp.clip(jnp.asarray(base, jnp.float32)[None] + jitter, 0.0,
                  jnp.asarray([w - 1, h - 1], jnp.float32))


def info_nce(f1: jax.Array, f2: jax.Array, valid: jax.Array,
             temperature: float) -> tuple[jax.Array, jax.Array]:
  """Symmetric InfoNCE of matched unit features f1, f2 [M, D] with pair mask valid [M].

  Returns:
    (loss [], top-1 accuracy of the positives among the valid candidates []).
  """
  logits = f1 @ f2.T / temperature  # [M, M]
  neg = jnp.finfo(logits.dtype).min
  labels = jnp.arange(f1.shape[0])
  rows = optax.softmax_cross_entropy_with_integer_labels(
      jnp.where(valid[None, :], logits, neg), labels)
  cols = optax.softmax_cross_entropy_with_integer_labels(
      jnp.where(valid[None, :], logits.T, neg), labels)
  w = valid.astype(logits.dtype)
  count = jnp.maximum(jnp.sum(w), 1.0)
  # An invalid row's own label is masked (a huge CE): select, never multiply it by 0.
  loss = jnp.sum(jnp.where(valid, rows + cols, 0.0)) / (2.0 * count)
  top1 = jnp.argmax(jnp.where(valid[None, :], logits, neg), axis=-1) == labels
  return loss, jnp.sum(top1 * w) / count


def make_loss_fn(module: bb.VisionTransformer, config: ml_collections.ConfigDict):
  """loss_fn(params, batch, rng, state) -> (loss, aux) for the engine."""
  cfg = module.config
  p = config.pretrain

  def loss_fn(params, batch, rng, state):
    del state
    images = data.normalize_frames(batch['image'])  # [B, H, W, 3]
    b, h, w, _ = images.shape
    k1, k2, kq = jax.random.split(rng, 3)
    view = lambda img, k: random_view(img, k, min_scale=float(p.min_scale),
                                      contrast=float(p.contrast), brightness=float(p.brightness))
    v1, s1, o1 = jax.vmap(view)(images, jax.random.split(k1, b))
    v2, s2, o2 = jax.vmap(view)(images, jax.random.split(k2, b))
    q1 = grid_points(kq, b, int(p.num_points), (h, w), float(p.jitter_px))  # [B, Q, 2]
    q2 = (o1[:, None] + s1[:, None, None] * q1 - o2[:, None]) / s2[:, None, None]
    inside = jnp.all((q2 >= 0) & (q2 <= jnp.asarray([w - 1, h - 1], jnp.float32)), axis=-1)
    tokens = module.apply({'params': params['backbone']}, jnp.concatenate([v1, v2]))
    maps = bb.tokens_to_feature_map(tokens, cfg.grid_size(h, w), cfg.num_prefix_tokens)
    f1 = numeric.l2_normalize(pov_loss.sample_at_tracks(maps[:b], q1, (h, w)))
    f2 = numeric.l2_normalize(pov_loss.sample_at_tracks(maps[b:], q2, (h, w)))
    d = f1.shape[-1]
    value, top1 = info_nce(f1.reshape(-1, d), f2.reshape(-1, d), inside.reshape(-1),
                           float(p.temperature))
    return value, {'top1': top1, 'valid_frac': jnp.mean(inside.astype(jnp.float32))}

  return loss_fn


# ---------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------


def pretrain_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The engine config of the pre-training run derived from a 3DPoV config."""
  c = ml_collections.ConfigDict(config.to_dict())
  p = config.pretrain
  c.total_steps = int(p.steps)
  c.batch_size = int(p.batch_size)
  c.log_every = int(p.get('log_every', config.log_every))
  c.optimizer.update({'lr': float(p.lr), 'weight_decay': float(p.weight_decay),
                      'schedule': 'cosine', 'warmup_steps': 0, 'end_lr_factor': 0.0,
                      'clip_norm': 1.0, 'groups': ()})
  c.ema.momentum = None
  c.evals = ml_collections.ConfigDict()  # The 3DPoV evaluators need the fine-tuning run.
  c.checkpoint.update({'best_metric': '', 'every_steps': max(1, min(int(p.steps), 200))})
  return c


def build_method(config: ml_collections.ConfigDict, workdir: str) -> loop.Method:
  """The pre-training method on the run's frames (module docstring)."""
  module = task.build_backbone(config)
  source = FrameSource(frame_roots(config, workdir), int(config.data.input_size))
  logging.info('3DPoV pre-training on %s.', source)

  def init_fn(rng, batch):
    del rng
    return {'backbone': module.init(jax.random.PRNGKey(int(config.backbone.init_seed)),
                                    jnp.zeros((1, *batch['image'].shape[1:]), jnp.float32)
                                    )['params']}

  return loop.Method(init_fn=init_fn, loss_fn=make_loss_fn(module, config),
                     train_source=source)


def ensure_pretrained(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
  """Pre-trains into <workdir>/pretrain unless its backbone file exists; returns that file.

  The explicit pre-training step of a run that `uses_pretraining` (dpov_jax/task.py): call it
  (or run this module) before training the 3DPoV method in the same workdir.
  """
  workdir = os.path.abspath(os.fspath(workdir))
  path = task.pretrained_path(workdir)
  if os.path.isfile(path):
    return path
  if int(config.pretrain.steps) <= 0:
    raise ValueError('config.pretrain.steps must be > 0 to pre-train')
  run_dir = os.path.dirname(path)
  pconfig = pretrain_config(config)
  launch.save_config(pconfig, run_dir)
  logging.info('3DPoV: pre-training the %s backbone for %d steps in %s.', config.backbone.name,
               pconfig.total_steps, run_dir)
  state = loop.train(pconfig, run_dir, build_method(config, workdir))
  params = jax.tree.map(np.asarray, jax.device_get(state.params['backbone']))
  if jax.process_index() == 0:
    tmp = path[:-len('.safetensors')] + '.tmp.safetensors'
    bb.save_checkpoint(tmp, params, task.backbone_config(config), layout='hub')
    os.replace(tmp, path)  # atomic: a present file is a finished pre-training
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('dpov_pretrain_done')
  return path


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The command: pre-trains the starting backbone of the 3DPoV run in `workdir`; prints it."""
  if config.backbone.get('init_checkpoint', ''):
    raise ValueError('config.backbone.init_checkpoint is set: that run starts from it and does '
                     'not pre-train')
  path = ensure_pretrained(config, workdir)
  print(path)
  return path


if __name__ == '__main__':
  launch.run_main(run, workdir_help='the 3DPoV run directory (pre-training goes to '
                  '<workdir>/pretrain)')
