"""TRAJAN (2D) and 3DSPA (3D) point-track autoencoders in JAX/Flax.

Modules: `attention` (building blocks), `model` (`TrackAutoEncoder`,
`TrackAutoEncoder3D`, `build_model_from_config`), `losses`, `checkpoint`
(official `.npz` and orbax loading), `preprocess` (numpy track geometry),
`features` (depth / DINO feature inputs), `input_pipeline` (clips -> model
inputs, for training and evaluation), `evaluators` (held-out reconstruction and
its metrics), `task` (`build_method` for the engine), `train`, and the CLIs
`score` (realism score) and `evaluate_tapvid3d` (TAPVid-3D benchmark).
"""

from trajan3d.model import TrackAutoEncoder
from trajan3d.model import TrackAutoEncoder3D
from trajan3d.model import TrackAutoEncoderResults
from trajan3d.model import build_model

__all__ = ['TrackAutoEncoder', 'TrackAutoEncoder3D', 'TrackAutoEncoderResults',
           'build_model']
