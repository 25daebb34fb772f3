"""TRAJAN (2D) and 3DSPA (3D) point-track autoencoders in JAX/Flax.

Modules: `attention` (building blocks), `model` (`TrackAutoEncoder`,
`TrackAutoEncoder3D`, `build_model_from_config`), `losses`, `checkpoint`
(official `.npz` and orbax loading), `preprocess` (numpy track geometry),
`features` (depth / DINO feature inputs), `input_pipeline` (clips -> model
inputs, for training and evaluation), `evaluators` (held-out reconstruction and
its metrics), `task` (`build_method` for the engine), `train`, and the CLIs
`score` (realism score) and `evaluate_tapvid3d` (TAPVid-3D benchmark).
"""

import importlib
from typing import Any

__all__ = ['TrackAutoEncoder', 'TrackAutoEncoder3D', 'TrackAutoEncoderResults',
           'build_model']


def __getattr__(name: str) -> Any:
  """The model names of `__all__`, imported from `trajan3d.model` on first use.

  Importing the package (e.g. for a command's `--help`) then does not load JAX and Flax.
  """
  if name in __all__:
    return getattr(importlib.import_module('trajan3d.model'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
