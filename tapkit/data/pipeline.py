"""Grain pipeline core: in-memory source, data loader builder, TRAJAN-style transforms.

A pipeline is `source -> transforms -> Batch`, built by `make_dataloader`. All
randomness comes from grain: `IndexSampler(seed=...)` fixes the record order and
gives every record a `np.random.Generator` derived from `(seed, global index)`,
which `grain.RandomMapTransform`s receive. Hence the same seed gives the same
batches, on any number of workers, and after restoring the iterator state.

Track transforms work on a dict element ("track example") with keys
  tracks          [N, T, C] float32; C = 2 (x, y) or 3 (X, Y, Z). Tracks first.
  visible         [N, T] bool
  frame_size      [2] int32 (height, width) in pixels
  boundary_frame  int32 [] (added by `PadOrCropTime`)
The official TRAJAN preprocessing (colab `ProcessTracksForTrackAutoencoder`)
projects a clip's tracks with `project_to_pixels`, normalises them to [0, 1], then
runs PadOrCropTime(150) -> SampleSupportQuery(2048, 2048) and yields the model
inputs documented on `SampleSupportQuery`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grain.python as grain
import numpy as np

from tapkit.data import geometry
from tapkit.data import workers

Element = dict[str, Any]


# ----------------------------------------------------------------------------
# Sources.


class SequenceSource(grain.RandomAccessDataSource):
  """Random access over an in-memory sequence (tests, synthetic data)."""

  def __init__(self, items: Sequence[Any], name: str = 'sequence'):
    self._items = list(items)
    self._name = name

  def __len__(self) -> int:
    return len(self._items)

  def __getitem__(self, index: int) -> Any:
    return self._items[index]

  def __repr__(self) -> str:
    # grain validates restored iterator state against repr(source).
    return f'SequenceSource(name={self._name!r}, len={len(self._items)})'


# Where a method's training records come from (`config.data.source`): 'folder' = the
# method's files (data.train_dir, or synthetic clips rendered into the workdir);
# 'arrayrecord' = split data.arrayrecord_split of the ArrayRecord dataset folder
# data.arrayrecord_folder (`python -m tapkit.data.convert`, read by `tapkit.data.arrayrecord`).
DATA_SOURCES = ('folder', 'arrayrecord')


def data_source(data_config: Any) -> str:
  """`config.data.source`, checked ('folder' when the config has no such key).

  Raises:
    ValueError: naming config.data.source / config.data.arrayrecord_folder when the source is
      unknown or 'arrayrecord' without a dataset folder.
  """
  source = data_config.get('source', 'folder')
  if source not in DATA_SOURCES:
    raise ValueError(f'config.data.source must be one of {DATA_SOURCES}, got {source!r}.')
  if source == 'arrayrecord' and not data_config.get('arrayrecord_folder'):
    raise ValueError("config.data.source='arrayrecord' needs config.data.arrayrecord_folder "
                     '(a folder written by `python -m tapkit.data.convert`).')
  return source


# ----------------------------------------------------------------------------
# Loader.


def make_dataloader(
    source: grain.RandomAccessDataSource,
    transforms: Sequence[grain.Transformation] = (),
    *,
    batch_size: int,
    seed: int,
    shard_options: grain.ShardOptions | None = None,
    worker_count: int = 0,
    num_epochs: int | None = None,
    shuffle: bool = True,
    drop_remainder: bool = True,
) -> grain.DataLoader:
  """A grain DataLoader: shuffled (by `seed`), sharded, transformed, batched.

  `iter(loader)` gives a `grain.DataLoaderIterator` with `get_state()` /
  `set_state(bytes)`; orbax saves it via `grain.PyGrainCheckpointSave`.

  Args:
    source: random-access source (len + getitem).
    transforms: per-record grain transforms, applied before batching.
    batch_size: records per batch produced by THIS process (its shard).
    seed: fixes the order and every RandomMapTransform's per-record rng.
    shard_options: e.g. `grain.ShardOptions(jax.process_index(),
      jax.process_count(), drop_remainder=True)`; default: no sharding.
    worker_count: grain worker processes (0 = in this process).
    num_epochs: None = repeat forever.
    shuffle: shuffle the record order each epoch.
    drop_remainder: drop a last incomplete batch (keeps shapes fixed).
  """
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  if not 0 <= seed < 2**32:
    raise ValueError(f'seed must be a 32-bit non-negative int, got {seed}.')
  shard_options = shard_options or grain.NoSharding()
  if worker_count:
    # Workers end themselves when this process dies (tapkit/data/workers.py).
    source = workers.ParentWatchedSource(source)
  sampler = grain.IndexSampler(
      num_records=len(source), shard_options=shard_options, shuffle=shuffle,
      num_epochs=num_epochs, seed=int(seed))
  operations = list(transforms) + [
      grain.Batch(batch_size=batch_size, drop_remainder=drop_remainder)]
  return grain.DataLoader(
      data_source=source, sampler=sampler, operations=operations,
      worker_count=worker_count, shard_options=shard_options)


# ----------------------------------------------------------------------------
# Track transforms.


# Depth (metres) at or below which a track point is treated as behind the camera.
PIPELINE_MIN_DEPTH = 1e-6


def project_to_pixels(xyz: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
  """The track pipelines' projection: `geometry.project` with the 'principal' policy, float32.

  xyz [..., 3] metres (camera frame) -> [..., 2] (x, y) pixels. Points with
  z <= PIPELINE_MIN_DEPTH (behind the camera) get NaN-free placeholders at the
  principal point; callers rely on `visible` to ignore them.
  """
  xyz = np.asarray(xyz)
  return geometry.project(xyz, np.asarray(intrinsics).reshape(4), behind='principal',
                          min_depth=PIPELINE_MIN_DEPTH).astype(np.float32)


class PadOrCropTime(grain.MapTransform):
  """Pads (zeros, invisible) or crops the time axis to `length`; sets `boundary_frame`.

  boundary_frame = number of real frames kept = min(T, length). The colab
  stores the uncropped T instead; for T > length both give "every frame is
  before the boundary", so the attention masks are identical.
  Cropping keeps the first `length` frames, as the colab does.
  """

  def __init__(self, length: int):
    if length <= 0:
      raise ValueError(f'length must be positive, got {length}.')
    self._length = length

  def map(self, element: Element) -> Element:
    tracks, visible = element['tracks'], element['visible']  # [N, T, C], [N, T]
    num_frames = tracks.shape[1]
    keep = min(num_frames, self._length)
    out_tracks = np.zeros((tracks.shape[0], self._length, tracks.shape[2]), np.float32)
    out_visible = np.zeros((visible.shape[0], self._length), bool)
    out_tracks[:, :keep] = tracks[:, :keep]
    out_visible[:, :keep] = visible[:, :keep]
    return {**element, 'tracks': out_tracks, 'visible': out_visible,
            'boundary_frame': np.asarray(keep, np.int32)}


def split_support_query(order: np.ndarray, num_support: int, num_query: int,
                        start: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Disjoint support and query tracks from a permutation of track indices.

  The one rule for every held-out split: the queries are the `num_query`
  entries of `order` from position `start` on; the support is the LAST
  `num_support` of the remaining entries, in permutation order (all of them
  when fewer remain). With `start=0` and `len(order) = S + Q` this is the
  TRAJAN colab's split (queries first, support last); folds of one permutation
  (`start` = 0, Q, 2Q, ...) reconstruct every track once from the others.

  Args:
    order: [N] int, a permutation of (a subset of) the track indices.
    num_support: S, the most support tracks to take (> 0).
    num_query: Q, the number of query tracks (> 0).
    start: position in `order` of the first query.

  Returns:
    (support [min(S, N - Q')], query [Q']) index arrays, Q' = the queries
    available from `start` (at most Q).
  """
  if num_support <= 0 or num_query <= 0:
    raise ValueError(f'num_support and num_query must be positive, got '
                     f'{num_support}, {num_query}.')
  order = np.asarray(order)
  query = order[start:start + num_query]
  rest = np.concatenate([order[:start], order[start + num_query:]])
  return rest[max(0, len(rest) - num_support):], query


