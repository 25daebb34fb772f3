"""CoTracker3 (the Flax port in `tapkit.models.cotracker3`) behind the `Tracker` interface.

    tracker = make_tracker('cotracker3', checkpoint='scaled_offline.pth')
    tracker = make_tracker('cotracker3_online', checkpoint='scaled_online.pth')

Both run the official predictors' steps (`tapkit.models.cotracker3.predictor`): the video
is resized to the model resolution (`interp_shape`, default 384 x 512), queries are scaled
to it, the results scaled back to the input pixels. The offline tracker sees the whole
video at once (visibility = visibility probability > 0.9; with `backward=True` frames
before each query frame come from a pass over the time-reversed video); the online
tracker processes it window by window in bounded memory (visibility = visibility x
confidence > 0.6) and does not track backwards.

With several local devices (GPUs, or CPU devices from
XLA_FLAGS=--xla_force_host_platform_device_count=8), the offline network's queries are
split over them: each call runs jit-compiled with the query axis sharded over the largest
number of local devices that divides the number of queries (the frames and weights
replicated), so the result is the one-device result up to float rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tapkit.tracking import api

# Iterative refinement steps the official predictors run.
PREDICTOR_ITERS = 6


def _cotracker_modules() -> tuple[Any, Any]:
  """(tapkit.models.cotracker3, its predictor module), or a ValueError saying what is absent."""
  try:
    from tapkit.models import cotracker3  # pylint: disable=g-import-not-at-top
    from tapkit.models.cotracker3 import predictor  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError('the CoTracker3 trackers need tapkit.models.cotracker3 (model and '
                     f'predictor), which this installation lacks: {e}') from None
  missing = [n for n in ('load_checkpoint', 'offline_forward') if not hasattr(cotracker3, n)]
  missing += [f'predictor.{n}' for n in ('predict_offline', 'predict_online')
              if not hasattr(predictor, n)]
  if missing:
    raise ValueError(f'tapkit.models.cotracker3 lacks {missing}; the CoTracker3 trackers '
                     'cannot run')
  return cotracker3, predictor


def _online_session_class(cotracker3: Any) -> Any:
  """The streaming model class `OnlineSession` (package or its `online` module)."""
  if hasattr(cotracker3, 'OnlineSession'):
    return cotracker3.OnlineSession
  from tapkit.models.cotracker3 import online  # pylint: disable=g-import-not-at-top
  return online.OnlineSession


def _result(tracks: Any, visible: Any, queries: np.ndarray | None, grid_size: int,
            grid_query_frame: int, frame_size: Sequence[int],
            interp_shape: Sequence[int]) -> api.TrackResult:
  """TrackResult from predictor outputs tracks [1, T, N, 2], visibility [1, T, N].

  Grid queries are the predictors' grid: CoTracker's grid at the model resolution, scaled to
  the input pixels as the predictors scale tracks back ((W - 1) / (w - 1), (H - 1) / (h - 1)).
  """
  tracks = np.asarray(tracks, np.float32)[0]
  visible = np.asarray(visible, bool)[0]
  if queries is None:
    (height, width), (h, w) = frame_size, interp_shape
    queries = api.grid_queries(h, w, grid_size, grid_query_frame)
    queries[:, 1:] *= np.array([(width - 1) / (w - 1), (height - 1) / (h - 1)], np.float32)
  return api.TrackResult(tracks=tracks, visible=visible, queries=queries)


def query_shard_count(num_queries: int, num_devices: int) -> int:
  """Devices the queries are split over: the largest count <= num_devices dividing
  num_queries (every device gets the same number of queries)."""
  return max(k for k in range(1, max(num_devices, 1) + 1) if num_queries % k == 0)


def _sharded_forward(forward: Callable[..., Any], params: Any,
                     devices: Sequence[Any]) -> tuple[Callable[..., Any], Any]:
  """(jitted forward(params, video [B, T, 3, h, w], queries [B, N, 3]), params placed for it).

  On one device a plain jit; on several, a 1D mesh ('queries',) with the query axis N of
  `queries` split over it and the weights and frames replicated (XLA partitions the rest).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh, NamedSharding  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top

  if len(devices) == 1:
    return jax.jit(forward), jax.device_put(params, devices[0])
  mesh = Mesh(np.asarray(devices), ('queries',))
  replicated = NamedSharding(mesh, P())
  split = NamedSharding(mesh, P(None, 'queries', None))
  fn = jax.jit(forward, in_shardings=(replicated, replicated, split))
  return fn, jax.device_put(params, replicated)


