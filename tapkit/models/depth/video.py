"""Video Depth Anything on whole videos: the official offline procedure (`infer_video_depth`).

  depths = infer_video_depth(module, params, frames)      # frames [N, H, W, 3] uint8 RGB
  # depths [N, H, W] float32 at the input resolution

Steps (equal to the original `VideoDepthAnything.infer_video_depth`):

1. Network size: a wide video (long/short side > 1.78) lowers `input_size` to
   round14(int(input_size·1.777/ratio)); then the short side is scaled to `input_size` and both
   sides rounded to multiples of 14 (half to even, never below `input_size`).
2. Each frame: /255 (always, whatever the dtype), OpenCV-style bicubic resize (a = −0.75,
   half-pixel centres, clamped borders, no antialiasing), ImageNet mean/std normalisation.
3. Windows of 32 frames with stride 22 (10 overlapping); the video is padded by repeating its last
   frame. Window k ≥ 1 replaces its first two positions by key frames (video frame 0 and frame
   22(k−1)+12); positions 2…9 are the previous window's last 8 frames.
4. One forward per window (B = 1, T = 32); each depth map is resized back to H × W with bilinear
   align_corners=True.
5. Stitching (numpy float32): window k ≥ 1 is mapped onto window 0's scale by a least-squares
   (scale, shift) between its two key-frame depths and the reference depths of the same frames
   (none for metric models), clamped at 0, and cross-faded over the 8 overlapping frames with
   weights i/7.

Memory stays bounded for long videos: frames are read (`frames[i]`, so an array, a memmap or a
lazy reader) and depths finished window by window (`iter_video_depth`). The network runs under
one `jax.jit` per frame size; `dtype=jnp.bfloat16` computes in bfloat16 (float32 default).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models.depth.vda import VideoDepthAnything, cast_params
from tapkit.ops.sampling import bicubic_matrix, bilinear_matrix

INFER_LEN = 32
OVERLAP = 10
KEYFRAMES = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)
INTERP_LEN = 8
STRIDE = INFER_LEN - OVERLAP
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PATCH = 14


class FrameSource(Protocol):
  """Random access to RGB frames [H, W, 3] (a numpy array [N, H, W, 3] is one)."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> np.ndarray:
    ...


def effective_input_size(height: int, width: int, input_size: int = 518) -> int:
  """`input_size` after the wide-video rule: ratio = long/short side; if ratio > 1.78 it becomes
  round_half_even(int(input_size·1.777/ratio)/14)·14."""
  ratio = max(height, width) / min(height, width)
  if ratio > 1.78:
    input_size = int(input_size * 1.777 / ratio)
    input_size = round(input_size / PATCH) * PATCH
  return input_size


def _multiple_of_14(x: float, min_val: int) -> int:
  y = int(np.round(x / PATCH) * PATCH)
  if y < min_val:
    y = int(np.ceil(x / PATCH) * PATCH)
  return y


def network_size(height: int, width: int, input_size: int = 518) -> tuple[int, int]:
  """(net_h, net_w): the frame size the network sees (aspect kept, short side = input_size,
  multiples of 14). `input_size` here is the effective one (see `effective_input_size`)."""
  if height < 1 or width < 1:
    raise ValueError(f'network_size: empty frame {height}×{width}')
  scale = max(input_size / height, input_size / width)
  return (_multiple_of_14(scale * height, input_size), _multiple_of_14(scale * width, input_size))


def video_network_size(height: int, width: int, input_size: int = 518) -> tuple[int, int]:
  """Both rules in sequence: the network size `infer_video_depth` uses for H × W frames."""
  return network_size(height, width, effective_input_size(height, width, input_size))


def preprocess(frames: jax.Array, net_hw: tuple[int, int]) -> jax.Array:
  """Network input from frames [T, H, W, 3] (uint8 or float; divided by 255 in every case).

  Returns [T, net_h, net_w, 3] float32: bicubic (a = −0.75, half-pixel, clamped, no antialias)
  resize of frames/255, then (x − mean)/std.
  """
  t, h, w, _ = frames.shape
  x = jnp.asarray(frames).astype(jnp.float32) / jnp.float32(255.0)
  my = jnp.asarray(bicubic_matrix(h, net_hw[0]), jnp.float32)
  mx = jnp.asarray(bicubic_matrix(w, net_hw[1]), jnp.float32)
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum('Yy,tyxc->tYxc', my, x, precision=hi)
  x = jnp.einsum('Xx,tYxc->tYXc', mx, x, precision=hi)
  return (x - jnp.asarray(MEAN, jnp.float32)) / jnp.asarray(STD, jnp.float32)


