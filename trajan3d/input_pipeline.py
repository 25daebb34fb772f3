"""TRAJAN / 3DSPA input pipeline: the one place where clips become model inputs.

Training (grain), the training-time evaluation, `trajan3d.score` and
`trajan3d.evaluate_tapvid3d` all go through these functions:

  track_clip       a `tapkit.data.clip.Clip` reduced to what the model reads
                   (tracks, visibility, query frames, camera, frame size, depth
                   and DINO maps; frames and normals dropped).
  model_tracks     coordinates in model units: [T, N, C] with 'xyz' = camera
                   metres (3DSPA; 2D tracks are lifted with depth), 'uv' =
                   pixels normalised to [0, 1] as the TRAJAN colab
                   ((p + 0.5) / (width, height)).
  split_support_query  (`tapkit.data.pipeline`) the support / query split rule.
  normalization, normalize_inputs  optional centring / scaling by the support
                   tracks (`config.data.normalize`).
  support_features  the 3DSPA feature inputs of the support tracks: depth
                   features from the depth maps, DINO features sampled from
                   `clip.extras['dino_features']`.

Training, per record (`TrackExampleSource` reads every clip once and applies
`ClipToExample`; then grain transforms, randomness from grain's per-record rng):
  ClipToExample   clip -> {'tracks' [N, T, C], 'visible' [N, T], 'frame_size'
                  [2], 'clip'} (`model_tracks`; 'clip' = `track_clip`, kept
                  for the features)
  PadOrCropTime   time axis to `data.num_frames` (= model.num_output_frames),
                  boundary_frame = real frames kept
  SampleSupportQuery  disjoint support / query tracks, query frame uniform among
                  the query track's visible frames ('visible') or all ('any')
  ToModelInputs   keeps the model inputs and targets, normalises them
                  (`data.normalize`), adds the features:
    support_tracks [S, T, C], support_tracks_visible [S, T, 1],
    query_points [Q, 1 + C] (t, coords), boundary_frame [] int32,
    target_points [Q, T, C], target_tracks_visible [Q, T, 1],
    optional dino_features [S, T, 768], depth_features [S, T, 256].

Data come from TAPVid-3D-layout clip files (`tapkit.data.tapvid3d`) in
`config.data.train_dir` (files matching `config.data.pattern`), or, when it is empty,
from synthetic clips rendered once by `tapkit.data.synthetic` into
`<workdir>/synthetic/{train,eval}` (or `config.data.synthetic.dir`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import grain.python as grain
import ml_collections
import numpy as np
import tqdm

from tapkit.data import bad_records
from tapkit.data import clip as clip_lib
from tapkit.data import pipeline
from tapkit.data import synthetic
from tapkit.data import tapvid3d
from trajan3d import features as features_lib
from trajan3d import preprocess

MODEL_INPUT_KEYS = ('support_tracks', 'support_tracks_visible', 'query_points',
                    'boundary_frame', 'dino_features', 'depth_features')
TARGET_KEYS = ('target_points', 'target_tracks_visible')
# Clip extras holding per-track feature inputs [T, N, D] computed before the
# pipeline (model input key -> extras key).
TRACK_FEATURES = {'depth_features': 'depth_track_features',
                  'dino_features': 'dino_track_features'}


class TrackFileError(ValueError):
  """Tracks that cannot become model inputs; the message names the file and field."""


def coords_of(config: ml_collections.ConfigDict) -> str:
  """'xyz' for 3DSPA, 'uv' for TRAJAN (checked against config.data.coords)."""
  want = 'uv' if config.model.kind == 'trajan' else 'xyz'
  got = config.data.coords
  if got != want:
    raise ValueError(f'config.data.coords={got!r} does not fit config.model.kind='
                     f'{config.model.kind!r} (needs {want!r}).')
  return want


# ----------------------------------------------------------------------------
# Clips -> model coordinates and features.


def known_frame_size(clip: clip_lib.Clip) -> tuple[int, int] | None:
  """(height, width) of the clip's frames, else `image_size`, else of its depth
  maps; None when none of them is known."""
  if clip.has_frames or clip.image_size is not None:
    return tuple(int(v) for v in clip.frame_size)
  if clip.depth is not None:
    return tuple(int(v) for v in clip.depth.shape[1:3])
  return None


def clip_frame_size(clip: clip_lib.Clip) -> tuple[int, int]:
  """`known_frame_size`, else 2 * (cy, cx) from the intrinsics."""
  size = known_frame_size(clip)
  if size is not None:
    return size
  cx, cy = (float(v) for v in np.asarray(clip.intrinsics)[2:4])
  return int(round(2 * cy)), int(round(2 * cx))


def clip_name(clip: clip_lib.Clip) -> str:
  """`clip.name`, else the stem of its file, else 'clip'."""
  return clip.name or pathlib.Path(clip.path or 'clip').stem


def track_clip(clip: clip_lib.Clip, name: str | None = None) -> clip_lib.Clip:
  """The clip as the model pipeline reads it: float32 tracks, bool visibility, the
  frame size fixed in `image_size` (`clip_frame_size`), a name; frames, normals
  and extras other than 'dino_features' dropped (they are not model inputs)."""
  extras = {k: v for k, v in clip.extras.items() if k == 'dino_features'}
  as_float = lambda x: None if x is None else np.asarray(x, np.float32)
  return dataclasses.replace(
      clip, tracks_xyz=as_float(clip.tracks_xyz), tracks_uv=as_float(clip.tracks_uv),
      visibility=np.asarray(clip.visibility, bool), intrinsics=as_float(clip.intrinsics),
      image_size=clip_frame_size(clip), name=name or clip_name(clip),
      depth=as_float(clip.depth),
      raw_frames=None, jpeg_bytes=None, normals=None, extras=extras)


def pixel_tracks(clip: clip_lib.Clip) -> np.ndarray:
  """[T, N, 2] (x, y) pixel positions: the 2D tracks, or the 3D ones projected."""
  if clip.tracks_xyz is None:
    return clip.tracks_uv
  if clip.intrinsics is None:
    raise TrackFileError(f'{clip_name(clip)}: 3D tracks need field "fx_fy_cx_cy" to be '
                         'projected to pixels.')
  return pipeline.project_to_pixels(clip.tracks_xyz, clip.intrinsics)


def model_tracks(clip: clip_lib.Clip, coords: str) -> np.ndarray:
  """[T, N, C] tracks in model units: 'xyz' camera metres, 'uv' normalised [0, 1]."""
  if coords == 'xyz':
    if clip.tracks_xyz is not None:
      return np.asarray(clip.tracks_xyz, np.float32)
    if clip.depth is None or clip.intrinsics is None:
      raise TrackFileError(f'{clip_name(clip)}: 2D tracks need fields "depth" [T, H, W] '
                           'and "fx_fy_cx_cy" [4] to be lifted to 3D for a 3DSPA model.')
    return preprocess.lift_tracks_to_3d(clip.tracks_uv, clip.depth, clip.intrinsics)
  size = known_frame_size(clip)
  if size is None:
    raise TrackFileError(f'{clip_name(clip)}: a TRAJAN (2D) model needs field '
                         '"frame_size" [2] (height, width) to normalise the tracks.')
  height, width = size
  return preprocess.normalize_pixel_tracks(pixel_tracks(clip), width, height)


def require_features(clip: clip_lib.Clip, depth: bool, dino: bool) -> None:
  """Raises TrackFileError when a feature input the model uses has no source field."""
  if depth and clip.depth is None and TRACK_FEATURES['depth_features'] not in clip.extras:
    raise TrackFileError(f'{clip_name(clip)}: the model uses depth features '
                         '(config.features.depth); field "depth" [T, H, W] is missing.')
  if dino and TRACK_FEATURES['dino_features'] not in clip.extras and (
      'dino_features' not in clip.extras or known_frame_size(clip) is None):
    raise TrackFileError(f'{clip_name(clip)}: the model uses DINO features '
                         '(config.features.dino); field "dino_features" [T, h, w, 768] '
                         'is missing.')


def support_features(clip: clip_lib.Clip, support: np.ndarray, num_frames: int, *,
                     depth: bool, dino: bool) -> dict[str, np.ndarray]:
  """Feature inputs of the support tracks, zero-padded / cropped in time.

  Per-track features computed elsewhere (e.g. by `trajan3d.video_pipeline`) take
  precedence: `extras['depth_track_features']` / `extras['dino_track_features']`
  [T, N, D] are used as they are, rows `support`.

  Args:
    clip: the tracks' clip (`depth` [T, H, W] metres, `extras['dino_features']`
      [T, h, w, D], or the per-track extras above).
    support: [S] track indices.
    num_frames: F, the model's frames.
    depth, dino: which features the model uses.

  Returns:
    {'depth_features': [S, F, 256], 'dino_features': [S, F, D]} (those in use).
  """
  require_features(clip, depth, dino)
  feats = {}
  if not (depth or dino):
    return feats
  t_len = min(clip.num_frames, num_frames)
  pixels = lambda: pixel_tracks(clip)[:t_len, support]  # [t, S, 2]
  pad = lambda x: preprocess.pad_or_crop_time(x, num_frames, axis=1)
  for key, wanted in (('depth_features', depth), ('dino_features', dino)):
    given = clip.extras.get(TRACK_FEATURES[key])
    if wanted and given is not None:  # [T, N, D] per track
      feats[key] = pad(np.swapaxes(np.asarray(given, np.float32)[:t_len, support], 0, 1))
  if depth and 'depth_features' not in feats:
    feats['depth_features'] = pad(features_lib.depth_features(
        np.asarray(clip.depth, np.float32)[:t_len], np.swapaxes(pixels(), 0, 1)))
  if dino and 'dino_features' not in feats:
    height, width = known_frame_size(clip)
    norm = preprocess.normalize_pixel_tracks(pixels(), width, height)
    maps = np.asarray(clip.extras['dino_features'], np.float32)[:t_len]
    feats['dino_features'] = pad(features_lib.sample_feature_maps(
        maps, np.swapaxes(norm, 0, 1)))
  return feats


def normalization(support: np.ndarray, visible: np.ndarray, mode: str
                  ) -> tuple[np.ndarray, np.float32]:
  """(centre [C], scale) that map tracks to model units: (p - centre) / scale.

  mode 'none': identity (released models: raw metres / normalised pixels).
  mode 'support': centre = mean of the visible support points, scale = their
  RMS distance to it (>= 1e-3), so a clip's support cloud has unit radius.
  Computed from the support tracks only, so it is available at inference.

  Args:
    support: [S, T, C]; visible: [S, T] (> 0 = visible).
  """
  c = support.shape[-1]
  if mode == 'none':
    return np.zeros(c, np.float32), np.float32(1.0)
  if mode != 'support':
    raise ValueError(f"config.data.normalize must be 'none' or 'support', got {mode!r}.")
  m = np.asarray(visible, bool)
  pts = support[m] if m.any() else support.reshape(-1, c)
  centre = pts.mean(axis=0).astype(np.float32)
  scale = np.sqrt(np.mean(np.sum(np.square(pts - centre), axis=-1)))
  return centre, np.float32(max(float(scale), 1e-3))


def normalize_inputs(inputs: dict[str, Any], mode: str
                     ) -> tuple[dict[str, Any], np.ndarray, np.float32]:
  """(inputs, centre, scale): support tracks, query points and targets (if any)
  mapped to model units by `normalization` of the support tracks.

  Args:
    inputs: 'support_tracks' [S, T, C], 'support_tracks_visible' [S, T] or
      [S, T, 1], 'query_points' [Q, 1 + C], optional 'target_points' [Q, T, C].
    mode: `config.data.normalize`.
  """
  visible = np.asarray(inputs['support_tracks_visible'])
  if visible.ndim == 3:
    visible = visible[..., 0]
  centre, scale = normalization(inputs['support_tracks'], visible, mode)
  out = dict(inputs)
  out['support_tracks'] = (inputs['support_tracks'] - centre) / scale
  if 'target_points' in inputs:
    out['target_points'] = (inputs['target_points'] - centre) / scale
  query = np.array(inputs['query_points'], np.float32, copy=True)
  query[:, 1:] = (query[:, 1:] - centre) / scale
  out['query_points'] = query
  return out, centre, scale


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
  """The subset of a batch the model reads."""
  return {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}


# ----------------------------------------------------------------------------
# Training: sources and grain transforms.


def ensure_synthetic_clips(directory: str, num_clips: int, seed: int,
                           cfg: ml_collections.ConfigDict, desc: str) -> str:
  """Renders `num_clips` synthetic TAPVid-3D clips into `directory` (clip i uses seed
  (seed, i); reused while the generator parameters match, see
  `synthetic.ensure_clips`). Returns the directory."""

  def write(clip: clip_lib.Clip, root: pathlib.Path, name: str) -> None:
    tapvid3d.save_clip(os.path.join(root, name + '.npz'), clip)

  synthetic.ensure_clips(directory, num_clips, seed, writer=write, record_format='tapvid3d_npz',
                         description=desc, num_frames=cfg.num_frames, height=cfg.height,
                         width=cfg.width, num_tracks=cfg.num_tracks)
  return directory


def _synthetic_root(config: ml_collections.ConfigDict, workdir: str | None) -> str:
  """Where the synthetic clips live: data.synthetic.dir, else <workdir>/synthetic."""
  if config.data.synthetic.dir:
    return config.data.synthetic.dir
  if not workdir:
    raise ValueError('config.data.synthetic.dir is empty and no workdir was given: the '
                     'synthetic clips are rendered into <workdir>/synthetic')
  return os.path.join(workdir, 'synthetic')


def eval_dir(config: ml_collections.ConfigDict, workdir: str | None) -> str:
  """The held-out clips: data.eval_dir, else the synthetic held-out clips (rendered if needed;
  data.synthetic.num_eval of them, from a seed stream disjoint from training's), else ''."""
  if config.data.eval_dir:
    return config.data.eval_dir
  syn = config.data.synthetic
  if syn.num_eval <= 0:
    return ''
  return ensure_synthetic_clips(os.path.join(_synthetic_root(config, workdir), 'eval'),
                                syn.num_eval, synthetic.heldout_seed(syn.seed), syn,
                                'synthetic eval clips')


def data_dirs(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, str, str]:
  """(train_dir, train_pattern, eval_dir); renders synthetic clips if needed."""
  syn = config.data.synthetic
  if config.data.train_dir:
    train_dir, pattern = config.data.train_dir, config.data.pattern
  else:
    train_dir = ensure_synthetic_clips(os.path.join(_synthetic_root(config, workdir), 'train'),
                                       syn.num_train, syn.seed, syn, 'synthetic train clips')
    pattern = 'clip_*.npz'
  return train_dir, pattern, eval_dir(config, workdir)


class ClipToExample(grain.MapTransform):
  """Clip -> {'tracks' [N, T, C], 'visible' [N, T], 'frame_size' [2], 'clip'}.

  tracks = `model_tracks` (coords 'xyz' metres, 'uv' normalised pixels); 'clip'
  is the `track_clip`, from which `ToModelInputs` takes the features. Clips
  without the fields of the features in use are refused here.
  """

  def __init__(self, coords: str, dino: bool = False, depth: bool = False):
    self._coords, self._dino, self._depth = coords, dino, depth

  def map(self, element: clip_lib.Clip) -> dict[str, Any]:
    clip = track_clip(element)
    require_features(clip, depth=self._depth, dino=self._dino)
    tracks = model_tracks(clip, self._coords)  # [T, N, C]
    return {
        'tracks': np.ascontiguousarray(np.swapaxes(tracks, 0, 1)),
        'visible': np.ascontiguousarray(clip.visibility.T),
        'frame_size': np.asarray(clip.image_size, np.int32),
        'clip': clip,
    }


class TrackExampleSource(grain.RandomAccessDataSource):
  """Clip files read once (validated by `load_clip`, in this thread) and kept as
  `ClipToExample` track examples in memory.

  Reading in advance keeps file parsing out of grain's reader threads (numpy
  header parsing through `ast` is not thread-safe in CPython 3.11) and out of
  every step; frames and normals are dropped, so memory is the tracks (plus
  depth / DINO maps when those features are on).
  """

  def __init__(self, directory: str, pattern: str, to_example: ClipToExample,
               max_bad_fraction: float = 0.01):
    """Reads every clip; a clip that cannot be read is skipped with a logged warning, and
    reading stops with `TooManyBadRecords` once more than `max_bad_fraction` of them failed
    (`config.data.max_bad_fraction` in training)."""
    self._directory, self._pattern = str(directory), pattern
    paths = sorted(str(p) for p in pathlib.Path(directory).glob(pattern))
    if not paths:
      raise FileNotFoundError(f'config.data: no files matching {pattern!r} in {directory}.')
    self._examples = bad_records.read_all(
        tqdm.tqdm(paths, desc='reading clips', unit='clip'),
        lambda p: to_example.map(tapvid3d.load_clip(p)), f'clips in {directory}',
        max_bad_fraction)
    if not self._examples:
      raise bad_records.TooManyBadRecords(f'config.data: no clip in {directory} could be read.')

  def __len__(self) -> int:
    return len(self._examples)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return dict(self._examples[index])

  def __repr__(self) -> str:
    return (f'TrackExampleSource(directory={os.path.abspath(self._directory)!r}, '
            f'pattern={self._pattern!r}, len={len(self._examples)})')


class ToModelInputs(grain.MapTransform):
  """Keeps model inputs and targets, normalised (`normalize_inputs`), plus the
  features of the support tracks (`support_features`)."""

  def __init__(self, normalize: str = 'none', dino: bool = False, depth: bool = False):
    self._normalize, self._dino, self._depth = normalize, dino, depth

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    out = {k: element[k] for k in MODEL_INPUT_KEYS + TARGET_KEYS if k in element}
    if self._normalize != 'none':
      out, _, _ = normalize_inputs(out, self._normalize)
    length = element['support_tracks'].shape[1]
    out.update(support_features(element['clip'], element['support_indices'], length,
                                depth=self._depth, dino=self._dino))
    return out


def clip_to_example(config: ml_collections.ConfigDict) -> ClipToExample:
  feats = config.features
  if (feats.dino or feats.depth) and config.model.kind != '3dspa':
    raise ValueError("config.features.dino/depth need config.model.kind='3dspa'.")
  return ClipToExample(coords_of(config), dino=feats.dino, depth=feats.depth)


def train_transforms(config: ml_collections.ConfigDict) -> list[grain.Transformation]:
  """The per-record transforms of the module docstring after `ClipToExample`
  (applied by `TrackExampleSource` when reading)."""
  return [
      pipeline.PadOrCropTime(config.data.num_frames),
      pipeline.SampleSupportQuery(config.data.num_support, config.data.num_query,
                                  query_frame=config.data.query_frame),
      ToModelInputs(config.data.normalize, dino=config.features.dino,
                    depth=config.features.depth),
  ]
