"""3DPoV video layouts and clip windows: which frames of which videos form the clips.

Pure file listing and index arithmetic (no JAX), shared by `python -m dpov_jax.prepare` and the
on-the-fly pipeline of `dpov_jax.video_clips`.

Frame-folder layouts (`LAYOUTS`; a video is a folder of sorted image frames):

  ytvos   <frames_root>/<video>/*.jpg                      (YouTube-VOS train/JPEGImages)
  co3d    <frames_root>/<category>/<sequence>/images/*     (video = category/sequence)
  dl3dv   <frames_root>/<video>/nerfstudio/images_4/*.png
  folder  <frames_root>/<video>/*.{jpg,jpeg,png}           (any other collection)

Windows of a video of M frames, T = clip frames, s = regular step, as the released loaders
sample them:

  ytvos   one random start per item (a new one every epoch in training): step s' = s if
          M >= T * s, else M // T (0: start 0, step 1); start uniform in {0, ..., M - T * s'};
          frames start + k * s', indices >= M replaced by M - 1.
  co3d, dl3dv
          deterministic non-overlapping windows: starts 0, T * s, 2 T * s, ... <= M - T * s,
          frames start + k * s (CO3D sequences under 10 frames are skipped).
  folder  ours: starts 0, T * s, ... while the clip fits ((T - 1) * s + 1 frames); a shorter
          video gives one window of T frames max(1, (M - 1) // (T - 1)) apart, clamped.

A window's frames are returned sorted and without repeats (a clamped index only repeats the
last frame, which `dpov_jax.data.clip_frame_positions` restores).
"""

from __future__ import annotations

import os
import zlib

import numpy as np

# name -> (frames subfolder inside a video, folder depth of a video, window rule)
LAYOUTS = {
    'ytvos': ('', 1, 'random'),
    'co3d': ('images', 2, 'windows'),
    'dl3dv': ('nerfstudio/images_4', 1, 'windows'),
    'folder': ('', 1, 'fit'),
}
CO3D_MIN_FRAMES = 10


def check_layout(layout: str) -> tuple[str, int, str]:
  if layout not in LAYOUTS:
    raise ValueError(f'layout must be one of {sorted(LAYOUTS)}, got {layout!r}')
  return LAYOUTS[layout]


def list_layout_videos(frames_root: str | os.PathLike, layout: str,
                       frames_subdir: str | None = None) -> list[str]:
  """Sorted video names (paths relative to `frames_root`) of a layout.

  A video is a folder at the layout's depth that holds the frames subfolder
  (`frames_subdir`, default the layout's); other folders (e.g. CO3D's set_lists) are ignored.

  Raises:
    FileNotFoundError: `frames_root` is not a folder.
  """
  default_subdir, depth, _ = check_layout(layout)
  subdir = default_subdir if frames_subdir is None else frames_subdir
  root = os.fspath(frames_root)
  if not os.path.isdir(root):
    raise FileNotFoundError(f'frames_root {root} is not a directory')
  level = ['']
  for _ in range(depth):
    level = [os.path.join(v, n) if v else n for v in level
             for n in sorted(os.listdir(os.path.join(root, v)))
             if os.path.isdir(os.path.join(root, v, n))]
  return [v for v in level if os.path.isdir(os.path.join(root, v, subdir))]


def video_seed(seed: int, video: str) -> np.random.Generator:
  """A generator fixed by (seed, video name): the same windows whatever else is listed."""
  return np.random.default_rng([int(seed), zlib.crc32(video.encode('utf-8'))])


def random_window(num_frames: int, num_clip_frames: int, regular_step: int,
                  rng: np.random.Generator) -> np.ndarray:
  """[L <= T] sorted unique frame indices of one YouTube-VOS-style clip (module docstring)."""
  t, m = int(num_clip_frames), int(num_frames)
  step = int(regular_step) if m >= t * int(regular_step) else m // t
  if step == 0:
    start, step = 0, 1
  else:
    start = int(rng.integers(0, m - t * step + 1))
  return np.unique(np.minimum(start + step * np.arange(t), m - 1)).astype(np.int64)


def fixed_windows(num_frames: int, layout: str, num_clip_frames: int,
                  regular_step: int) -> list[np.ndarray]:
  """The deterministic windows of a co3d / dl3dv / folder video (module docstring)."""
  rule = check_layout(layout)[2]
  t, s, m = int(num_clip_frames), int(regular_step), int(num_frames)
  if rule == 'random':
    raise ValueError("layout 'ytvos' has random windows: use random_window")
  if layout == 'co3d' and m < CO3D_MIN_FRAMES:
    return []
  if rule == 'windows':
    return [start + s * np.arange(t, dtype=np.int64) for start in range(0, m - t * s + 1, t * s)]
  span = (t - 1) * s + 1
  if m >= span:
    return [start + s * np.arange(t, dtype=np.int64) for start in range(0, m - span + 1, t * s)]
  step = max(1, (m - 1) // max(1, t - 1))
  return [np.unique(np.minimum(step * np.arange(t), m - 1)).astype(np.int64)]


def video_windows(num_frames: int, layout: str, num_clip_frames: int, regular_step: int, *,
                  seed: int = 0, video: str = '', windows_per_video: int = 1
                  ) -> list[np.ndarray]:
  """The windows tracked offline for one video: the fixed ones, or for ytvos
  `windows_per_video` random ones drawn from `video_seed(seed, video)`."""
  if check_layout(layout)[2] != 'random':
    return fixed_windows(num_frames, layout, num_clip_frames, regular_step)
  rng = video_seed(seed, video)
  return [random_window(num_frames, num_clip_frames, regular_step, rng)
          for _ in range(int(windows_per_video))]