class SampleSupportQuery(grain.RandomMapTransform):
  """Splits tracks into disjoint support and query (target) sets; picks query frames.

  As in the TRAJAN colab: shuffle the track indices with the record's rng;
  queries = the first `num_query`, support = the last `num_support` of that
  order (`split_support_query`; disjoint, needs N >= num_support + num_query).
  Each query's frame is drawn uniformly among its visible frames (frame 0 if
  it is never visible); `query_frame='any'` draws it uniformly over the real
  frames [0, boundary) instead, as the released 3DSPA loader does.

  Output (C = tracks' channels, T = episode length):
    support_tracks          [S, T, C] float32
    support_tracks_visible  [S, T, 1] float32 (0/1)
    query_points            [Q, 1 + C] float32, (t, x, y[, z]) at the query frame
    target_points           [Q, T, C] float32
    target_tracks_visible   [Q, T, 1] float32 (0/1)
    boundary_frame          int32 [] (passed through; T if absent)
    support_indices, query_indices  [S], [Q] int32 track indices in the input
  """

  def __init__(self, num_support: int, num_query: int, query_frame: str = 'visible'):
    if num_support <= 0 or num_query <= 0:
      raise ValueError(f'num_support and num_query must be positive, got '
                       f'{num_support}, {num_query}.')
    if query_frame not in ('visible', 'any'):
      raise ValueError(f"query_frame must be 'visible' or 'any', got {query_frame!r}.")
    self._num_support = num_support
    self._num_query = num_query
    self._query_frame = query_frame

  def random_map(self, element: Element, rng: np.random.Generator) -> Element:
    tracks, visible = element['tracks'], element['visible']
    num_tracks, num_frames = visible.shape
    if num_tracks < self._num_support + self._num_query:
      raise ValueError(
          f'Need at least num_support + num_query = '
          f'{self._num_support + self._num_query} tracks, the record has {num_tracks}.')
    support, query = split_support_query(rng.permutation(num_tracks), self._num_support,
                                         self._num_query)
    query_visible = visible[query]  # [Q, T]
    boundary = int(element.get('boundary_frame', num_frames))
    if self._query_frame == 'visible':
      # Uniform among visible frames: argmax of random keys restricted to them.
      keys = np.where(query_visible, rng.random(query_visible.shape), -1.0)
      frame = np.where(query_visible.any(axis=1), keys.argmax(axis=1), 0)
    else:
      frame = rng.integers(0, max(boundary, 1), size=len(query))
    query_xyz = tracks[query, frame]  # [Q, C]
    query_points = np.concatenate(
        [frame[:, None].astype(np.float32), query_xyz], axis=1).astype(np.float32)
    out = {k: v for k, v in element.items() if k not in ('tracks', 'visible')}
    out.update(
        support_tracks=tracks[support].astype(np.float32),
        support_tracks_visible=visible[support][..., None].astype(np.float32),
        query_points=query_points,
        target_points=tracks[query].astype(np.float32),
        target_tracks_visible=query_visible[..., None].astype(np.float32),
        boundary_frame=np.asarray(boundary, np.int32),
        support_indices=support.astype(np.int32),
        query_indices=query.astype(np.int32),
    )
    return out

