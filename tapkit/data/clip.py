"""The in-memory TAPVid-3D clip: one dataclass shared by readers, writers and pipelines.

Layout (official TAPVid-3D field names in brackets):
  tracks_xyz      [T, N, 3] float32, metres, in the camera frame of each frame  (`tracks_XYZ`)
  visibility      [T, N] bool                                                    (`visibility`)
  queries_xyt     [N, 3] float32, (x pixel, y pixel, t frame)                    (`queries_xyt`)
  intrinsics      [4] float32, (fx, fy, cx, cy) in pixels of the stored frames   (`fx_fy_cx_cy`)
  extrinsics_w2c  [T, 4, 4] float32 world-to-camera, or None                     (`extrinsics_w2c`)

Frames are held either decoded (`[T, H, W, 3]` uint8) or as per-frame JPEG bytes and
decoded on first access of `Clip.frames`.

Optional extras written by the synthetic generator (absent in official files):
  depth           [T, H, W] float32, metres along the optical axis (z), 0 where nothing is hit
  normals         [T, H, W, 3] float32, unit surface normals in the camera frame
  object_ids      [N] int32, id of the object each track lies on (0 = static background)
  dynamic_mask    [N] bool, True for tracks whose world position changes over time
  extras          any further named arrays (kept verbatim by `save_clip`)

Track-only data (tracker outputs, files scored by `trajan3d.score`) may lack what a
TAPVid-3D file always has:
  tracks_uv       [T, N, 2] float32 (x, y) pixels of the frames, for 2D tracks; then
                  `tracks_xyz` is None
  image_size      (height, width) pixels of the frames the pixel coordinates refer to,
                  when the frames themselves are not stored
  intrinsics      None when the camera is unknown
  name            display name (e.g. the file stem); None = unnamed
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tapkit.io import image as image_io
from tapkit.io.errors import BadFileError


def decode_jpeg(data: bytes, name: str | None = None, field: str | None = None
                ) -> np.ndarray:
  """Decodes one JPEG (or PNG) image to [H, W, 3] uint8 (`tapkit.io.image`, pixels capped).

  Raises:
    BadFileError (a ValueError) naming `name` (the file the bytes come from) and `field`.
  """
  if not isinstance(data, bytes):
    raise BadFileError(name or '<bytes>', field, f'expected encoded image bytes, got '
                       f'{type(data).__name__}')
  return image_io.read_image(data, 'RGB', name=name or '<bytes>', field=field,
                             dtype=np.uint8)


@dataclasses.dataclass
class Clip:
  """One TAPVid-3D clip. See the module docstring for shapes and units."""

  tracks_xyz: np.ndarray | None
  visibility: np.ndarray
  queries_xyt: np.ndarray
  intrinsics: np.ndarray | None
  extrinsics_w2c: np.ndarray | None = None
  # Exactly one of `raw_frames` / `jpeg_bytes` is normally set; both may be None
  # for track-only clips (e.g. prediction files).
  raw_frames: np.ndarray | None = None
  jpeg_bytes: list[bytes] | None = None
  depth: np.ndarray | None = None
  normals: np.ndarray | None = None
  object_ids: np.ndarray | None = None
  dynamic_mask: np.ndarray | None = None
  extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  path: str | None = None
  tracks_uv: np.ndarray | None = None
  image_size: tuple[int, int] | None = None
  name: str | None = None

  @property
  def tracks(self) -> np.ndarray:
    """[T, N, 3] `tracks_xyz`, or [T, N, 2] `tracks_uv` for clips of 2D tracks."""
    return self.tracks_xyz if self.tracks_xyz is not None else self.tracks_uv

  @property
  def num_frames(self) -> int:
    return int(self.tracks.shape[0])

  @property
  def num_tracks(self) -> int:
    return int(self.tracks.shape[1])

  @property
  def query_frames(self) -> np.ndarray:
    """[N] int64 query frame of each track: `queries_xyt[:, 2]` rounded."""
    return np.round(np.asarray(self.queries_xyt)[:, 2]).astype(np.int64)

  @property
  def has_frames(self) -> bool:
    return self.raw_frames is not None or self.jpeg_bytes is not None

  @property
  def frames(self) -> np.ndarray:
    """[T, H, W, 3] uint8; JPEG frames are decoded once, on first access."""
    if self.raw_frames is None:
      if self.jpeg_bytes is None:
        raise ValueError(f'{self.path or "clip"}: has no frames')
      name = self.path or 'clip'
      frames = [decode_jpeg(b, name, f'images_jpeg_bytes[{t}]')
                for t, b in enumerate(self.jpeg_bytes)]
      for t, frame in enumerate(frames):
        if frame.shape != frames[0].shape:
          raise BadFileError(name, f'images_jpeg_bytes[{t}]', f'frame of shape {frame.shape} '
                             f'differs from frame 0 {frames[0].shape}')
      self.raw_frames = np.stack(frames)
    return self.raw_frames

  @property
  def frame_size(self) -> tuple[int, int]:
    """(height, width) of the stored frames, else `image_size`; decodes only the first
    JPEG frame if needed."""
    if self.raw_frames is not None:
      return int(self.raw_frames.shape[1]), int(self.raw_frames.shape[2])
    if self.image_size is not None:
      return int(self.image_size[0]), int(self.image_size[1])
    if self.jpeg_bytes is not None:
      first = decode_jpeg(self.jpeg_bytes[0], self.path or 'clip', 'images_jpeg_bytes[0]')
      return int(first.shape[0]), int(first.shape[1])
    raise ValueError(f'{self.path or "clip"}: has no frames')

  def replace(self, **changes: Any) -> 'Clip':
    return dataclasses.replace(self, **changes)
