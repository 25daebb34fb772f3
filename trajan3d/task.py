"""TRAJAN / 3DSPA training task for the shared engine (`tapkit.train.loop.Method`).

Data: TAPVid-3D-layout clip files (`tapkit.data.tapvid3d`), from
`config.data.train_dir` (files matching `config.data.pattern`), or, when it is empty,
synthetic clips rendered once by `tapkit.data.synthetic` into
`<workdir>/synthetic/{train,eval}` (or `config.data.synthetic.dir`).

Per record (`TrackExampleSource` reads every clip once and applies
ClipToExample; then grain transforms, randomness from grain's per-record rng):
  ClipToExample   clip -> tracks [N, T, C] (3DSPA 'xyz': camera metres; TRAJAN
                  'uv': pixels normalised to [0, 1] as the TRAJAN colab),
                  visible [N, T]; plus pixels / depth maps / DINO maps when
                  features are on
  PadOrCropTime   time axis to `data.num_frames` (= model.num_output_frames),
                  boundary_frame = real frames kept
  SampleSupportQuery  disjoint support / query tracks, query frame uniform among
                  the query track's visible frames ('visible') or all ('any')
  ToModelInputs   keeps the model inputs and targets, centres / scales them
                  by the support tracks if `data.normalize='support'`, adds features:
    support_tracks [S, T, C], support_tracks_visible [S, T, 1],
    query_points [Q, 1 + C] (t, coords), boundary_frame [] int32,
    target_points [Q, T, C], target_tracks_visible [Q, T, 1],
    optional dino_features [S, T, 768], depth_features [S, T, 256].

Loss: `trajan3d.losses.track_losses` with `config.loss`. Eval hook: held-out
reconstruction on eval clips (support and query tracks disjoint), average
Jaccard / occlusion accuracy / mean error as in `trajan3d.score`.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import grain.python as grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from tapkit.data import clip as clip_lib
from tapkit.data import pipeline
from tapkit.data import synthetic
from tapkit.data import tapvid3d
from tapkit.train import config as config_lib
from tapkit.train import loop
from trajan3d import features as features_lib
from trajan3d import losses
from trajan3d import model as model_lib

MODEL_FIELDS = (
    'num_output_frames', 'num_latent_tokens', 'latent_token_dim', 'num_frequencies',
    'track_token_dim',
    'encoder_latent_dim', 'decoder_num_channels', 'num_heads', 'qkv_size',
    'input_track_layers', 'input_track_mlp', 'tracks_to_latents_layers',
    'tracks_to_latents_mlp', 'decompress_layers', 'decompress_mlp', 'readout_layers',
    'readout_mlp', 'track_scale_factor', 'decoder_scan_chunk_size', 'remat_decoder')
MODEL_INPUT_KEYS = ('support_tracks', 'support_tracks_visible', 'query_points',
                    'boundary_frame', 'dino_features', 'depth_features')
TARGET_KEYS = ('target_points', 'target_tracks_visible')


def build_model_from_config(config: ml_collections.ConfigDict
                            ) -> model_lib._TrackAutoEncoderBase:  # pylint: disable=protected-access
  """The model described by `config.model` (kind + the MODEL_FIELDS present)."""
  cfg = config.model
  fields = {k: cfg[k] for k in MODEL_FIELDS if k in cfg}
  return model_lib.build_model(cfg.kind, **fields)


def config_file(config: ml_collections.ConfigDict) -> str:
  """The config file whose base preset lists every key of `config.model.kind`'s method."""
  return 'configs/trajan.py' if config.model.kind == 'trajan' else 'configs/spa3d.py'


def coords_of(config: ml_collections.ConfigDict) -> str:
  """'xyz' for 3DSPA, 'uv' for TRAJAN (checked against config.data.coords)."""
  want = 'uv' if config.model.kind == 'trajan' else 'xyz'
  got = config.data.coords
  if got != want:
    raise ValueError(f'config.data.coords={got!r} does not fit config.model.kind='
                     f'{config.model.kind!r} (needs {want!r}).')
  return want


# ----------------------------------------------------------------------------
# Data.


def ensure_synthetic_clips(directory: str, num_clips: int, seed: int,
                           cfg: ml_collections.ConfigDict, desc: str) -> str:
  """Renders `num_clips` synthetic TAPVid-3D clips into `directory` (missing
  ones only; clip i uses seed (seed, i)). Returns the directory."""
  os.makedirs(directory, exist_ok=True)
  todo = [i for i in range(num_clips)
          if not os.path.exists(os.path.join(directory, f'clip_{i:04d}.npz'))]
  for i in tqdm.tqdm(todo, desc=desc, unit='clip', disable=not todo):
    clip = synthetic.generate_clip((seed, i), cfg.num_frames, cfg.height, cfg.width,
                                   cfg.num_tracks)
    tapvid3d.save_clip(os.path.join(directory, f'clip_{i:04d}.npz'), clip)
  return directory


