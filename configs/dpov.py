"""3DPoV teacher-student fine-tuning of a DINO-family ViT (dpov_jax/task.py), through the engine.

    python -m dpov_jax.pretrain --config configs/dpov.py:smoke --workdir /tmp/dpov
    python -m dpov_jax.train --config configs/dpov.py:smoke --workdir /tmp/dpov
    python -m dpov_jax.train --config configs/dpov.py --workdir /tmp/dpov \
        --config.backbone.init_checkpoint=dinov2_vitb14_reg4_pretrain.pth \
        --config.data.synthetic.num_train=0 \
        --config.data.sources.ytvos.frames_root=/data/ytvos/train/JPEGImages \
        --config.data.sources.ytvos.tracks_root=/data/ytvos_tracks
    python -m dpov_jax.train --config configs/dpov.py --workdir /tmp/dpov \
        --config.data.synthetic.num_train=0 --config.data.train_dir=/data/my_clips

Presets:
  default  the paper run (the released training recipe): DINOv2 ViT-B/14 with 4 registers (hub
           semantics) at 224 px, global batch 32 clips x 4 frames, regular step 10, grid 16 (N = 256), reference
           crop 0.5 (n = 64), R = 5, hard/soft steepness 20/3, EMA teacher 0.99, AdamW lr 1e-6 on
           the head and 1e-7 on blocks 10-11 (everything else frozen), wd 1e-5, cosine to 0 over
           the real number of steps, no clipping, no warm-up, released frame curriculum. Give the
           pretrained weights with backbone.init_checkpoint (.pth / .safetensors / .npz, see
           dpov_jax/backbones); without one the backbone is the seeded random init.
  smoke    the `tiny` ViT (4 blocks, width 64, patch 14, 4 registers) at 112 px (8 x 8 tokens),
           first pre-trained for 600 steps with our dense crop-contrastive objective on the
           synthetic training frames (dpov_jax/pretrain.py: the stand-in for DINOv2's
           pre-training, into <workdir>/pretrain; the explicit first command
           above, which dpov_jax.train requires before it starts), then 3DPoV: batch 8 clips x
           4 frames, regular step 3, grid 8 (N = 64), whole-frame references (crop 1.0, n = 64),
           R = 5, the references' gradient stopped on the teacher side (our option
           loss.teacher_reference_grad=False; the release keeps it), a smaller head
           (64 -> 256 -> 64), lr 3e-3 on the head and 3e-4 on the last 2 blocks (patch embedding,
           tokens, position embedding, blocks 0-1 and final norm frozen), 300 steps on synthetic
           textured clips rendered into <workdir>/synthetic; `python -m dpov_jax.match_eval
           --workdir W` compares the pre-trained start with the fine-tuned backbone on the
           held-out clips.

Data sources (dpov_jax/data.py documents the frame-folder + tracks-file format):
  data.train_dir   one directory laid out as the synthetic clips are: <train_dir>/frames/<clip>/
                   and <train_dir>/tracks/<clip>/*.npz (source name 'train', resized, ratio
                   data.train_ratio); '' = off. The same key as in the other methods.
  data.sources     several named real sources (e.g. the paper's YouTube-VOS / CO3D / DL3DV
                   mixture): one entry per name with frames_root, tracks_root, frames_subdir,
                   transform ('resize' | 'center_crop'), ratio and layout (ytvos | co3d |
                   dl3dv | folder, dpov_jax/video_clips.py); an entry with an empty
                   tracks_root is off (with data.tracker 'on_the_fly': an empty frames_root).
  data.tracker     'files' (default) reads the tracks files; 'on_the_fly' samples clips from
                   the frame folders of the layout and tracks each one in the input
                   pipeline with data.tracker_name ('cotracker3' needs
                   data.tracker_checkpoint; 'lk' needs none).
  data.synthetic   rendered clips, on when num_train > 0; num_eval held-out clips for the
                   matching evaluation.
data.mixture 'proportional' reproduces the release (items in proportion to the windows of each
source), 'ratios' uses the ratios.
"""

import dataclasses

import ml_collections

from dpov_jax import loss as pov_loss
from tapkit.train.config import engine_config


