"""CoTracker3 predictors: from a uint8 video and queries (or a grid) to tracks in input pixels.

These reproduce the official `CoTrackerPredictor` (offline) and `CoTrackerOnlinePredictor`
(streaming) around a network given as a function, so the pre- and post-processing can be
used (and tested) independently of the network:

  model_fn(video [1, T, 3, h, w] float32 0..255 at model resolution,
           queries [1, N, 3] float32 (t, x, y) model pixels)
      -> (coords [1, T, N, 2] model pixels, vis [1, T, N] prob, conf [1, T, N] prob)
  (with `bucket=True` also the keywords num_frames, num_queries: the real frames / queries at
  the start of padded inputs; `make_model_fn`'s network accepts them)

  session_factory(queries [1, N, 3]) -> session
  session(chunk [1, t, 3, h, w] float32 0..255 at model resolution, is_first_step: bool)
      -> dict(coords [1, T_so_far, N, 2], vis [1, T_so_far, N], conf [1, T_so_far, N])
      (the streaming network: every call returns the whole history so far)

Offline (`predict_offline`):
  1. every frame is resized to `interp_shape` (h, w) (bilinear, align_corners=True);
  2. queries: explicit (t, x, y) input pixels scaled by ((w−1)/(W−1), (h−1)/(H−1)); or a
     `grid_size`² grid (see `queries.grid_points`) at `grid_query_frame`, optionally limited to
     a segmentation mask; or, with neither, dense tracking (one pass per lattice offset,
     `queries.dense_query_passes`);
  3. a 6×6 support grid at frame 0 is appended for explicit queries and masked grids (context
     for the network, removed from the output);
  4. with `backward_tracking`, the network also runs on the time-reversed video and frames
     before each query's frame take the backward estimates;
  5. visibility = vis > 0.9 (the network's confidence is not used); each query's own frame is
     set to the query position, visible;
  6. tracks are scaled back to input pixels by ((W−1)/(w−1), (H−1)/(h−1)).

Online (`OnlinePredictor`, `predict_online`): queries are registered once, then chunks of at
most 16 frames starting every 8 frames are resized and passed to the streaming session;
visibility = vis·conf > 0.6; no query-frame overwrite. Memory is bounded by the window: the
driver keeps only the last 16 frames.

`make_model_fn(params)` / `make_session_factory(params)` wrap the Flax network
(`model.offline_forward`, `online.OnlineSession`) with the official predictors' 6 iterations.

Compilation and memory. The offline network attends over all T frames (with its time
embedding resampled to T) and lets the N queries of a call exchange information through its
virtual tracks, so it is compiled once per (T, N). With `bucket=True` the predictor pads T and
N up to `bucket_size` (8, 16, 24, 32, 48, 64, 96, 128, ...: at most 50 % padding) and passes
the true sizes, which the network masks exactly (`model.offline_forward`'s `num_frames` /
`num_queries`): the same estimates, one compilation per bucket pair instead of one per
(T, N). By default a query set is one call, as in the official predictor (exact); `query_chunk`
bounds the queries per call instead (bounded memory; `tapkit.track` uses
`BOUNDED_QUERY_CHUNK` = 1024), at the price of slightly different estimates for larger query
sets, because a call's queries no longer see each other. The streaming network always sees windows
of `window_len` frames (a short chunk is padded by repeating its last frame, which the original
does too), so it compiles once per N for videos of any length, and `predict_online` holds only
the last window of frames.

Coordinates are pixels (x, y) with pixel centres at integers throughout.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models.cotracker3 import model as model_lib
from tapkit.models.cotracker3 import online as online_lib
from tapkit.models.cotracker3 import queries as query_lib
from tapkit.ops import sampling

Array = Any  # np.ndarray or jax.Array.
ModelFn = Callable[[np.ndarray, np.ndarray], tuple[Array, Array, Array]]
Session = Callable[[np.ndarray, bool], Mapping[str, Array]]
SessionFactory = Callable[[np.ndarray], Session]

DEFAULT_INTERP_SHAPE = (384, 512)
OFFLINE_VISIBILITY_THRESHOLD = 0.9
ONLINE_VISIBILITY_THRESHOLD = 0.6
DENSE_GRID_SIZE = 80
RESIZE_FRAME_CHUNK = 16
# Queries per offline network call for bounded memory (`query_chunk=BOUNDED_QUERY_CHUNK`; the
# `track` command's default). Within a call the network computes its correlations in blocks of
# queries (`model.CORR_QUERY_CHUNK`), so a call's peak memory is that of the feature CNN up to a
# few hundred queries and then grows only with the transformer's tokens; splitting larger query
# sets into calls of this size keeps it bounded. Sparse uses up to a 32 × 32 grid (1024 queries)
# stay one call either way. The predictors' default (`query_chunk=None`) is one call per query
# set, as in the official predictor: its queries exchange information through the virtual
# tracks, so only one call reproduces the official estimates for larger sets (calls of 1024
# moved a 40 × 40 grid's tracks by up to 0.03 px in a check with random weights).
BOUNDED_QUERY_CHUNK = 1024


# ----------------------------------------------------------------------------------------------
# The network as the predictors call it.


@dataclasses.dataclass(frozen=True, eq=False)
class OfflineModel:
  """`model_fn` of the offline network (`model.offline_forward`), jit-compiled per (T, N).

  Attributes:
    params: the parameter tree (`load_checkpoint`).
    iters: refinement iterations (the official predictor uses 6).
    window_len: time-embedding length the checkpoint was trained with (60).
    model_resolution: (h, w) the network was trained at; the predictors resize frames to it
      (it also normalises the network's relative motions).
  """
  params: Any
  iters: int = 6
  window_len: int = 60
  model_resolution: tuple[int, int] = DEFAULT_INTERP_SHAPE

  def __call__(self, video: np.ndarray, queries: np.ndarray, num_frames: Any = None,
               num_queries: Any = None) -> tuple[Array, Array, Array]:
    out = model_lib.offline_forward(self.params, video, queries, iters=self.iters,
                                    window_len=self.window_len,
                                    model_resolution=tuple(self.model_resolution),
                                    num_frames=num_frames, num_queries=num_queries)
    return out['coords'], out['vis'], out['conf']


@dataclasses.dataclass(frozen=True, eq=False)
class OnlineModel:
  """`session_factory` of the streaming network (`online.OnlineSession`); fields as in
  OfflineModel (window_len: the streaming window, 16)."""
  params: Any
  iters: int = 6
  window_len: int = 16
  model_resolution: tuple[int, int] = DEFAULT_INTERP_SHAPE

  def __call__(self, queries: np.ndarray) -> Session:
    return online_lib.OnlineSession(self.params, queries, iters=self.iters,
                                    window_len=self.window_len,
                                    model_resolution=tuple(self.model_resolution))


def _on_device(params: Any) -> Any:
  """The parameter tree as jax arrays."""
  return jax.tree_util.tree_map(jnp.asarray, params)


def make_model_fn(params: Any, *, iters: int = 6, window_len: int = 60,
                  model_resolution: Sequence[int] = DEFAULT_INTERP_SHAPE) -> OfflineModel:
  """The offline CoTracker3 network as a `model_fn` for `predict_offline`.

  The parameters are placed on the default device once (not at every call).
  """
  resolution = (int(model_resolution[0]), int(model_resolution[1]))
  return OfflineModel(_on_device(params), iters, window_len, resolution)


def make_session_factory(params: Any, *, iters: int = 6, window_len: int = 16,
                         model_resolution: Sequence[int] = DEFAULT_INTERP_SHAPE) -> OnlineModel:
  """The streaming CoTracker3 network as a `session_factory` for `predict_online`.

  The parameters are placed on the default device once (not at every call).
  """
  resolution = (int(model_resolution[0]), int(model_resolution[1]))
  return OnlineModel(_on_device(params), iters, window_len, resolution)


def _interp_shape(fn: Any, interp_shape: Sequence[int] | None) -> tuple[int, int]:
  """interp_shape if given, else the network's model_resolution, else 384 × 512."""
  if interp_shape is None:
    interp_shape = getattr(fn, 'model_resolution', DEFAULT_INTERP_SHAPE)
  return int(interp_shape[0]), int(interp_shape[1])


# ----------------------------------------------------------------------------------------------
# Inputs.


def video_frames(video: Array) -> np.ndarray:
  """[T, H, W, 3] view of a [T, H, W, 3] or official-layout [1, T, 3, H, W] video."""
  video = np.asarray(video)
  if video.ndim == 5:
    if video.shape[0] != 1 or video.shape[2] != 3:
      raise ValueError(f'video must be [T, H, W, 3] or [1, T, 3, H, W], got shape {video.shape}')
    return video[0].transpose(0, 2, 3, 1)
  if video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f'video must be [T, H, W, 3] or [1, T, 3, H, W], got shape {video.shape}')
  return video