def data_dirs(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, str, str]:
  """(train_dir, train_pattern, eval_dir); renders synthetic clips if needed."""
  syn = config.data.synthetic
  root = syn.dir or os.path.join(workdir, 'synthetic')
  if config.data.train_dir:
    train_dir, pattern = config.data.train_dir, config.data.pattern
  else:
    train_dir = ensure_synthetic_clips(os.path.join(root, 'train'), syn.num_train,
                                       syn.seed, syn, 'synthetic train clips')
    pattern = 'clip_*.npz'
  if config.data.eval_dir:
    eval_dir = config.data.eval_dir
  elif config.eval.num_clips > 0:
    # Different seed stream from training: held-out scenes.
    eval_dir = ensure_synthetic_clips(os.path.join(root, 'eval'), syn.num_eval,
                                      syn.seed + 1_000_003, syn, 'synthetic eval clips')
  else:
    eval_dir = ''
  return train_dir, pattern, eval_dir


def clip_frame_size(clip: clip_lib.Clip) -> tuple[int, int]:
  """(height, width) of the clip's frames, else of its depth maps, else 2 * (cy, cx)."""
  if clip.has_frames:
    return tuple(int(v) for v in clip.frame_size)
  if clip.depth is not None:
    return tuple(int(v) for v in clip.depth.shape[1:3])
  cx, cy = (float(v) for v in np.asarray(clip.intrinsics)[2:4])
  return int(round(2 * cy)), int(round(2 * cx))


class ClipToExample(grain.MapTransform):
  """Clip -> {'tracks' [N, T, C], 'visible' [N, T], 'frame_size' [2], feature inputs}.

  coords 'xyz': tracks_XYZ in metres; 'uv': projected pixels normalised as the
  TRAJAN colab ((p + 0.5) / size). With depth features the element also holds
  'pixels' [N, T, 2] and 'depth' [T, H, W]; with DINO features 'pixels_norm'
  [N, T, 2] and 'dino_maps' [T, h, w, C] from `clip.extras['dino_features']`.
  """

  def __init__(self, coords: str, dino: bool = False, depth: bool = False):
    self._coords, self._dino, self._depth = coords, dino, depth

  def map(self, element: clip_lib.Clip) -> dict[str, Any]:
    xyz = np.asarray(element.tracks_xyz, np.float32)  # [T, N, 3]
    height, width = clip_frame_size(element)
    pixels = pipeline.project_to_pixels(xyz, element.intrinsics)  # [T, N, 2]
    norm = (pixels + 0.5) / np.asarray([width, height], np.float32)
    tracks = xyz if self._coords == 'xyz' else norm
    out = {
        'tracks': np.ascontiguousarray(np.swapaxes(tracks, 0, 1)),
        'visible': np.ascontiguousarray(np.asarray(element.visibility, bool).T),
        'frame_size': np.asarray([height, width], np.int32),
    }
    name = element.path or 'clip'
    if self._depth:
      if element.depth is None:
        raise ValueError(f'{name}: field depth missing (config.features.depth=True).')
      out['pixels'] = np.swapaxes(pixels, 0, 1)
      out['depth'] = np.asarray(element.depth, np.float32)
    if self._dino:
      if 'dino_features' not in element.extras:
        raise ValueError(f'{name}: field dino_features [T, h, w, 768] missing '
                         '(config.features.dino=True).')
      out['pixels_norm'] = np.swapaxes(norm, 0, 1)
      out['dino_maps'] = np.asarray(element.extras['dino_features'], np.float32)
    return out


class TrackExampleSource(grain.RandomAccessDataSource):
  """Clip files read once (validated by `load_clip`, in this thread) and kept as
  `ClipToExample` track examples in memory.

  Reading in advance keeps file parsing out of grain's reader threads (numpy
  header parsing through `ast` is not thread-safe in CPython 3.11) and out of
  every step; frames and normals are dropped, so memory is the tracks (plus
  depth / DINO maps when those features are on).
  """

  def __init__(self, directory: str, pattern: str, to_example: ClipToExample):
    self._directory, self._pattern = str(directory), pattern
    paths = sorted(str(p) for p in pathlib.Path(directory).glob(pattern))
    if not paths:
      raise FileNotFoundError(f'config.data: no files matching {pattern!r} in {directory}.')
    self._examples = [to_example.map(tapvid3d.load_clip(p))
                      for p in tqdm.tqdm(paths, desc='reading clips', unit='clip')]

  def __len__(self) -> int:
    return len(self._examples)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return dict(self._examples[index])

  def __repr__(self) -> str:
    return (f'TrackExampleSource(directory={os.path.abspath(self._directory)!r}, '
            f'pattern={self._pattern!r}, len={len(self._examples)})')


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


