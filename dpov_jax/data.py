"""3DPoV training data: video frame folders + per-window point-track files.

Every training item is one clip of T = `num_clip_frames` frames of one video together with the
2D tracks of a grid_size x grid_size grid of points queried on its first frame:

  frames      [T, H, W, 3] uint8 (RGB, H = W = `input_size`; normalised on device with
              `normalize_frames`, mean (0.485, 0.456, 0.406), std (0.228, 0.224, 0.225))
  tracks      [T, N, 2] float32 (x, y) input pixels, pixel centres at integers
  visibility  [T, N] bool

Frames are read from video frame folders as YouTube-VOS / CO3D / DL3DV store them:

  <frames_root>/<video>/<frames_subdir>/*.{jpg,jpeg,png}    (sorted by file name)

e.g. `ytvos/train/JPEGImages/<video>/00000.jpg` (frames_subdir ''),
`dl3dv/<video>/nerfstudio/images_4/frame_00001.png` (frames_subdir 'nerfstudio/images_4'),
CO3D extracted as `<category>/<sequence>/images/frame000001.jpg` (<video> = category/sequence,
frames_subdir 'images'). Tracks come from any point tracker (CoTracker3 offline with
grid_size 16 and query frame 0 in the paper), run on windows of the videos and stored one
file per window (a "tracks file", `tapkit.data.dpov_tracks`, which documents the format):

  <tracks_root>/<video>/<window>.npz   tracks [L, N, 2], visibility [L, N], frame_indices [L]
                                       (into the sorted frame files), image_size (H, W)

`python -m dpov_jax.prepare` writes them from frame folders (`dpov_jax.prepare`); with
`data.tracker = 'on_the_fly'` the sampled clips are tracked inside the input pipeline instead
(`dpov_jax.video_clips`), as the release does during training.

Clip sampling within a window of L frames (the release's "regular" mode, with the start fixed at the
query frame because the tracks are queried there): step s = `regular_step` if L >= (T - 1) * s + 1,
else s = max(1, (L - 1) // (T - 1)); frames 0, s, ..., (T - 1) * s of the window, indices >= L
replaced by L - 1.

Per-source geometric transform (as the released loaders): 'resize' (every frame resized to
exactly H x W, PIL bilinear, aspect ratio not kept; tracks mapped as x' = (x + 0.5) * W / W_0 - 0.5)
or 'center_crop' (the DL3DV "scene" transform: central H x W crop without resizing; tracks shifted,
points outside the crop become invisible). Shared random transform: horizontal flip of the whole
clip with probability 0.5 (x' = W - 1 - x), from grain's per-record rng. The release builds
photometric augmentations but applies none; we apply none either.

Mixture: `MixtureSource` over named sources, either 'proportional' (concatenation: each
source contributes its number of windows, as the release effectively samples) or 'ratios' (item i
draws its source by the given ratios from a generator seeded with (seed, i), then a window
uniformly).

By default the data are synthetic: `ensure_synthetic_windows` renders textured dynamic scenes with
`tapkit.data.synthetic` (grid queries on frame 0, exact tracks) and writes them in exactly the
format above, so synthetic and real data go through the same reader.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import grain.python as grain
import numpy as np

from tapkit.data.dpov_tracks import TracksFileError, read_tracks_file
from tapkit.data.dpov_tracks import write_tracks_file
from tapkit.io import image as image_io

# Normalisation of the released loaders (note std 0.228 for red, not ImageNet's 0.229).
MEAN = (0.485, 0.456, 0.406)
STD = (0.228, 0.224, 0.225)
FRAME_EXTENSIONS = ('.jpg', '.jpeg', '.png')
TRANSFORMS = ('resize', 'center_crop')


def normalize_frames(frames: Any) -> Any:
  """uint8 frames [..., 3] (numpy or jax) -> float32 (x / 255 - mean) / std."""
  mean = np.asarray(MEAN, np.float32)
  std = np.asarray(STD, np.float32)
  return (frames.astype(np.float32) / np.float32(255.0) - mean) / std


# ----------------------------------------------------------------------------------------------
# Clip sampling.


def clip_frame_positions(length: int, num_frames: int, regular_step: int) -> np.ndarray:
  """Positions in a window of `length` frames of the T clip frames (module docstring).

  Returns:
    [T] int64, starting at 0 (the query frame).
  """
  if num_frames < 1 or regular_step < 1:
    raise ValueError(f'num_clip_frames and regular_step must be >= 1, got {num_frames}, '
                     f'{regular_step}')
  step = regular_step
  if num_frames > 1 and length < (num_frames - 1) * step + 1:
    step = max(1, (length - 1) // (num_frames - 1))
  return np.minimum(np.arange(num_frames) * step, length - 1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Geometry of the per-source transforms.


def rescale_points(points: np.ndarray, src_hw: Sequence[int], dst_hw: Sequence[int]) -> np.ndarray:
  """(x, y) pixel-centre coordinates [..., 2] of a src_hw image in a dst_hw resize of it."""
  sx = dst_hw[1] / src_hw[1]
  sy = dst_hw[0] / src_hw[0]
  out = np.empty_like(points, dtype=np.float32)
  out[..., 0] = (points[..., 0] + 0.5) * sx - 0.5
  out[..., 1] = (points[..., 1] + 0.5) * sy - 0.5
  return out


def center_crop_box(src_hw: Sequence[int], dst_hw: Sequence[int]) -> tuple[int, int]:
  """(top, left) of a central dst_hw crop (torchvision CenterCrop rounding)."""
  top = int(round((src_hw[0] - dst_hw[0]) / 2.0))
  left = int(round((src_hw[1] - dst_hw[1]) / 2.0))
  return top, left


def list_frames(directory: str) -> list[str]:
  """The sorted image files (FRAME_EXTENSIONS) of a frame folder; TracksFileError if none."""
  try:
    names = sorted(n for n in os.listdir(directory)
                   if os.path.splitext(n)[1].lower() in FRAME_EXTENSIONS)
  except FileNotFoundError:
    raise TracksFileError(directory, None, 'frame folder does not exist') from None
  if not names:
    raise TracksFileError(directory, None, f'no {"/".join(FRAME_EXTENSIONS)} frames')
  return [os.path.join(directory, n) for n in names]


def read_rgb(path: str) -> np.ndarray:
  """[H, W, 3] uint8 of one frame file (`tapkit.io.image`: pixels capped, errors name it)."""
  return image_io.read_image(path, 'RGB', dtype=np.uint8)


def read_clip_frames(files: Sequence[str], indices: np.ndarray, input_size: int,
                     transform: str = 'resize', where: str = ''
                     ) -> tuple[np.ndarray, tuple[int, int]]:
  """Frames `files[indices]` after a source transform, and their stored (H, W).

  Args:
    files: a video's sorted frame files.
    indices: [L] the frames to read.
    input_size: side S of the square output; 0 keeps the stored size (no transform).
    transform: 'resize' (every frame to S x S, PIL bilinear, aspect ratio not kept) or
      'center_crop' (central S x S crop, no resizing).
    where: the frame folder, for error messages.

  Returns:
    ([L, S, S, 3] uint8 frames, stored (H, W)).

  Raises:
    TracksFileError: frames of different sizes, or smaller than a center_crop.
  """
  if transform not in TRANSFORMS:
    raise ValueError(f'transform must be one of {TRANSFORMS}, got {transform!r}')
  where = where or os.path.dirname(files[0])
  raw = [read_rgb(files[int(k)]) for k in indices]
  src_hw = tuple(raw[0].shape[:2])
  odd = [files[int(k)] for k, f in zip(indices, raw) if f.shape[:2] != src_hw]
  if odd:
    raise TracksFileError(where, None, f'frames {odd} differ in size from '
                          f'{files[int(indices[0])]} {src_hw}')
  size = int(input_size)
  if size and src_hw != (size, size):
    if transform == 'resize':
      from PIL import Image  # pylint: disable=g-import-not-at-top
      raw = [np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR), np.uint8)
             for f in raw]
    else:
      if src_hw[0] < size or src_hw[1] < size:
        raise TracksFileError(where, None, f'frames {src_hw} are smaller than the center_crop '
                              f'input size {(size, size)}')
      top, left = center_crop_box(src_hw, (size, size))
      raw = [f[top:top + size, left:left + size] for f in raw]
  return np.stack(raw), src_hw


class FrameWindowSource(grain.RandomAccessDataSource):
  """Clips from video frame folders and their tracks files (module docstring).

  Record: {'frames' [T, H, W, 3] uint8, 'tracks' [T, N, 2] float32, 'visibility' [T, N] bool}
  after the source's geometric transform (no flip, no normalisation).
  """

  def __init__(self, frames_root: str | os.PathLike, tracks_root: str | os.PathLike, *,
               input_size: int, num_clip_frames: int, regular_step: int, grid_size: int,
               frames_subdir: str = '', transform: str = 'resize', name: str = 'frames'):
    self._frames_root = os.fspath(frames_root)
    self._tracks_root = os.fspath(tracks_root)
    if transform not in TRANSFORMS:
      raise ValueError(f'data source {name!r}: transform must be one of {TRANSFORMS}, got '
                       f'{transform!r}')
    if not os.path.isdir(self._tracks_root):
      raise FileNotFoundError(f'data source {name!r}: tracks_root {self._tracks_root} is not a '
                              'directory')
    if not os.path.isdir(self._frames_root):
      raise FileNotFoundError(f'data source {name!r}: frames_root {self._frames_root} is not a '
                              'directory')
    self._files = sorted(str(p) for p in pathlib.Path(self._tracks_root).rglob('*.npz'))
    if not self._files:
      raise FileNotFoundError(f'data source {name!r}: no tracks files <video>/<window>.npz under '
                              f'{self._tracks_root}')
    self._size = (int(input_size), int(input_size))
    self._t, self._step, self._grid = int(num_clip_frames), int(regular_step), int(grid_size)
    self._subdir, self._transform, self._name = frames_subdir, transform, name

  def __len__(self) -> int:
    return len(self._files)

  @property
  def files(self) -> list[str]:
    return list(self._files)

  def frame_dir(self, tracks_path: str) -> str:
    """The frame folder of the video a tracks file belongs to."""
    video = os.path.relpath(os.path.dirname(tracks_path), self._tracks_root)
    return os.path.join(self._frames_root, video, self._subdir)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    path = self._files[int(index)]
    rec = read_tracks_file(path, self._grid)
    frame_files = list_frames(self.frame_dir(path))
    fidx = rec['frame_indices']
    if fidx[-1] >= len(frame_files):
      raise TracksFileError(path, 'frame_indices', f'reaches {int(fidx[-1])} but '
                            f'{self.frame_dir(path)} has {len(frame_files)} frames')
    pos = clip_frame_positions(len(fidx), self._t, self._step)
    tracks = rec['tracks'][pos]  # [T, N, 2] in image_size pixels
    vis = rec['visibility'][pos]  # [T, N]
    track_hw = tuple(int(v) for v in rec['image_size'])
    h, w = self._size
    frames, src_hw = read_clip_frames(frame_files, fidx[pos], h, self._transform,
                                      self.frame_dir(path))
    if self._transform == 'resize':
      tracks = rescale_points(tracks, track_hw, (h, w))
    else:
      top, left = center_crop_box(src_hw, (h, w))
      tracks = rescale_points(tracks, track_hw, src_hw) - np.asarray([left, top], np.float32)
      # Points queried outside the crop carry no signal: invisible in every frame.
      inside = ((tracks[..., 0] >= -0.5) & (tracks[..., 0] < w - 0.5)
                & (tracks[..., 1] >= -0.5) & (tracks[..., 1] < h - 0.5))
      vis = vis & inside & inside[:1]
    return {'frames': frames, 'tracks': tracks.astype(np.float32),
            'visibility': vis.astype(bool)}

  def __repr__(self) -> str:
    return (f'FrameWindowSource(name={self._name!r}, frames_root={os.path.abspath(self._frames_root)!r}, '
            f'tracks_root={os.path.abspath(self._tracks_root)!r}, n={len(self._files)}, size={self._size}, '
            f'T={self._t}, step={self._step}, grid={self._grid}, transform={self._transform!r})')


class MixtureSource(grain.RandomAccessDataSource):
  """Named sources mixed 'proportional'ly (concatenation) or by 'ratios'."""

  def __init__(self, sources: Mapping[str, grain.RandomAccessDataSource],
               ratios: Mapping[str, float] | None = None, mode: str = 'proportional',
               seed: int = 0):
    if not sources:
      raise ValueError('MixtureSource: no data sources (set config.data.sources.<name>.'
                       'frames_root/tracks_root or config.data.synthetic.num_train > 0)')
    if mode not in ('proportional', 'ratios'):
      raise ValueError(f"config.data.mixture must be 'proportional' or 'ratios', got {mode!r}")
    self._names = sorted(sources)
    self._sources = [sources[n] for n in self._names]
    self._lengths = np.asarray([len(s) for s in self._sources], np.int64)
    self._offsets = np.concatenate([[0], np.cumsum(self._lengths)])
    self._mode, self._seed = mode, int(seed)
    if mode == 'ratios':
      ratios = dict(ratios or {})
      r = np.asarray([float(ratios.get(n, 0.0)) for n in self._names], np.float64)
      if np.any(r < 0) or r.sum() <= 0:
        raise ValueError(f'config.data.sources.<name>.ratio must be >= 0 with a positive sum, got '
                         f'{dict(zip(self._names, r.tolist()))}')
      self._probs = r / r.sum()
    else:
      self._probs = self._lengths / self._lengths.sum()

  @property
  def names(self) -> list[str]:
    return list(self._names)

  @property
  def probabilities(self) -> dict[str, float]:
    return dict(zip(self._names, self._probs.tolist()))

  def __len__(self) -> int:
    return int(self._offsets[-1])

  def locate(self, index: int) -> tuple[str, int]:
    """(source name, item index) of mixture item `index`."""
    index = int(index)
    if self._mode == 'proportional':
      k = int(np.searchsorted(self._offsets, index, side='right') - 1)
      return self._names[k], index - int(self._offsets[k])
    g = np.random.default_rng((self._seed, index))
    k = int(g.choice(len(self._names), p=self._probs))
    return self._names[k], int(g.integers(self._lengths[k]))

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    name, item = self.locate(index)
    return self._sources[self._names.index(name)][item]

  def __repr__(self) -> str:
    parts = ', '.join(f'{n}={s!r}' for n, s in zip(self._names, self._sources))
    return f'MixtureSource(mode={self._mode!r}, seed={self._seed}, {parts})'


class RandomClipFlip(grain.RandomMapTransform):
  """Horizontal flip of the whole clip (frames and tracks) with probability p."""

  def __init__(self, prob: float = 0.5):
    self._p = float(prob)

  def random_map(self, element: dict[str, np.ndarray], rng: np.random.Generator):
    if rng.uniform() >= self._p:
      return element
    out = {**element, 'frames': np.ascontiguousarray(element['frames'][:, :, ::-1])}
    if 'tracks' in element:  # clips tracked on the fly get their tracks after the flip
      tracks = element['tracks'].copy()
      tracks[..., 0] = (element['frames'].shape[2] - 1) - tracks[..., 0]
      out['tracks'] = tracks
    return out


# ----------------------------------------------------------------------------------------------
# Synthetic windows.


def ensure_synthetic_windows(directory: str | os.PathLike, num_clips: int, *, seed: int,
                             num_frames: int, size: int, grid_size: int,
                             desc: str = 'synthetic clips') -> tuple[str, str]:
  """Renders `num_clips` grid-tracked synthetic clips in the tracks-file format.

  Clip i is `tapkit.data.synthetic.generate_clip((seed, i), num_frames, size, size,
  query_mode='grid', grid_size=grid_size)`: a dynamic textured scene with a moving camera, the
  grid of pixel centres floor((j + 0.5) * size / grid_size) on frame 0, exact tracks projected to
  pixels and exact visibility. Written as
  <directory>/frames/clip_<i>/<t>.png and <directory>/tracks/clip_<i>/window_000.npz, and reused
  while the generator parameters match (`tapkit.data.synthetic.ensure_clips`, which only lists a
  clip once all its files are in place).

  Returns:
    (frames_root, tracks_root).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from tapkit.data import pipeline, synthetic  # pylint: disable=g-import-not-at-top

  def write(clip, staging: pathlib.Path, name: str) -> None:
    frame_dir = staging / 'frames' / name
    frame_dir.mkdir(parents=True, exist_ok=True)
    for t, rgb in enumerate(clip.frames):
      Image.fromarray(rgb).save(frame_dir / f'{t:05d}.png')
    tracks = pipeline.project_to_pixels(clip.tracks_xyz, clip.intrinsics)  # [T, N, 2]
    write_tracks_file(staging / 'tracks' / name / 'window_000.npz', tracks, clip.visibility,
                      np.arange(num_frames), (size, size))

  root = pathlib.Path(directory)
  synthetic.ensure_clips(root, num_clips, seed, writer=write,
                         record_format='dpov_frames_png_tracks_npz', description=desc,
                         num_frames=num_frames, height=size, width=size, query_mode='grid',
                         grid_size=grid_size)
  return str(root / 'frames'), str(root / 'tracks')
