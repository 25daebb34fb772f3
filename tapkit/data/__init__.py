"""TAPVid-3D-compatible data: clip files, validation, geometry, pipelines.

Modules: `clip` (the in-memory `Clip`), `tapvid3d` (the validating reader / writer,
splits, resizing), `geometry` (camera maps), `tracks4d_format` and `dpov_tracks`
(the TracksTo4D and 3DPoV track files). Pickle-free `.npz` access: `tapkit.io.npz`.
Formats and coordinate conventions: tapkit/data/README.md.
"""

from tapkit.data.clip import Clip