class ToModelInputs(grain.MapTransform):
  """Keeps model inputs and targets (normalised, see `normalization`);
  gathers features of the support tracks, zero-padded in time."""

  def __init__(self, normalize: str = 'none'):
    self._normalize = normalize

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    out = {k: element[k] for k in MODEL_INPUT_KEYS + TARGET_KEYS if k in element}
    centre, scale = normalization(out['support_tracks'],
                                  out['support_tracks_visible'][..., 0], self._normalize)
    if self._normalize != 'none':
      out['support_tracks'] = (out['support_tracks'] - centre) / scale
      out['target_points'] = (out['target_points'] - centre) / scale
      q = out['query_points'].copy()
      q[:, 1:] = (q[:, 1:] - centre) / scale
      out['query_points'] = q
    length = element['support_tracks'].shape[1]
    support = element['support_indices']
    if 'depth' in element:
      pix = element['pixels'][support][:, :length]  # [S, T0, 2]
      feats = features_lib.depth_features(element['depth'][:pix.shape[1]], pix)
      out['depth_features'] = _pad_time(feats, length)
    if 'dino_maps' in element:
      pix = element['pixels_norm'][support][:, :length]
      feats = features_lib.sample_feature_maps(element['dino_maps'][:pix.shape[1]], pix)
      out['dino_features'] = _pad_time(feats, length)
    return out


def _pad_time(x: np.ndarray, length: int) -> np.ndarray:
  """[S, T0, C] -> [S, length, C] with zeros."""
  pad = length - x.shape[1]
  return np.pad(x, ((0, 0), (0, pad), (0, 0))) if pad > 0 else x


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
      ToModelInputs(config.data.normalize),
  ]


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
  """The subset of a batch the model reads."""
  return {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}


# ----------------------------------------------------------------------------
# Method.


def build_method(config: ml_collections.ConfigDict, workdir: str | None = None
                 ) -> loop.Method:
  """TRAJAN / 3DSPA as an engine Method (see the module docstring).

  Raises:
    ValueError: naming the full key when `config` holds a key that the config file of its
      model kind (configs/trajan.py or configs/spa3d.py) does not define.
  """
  config_lib.check_config(config, config_lib.method_reference(config_file(config)))
  if config.data.num_frames != config.model.num_output_frames:
    raise ValueError(f'config.data.num_frames={config.data.num_frames} must equal '
                     f'config.model.num_output_frames={config.model.num_output_frames}.')
  workdir = workdir or _workdir_flag()
  model = build_model_from_config(config)
  train_dir, pattern, eval_dir = data_dirs(config, workdir)
  source = TrackExampleSource(train_dir, pattern, clip_to_example(config))
  logging.info('Training on %d clips from %s.', len(source), train_dir)

  def init_fn(rng: jax.Array, batch: dict[str, Any]) -> Any:
    inputs = jax.tree.map(lambda x: jnp.asarray(x[:1]), model_inputs(batch))
    return model.init(rng, inputs)['params']

  def loss_fn(params, batch, rng, state):
    del rng, state
    out = model.apply({'params': params}, model_inputs(batch))
    return losses.track_losses(out.tracks, out.visible_logits, out.certain_logits,
                               batch['target_points'], batch['target_tracks_visible'],
                               config.loss)

  hooks = []
  if eval_dir and config.eval.every_steps > 0:
    hooks.append(loop.EvalHook(every_steps=config.eval.every_steps,
                               fn=make_eval_fn(config, model, eval_dir)))
  return loop.Method(init_fn=init_fn, loss_fn=loss_fn, train_source=source,
                     train_transforms=train_transforms(config), eval_hooks=hooks)


def make_eval_fn(config: ml_collections.ConfigDict, model, eval_dir: str):
  """Held-out reconstruction metrics on the clips of `eval_dir` (first
  `config.eval.num_clips`), averaged over clips."""
  # Imported here: score imports task for the config helpers.
  from trajan3d import score as score_lib  # pylint: disable=g-import-not-at-top

  paths = sorted(str(p) for p in pathlib.Path(eval_dir).rglob('*.npz'))
  paths = paths[:config.eval.num_clips]
  if not paths:
    raise FileNotFoundError(f'config.eval: no .npz clips in {eval_dir}.')
  track_sets = [score_lib.track_set_from_clip(tapvid3d.load_clip(p)) for p in paths]
  recon = score_lib.Reconstructor(model, None, coords_of(config), config.features,
                                  config.data.normalize)

  def evaluate(state, step, writer=None):
    del step, writer
    recon.params = jax.device_get(state.params)
    rows = [score_lib.score_track_set(
        recon, ts, num_support=config.eval.num_support, num_query=config.eval.num_query,
        seed=config.eval.seed)[0] for ts in track_sets]
    keys = ('average_jaccard', 'occlusion_accuracy', 'average_pts_within_thresh',
            'mean_error')
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}

  return evaluate


def _workdir_flag() -> str:
  from absl import flags  # pylint: disable=g-import-not-at-top
  if 'workdir' in flags.FLAGS and flags.FLAGS.is_parsed() and flags.FLAGS.workdir:
    return flags.FLAGS.workdir
  raise ValueError('build_method needs a workdir (argument or --workdir flag) for '
                   'synthetic clips when config.data.train_dir is empty.')
