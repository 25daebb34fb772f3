"""3DSPA (`TrackAutoEncoder3D`) training through the shared engine (trajan3d/task.py).

    python -m trajan3d.train --config configs/spa3d.py:smoke --workdir /tmp/spa3d
    python -m trajan3d.train --config configs/spa3d.py --workdir /tmp/spa3d \
        --config.data.train_dir=/data/tapvid3d_train --config.data.pattern='*/*.npz'

Presets:
  smoke          tiny model (1 layer per stack, widths 64-384, 8 frequencies,
                 1.0M params), 24-frame synthetic clips rendered into
                 <workdir>/synthetic (or data.synthetic.dir), 96 support / 64
                 query tracks, clips centred and scaled by their support tracks
                 (data.normalize='support'), batch 4, 400 steps (CPU minutes).
  default        the sizes and training recipe of the 3DSPA paper: 150 output
                 frames, 2048 support / 2048 query tracks, batch 64, AdamW 1e-4
                 with weight decay 0.01, 10k warm-up steps then cosine, clip 1.0.
                 Loss weights train BOTH heads (see `paper_weights`).
  paper_weights  `default` with the released 3DSPA loss weights: 5000 * L1 +
                 1e-8 * BCE (BCE summed over all points, divided by the number
                 of visible points).

Why `default` does not use the released weights: with 1e-8 on the visibility
BCE, its gradient is many orders of magnitude below the position term's, far below AdamW's eps
relative to the position gradients sharing the trunk, and the visibility head
(the last quarter of `track_predictor`) stays at its random initialisation:
`visible_logits > 0` is then a coin flip and every visibility-dependent metric
(occlusion accuracy, Jaccard) is meaningless. `default` uses 1 * L1 (metres) +
1 * mean BCE, which trains positions and visibility together.
"""

import ml_collections

from tapkit.train.config import engine_config

