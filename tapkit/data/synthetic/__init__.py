"""A small "Kubric in numpy": ray-cast synthetic scenes with exact 3D point tracks.

No real dataset can be downloaded in CI, so tests, demos and default training runs
use clips rendered here: textured analytic primitives (sky, ground, rigid objects
and one squash-and-stretch object) seen by a smoothly moving camera, with tracks
known exactly in float64.

Conventions (shared with the rest of tapkit):
  * camera frame: OpenCV, x right, y down, z forward; poses are world-to-camera 4x4;
  * pixels: (x, y) with pixel centres at integers, x = fx * X / Z + cx; the default
    principal point is the image centre ((W - 1) / 2, (H - 1) / 2);
  * depth: z along the optical axis in metres;
  * normals: unit vectors in the camera frame, oriented towards the camera;
  * time: frames (t = 0, 1, ...); motions are smooth functions of continuous t.

Modules:
  scene       `SceneConfig`, primitives, ray casting, textures, `Scene` (`render`,
              `raycast`, `points_to_world`), `make_scene`
  camera      `look_at_w2c`, `CameraPath`, `make_camera_path`, `make_intrinsics`
  render      `synthesize_clip` / `generate_clip` (TAPVid-3D `Clip`s, exact visibility)
  view_pairs  `render_view_pair` (two views with a known relative rotation)
  cache       `ensure_clips` (clips rendered once into a directory, reused while the
              generator parameters match), `cached_clip` (one of them rendered again,
              frames included) and `heldout_seed` (the evaluation seed rule)
  cli         `python -m tapkit.data.synthetic --help`

The public names of these modules are re-exported here.
"""

from tapkit.data.synthetic.cache import cached_clip, ensure_clips, heldout_seed
from tapkit.data.synthetic.camera import (CameraPath, look_at_w2c, make_camera_path,
                                          make_intrinsics)
from tapkit.data.synthetic.cli import main, write_clip_videos
from tapkit.data.synthetic.render import SyntheticClip, generate_clip, synthesize_clip
from tapkit.data.synthetic.scene import (BOX, QUAD, SPHERE, Motion, Primitive, Scene,
                                         SceneConfig, make_scene)
from tapkit.data.synthetic.view_pairs import render_view_pair

__all__ = [
    'BOX', 'QUAD', 'SPHERE', 'CameraPath', 'Motion', 'Primitive', 'Scene', 'SceneConfig',
    'SyntheticClip', 'cached_clip', 'ensure_clips', 'generate_clip', 'heldout_seed',
    'look_at_w2c', 'main', 'make_camera_path', 'make_intrinsics', 'make_scene', 'render_view_pair', 'synthesize_clip',
    'write_clip_videos',
]