def resize_frames(frames: np.ndarray, interp_shape: Sequence[int]) -> np.ndarray:
  """[T, h, w, 3] float32: frames [T, H, W, 3] (0..255) resized bilinearly, align_corners=True.

  An equal size is an exact identity. The resize runs `RESIZE_FRAME_CHUNK` frames at a time so
  its working memory does not grow with T.
  """
  h, w = int(interp_shape[0]), int(interp_shape[1])
  frames = np.asarray(frames)
  if frames.shape[1:3] == (h, w):
    return frames.astype(np.float32)
  out = np.empty((frames.shape[0], h, w, 3), np.float32)
  for s in range(0, frames.shape[0], RESIZE_FRAME_CHUNK):
    chunk = frames[s:s + RESIZE_FRAME_CHUNK].astype(np.float32)
    out[s:s + len(chunk)] = np.asarray(sampling.resize(chunk, (h, w), align_corners=True))
  return out


def model_video(frames: np.ndarray, interp_shape: Sequence[int]) -> np.ndarray:
  """[1, T, 3, h, w] float32 network input from [T, H, W, 3] frames."""
  return np.ascontiguousarray(resize_frames(frames, interp_shape).transpose(0, 3, 1, 2)[None])


def _check_queries(queries: Array) -> np.ndarray:
  """[N, 3] float32 from [N, 3] or [1, N, 3] (t, x, y) queries."""
  q = np.asarray(queries, np.float32)
  if q.ndim == 3 and q.shape[0] == 1:
    q = q[0]
  if q.ndim != 2 or q.shape[1] != 3 or len(q) == 0:
    raise ValueError(f'queries must be [N, 3] or [1, N, 3] (t, x, y) with N >= 1, got {q.shape}')
  if not np.all(np.isfinite(q)):
    raise ValueError('queries must be finite')
  return q


