"""TRAJAN (2D) and 3DSPA (3D) point-track autoencoders in JAX/Flax.

Modules: `attention` (building blocks), `model` (`TrackAutoEncoder`,
`TrackAutoEncoder3D`), `checkpoint` (official `.npz` and orbax loading),
`preprocess` (numpy data preparation).
"""

from trajan3d.model import TrackAutoEncoder
from trajan3d.model import TrackAutoEncoder3D
from trajan3d.model import TrackAutoEncoderResults
from trajan3d.model import build_model

__all__ = ['TrackAutoEncoder', 'TrackAutoEncoder3D', 'TrackAutoEncoderResults',
           'build_model']
