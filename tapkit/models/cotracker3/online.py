"""CoTracker3 online (sliding-window) model: whole-video mode and streaming sessions.

Windows of S = window_len frames (16 for the released online model) start every step = S / 2
frames. Each window runs the iterative update of `model.window_iterations`, starting from

  * the query position (pixels / 4) and zero visibility / confidence logits, or, for tracks whose
    query frame lies before the window's overlap end (ind + S − step), the previous window's
    estimates of the overlapping frames ind .. ind + S − step − 1 followed by the estimate of
    frame ind + S − step − 1 repeated for the new frames;
  * the query neighbourhood features of tracks whose query frame lies at or after the window's
    end multiplied by zero (they still take part in the transformer).

Its last iteration overwrites frames ind .. of the running estimate.

Whole-video mode (`online_forward`): the video is padded with copies of its last frame to a
multiple of S and the windows ind = 0, step, ... run while ind ≤ T − S + step − 1. For T ≤ step
no window runs and the outputs are zeros (coords) and 0.5 (vis, conf), as in the official code.

Streaming (`OnlineSession`): the caller sends chunks of at most S frames, chunk k starting at
frame k·step (the official `online_demo.py` sends the last S frames every step frames and a
final shorter chunk). Each chunk is padded to S frames; every query's neighbourhood features are
sampled once, from the first chunk whose new frames contain its frame (a frame in the padding of
a short first chunk reads the repeated last frame); every call returns the whole history.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models.cotracker3 import blocks
from tapkit.models.cotracker3 import model as model_lib

Array = jax.Array
Params = Any


def _initial_state(qcoords: Array, frames: Array, prev_coords: Array, prev_vis: Array,
                   prev_conf: Array, ind: Array, window: int):
  """Starting estimate of a window (module docstring).

  Args:
    qcoords: [B, N, 2] query positions in feature cells.
    frames: [B, N] query frames (truncated, unclamped).
    prev_coords: [B, overlap, N, 2] pixels, prev_vis / prev_conf [B, overlap, N] logits: the
      running estimate of frames ind .. ind + overlap − 1.
    ind: the window's first frame (traced or static int).
    window: S.

  Returns:
    coords [B, S, N, 2] feature cells, vis, conf [B, S, N] logits.
  """
  b, overlap, n = prev_vis.shape
  new = window - overlap

  def extend(x):
    return jnp.concatenate([x, jnp.repeat(x[:, -1:], new, axis=1)], axis=1)

  copy = (frames < ind + overlap) & (ind > 0)  # [B, N]
  coords = jnp.where(copy[:, None, :, None], extend(prev_coords / float(blocks.STRIDE)),
                     jnp.broadcast_to(qcoords[:, None], (b, window, n, 2)))
  vis = jnp.where(copy[:, None], extend(prev_vis), 0.0)
  conf = jnp.where(copy[:, None], extend(prev_conf), 0.0)
  return coords, vis, conf


def _masked_support(support, frames, ind, window):
  keep = (frames < ind + window).astype(jnp.float32)[:, :, None, None, None]
  return [s * keep for s in support]


@functools.partial(jax.jit, static_argnames=(
    'iters', 'window_len', 'model_resolution', 'fmaps_chunk_size', 'return_windows'))
def online_forward(params: Params, video: Array, queries: Array, *, iters: int = 4,
                   window_len: int = 16, model_resolution: tuple[int, int] = (384, 512),
                   fmaps_chunk_size: int = model_lib.FMAPS_CHUNK_SIZE,
                   return_windows: bool = False) -> dict[str, Array]:
  """The online model over a whole video (sliding windows, module docstring).

  Args:
    params: the parameter tree.
    video: [B, T, 3, H, W] float32 RGB 0..255 (H, W multiples of 4, ≥ 32).
    queries: [B, N, 3] rows (t, x, y), frame index and pixel position.
    iters: updates per window.
    window_len: S (16 for the released online model).
    model_resolution: (H, W) the model was trained at (normalises relative motions).
    fmaps_chunk_size: frames per feature-CNN call.
    return_windows: also return 'windows_coords_iters' [W, iters, B, S, N, 2],
      'windows_vis_iters', 'windows_conf_iters' [W, iters, B, S, N] (probabilities; window w
      covers frames w·step .. w·step + S − 1, of which those < T are meaningful).

  Returns:
    dict: 'coords' [B, T, N, 2] pixels, 'vis', 'conf' [B, T, N] probabilities.
  """
  video = jnp.asarray(video, jnp.float32)
  queries = jnp.asarray(queries, jnp.float32)
  model_lib.check_video(video, queries)
  b, t = video.shape[:2]
  n = queries.shape[1]
  window = window_len
  step = window // 2
  overlap = window - step
  num_windows = (t - window + step - 1) // step + 1
  if num_windows <= 0:
    half = jnp.full((b, t, n), 0.5, jnp.float32)
    return {'coords': jnp.zeros((b, t, n, 2), jnp.float32), 'vis': half, 'conf': half}
  t_pad = t + (window - t % window) % window
  t_buf = max(t_pad, step * (num_windows - 1) + window)
  video = jnp.concatenate([video, jnp.repeat(video[:, -1:], t_buf - t, axis=1)], axis=1)
  pyramid = model_lib.encode_frames(params, video, fmaps_chunk_size)
  frames = model_lib.query_frames(queries)
  qcoords = queries[..., 1:] / float(blocks.STRIDE)
  support = model_lib.support_features(pyramid, jnp.minimum(frames, t_pad - 1), qcoords)
  time_emb = blocks.interpolate_time_embedding(blocks.time_embedding_table(window_len), window)

  def run_window(state, w):
    coords_buf, vis_buf, conf_buf = state
    ind = w * step
    prev = lambda x: jax.lax.dynamic_slice_in_dim(x, ind, overlap, axis=1)
    coords0, vis0, conf0 = _initial_state(qcoords, frames, prev(coords_buf), prev(vis_buf),
                                          prev(conf_buf), ind, window)
    pyr = [jax.lax.dynamic_slice_in_dim(level, ind, window, axis=1) for level in pyramid]
    ys = model_lib.window_iterations(
        params, pyr, _masked_support(support, frames, ind, window), coords0, vis0, conf0,
        iters=iters, time_emb=time_emb, model_resolution=model_resolution)
    put = lambda buf, x: jax.lax.dynamic_update_slice_in_dim(buf, x, ind, axis=1)
    state = (put(coords_buf, ys['coords'][-1]), put(vis_buf, ys['vis'][-1]),
             put(conf_buf, ys['conf'][-1]))
    return state, ys

  zeros = jnp.zeros((b, t_buf, n), jnp.float32)
  state = (jnp.zeros((b, t_buf, n, 2), jnp.float32), zeros, zeros)
  (coords, vis, conf), ys = jax.lax.scan(run_window, state, jnp.arange(num_windows))
  out = {'coords': coords[:, :t], 'vis': jax.nn.sigmoid(vis[:, :t]),
         'conf': jax.nn.sigmoid(conf[:, :t])}
  if return_windows:
    out.update(windows_coords_iters=ys['coords'], windows_vis_iters=jax.nn.sigmoid(ys['vis']),
               windows_conf_iters=jax.nn.sigmoid(ys['conf']))
  return out


@functools.partial(jax.jit, static_argnames=('iters', 'window_len', 'model_resolution'))
def _stream_step(params: Params, chunk: Array, queries: Array, support: list[Array],
                 prev_coords: Array, prev_vis: Array, prev_conf: Array, online_ind: Array, *,
                 iters: int, window_len: int, model_resolution: tuple[int, int]):
  """One streaming window: chunk [B, S, 3, H, W] (padded) at frame online_ind.

  Returns the updated running support sums and the window's last-iteration coords (pixels),
  vis and conf logits [B, S, N(, 2)].
  """
  window = window_len
  step = window // 2
  pyramid = model_lib.encode_frames(params, chunk, window)
  frames = model_lib.query_frames(queries)
  qcoords = queries[..., 1:] / float(blocks.STRIDE)
  left = jnp.where(online_ind == 0, 0, online_ind + step)
  sample = ((frames >= left) & (frames < online_ind + window)).astype(jnp.float32)
  fresh = model_lib.support_features(pyramid, frames - online_ind, qcoords)
  support = [s + f * sample[:, :, None, None, None] for s, f in zip(support, fresh)]
  coords0, vis0, conf0 = _initial_state(qcoords, frames, prev_coords, prev_vis, prev_conf,
                                        online_ind, window)
  time_emb = blocks.interpolate_time_embedding(blocks.time_embedding_table(window_len), window)
  ys = model_lib.window_iterations(
      params, pyramid, _masked_support(support, frames, online_ind, window), coords0, vis0,
      conf0, iters=iters, time_emb=time_emb, model_resolution=model_resolution)
  return support, ys['coords'][-1], ys['vis'][-1], ys['conf'][-1]


class OnlineSession:
  """Streaming CoTracker3 for one set of queries (the official `init_video_online_processing()`
  followed by `forward(chunk, queries, is_online=True)` calls).

  Usage: `session = OnlineSession(params, queries)`; then for k = 0, 1, ...:
  `out = session(video[:, 8k : 8k + 16], is_first_step=(k == 0))` (the last chunk may be
  shorter). Each call returns the whole history so far: 'coords' [B, end, N, 2] pixels, 'vis',
  'conf' [B, end, N] probabilities (end = 8k + chunk length).
  """

  def __init__(self, params: Params, queries: Array, *, iters: int = 4, window_len: int = 16,
               model_resolution: tuple[int, int] = (384, 512)):
    """Args: params (the parameter tree), queries [B, N, 3] rows (t, x, y) with absolute frame
    indices and pixel positions, iters per window, window_len S, model_resolution (H, W)."""
    queries = np.asarray(queries, np.float32)
    if queries.ndim != 3 or queries.shape[-1] != 3:
      raise ValueError(f'queries must be [B, N, 3], got shape {queries.shape}')
    if window_len < 2 or window_len % 2:
      raise ValueError(f'window_len must be even and at least 2, got {window_len}')
    self.params = params
    self.queries = jnp.asarray(queries)
    self.iters = int(iters)
    self.window_len = int(window_len)
    self.model_resolution = tuple(int(s) for s in model_resolution)
    self.reset()

  def reset(self) -> None:
    """Forgets all frames (the official `init_video_online_processing`)."""
    b, n = self.queries.shape[:2]
    self.online_ind = 0
    self._support: list[Array] | None = None
    self._coords = np.zeros((b, 0, n, 2), np.float32)  # History: pixels.
    self._vis = np.zeros((b, 0, n), np.float32)  # Logits.
    self._conf = np.zeros((b, 0, n), np.float32)

  def __call__(self, video_chunk: Array, is_first_step: bool = False) -> dict[str, np.ndarray]:
    """Processes the chunk starting at frame `online_ind` (reset first when `is_first_step`).

    Args:
      video_chunk: [B, t, 3, H, W] float32 RGB 0..255, 1 ≤ t ≤ window_len.
      is_first_step: start a new video.

    Returns:
      dict 'coords' [B, end, N, 2] pixels, 'vis', 'conf' [B, end, N] probabilities: the whole
      history after this chunk (numpy).
    """
    if is_first_step:
      self.reset()
    chunk = jnp.asarray(video_chunk, jnp.float32)
    model_lib.check_video(chunk, self.queries)
    window, step = self.window_len, self.window_len // 2
    t = chunk.shape[1]
    if not 1 <= t <= window:
      raise ValueError(f'video_chunk must hold 1 to {window} frames, got {t}')
    if t < window:
      chunk = jnp.concatenate([chunk, jnp.repeat(chunk[:, -1:], window - t, axis=1)], axis=1)
    b, n = self.queries.shape[:2]
    ind = self.online_ind
    if self._support is None:
      p = 2 * blocks.CORR_RADIUS + 1
      self._support = [jnp.zeros((b, n, p, p, blocks.LATENT_DIM), jnp.float32)
                       for _ in range(blocks.CORR_LEVELS)]
      history = t
    else:
      history = self._coords.shape[1] + min(step, t - step)
    self._coords = _resize_history(self._coords, history)
    self._vis = _resize_history(self._vis, history)
    self._conf = _resize_history(self._conf, history)
    overlap = window - step
    prev = lambda x: _resize_history(x[:, ind:ind + overlap], overlap)
    support, coords, vis, conf = _stream_step(
        self.params, chunk, self.queries, self._support, prev(self._coords), prev(self._vis),
        prev(self._conf), jnp.int32(ind), iters=self.iters, window_len=window,
        model_resolution=self.model_resolution)
    self._support = support
    written = min(t, history - ind)
    self._coords[:, ind:ind + written] = np.asarray(coords)[:, :written]
    self._vis[:, ind:ind + written] = np.asarray(vis)[:, :written]
    self._conf[:, ind:ind + written] = np.asarray(conf)[:, :written]
    self.online_ind += step
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    return {'coords': self._coords.copy(), 'vis': sigmoid(self._vis).astype(np.float32),
            'conf': sigmoid(self._conf).astype(np.float32)}


def _resize_history(x: np.ndarray, length: int) -> np.ndarray:
  """Crops, or pads with zero frames, axis 1 to `length`."""
  if x.shape[1] >= length:
    return np.array(x[:, :length])
  pad = np.zeros((x.shape[0], length - x.shape[1]) + x.shape[2:], x.dtype)
  return np.concatenate([x, pad], axis=1)