def num_windows(num_frames: int) -> int:
  """⌈N / 22⌉ windows of 32 frames cover N frames padded by repeating the last one."""
  if num_frames < 1:
    raise ValueError('a video needs at least one frame')
  return -(-num_frames // STRIDE)


def window_frame_indices(num_frames: int, k: int) -> np.ndarray:
  """[32] video frame indices that window k reads (key frames substituted, padding = last
  frame)."""
  idx = np.arange(STRIDE * k, STRIDE * k + INFER_LEN)
  if k > 0:
    idx[0] = 0
    idx[1] = STRIDE * (k - 1) + KEYFRAMES[1]
  return np.minimum(idx, num_frames - 1)


def fit_scale_shift(prediction: np.ndarray, target: np.ndarray) -> tuple[np.float32, np.float32]:
  """Least-squares (a, b) minimising Σ(a·x + b − y)² over all pixels, from float32 sums (the
  original closed form; (1, 0) when the system is singular)."""
  x = prediction.astype(np.float32)
  y = target.astype(np.float32)
  ones = np.ones_like(y)
  a00, a01, a11 = np.sum(ones * x * x), np.sum(ones * x), np.sum(ones)
  b0, b1 = np.sum(ones * x * y), np.sum(ones * y)
  det = a00 * a11 - a01 * a01
  if det == 0:
    return np.float32(1), np.float32(0)
  return (a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det


class WindowStitcher:
  """Aligns and cross-fades the raw window depths into one sequence (numpy float32).

  `add(raw)` takes window k's raw depths [32, H, W] (already at the frame size) and returns the
  frames that no later window can change; `finish()` returns the rest. Frames past the video
  length (the padding) are never returned.

  Attributes:
    num_frames: N, the video length.
    metric: no scale/shift fit (metric depth), same blend and clamp.
    scale_shift: [(a, b)] fitted for windows 1, 2, … (empty for metric models).
  """

  def __init__(self, num_frames: int, metric: bool = False):
    self.num_frames = int(num_frames)
    self.metric = metric
    self.scale_shift: list[tuple[float, float]] = []
    self._pending: list[np.ndarray] = []  # not yet final (last 8 can still be blended)
    self._emitted = 0
    self._ref: list[np.ndarray] = []
    self._windows = 0

  def add(self, raw: np.ndarray) -> list[np.ndarray]:
    raw = np.asarray(raw, np.float32)
    if raw.shape[0] != INFER_LEN:
      raise ValueError(f'WindowStitcher.add: expected {INFER_LEN} depth maps, got {raw.shape[0]}')
    align = OVERLAP - INTERP_LEN  # 2 key frames
    if self._windows == 0:
      self._pending = list(raw)
      self._ref = [raw[k] for k in KEYFRAMES[:align]]
    else:
      if self.metric:
        a, b = np.float32(1), np.float32(0)
      else:
        a, b = fit_scale_shift(np.concatenate(raw[:align]), np.concatenate(self._ref))
        self.scale_shift.append((float(a), float(b)))
      mapped = lambda d: np.maximum(d * a + b, 0).astype(np.float32)
      post = [mapped(raw[align + i]) for i in range(INTERP_LEN)]
      step = 1.0 / (INTERP_LEN - 1)
      weights = [0.0] + [i * step for i in range(1, INTERP_LEN - 1)] + [1.0]
      pre = self._pending[-INTERP_LEN:]
      self._pending[-INTERP_LEN:] = [p * (1 - w) + q * w for p, q, w in zip(pre, post, weights)]
      self._pending += [mapped(raw[p]) for p in range(OVERLAP, INFER_LEN)]
      self._ref = [self._ref[0]] + [mapped(raw[k]) for k in KEYFRAMES[1:align]]
    self._windows += 1
    done = self._pending[:-INTERP_LEN]
    self._pending = self._pending[-INTERP_LEN:]
    return self._take(done)

  def finish(self) -> list[np.ndarray]:
    rest, self._pending = self._pending, []
    return self._take(rest)

  def _take(self, frames: list[np.ndarray]) -> list[np.ndarray]:
    frames = frames[:max(self.num_frames - self._emitted, 0)]
    self._emitted += len(frames)
    return frames


class VideoDepthPredictor:
  """The window forward, compiled once per frame size, with the model's parameters bound.

  Attributes:
    module: a `VideoDepthAnything`.
    params: its parameters (float32; cast to `dtype` for the computation).
    input_size: network short side (518 for the released models).
    dtype: compute dtype (float32, or bfloat16 for speed; the head's last convs stay float32).
  """

  def __init__(self, module: VideoDepthAnything, params: Any, input_size: int = 518,
               dtype: Any = jnp.float32):
    self.module = module
    self.input_size = int(input_size)
    self.dtype = jnp.dtype(dtype)
    self.params = cast_params(params, self.dtype)
    self._fns: dict[tuple[int, int], Callable] = {}

  def network_size(self, height: int, width: int) -> tuple[int, int]:
    return video_network_size(height, width, self.input_size)

  def _fn(self, height: int, width: int) -> Callable:
    if (height, width) not in self._fns:
      net_hw = self.network_size(height, width)
      back_y = bilinear_matrix(net_hw[0], height, align_corners=True).astype(np.float32)
      back_x = bilinear_matrix(net_hw[1], width, align_corners=True).astype(np.float32)
      module, dtype = self.module, self.dtype

      def run(params, frames):
        x = preprocess(frames, net_hw).astype(dtype)[None]  # [1, 32, h, w, 3]
        depth = module.apply({'params': params}, x)[0].astype(jnp.float32)  # [32, h, w]
        hi = jax.lax.Precision.HIGHEST
        return jnp.einsum('Yy,tyx,Xx->tYX', jnp.asarray(back_y), depth, jnp.asarray(back_x),
                          precision=hi)
      self._fns[(height, width)] = jax.jit(run)
    return self._fns[(height, width)]

  def window(self, frames: np.ndarray) -> np.ndarray:
    """Raw depth [T, H, W] float32 of one window of frames [T, H, W, 3] (T ≤ 32)."""
    frames = np.asarray(frames)
    return np.asarray(self._fn(frames.shape[1], frames.shape[2])(self.params, frames))


def iter_video_depth(predictor: VideoDepthPredictor, frames: FrameSource, metric: bool = False,
                     progress: Callable[[int, int], None] | None = None,
                     raw_windows: list | None = None,
                     stitcher: WindowStitcher | None = None) -> Iterator[np.ndarray]:
  """Yields the depth maps [H, W] float32 of `frames` in order, window by window.

  Args:
    predictor: the compiled model.
    frames: N RGB frames [H, W, 3] (uint8 0–255; any dtype is divided by 255).
    metric: metric model: no scale/shift alignment between windows.
    progress: called as progress(window index + 1, number of windows).
    raw_windows: if a list, each window's raw depths [32, H, W] are appended (debugging).
    stitcher: a `WindowStitcher` to use (its `scale_shift` can be read afterwards).
  """
  n = len(frames)
  stitcher = WindowStitcher(n, metric) if stitcher is None else stitcher
  if stitcher.num_frames != n:
    raise ValueError(f'stitcher is for {stitcher.num_frames} frames, the video has {n}')
  windows = num_windows(n)
  cache: dict[int, np.ndarray] = {}
  for k in range(windows):
    idx = window_frame_indices(n, k)
    cache = {i: cache[i] if i in cache else np.asarray(frames[int(i)]) for i in idx}
    batch = np.stack([cache[i] for i in idx])
    if batch.ndim != 4 or batch.shape[-1] != 3:
      raise ValueError(f'frames must be [H, W, 3] RGB, got {batch.shape[1:]}')
    raw = predictor.window(batch)
    if raw_windows is not None:
      raw_windows.append(raw)
    yield from stitcher.add(raw)
    if progress is not None:
      progress(k + 1, windows)
  yield from stitcher.finish()


def infer_video_depth(module: VideoDepthAnything, params: Any, frames: FrameSource | np.ndarray,
                      input_size: int = 518, dtype: Any = jnp.float32, metric: bool | None = None,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
  """Depth [N, H, W] float32 of a video (the original offline procedure, see the module doc).

  Args:
    module, params: the model (`load_vda_checkpoint`).
    frames: [N, H, W, 3] RGB uint8 frames (or any random-access sequence of them).
    input_size: network short side (518).
    dtype: compute dtype (float32 default; bfloat16 is faster, not bit-comparable).
    metric: no window alignment; None: `module.config.metric`.
    progress: progress(window, windows) callback.
  """
  metric = module.config.metric if metric is None else metric
  predictor = VideoDepthPredictor(module, params, input_size, dtype)
  return np.stack(list(iter_video_depth(predictor, frames, metric, progress)))

