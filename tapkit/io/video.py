"""Reading and writing videos: mp4 / webm / avi / mov / mkv, gif, and folders of frames.

    video = read_video('clip.mp4', fps=10, max_frames=48, resize=(256, 256))
    video.frames  # [T, H, W, 3] uint8 RGB
    video.fps     # frames per second of the returned frames
    write_video('out.mp4', video.frames, video.fps)

Container formats are decoded and encoded by the ffmpeg binary that ships in the
`imageio-ffmpeg` wheel (through imageio); nothing from the system is needed. GIFs go
through Pillow. A folder is read as the sorted `*.jpg` / `*.jpeg` / `*.png` files in it
(names sorted naturally, so `2.png` comes before `10.png`); its frame rate is unknown and
taken to be `FOLDER_FPS`.

Every problem with a file (missing, not a video, truncated to nothing, frames of mixed
sizes) raises `tapkit.io.BadFileError` naming the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Sequence

import numpy as np

from tapkit.io.errors import BadFileError

CONTAINER_SUFFIXES = ('.mp4', '.webm', '.avi', '.mov', '.mkv', '.m4v')
GIF_SUFFIXES = ('.gif',)
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
VIDEO_SUFFIXES = CONTAINER_SUFFIXES + GIF_SUFFIXES
# Frame rate assumed for folders of frames (they carry none).
FOLDER_FPS = 30.0
# Frame rate assumed for a GIF whose frames declare no duration.
GIF_DEFAULT_FPS = 10.0


@dataclasses.dataclass
class Video:
  """A decoded video.

  Attributes:
    frames: [T, H, W, 3] uint8 RGB.
    fps: frames per second of `frames` (after resampling and striding).
    path: the file or folder it was read from.
  """

  frames: np.ndarray
  fps: float
  path: str

  @property
  def num_frames(self) -> int:
    return int(self.frames.shape[0])


def _natural_key(name: str) -> list:
  return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', name)]


def frame_files(folder: str | os.PathLike) -> list[str]:
  """Sorted (natural order) image files (`IMAGE_SUFFIXES`, any case) of a folder."""
  folder = os.fspath(folder)
  names = [n for n in os.listdir(folder)
           if n.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(folder, n))]
  return [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]


def list_videos(path_or_dir: str | os.PathLike) -> list[str]:
  """The videos a user means by `path_or_dir`.

  A video file -> [it]. A folder holding image frames and no video file -> [the folder]
  (one video). Any other folder -> its video files (`VIDEO_SUFFIXES`) and its sub-folders
  that hold frames, sorted by name (not recursive beyond one level).

  Raises:
    BadFileError: the path does not exist, is a file of another kind, or the folder
      holds no video.
  """
  path = os.fspath(path_or_dir)
  if os.path.isfile(path):
    if not path.lower().endswith(VIDEO_SUFFIXES):
      raise BadFileError(path, None, f'not a video file (expected one of {VIDEO_SUFFIXES})')
    return [path]
  if not os.path.isdir(path):
    raise BadFileError(path, None, 'no such file or folder')
  entries = sorted(os.listdir(path), key=_natural_key)
  videos = [os.path.join(path, n) for n in entries
            if n.lower().endswith(VIDEO_SUFFIXES) and os.path.isfile(os.path.join(path, n))]
  if not videos and frame_files(path):
    return [path]
  for name in entries:
    sub = os.path.join(path, name)
    if os.path.isdir(sub) and frame_files(sub):
      videos.append(sub)
  if not videos:
    raise BadFileError(path, None, f'folder holds no video ({", ".join(VIDEO_SUFFIXES)}) '
                       f'and no frames ({", ".join(IMAGE_SUFFIXES)})')
  return videos


def _pick(source_fps: float, fps: float | None) -> tuple[float, float]:
  """(source frames per output frame, output fps) for resampling to `fps` by picking."""
  if fps is None or fps >= source_fps:
    return 1.0, source_fps
  return source_fps / fps, fps


def _select(frames: Iterator[np.ndarray], step: float, stride: int,
            max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
  """Yields (source index, frame) of the picked frames: source frames round(k * step),
  every `stride`-th of those, at most `max_frames`."""
  k = 0  # index of the next resampled frame
  taken = 0
  target = 0
  for i, frame in enumerate(frames):
    if i < target:
      continue
    if k % stride == 0:
      yield i, frame
      taken += 1
      if max_frames is not None and taken >= max_frames:
        return
    k += 1
    target = int(np.floor(k * step + 0.5))


def _resize(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
  if size is None or tuple(frame.shape[:2]) == tuple(size):
    return frame
  import cv2  # pylint: disable=g-import-not-at-top

  height, width = size
  shrink = height * width < frame.shape[0] * frame.shape[1]
  return cv2.resize(frame, (width, height),
                    interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _to_rgb(frame: np.ndarray) -> np.ndarray:
  frame = np.asarray(frame)
  if frame.ndim == 2:
    frame = np.repeat(frame[..., None], 3, axis=-1)
  if frame.shape[-1] == 4:
    frame = frame[..., :3]
  if frame.dtype != np.uint8:
    frame = np.clip(frame, 0, 255).astype(np.uint8)
  return frame


def _container_frames(path: str) -> tuple[float, Iterator[np.ndarray], object]:
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top

  reader = imageio.get_reader(path, format='FFMPEG')
  fps = float(reader.get_meta_data().get('fps') or 0.0)
  if not np.isfinite(fps) or fps <= 0:
    reader.close()
    raise BadFileError(path, None, f'no valid frame rate in the stream (got {fps})')
  return fps, iter(reader), reader


def _gif_frames(path: str) -> tuple[float, Iterator[np.ndarray], object]:
  from PIL import Image, ImageSequence  # pylint: disable=g-import-not-at-top

  image = Image.open(path)
  duration = image.info.get('duration') or 0
  fps = 1000.0 / duration if duration > 0 else GIF_DEFAULT_FPS
  frames = (np.asarray(f.convert('RGB')) for f in ImageSequence.Iterator(image))
  return fps, frames, image


def _folder_frames(path: str) -> tuple[float, Iterator[np.ndarray], object]:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  files = frame_files(path)

  def frames():
    for name in files:
      try:
        with Image.open(name) as image:
          yield np.asarray(image.convert('RGB'))
      except (OSError, ValueError) as e:
        raise BadFileError(name, None, f'unreadable frame: {e}') from None

  return FOLDER_FPS, frames(), None


def read_video(path: str | os.PathLike, *, fps: float | None = None, stride: int = 1,
               max_frames: int | None = None,
               resize: Sequence[int] | None = None) -> Video:
  """Reads a video file or a folder of frames.

  Frames are decoded one at a time and only the picked ones are kept, so long videos with
  a small `max_frames` cost little memory.

  Args:
    path: a video file (`VIDEO_SUFFIXES`) or a folder of image frames.
    fps: resample to this frame rate by picking source frames round(k * source_fps / fps)
      (no interpolation); None or a rate >= the source's keeps every frame.
    stride: then keep every `stride`-th frame (the returned fps is divided by it).
    max_frames: then keep at most this many frames (from the start).
    resize: (height, width) in pixels of the returned frames (area filter when shrinking,
      bilinear when enlarging); None keeps the stored size.

  Returns:
    `Video(frames [T, H, W, 3] uint8 RGB, fps, path)`.

  Raises:
    ValueError: a bad option (naming it).
    BadFileError: naming the file, when it is missing, not decodable, holds no frames,
      or holds frames of different sizes.
  """
  path = os.fspath(path)
  if fps is not None and not (np.isfinite(fps) and fps > 0):
    raise ValueError(f'fps must be a positive number, got {fps}')
  if int(stride) != stride or stride < 1:
    raise ValueError(f'stride must be an integer >= 1, got {stride}')
  if max_frames is not None and (int(max_frames) != max_frames or max_frames < 1):
    raise ValueError(f'max_frames must be an integer >= 1, got {max_frames}')
  if resize is not None:
    resize = tuple(int(s) for s in resize)
    if len(resize) != 2 or min(resize) < 1:
      raise ValueError(f'resize must be (height, width) >= 1, got {resize}')
  if os.path.isdir(path):
    if not frame_files(path):
      raise BadFileError(path, None, f'folder holds no frames ({", ".join(IMAGE_SUFFIXES)})')
    opener = _folder_frames
  elif not os.path.isfile(path):
    raise BadFileError(path, None, 'no such file or folder')
  elif os.path.getsize(path) == 0:
    raise BadFileError(path, None, 'empty file')
  elif path.lower().endswith(GIF_SUFFIXES):
    opener = _gif_frames
  else:
    opener = _container_frames
  handle = None
  try:
    source_fps, frames, handle = opener(path)
    step, out_fps = _pick(source_fps, fps)
    kept, first_shape = [], None
    for index, frame in _select(frames, step, int(stride), max_frames):
      frame = _to_rgb(frame)
      first_shape = first_shape or frame.shape
      if frame.shape != first_shape:
        raise BadFileError(path, f'frame {index}', f'size {list(frame.shape[:2])} differs '
                           f'from the first frame {list(first_shape[:2])}')
      kept.append(_resize(frame, resize))
  except BadFileError:
    raise
  except Exception as e:  # pylint: disable=broad-exception-caught
    # Decoders raise many types (OSError, RuntimeError, IndexError, ...) on broken files.
    message = str(e).strip().splitlines()
    raise BadFileError(path, None, f'cannot decode as a video: {type(e).__name__}: '
                       f'{message[-1] if message else ""}'.rstrip(': ')) from None
  finally:
    if handle is not None:
      handle.close()
  if not kept:
    raise BadFileError(path, None, 'holds no frames (empty or truncated video)')
  return Video(frames=np.stack(kept), fps=float(out_fps / stride), path=path)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> str:
  """Writes [T, H, W, 3] uint8 frames.

  The suffix picks the format: a container (`CONTAINER_SUFFIXES`; H.264 yuv420p for
  mp4/mov/mkv/avi/m4v, VP9 for webm; odd sides are padded by one replicated row/column),
  '.gif' (Pillow; the delay is rounded to 10 ms), or no suffix: a folder of
  `00000.png`, `00001.png`, ... (lossless; read back by `read_video`).

  Returns:
    The path written.
  """
  path = os.fspath(path)
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
    raise ValueError(f'frames must be [T, H, W, 3] with T >= 1, got {frames.shape}')
  if frames.dtype != np.uint8:
    raise ValueError(f'frames must be uint8, got {frames.dtype}')
  if not (np.isfinite(fps) and fps > 0):
    raise ValueError(f'fps must be a positive number, got {fps}')
  suffix = os.path.splitext(path)[1].lower()
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  if suffix == '':
    from PIL import Image  # pylint: disable=g-import-not-at-top

    os.makedirs(path, exist_ok=True)
    for i, frame in enumerate(frames):
      Image.fromarray(frame).save(os.path.join(path, f'{i:05d}.png'))
    return path
  if suffix in GIF_SUFFIXES:
    from PIL import Image  # pylint: disable=g-import-not-at-top

    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:],
                   duration=max(int(round(100.0 / fps)) * 10, 10), loop=0)
    return path
  if suffix not in CONTAINER_SUFFIXES:
    raise ValueError(f'{path}: unknown video suffix {suffix!r} (use one of '
                     f'{VIDEO_SUFFIXES} or no suffix for a folder of PNG frames)')
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top

  pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
  if pad_h or pad_w:
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode='edge')
  if suffix == '.webm':
    codec, options = 'libvpx-vp9', ['-crf', '30', '-b:v', '0']
  else:
    codec, options = 'libx264', []
  with imageio.get_writer(path, format='FFMPEG', fps=fps, codec=codec, quality=8,
                          pixelformat='yuv420p', macro_block_size=1, output_params=options,
                          ffmpeg_log_level='error') as writer:
    for frame in frames:
      writer.append_data(frame)
  return path