PRESETS = ('smoke', 'default', 'paper_weights')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Presets 'smoke', 'default' and 'paper_weights' (module docstring)."""
  preset = arg or 'default'
  if preset not in PRESETS:
    raise ValueError(f'configs/spa3d.py: unknown preset {preset!r}; use one of {PRESETS}.')
  config = engine_config()
  # Transformer blocks: 'none' | 'block' | a jax.checkpoint policy name such as
  # 'dots_saveable' (tapkit/train/precision.py).
  config.remat = 'none'
  config.seed = 42  # The release's PRNGKey(42).

  # Model: the released 3DSPA sizes; `kind` picks the module.
  config.model = ml_collections.ConfigDict({
      'kind': '3dspa_nofeat',  # '3dspa' adds the DINO / depth projections.
      'num_output_frames': 150,
      'num_latent_tokens': 128,
      'num_frequencies': 32,
      'latent_token_dim': 96,
      'track_token_dim': 384,
      'encoder_latent_dim': 512,
      'decoder_num_channels': 1280,
      'num_heads': 8,
      'qkv_size': 768,
      'input_track_layers': 3, 'input_track_mlp': 1536,
      'tracks_to_latents_layers': 4, 'tracks_to_latents_mlp': 2048,
      'decompress_layers': 4, 'decompress_mlp': 2048,
      'readout_layers': 4, 'readout_mlp': 1536,
      'track_scale_factor': 1.0,
      'decoder_scan_chunk_size': 256,
      'remat_decoder': True,
  })
  # Losses (trajan3d/losses.py): weights of the position, visibility and
  # certainty terms. `visibility_normalizer`: 'all' = mean BCE over every
  # (query, frame); 'visible' = sum divided by the visible count (release).
  config.loss = ml_collections.ConfigDict({
      'position': 'l1',  # 'l1' (release) or 'huber'
      'huber_delta': 0.1,  # metres, for 'huber'
      'position_weight': 1.0,
      'visibility_weight': 1.0,
      'visibility_normalizer': 'all',
      'certainty_weight': 0.0,  # 3DSPA has no certainty head.
      'certainty_threshold': 0.1,
  })
  # Data: TAPVid-3D-layout clips. `train_dir` = '' renders synthetic clips into
  # <workdir>/synthetic (or `synthetic.dir` when set, to share them).
  config.data.update({
      # 'folder' (train_dir / synthetic clips) or 'arrayrecord' (split arrayrecord_split of
      # the dataset folder arrayrecord_folder, written by `python -m tapkit.data.convert`).
      'source': 'folder', 'arrayrecord_folder': '', 'arrayrecord_split': 'train',
      'train_dir': '',
      'pattern': '*.npz',
      'eval_dir': '',  # held-out clips for evals.eval ('' = synthetic eval clips)
      'coords': 'xyz',  # 3DSPA: camera-frame metres
      'num_frames': 150,  # = model.num_output_frames (episode length)
      'num_support': 2048,
      'num_query': 2048,
      'query_frame': 'visible',  # 'visible' (TRAJAN colab) or 'any' (3DSPA release)
      # 'none': raw camera metres, as the release; 'support': centre and scale
      # each clip by its support tracks (trajan3d.input_pipeline.normalization), inverted
      # on the predictions (evaluate / score apply it too).
      'normalize': 'none',
  })
  # Synthetic clips: num_train training clips and num_eval held-out clips (the
  # held-out evaluator reads the first evals.eval.num_clips of them), seeds (seed, i).
  config.data.synthetic = ml_collections.ConfigDict({
      'dir': '', 'num_train': 256, 'num_eval': 8, 'seed': 0, 'num_frames': 150,
      'height': 128, 'width': 128, 'num_tracks': 4200,
  })
  # Optional per-track features (trajan3d/features.py); need kind '3dspa'.
  config.features = ml_collections.ConfigDict({
      'dino': False,  # clips must hold extras['dino_features'] [T, h, w, 768]
      'depth': False,  # from clip depth maps, 256-d fixed encoder
  })
  # Held-out reconstruction (trajan3d/evaluators.py), also run offline by
  # `python -m tapkit.evaluate --workdir W --eval eval`: the first num_clips eval clips, query
  # tracks decoded from disjoint support tracks in folds; scalars eval/<metric>.
  config.evals.eval = ml_collections.ConfigDict({
      'type': 'trajan3d.held_out', 'every_steps': 5000, 'num_clips': 8, 'num_support': 2048,
      'num_query': 256, 'seed': 0,
  })

  config.total_steps = 300 * 4200 // 64  # about 300 passes over the synthetic set
  config.batch_size = 64
  config.log_every = 100
  config.optimizer.update({
      'name': 'adamw', 'lr': 1e-4, 'weight_decay': 0.01, 'clip_norm': 1.0,
      'schedule': 'cosine', 'warmup_steps': 10_000, 'end_lr_factor': 0.0,
  })
  config.checkpoint.every_steps = 2000

  if preset == 'paper_weights':
    config.loss.update({
        'position_weight': 5000.0, 'visibility_weight': 1e-8,
        'visibility_normalizer': 'visible'})
  elif preset == 'smoke':
    config.model.update({
        'num_output_frames': 24,
        'num_latent_tokens': 16,
        # 8 frequencies: the double query embedding is 49 * 16 = 784 wide
        # instead of 12352 (most of the parameters and time at this size).
        'num_frequencies': 8,
        'latent_token_dim': 32,
        'track_token_dim': 64,
        'encoder_latent_dim': 128,
        # 128 time channels + 256 decompressed channels: the 5*qf window of
        # `append_time_feat` stays inside them for every frame < 26.
        'decoder_num_channels': 384,
        'num_heads': 4,
        'qkv_size': 64,
        'input_track_layers': 1, 'input_track_mlp': 128,
        'tracks_to_latents_layers': 1, 'tracks_to_latents_mlp': 256,
        'decompress_layers': 1, 'decompress_mlp': 256,
        'readout_layers': 1, 'readout_mlp': 256,
        'decoder_scan_chunk_size': None,
        'remat_decoder': False,
    })
    # Unit-radius clips: a tiny model learns in a few hundred steps.
    config.data.update({'num_frames': 24, 'num_support': 96, 'num_query': 64,
                        'normalize': 'support'})
    config.data.synthetic.update({
        'num_train': 48, 'num_eval': 4, 'num_frames': 24, 'height': 64, 'width': 64,
        'num_tracks': 256})
    config.evals.eval.update({'every_steps': 200, 'num_clips': 4, 'num_support': 96,
                              'num_query': 64})
    config.total_steps = 400
    config.batch_size = 4
    config.log_every = 25
    config.optimizer.update({'lr': 1e-3, 'warmup_steps': 30, 'weight_decay': 1e-4})
    config.checkpoint.update({'every_steps': 200, 'keep': 2})
    config.sharding.fsdp_min_size = 2**20
  return config
