"""3DSPA scoring of raw videos: the released 3DSPA model and the networks its inference uses.

    python -m trajan3d.score --video videos/ --config configs/spa3d_video.py --out scores.csv

The model is `configs/spa3d.py`'s default (the released sizes) reading DINO and depth
features (kind '3dspa'), as in the official `3dspa_ckpt.npz`. The `video` section names the
files `trajan3d.score --video` uses when the matching flag is not given (paths relative to the
working directory; flags win):

  checkpoint          the 3DSPA parameters (official flat .npz)
  tracker             'cotracker3' (released), 'cotracker3_online' or 'lk'
  tracker_checkpoint  CoTracker3 scaled_offline.pth
  depth_checkpoint    Video Depth Anything .pth (the release uses the relative vitb model)
  depth_encoder       '' = inferred from the file
  depth_input_size    depth network short side (518 as released)
  dino_checkpoint     DINOv2-base weights (transformers model.safetensors of facebook/dinov2-base)
  recipe              'corrected' or 'released' (trajan3d/video_pipeline.py)
  grid_size           grid_size² tracks per video (64 as released)

Preset 'default' only; there is nothing to train here.
"""

import ml_collections

from tapkit.train.config import load_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The 3DSPA model with features and the video section (module docstring)."""
  if arg not in (None, 'default'):
    raise ValueError(f"configs/spa3d_video.py: unknown preset {arg!r}; use 'default'.")
  config = load_config('configs/spa3d.py:default')
  config.model.kind = '3dspa'
  config.features.dino = True
  config.features.depth = True
  config.video = ml_collections.ConfigDict({
      'checkpoint': 'checkpoints/3dspa_ckpt.npz',
      'tracker': 'cotracker3',
      'tracker_checkpoint': 'checkpoints/scaled_offline.pth',
      'depth_checkpoint': 'checkpoints/video_depth_anything_vitb.pth',
      'depth_encoder': '',
      'depth_input_size': 518,
      'dino_checkpoint': 'checkpoints/dinov2-base/model.safetensors',
      'recipe': 'corrected',
      'grid_size': 64,
  })
  return config