def _source(frames_subdir: str = '', transform: str = 'resize', ratio: float = 0.0,
            layout: str = 'folder') -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'frames_root': '', 'tracks_root': '', 'frames_subdir': frames_subdir,
      'transform': transform, 'ratio': ratio, 'layout': layout})


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Presets 'smoke' and 'default'."""
  preset = arg or 'default'
  if preset not in ('smoke', 'default'):
    raise ValueError(f"Unknown preset {preset!r}; use 'smoke' or 'default'.")
  config = engine_config()
  # Transformer blocks: 'none' | 'block' | a jax.checkpoint policy name such as
  # 'dots_saveable' (tapkit/train/precision.py).
  config.remat = 'none'

  config.backbone = ml_collections.ConfigDict({
      'name': 'dinov2_vitb14_reg',  # tapkit.models.vit preset (registers-b)
      'source': 'hub',  # position-embedding resize semantics: 'hub' | 'transformers'
      'init_checkpoint': '',  # converted/official weights; '' = random init from init_seed
      'init_seed': 0,
      'num_layers': 0,  # > 0 overrides the preset's depth (tests)
      'trainable_blocks': 2,  # must agree with optimizer.groups (checked)
  })
  # Projection head widths (the release's 4-layer MLP on the backbone tokens).
  config.head = ml_collections.ConfigDict({'features': (1024, 1024, 512, 256)})
  # The ordering loss: every field of dpov_jax/loss.py LossConfig, with its defaults (the
  # released values; the dataclass documents each key), e.g. compare_schedule 'released' (one
  # more compared frame every compare_period steps) and teacher_reference_grad True (the
  # loss's gradient reaches the reference embeddings through the teacher's soft sort too).
  config.loss = ml_collections.ConfigDict(dataclasses.asdict(pov_loss.LossConfig()))
  # num_frames: frames per training clip (T), regular_step frames apart.
  config.data.update({
      'input_size': 224, 'num_frames': 4, 'regular_step': 10, 'grid_size': 16,
      'flip_prob': 0.5, 'mixture': 'proportional', 'train_dir': '', 'train_ratio': 1.0,
      # Where the clips' tracks come from: 'files' (tracks files, `python -m dpov_jax.prepare`)
      # or 'on_the_fly' (every sampled clip is tracked in the input pipeline by tracker_name,
      # weights tracker_checkpoint, as the release does at every step).
      'tracker': 'files', 'tracker_name': 'cotracker3', 'tracker_checkpoint': '',
  })
  config.data.sources = ml_collections.ConfigDict({
      'ytvos': _source('', 'resize', 0.25, 'ytvos'),
      'co3d': _source('images', 'resize', 0.25, 'co3d'),
      'dl3dv': _source('nerfstudio/images_4', 'resize', 0.25, 'dl3dv'),
      'dl3dv_crop': _source('nerfstudio/images_4', 'center_crop', 0.25, 'dl3dv'),
  })
  config.data.synthetic = ml_collections.ConfigDict({
      'num_train': 64, 'num_eval': 16, 'seed': 0, 'ratio': 1.0})
  # Our dense crop-contrastive pre-training of the starting backbone (dpov_jax/pretrain.py): only
  # for backbones without pretrained weights (smoke); steps 0 = off. Ignored when
  # backbone.init_checkpoint is set.
  config.pretrain = ml_collections.ConfigDict({
      'steps': 0, 'batch_size': 16, 'lr': 1e-3, 'weight_decay': 1e-4, 'temperature': 0.1,
      'num_points': 64, 'jitter_px': 3.0, 'min_scale': 0.5, 'contrast': 0.3, 'brightness': 0.3,
      'log_every': 100})
  # Point matching on held-out synthetic clips (dpov_jax/evaluators.py): frame 0 -> frame T-1
  # nearest-feature matches of the student (and EMA teacher), accuracy within threshold_px
  # input pixels; also run offline by `python -m tapkit.evaluate --workdir W --eval eval`.
  config.evals.eval = ml_collections.ConfigDict({
      'type': 'dpov_jax.match', 'every_steps': 1000, 'num_clips': 16, 'threshold_px': 14.0,
      'batch_size': 8})

  config.optimizer.update({
      'name': 'adamw', 'lr': 1e-6, 'b1': 0.9, 'b2': 0.999, 'eps': 1e-8, 'weight_decay': 1e-5,
      'clip_norm': 0.0, 'schedule': 'cosine', 'warmup_steps': 0, 'end_lr_factor': 0.0,
      'groups': ((r'^backbone/block_(10|11)/', 0.1), (r'^backbone/', 0.0)),
  })
  config.ema.momentum = 0.99
  config.batch_size = 32  # global (the release's DeepSpeed train_batch_size)
  config.total_steps = 8680  # 40 epochs x 217 steps of the release
  config.log_every = 50
  config.checkpoint.every_steps = 1000
  config.checkpoint.best_metric = 'eval/match_acc'
  config.checkpoint.best_mode = 'max'

  if preset == 'smoke':
    config.backbone.update({'name': 'tiny'})
    config.head.features = (256, 64)
    # Our deviation from the release for the CPU-sized check (README): the references' gradient
    # stops on the teacher side, and a larger bank (5 whole-frame references, n = 64) and a
    # higher lr give the 4-block ViT enough signal (README: with the released objective the
    # matching accuracy does not improve at this size).
    config.loss.update({'nmb_ref': 5, 'crop_ratio': 1.0, 'teacher_reference_grad': False})
    config.data.update({'input_size': 112, 'num_frames': 4, 'regular_step': 3,
                        'grid_size': 8})
    config.data.synthetic.update({'num_train': 48, 'num_eval': 32})
    config.pretrain.steps = 600
    config.evals.eval.update({'every_steps': 100, 'num_clips': 32})
    config.optimizer.update({
        'lr': 3e-3, 'groups': ((r'^backbone/block_(2|3)/', 0.1), (r'^backbone/', 0.0))})
    config.batch_size = 8
    config.total_steps = 300
    config.log_every = 10
    config.checkpoint.every_steps = 100
  return config