def _scale_factors(src_hw: Sequence[int], dst_hw: Sequence[int]) -> np.ndarray:
  """[2] float32 (x, y) factors mapping align-corners pixels of src_hw to dst_hw."""
  (sh, sw), (dh, dw) = src_hw, dst_hw
  if min(sh, sw, dh, dw) < 2:
    raise ValueError(f'image sizes must be at least 2x2 pixels, got {tuple(src_hw)} and '
                     f'{tuple(dst_hw)}')
  return np.array([(dw - 1) / (sw - 1), (dh - 1) / (sh - 1)], np.float32)


def to_model_queries(queries: Array, video_hw: Sequence[int],
                     interp_shape: Sequence[int]) -> np.ndarray:
  """[N, 3] float32 queries (t, x, y) in input pixels -> model pixels (frame unchanged)."""
  q = _check_queries(queries).copy()
  q[:, 1:] = q[:, 1:] * _scale_factors(video_hw, interp_shape)
  return q


def _segm_mask_2d(segm_mask: Array) -> np.ndarray:
  """[H, W] from a [H, W] or [B, 1, H, W] mask (the first batch element, as the original)."""
  m = np.asarray(segm_mask)
  if m.ndim == 4:
    m = m[0, 0]
  if m.ndim != 2:
    raise ValueError(f'segm_mask must be [H, W] or [B, 1, H, W], got shape {np.shape(segm_mask)}')
  return m