@dataclasses.dataclass
class CoTrackerTracker:
  """CoTracker3, offline (whole video) or online (streaming windows).

  Attributes:
    params: the converted parameter tree (`tapkit.models.cotracker3.load_checkpoint`).
    online: streaming model and predictor instead of the offline ones.
    interp_shape: (height, width) model resolution in pixels.
    window_len: model window length (frames); None = the model's default (60 offline,
      16 online).
    query_chunk: track at most this many queries per model call (bounded memory; None =
      `predictor.BOUNDED_QUERY_CHUNK`, 1024; 0 = all at once, as the official predictor,
      whose estimates then match exactly for any number of queries). Offline only.
    shard_queries: split the offline network's queries over the local devices (module
      docstring); False runs on the default device only.
    iters: refinement iterations per window (the official predictors' 6).
  """

  params: Any
  online: bool = False
  interp_shape: Sequence[int] = (384, 512)
  window_len: int | None = None
  query_chunk: int | None = None
  shard_queries: bool = True
  iters: int = PREDICTOR_ITERS
  name: str = 'cotracker3'

  def __post_init__(self):
    self._ct3, self._predictor = _cotracker_modules()
    self.interp_shape = tuple(int(s) for s in self.interp_shape)
    if self.online:
      self.name = 'cotracker3_online'

  def _window(self) -> dict[str, int]:
    return {} if self.window_len is None else {'window_len': int(self.window_len)}

  def _model_fn(self) -> Callable[[Any, Any], tuple[Any, Any, Any]]:
    """The offline network as the predictor calls it (jit-compiled, queries sharded over
    the local devices when `shard_queries`); built once per tracker, so videos of one
    shape compile once."""
    if getattr(self, '_offline_fn', None) is None:
      self._offline_fn = self._build_model_fn()
    return self._offline_fn

  def _build_model_fn(self) -> Callable[[Any, Any], tuple[Any, Any, Any]]:
    import jax  # pylint: disable=g-import-not-at-top

    ct3, window = self._ct3, self._window()
    devices = jax.local_devices() if self.shard_queries else jax.local_devices()[:1]
    compiled: dict[int, tuple[Any, Any]] = {}  # devices used -> (jitted forward, params)

    def forward(p, video, queries):
      return ct3.offline_forward(p, video, queries, iters=self.iters,
                                 model_resolution=self.interp_shape, **window)

    def model_fn(video, queries):
      count = query_shard_count(queries.shape[1], len(devices))
      if count not in compiled:
        compiled[count] = _sharded_forward(forward, self.params, devices[:count])
      fn, params = compiled[count]
      out = fn(params, video, queries)
      return out['coords'], out['vis'], out['conf']

    model_fn.model_resolution = self.interp_shape
    return model_fn

  def _session_factory(self) -> Callable[[Any], Any]:
    """Builds the streaming network for the queries [1, N, 3] (model pixels)."""
    session_class = _online_session_class(self._ct3)
    params, window = self.params, self._window()

    def factory(queries):
      return session_class(params, queries, iters=self.iters,
                           model_resolution=self.interp_shape, **window)

    factory.model_resolution = self.interp_shape
    if self.window_len is not None:
      factory.window_len = int(self.window_len)
    return factory

  def track(self, frames: np.ndarray, queries: np.ndarray | None = None, *,
            grid_size: int = api.DEFAULT_GRID_SIZE, grid_query_frame: int = 0,
            backward: bool = False) -> api.TrackResult:
    """Tracks points through frames [T, H, W, 3] uint8; see `api.Tracker.track`."""
    frames = api.check_frames(frames)
    if queries is not None:
      queries = api.resolve_queries(frames, queries, grid_size, grid_query_frame)
    elif not 0 <= grid_query_frame < frames.shape[0]:
      raise ValueError(f'grid_query_frame must lie in [0, {frames.shape[0]}), got '
                       f'{grid_query_frame}')
    batch_queries = None if queries is None else queries[None]
    # With explicit queries the grid is unused (grid_size 0 keeps the official predictor's
    # choices for explicit queries, e.g. the support grid).
    grid = 0 if queries is not None else grid_size
    if self.online:
      if backward:
        raise ValueError('the online CoTracker3 tracker does not track backwards; use '
                         "'cotracker3' for backward=True")
      tracks, visible = self._predictor.predict_online(
          self._session_factory(), frames, queries=batch_queries, grid_size=grid,
          grid_query_frame=grid_query_frame, interp_shape=self.interp_shape)
    else:
      tracks, visible = self._predictor.predict_offline(
          self._model_fn(), frames, queries=batch_queries, grid_size=grid,
          grid_query_frame=grid_query_frame, backward_tracking=backward,
          interp_shape=self.interp_shape,
          query_chunk=(self._predictor.BOUNDED_QUERY_CHUNK if self.query_chunk is None
                       else self.query_chunk))
    return _result(tracks, visible, queries, grid_size, grid_query_frame, frames.shape[1:3],
                   self.interp_shape)


def _make(checkpoint: str | None, online: bool, **options) -> CoTrackerTracker:
  if checkpoint is None:
    name = 'cotracker3_online' if online else 'cotracker3'
    raise ValueError(f"the {name!r} tracker needs checkpoint= (the official "
                     f"{'scaled_online' if online else 'scaled_offline'}.pth, or .npz / "
                     '.safetensors of the same weights)')
  ct3, _ = _cotracker_modules()
  return CoTrackerTracker(params=ct3.load_checkpoint(checkpoint), online=online, **options)


def make_offline(checkpoint: str | None = None, **options) -> CoTrackerTracker:
  """`make_tracker('cotracker3', checkpoint, interp_shape=..., window_len=..., query_chunk=...)`."""
  return _make(checkpoint, False, **options)


def make_online(checkpoint: str | None = None, **options) -> CoTrackerTracker:
  """`make_tracker('cotracker3_online', checkpoint, interp_shape=..., window_len=...)`."""
  return _make(checkpoint, True, **options)
