"""TRAJAN (`TrackAutoEncoder`, 2D) training through the shared engine (trajan3d/task.py).

    python -m trajan3d.train --config configs/trajan.py:smoke --workdir /tmp/trajan

Tracks are the clips' 3D tracks projected with their intrinsics and normalised
to [0, 1] as the TRAJAN colab does ((pixel + 0.5) / size).

Presets:
  smoke          tiny model, 24-frame synthetic clips in <workdir>/synthetic,
                 96 support / 64 query tracks, batch 4, 400 steps (CPU minutes).
  default        the released TRAJAN sizes, 150 frames, 2048 / 2048
                 tracks, batch 64, AdamW 1e-4 (wd 0.01), 10k warm-up then
                 cosine, clip 1.0 (no TRAJAN training recipe was released; the
                 3DSPA one is used). Loss: L1 + BCE(visibility) + 0.1
                 BCE(certainty), certainty target = visible and within 0.01
                 (normalised units, 2.56 px at 256 px) of the ground truth.
  paper_weights  the released 3DSPA weights (5000 L1 + 1e-8 BCE normalised by
                 the visible count, no certainty): the visibility head stays
                 untrained (see configs/spa3d.py), kept for comparison.
"""

import ml_collections

from tapkit.train.config import engine_config

PRESETS = ('smoke', 'default', 'paper_weights')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Presets 'smoke', 'default' and 'paper_weights' (module docstring)."""
  preset = arg or 'default'
  if preset not in PRESETS:
    raise ValueError(f'configs/trajan.py: unknown preset {preset!r}; use one of {PRESETS}.')
  config = engine_config()
  # Transformer blocks: 'none' | 'block' | a jax.checkpoint policy name such as
  # 'dots_saveable' (tapkit/train/precision.py).
  config.remat = 'none'
  config.seed = 42

  # The released TRAJAN sizes.
  config.model = ml_collections.ConfigDict({
      'kind': 'trajan',
      'num_output_frames': 150,
      'num_latent_tokens': 128,
      'num_frequencies': 32,
      'latent_token_dim': 64,
      'track_token_dim': 256,
      'encoder_latent_dim': 512,
      'decoder_num_channels': 1024,
      'num_heads': 8,
      'qkv_size': 512,
      'input_track_layers': 2, 'input_track_mlp': 1024,
      'tracks_to_latents_layers': 6, 'tracks_to_latents_mlp': 2048,
      'decompress_layers': 3, 'decompress_mlp': 2048,
      'readout_layers': 4, 'readout_mlp': 1024,
      'track_scale_factor': 1.0,
      'decoder_scan_chunk_size': 256,
      'remat_decoder': True,
  })
  config.loss = ml_collections.ConfigDict({
      'position': 'l1', 'huber_delta': 0.01,
      'position_weight': 1.0,
      'visibility_weight': 1.0,
      'visibility_normalizer': 'all',
      'certainty_weight': 0.1,
      'certainty_threshold': 0.01,  # normalised units
  })
  config.data.update({
      # 'folder' (train_dir / synthetic clips) or 'arrayrecord' (split arrayrecord_split of
      # the dataset folder arrayrecord_folder, written by `python -m tapkit.data.convert`).
      'source': 'folder', 'arrayrecord_folder': '', 'arrayrecord_split': 'train',
      'train_dir': '', 'pattern': '*.npz', 'eval_dir': '',
      'coords': 'uv',
      'num_frames': 150, 'num_support': 2048, 'num_query': 2048,
      'query_frame': 'visible',
      'normalize': 'none',  # uv is already normalised to [0, 1]
  })
  config.data.synthetic = ml_collections.ConfigDict({
      'dir': '', 'num_train': 256, 'num_eval': 8, 'seed': 0, 'num_frames': 150,
      'height': 128, 'width': 128, 'num_tracks': 4200,
  })
  config.features = ml_collections.ConfigDict({'dino': False, 'depth': False})
  # Held-out reconstruction (trajan3d/evaluators.py), also run offline by
  # `python -m tapkit.evaluate --workdir W --eval eval`: the first num_clips eval clips, query
  # tracks decoded from disjoint support tracks in folds; scalars eval/<metric>.
  config.evals.eval = ml_collections.ConfigDict({
      'type': 'trajan3d.held_out', 'every_steps': 5000, 'num_clips': 8, 'num_support': 2048,
      'num_query': 256, 'seed': 0,
  })
  config.total_steps = 300 * 4200 // 64
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
        'visibility_normalizer': 'visible', 'certainty_weight': 0.0})
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
        'decoder_num_channels': 384,  # 5*qf window stays inside for qf < 26
        'num_heads': 4,
        'qkv_size': 64,
        'input_track_layers': 1, 'input_track_mlp': 128,
        'tracks_to_latents_layers': 1, 'tracks_to_latents_mlp': 256,
        'decompress_layers': 1, 'decompress_mlp': 256,
        'readout_layers': 1, 'readout_mlp': 256,
        'decoder_scan_chunk_size': None,
        'remat_decoder': False,
    })
    config.data.update({'num_frames': 24, 'num_support': 96, 'num_query': 64})
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