# ----------------------------------------------------------------------------------------------
# Offline predictor.


def bucket_size(n: int) -> int:
  """The padded size of a bucketed dimension: the smallest of 8, 16, 24, 32, 48, 64, 96, 128,
  192, ... (8 · 2^k and 8 · 3 · 2^k) that is at least n, so padding stays below 50 %."""
  if n < 1:
    raise ValueError(f'n must be positive, got {n}')
  size = 8
  while size < n:  # 8 -> 16; then a power of two grows by 3/2, the others (3 · 2^k) by 4/3.
    size = 16 if size == 8 else (size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3)
  return size


def _run_model(model_fn: ModelFn, video: np.ndarray, queries: np.ndarray,
               bucket: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """coords [T, N, 2] and vis [T, N] float32 of one network call on [N, 3] queries.

  With `bucket`, the video is padded to `bucket_size(T)` frames (repeating the last frame) and
  the queries to `bucket_size(N)` (zero rows); the network gets the true sizes and the outputs
  are cropped.
  """
  t, n = video.shape[1], len(queries)
  if bucket:
    tp, n_pad = bucket_size(t), bucket_size(n)
    padded = np.concatenate([video, np.repeat(video[:, -1:], tp - t, axis=1)], axis=1)
    q = np.concatenate([queries, np.zeros((n_pad - n, 3), np.float32)], axis=0)
    coords, vis, _ = model_fn(padded, q[None], num_frames=np.int32(t), num_queries=np.int32(n))
    coords, vis = np.asarray(coords)[:, :t, :n], np.asarray(vis)[:, :t, :n]
  else:
    coords, vis, _ = model_fn(video, queries[None])
  coords = np.asarray(coords, np.float32)
  vis = np.asarray(vis, np.float32)
  if coords.shape != (1, t, n, 2) or vis.shape != (1, t, n):
    raise ValueError(f'model_fn returned coords {coords.shape} / vis {vis.shape}, '
                     f'expected (1, {t}, {n}, 2) / (1, {t}, {n})')
  return coords[0], vis[0]


def _track_chunk(model_fn: ModelFn, video: np.ndarray, queries: np.ndarray, *,
                 support: np.ndarray | None, backward_tracking: bool, bucket: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Tracks [T, n, 2] (model pixels) and vis probabilities [T, n] of n model-pixel queries.

  Appends the support queries (if any) for the network call and drops them again; with
  backward tracking, frames strictly before a query's (unrounded) frame come from the
  network run on the reversed video with query frames T − 1 − t.
  """
  n = len(queries)
  q = queries if support is None else np.concatenate([queries, support], axis=0)
  tracks, vis = _run_model(model_fn, video, q, bucket)
  if backward_tracking:
    num_frames = video.shape[1]
    inv_q = q.copy()
    inv_q[:, 0] = (np.float32(num_frames) - q[:, 0]) - np.float32(1)
    inv_tracks, inv_vis = _run_model(model_fn, np.ascontiguousarray(video[:, ::-1]), inv_q,
                                     bucket)
    before = np.arange(num_frames, dtype=np.float32)[:, None] < q[None, :, 0]  # [T, N']
    tracks = np.where(before[..., None], inv_tracks[::-1], tracks)
    vis = np.where(before, inv_vis[::-1], vis)
  return tracks[:, :n], vis[:, :n]


def track_model_queries(model_fn: ModelFn, video: np.ndarray, queries: np.ndarray, *,
                        add_support_grid: bool = False, backward_tracking: bool = False,
                        query_chunk: int | None = None,
                        bucket: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Sparse tracking at model resolution: tracks [T, N, 2] model pixels, visibility [T, N] bool.

  Args:
    model_fn: the network (see the module docstring).
    video: [1, T, 3, h, w] float32 network input.
    queries: [N, 3] float32 (t, x, y) model pixels, 0 <= t < T.
    add_support_grid: append the 6×6 support grid (context only; removed from the outputs).
    backward_tracking: also track backwards in time from each query frame.
    query_chunk: at most this many queries per network call (each call gets its own support
      grid), so memory does not grow with N (e.g. BOUNDED_QUERY_CHUNK); None or 0 = all in
      one call, as the official predictor does. With a network whose output for a query
      depends on that query alone both are equal; CoTracker3's transformer lets the queries of
      one call exchange information (through its virtual tracks), so chunks give slightly
      different estimates than one call (the official dense mode's passes differ likewise).
    bucket: pad the network inputs to `bucket_size` frames and queries (same results, one
      compilation per bucket; `model_fn` must accept num_frames / num_queries).

  Returns:
    tracks [T, N, 2] float32 and visibility [T, N] bool (vis > 0.9, and True at each query's
    own frame, where the track is set to the query position).
  """
  num_frames = video.shape[1]
  if np.any(queries[:, 0] < 0) or np.any(queries[:, 0] >= num_frames):
    raise ValueError(f'query frames must lie in [0, {num_frames}), got '
                     f'[{queries[:, 0].min()}, {queries[:, 0].max()}]')
  support = query_lib.support_points(video.shape[-2:]) if add_support_grid else None
  chunk = 0 if query_chunk is None else int(query_chunk)
  if chunk < 0:
    raise ValueError(f'query_chunk must be non-negative, got {query_chunk}')
  chunk = chunk or max(len(queries), 1)
  parts = [_track_chunk(model_fn, video, queries[s:s + chunk], support=support,
                        backward_tracking=backward_tracking, bucket=bucket)
           for s in range(0, len(queries), chunk)]
  tracks = np.concatenate([p[0] for p in parts], axis=1)
  visible = np.concatenate([p[1] for p in parts], axis=1) > OFFLINE_VISIBILITY_THRESHOLD
  frame = queries[:, 0].astype(np.int64)
  idx = np.arange(len(queries))
  tracks[frame, idx] = queries[:, 1:]
  visible[frame, idx] = True
  return tracks, visible


def predict_offline(model_fn: ModelFn, video: Array, *, queries: Array | None = None,
                    grid_size: int = 0, grid_query_frame: int = 0,
                    segm_mask: Array | None = None, backward_tracking: bool = False,
                    interp_shape: Sequence[int] | None = None,
                    add_support_grid: bool | None = None, query_chunk: int | None = None,
                    dense_grid_size: int = DENSE_GRID_SIZE,
                    bucket: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Offline CoTracker3 prediction on a whole video (the official `CoTrackerPredictor`).

  Args:
    model_fn: the network (see the module docstring), e.g. `make_model_fn(params)`.
    video: [T, H, W, 3] or [1, T, 3, H, W], RGB 0..255 (uint8 or float).
    queries: [N, 3] or [1, N, 3] (t, x, y) in input pixels; frames in [0, T).
    grid_size: without queries, track a grid_size² grid (0 and no queries: dense tracking).
    grid_query_frame: frame of the grid (and dense) queries.
    segm_mask: [H, W] or [1, 1, H, W] mask (non-zero = object) limiting the grid points.
    backward_tracking: estimate frames before each query frame by tracking backwards.
    interp_shape: (h, w) the frames are resized to; None = `model_fn.model_resolution` if it has
      one (`make_model_fn`), else 384 × 512.
    add_support_grid: append the 6×6 support grid; None = the official choice (explicit
      queries or a masked grid: yes; a plain grid or dense tracking: no).
    query_chunk: at most this many queries per network call (bounded memory, e.g.
      BOUNDED_QUERY_CHUNK); None or 0 = one call per query set (dense: per pass), as the
      official predictor (see `track_model_queries`).
    dense_grid_size: lattice points along the width in dense tracking (step W // this).
    bucket: pad frames and queries of every network call to `bucket_size` and pass the true
      sizes (see `track_model_queries`): videos of different lengths share compilations.

  Returns:
    tracks [1, T, N, 2] float32 input pixels, visibility [1, T, N] bool.
  """
  frames = video_frames(video)
  num_frames, height, width = frames.shape[:3]
  interp_shape = _interp_shape(model_fn, interp_shape)
  back = _scale_factors(interp_shape, (height, width))
  mvideo = model_video(frames, interp_shape)

  if queries is None and grid_size == 0:
    passes = query_lib.dense_query_passes(height, width, grid_query_frame, dense_grid_size)
    support, model_queries = bool(add_support_grid), [
        to_model_queries(q, (height, width), interp_shape) for q in passes]
  else:
    if queries is not None:
      q = to_model_queries(queries, (height, width), interp_shape)
    else:
      q = query_lib.grid_queries(grid_size, interp_shape, grid_query_frame)
      if segm_mask is not None:
        q = q[query_lib.mask_grid_points(q[:, 1:], _segm_mask_2d(segm_mask), interp_shape)]
        if not len(q):
          raise ValueError('segm_mask keeps none of the grid points')
    default_support = grid_size == 0 or segm_mask is not None
    support = default_support if add_support_grid is None else bool(add_support_grid)
    model_queries = [q]

  tracks, visible = [], []
  for q in model_queries:
    t, v = track_model_queries(model_fn, mvideo, q, add_support_grid=support,
                               backward_tracking=backward_tracking, query_chunk=query_chunk,
                               bucket=bucket)
    tracks.append(t * back)
    visible.append(v)
  return np.concatenate(tracks, axis=1)[None], np.concatenate(visible, axis=1)[None]


# ----------------------------------------------------------------------------------------------
# Online predictor.


class OnlinePredictor:
  """The official `CoTrackerOnlinePredictor`: register queries once, then feed chunks.

  `register(...)` fixes the queries (the official first step, which processes no frames);
  every `step(chunk)` call then takes the next chunk of at most `window_len` frames, starting
  `window_len // 2` frames after the previous one (the first at frame 0), and returns the
  tracks of all frames seen so far.
  """

  def __init__(self, session_factory: SessionFactory, *,
               interp_shape: Sequence[int] | None = None, window_len: int | None = None):
    self.session_factory = session_factory
    self.interp_shape = _interp_shape(session_factory, interp_shape)
    if window_len is None:
      window_len = getattr(session_factory, 'window_len', 16)
    self.window_len = int(window_len)
    self.queries: np.ndarray | None = None  # [N', 3] model pixels (incl. support grid).
    self.num_tracks = 0
    self._session: Session | None = None
    self._first = True

  def register(self, height: int, width: int, *, queries: Array | None = None,
               grid_size: int = 5, grid_query_frame: int = 0,
               add_support_grid: bool = False) -> np.ndarray:
    """Registers the queries of a video of height × width pixels; returns them [N', 3] model px.

    Explicit queries (input pixels, absolute frame indices) are scaled to the model resolution,
    followed by the 6×6 support grid at frame 0 if `add_support_grid`; without queries a
    grid_size² grid at `grid_query_frame` is tracked.
    """
    if queries is not None:
      q = to_model_queries(queries, (height, width), self.interp_shape)
      self.num_tracks = len(q)
      if add_support_grid:
        q = np.concatenate([q, query_lib.support_points(self.interp_shape)], axis=0)
    elif grid_size > 0:
      q = query_lib.grid_queries(grid_size, self.interp_shape, grid_query_frame)
      self.num_tracks = len(q)
    else:
      raise ValueError('give queries or a positive grid_size')
    _scale_factors((height, width), self.interp_shape)  # Validates the sizes.
    self.queries = q
    self._session = self.session_factory(q[None])
    self._first = True
    return q

  def step(self, chunk: Array) -> tuple[np.ndarray, np.ndarray]:
    """Processes the next chunk [t, H, W, 3] (or [1, t, 3, H, W]) of frames.

    Returns:
      tracks [1, T_so_far, N, 2] float32 input pixels and visibility [1, T_so_far, N] bool
      (vis · conf > 0.6) of the user's tracks (support tracks dropped).
    """
    if self._session is None:
      raise ValueError('call register() before step()')
    frames = video_frames(chunk)
    if not 0 < len(frames) <= self.window_len:
      raise ValueError(f'a chunk holds 1..{self.window_len} frames, got {len(frames)}')
    height, width = frames.shape[1:3]
    out = self._session(model_video(frames, self.interp_shape), self._first)
    self._first = False
    n = self.num_tracks
    coords = np.asarray(out['coords'], np.float32)[:, :, :n]
    vis = np.asarray(out['vis'], np.float32)[:, :, :n]
    conf = np.asarray(out['conf'], np.float32)[:, :, :n]
    tracks = coords * _scale_factors(self.interp_shape, (height, width))
    return tracks, vis * conf > ONLINE_VISIBILITY_THRESHOLD


def online_chunks(num_frames: int, window_len: int = 16) -> list[tuple[int, int]]:
  """(start, end) frame ranges the streaming driver processes for a video of num_frames.

  As the official online demo feeds frames: chunks of `window_len` frames every
  step = window_len // 2 frames, the last one ending at the last frame (between step + 1 and
  window_len frames long). A video of at most `step` frames is one chunk [0, num_frames).
  """
  step = window_len // 2
  if num_frames < 1:
    raise ValueError(f'num_frames must be positive, got {num_frames}')
  last_call = step * ((num_frames - 1) // step)  # Frame index of the demo's last loop call.
  if last_call == 0:
    return [(0, num_frames)]
  starts = range(0, last_call - step + 1, step)
  return [(s, min(s + window_len, num_frames)) if s < last_call - step else (s, num_frames)
          for s in starts]


def predict_online(session_factory: SessionFactory, video: Array | Iterable[np.ndarray], *,
                   queries: Array | None = None, grid_size: int = 5, grid_query_frame: int = 0,
                   add_support_grid: bool = False,
                   interp_shape: Sequence[int] | None = None, window_len: int | None = None,
                   num_frames: int | None = None,
                   on_step: Callable[[np.ndarray, np.ndarray], None] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Streaming CoTracker3 prediction, driven as the official online demo drives it.

  Only the last `window_len` frames are held, so `video` may be a generator of frames of a
  long video (then `num_frames` is needed to know where the last chunk ends).

  Args:
    session_factory: builds the streaming network for the registered queries.
    video: [T, H, W, 3] / [1, T, 3, H, W] array, or an iterable of [H, W, 3] frames.
    queries: [N, 3] (t, x, y) input pixels; None = a grid_size² grid at grid_query_frame.
    grid_size, grid_query_frame, add_support_grid: see `OnlinePredictor.register`.
    interp_shape: (h, w) model resolution; None = `session_factory.model_resolution` if it has
      one (`make_session_factory`), else 384 × 512.
    window_len: the network's window; None = `session_factory.window_len` if it has one, else 16.
    num_frames: number of frames of an iterable `video` (read from arrays).
    on_step: called with (tracks, visibility) after every chunk.

  Returns:
    tracks [1, T, N, 2] float32 input pixels and visibility [1, T, N] bool.
  """
  if isinstance(video, np.ndarray) or hasattr(video, 'shape'):
    frames_iter: Iterable[np.ndarray] = video_frames(video)
    num_frames = len(frames_iter)
  elif num_frames is None:
    raise ValueError('num_frames is required when video is an iterable of frames')
  else:
    frames_iter = video
  predictor = OnlinePredictor(session_factory, interp_shape=interp_shape, window_len=window_len)
  chunks = collections.deque(online_chunks(num_frames, predictor.window_len))
  window: collections.deque[np.ndarray] = collections.deque(maxlen=predictor.window_len)
  result = None
  seen = 0
  for frame in frames_iter:
    frame = np.asarray(frame)
    if predictor.queries is None:
      predictor.register(frame.shape[0], frame.shape[1], queries=queries, grid_size=grid_size,
                         grid_query_frame=grid_query_frame, add_support_grid=add_support_grid)
    window.append(frame)
    seen += 1
    while chunks and chunks[0][1] == seen:
      start, end = chunks.popleft()
      result = predictor.step(np.stack(list(window)[len(window) - (end - start):]))
      if on_step is not None:
        on_step(*result)
  if seen != num_frames or result is None:
    raise ValueError(f'video yielded {seen} frames, expected num_frames={num_frames}')
  return result
