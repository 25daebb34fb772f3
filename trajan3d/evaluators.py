"""Held-out reconstruction of point tracks with TRAJAN / 3DSPA, and its metrics.

One evaluation for every caller: the held-out evaluator `trajan3d.held_out`
(`config.evals.eval`, run during training and by `python -m tapkit.evaluate`),
the realism score (`trajan3d.score`) and the TAPVid-3D benchmark
(`trajan3d.evaluate_tapvid3d`). Query tracks are decoded from support tracks
(disjoint, `tapkit.data.pipeline.split_support_query`); the inputs are built by
`trajan3d.input_pipeline`; the metric is TAPVid-3D's
(`tapkit.metrics.tapvid3d`, scaling 'none': the reconstruction is in the
input's own metric frame).

`score_clip` splits a clip's tracks into folds of `num_query` tracks taken in
the order of one seeded permutation and decodes each fold from up to
`num_support` of the others, so every track is reconstructed once without
having been seen. Thresholds: 3D uses TAPVid-3D's depth-adaptive thresholds
with the clip's intrinsics rescaled to a 256-pixel short side (without
intrinsics: focal `DEFAULT_FOCAL_PX`, a 60-degree field of view at 256 pixels);
2D uses 1, 2, 4, 8, 16 pixels at a 256-pixel short side.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from tapkit.data import clip as clip_lib
from tapkit.data import pipeline
from tapkit.data import tapvid3d
from tapkit.metrics import tapvid3d as metrics_lib
from tapkit.models import jitted
from tapkit.train import evaluators
from trajan3d import input_pipeline
from trajan3d import model as model_lib
from trajan3d import preprocess

EVAL_SHORT_SIDE = 256
DEFAULT_FOCAL_PX = EVAL_SHORT_SIDE / (2.0 * math.tan(math.radians(30.0)))  # ~221.7
# Per-clip metrics averaged by the training-time evaluation.
EVAL_KEYS = ('average_jaccard', 'occlusion_accuracy', 'average_pts_within_thresh',
             'mean_error')


class Reconstructor:
  """Jitted encode-decode of one video at a time (batch 1, batch position 0).

  Attributes:
    model: TrackAutoEncoder(3D); params: its parameters (may be replaced).
    coords: 'xyz' (3DSPA) or 'uv' (TRAJAN).
    dino, depth: whether the model reads DINO / depth feature inputs.
    normalize: `config.data.normalize` the model was trained with.
  """

  def __init__(self, model, params: Mapping[str, Any], coords: str,
               features_cfg: Mapping[str, Any] | None = None, normalize: str = 'none'):
    self.model, self.params, self.coords = model, params, coords
    self.normalize = normalize
    features_cfg = features_cfg or {}
    self.dino = bool(features_cfg.get('dino', False))
    self.depth = bool(features_cfg.get('depth', False))
    self.num_frames = int(model.num_output_frames)
    self._apply = jitted.jitted_apply(model)

  def __call__(self, support: np.ndarray, support_visible: np.ndarray,
               query_points: np.ndarray, boundary: int,
               feats: Mapping[str, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Reconstructs query tracks.

    Args:
      support: [S, T, C] model units (T <= num_output_frames, padded here).
      support_visible: [S, T] bool.
      query_points: [Q, 1 + C] (t, coords).
      boundary: number of real frames.
      feats: optional {'dino_features' | 'depth_features': [S, T, D]}.

    Returns:
      tracks [Q, T_out, C] float32, visible_logits [Q, T_out] float32.
    """
    length = self.num_frames
    pad = lambda x: preprocess.pad_or_crop_time(x, length, axis=1)
    raw = {'support_tracks': np.asarray(support, np.float32),
           'support_tracks_visible': np.asarray(support_visible, np.float32),
           'query_points': query_points}
    norm, centre, scale = input_pipeline.normalize_inputs(raw, self.normalize)
    inputs = {
        'support_tracks': pad(norm['support_tracks'])[None],
        'support_tracks_visible': pad(norm['support_tracks_visible'])[None, ..., None],
        'query_points': norm['query_points'][None],
        'boundary_frame': np.asarray([min(boundary, length)], np.int32),
    }
    for key, value in (feats or {}).items():
      inputs[key] = pad(np.asarray(value, np.float32))[None]
    out = self._apply(self.params, inputs)
    return (np.asarray(out.tracks[0], np.float32) * scale + centre,
            np.asarray(out.visible_logits[0, ..., 0], np.float32))


def reconstruct(recon: Reconstructor, clip: clip_lib.Clip, tracks: np.ndarray,
                support: np.ndarray, query: np.ndarray,
                query_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Decodes tracks `query` from tracks `support` (index arrays into N).

  Args:
    recon: the model.
    clip: the tracks' clip (visibility, features).
    tracks: [T, N, C] model units (`input_pipeline.model_tracks`).
    support, query: track indices.
    query_frames: [N] query frame of every track.

  Returns:
    pred [T, Q, C] model units and pred_visible [T, Q] bool, T = the video's
    frames (cropped to the model's num_output_frames if longer).
  """
  t_len = min(tracks.shape[0], recon.num_frames)
  tracks = tracks[:t_len]
  visible = np.asarray(clip.visibility, bool)[:t_len]
  frames = np.clip(query_frames[query], 0, t_len - 1)
  qpos = tracks[frames, query]  # [Q, C]
  query_points = np.concatenate([frames[:, None].astype(np.float32), qpos], -1)
  feats = input_pipeline.support_features(clip, support, recon.num_frames,
                                          depth=recon.depth, dino=recon.dino)
  pred, logits = recon(np.swapaxes(tracks[:, support], 0, 1), visible[:, support].T,
                       query_points, t_len, feats)
  return np.swapaxes(pred[:, :t_len], 0, 1), (logits[:, :t_len] > 0).T


def metric_space(clip: clip_lib.Clip, coords: str, tracks_model: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(points [T, N, 3], intrinsics [4]) on which the TAPVid-3D metric is run.

  3D: metres with the intrinsics rescaled to a 256-pixel short side. 2D: pixels
  at a 256-pixel short side as (x, y, 1) with unit focal length, so the
  thresholds 1..16 are pixels.
  """
  frame_size = input_pipeline.known_frame_size(clip)
  if coords == 'xyz':
    if clip.intrinsics is None:
      k = np.asarray([DEFAULT_FOCAL_PX, DEFAULT_FOCAL_PX, 128.0, 128.0], np.float32)
    elif frame_size is None:
      k = clip.intrinsics
    else:
      k = tapvid3d.eval_intrinsics(clip.intrinsics, *frame_size, EVAL_SHORT_SIDE)
    return tracks_model, np.asarray(k, np.float32)
  height, width = frame_size
  scale = EVAL_SHORT_SIDE / min(height, width)
  px = (preprocess.denormalize_tracks(tracks_model, width, height) - 0.5) * scale
  ones = np.ones(px.shape[:-1] + (1,), np.float32)
  return np.concatenate([px, ones], -1), np.asarray([1.0, 1.0, 0.0, 0.0], np.float32)


def reconstruction_metrics(gt: np.ndarray, gt_visible: np.ndarray, pred: np.ndarray,
                           pred_visible: np.ndarray, intrinsics: np.ndarray
                           ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Per-video and per-frame TAPVid-3D metrics (scaling 'none') plus mean error.

  Args:
    gt, pred: [T, N, 3] metric-space points; gt_visible, pred_visible [T, N].
    intrinsics: [4] for the thresholds.

  Returns:
    ({metric: float} incl. 'mean_error'), per-frame {'jaccard', 'pts_within',
    'occlusion_accuracy', 'mean_error': [T]} (NaN where a frame has no visible
    ground truth).
  """
  kwargs = dict(intrinsics_params=intrinsics, scaling='none')
  video = metrics_lib.compute_tapvid3d_metrics(
      gt_occluded=~gt_visible, gt_tracks=gt, pred_occluded=~pred_visible,
      pred_tracks=pred, order='t n', **kwargs)
  frame = metrics_lib.compute_tapvid3d_metrics(
      gt_occluded=~gt_visible[..., None], gt_tracks=gt[:, :, None],
      pred_occluded=~pred_visible[..., None], pred_tracks=pred[:, :, None],
      order='b n t', **kwargs)
  err = np.linalg.norm(pred - gt, axis=-1)  # [T, N]
  m = gt_visible.astype(np.float64)
  with np.errstate(invalid='ignore', divide='ignore'):
    frame_err = np.sum(err * m, axis=1) / np.sum(m, axis=1)
  row = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in video.items()}
  row['mean_error'] = float(np.sum(err * m) / max(1.0, np.sum(m)))
  per_frame = {
      'jaccard': np.asarray(frame['average_jaccard'], np.float64),
      'pts_within': np.asarray(frame['average_pts_within_thresh'], np.float64),
      'occlusion_accuracy': np.asarray(frame['occlusion_accuracy'], np.float64),
      'mean_error': frame_err,
  }
  return row, per_frame


def score_clip(recon: Reconstructor, clip: clip_lib.Clip, num_support: int = 2048,
               num_query: int = 256, seed: int = 0, max_tracks: int | None = None
               ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Held-out reconstruction score of one video (module docstring).

  Args:
    recon: the model.
    clip: the video's tracks (`input_pipeline.track_clip`, or a track file).
    num_support: the most support tracks per fold.
    num_query: tracks per fold.
    seed: seeds the track subset (`max_tracks`) and the fold permutation.
    max_tracks: score at most this many tracks (a seeded subset); None = all. A clip with
      no more tracks than this is scored whole, exactly as with None (same folds).

  Returns:
    (row, per_frame): row = {'score', 'average_jaccard', 'occlusion_accuracy',
    'average_pts_within_thresh', 'mean_error', 'num_frames', 'num_tracks', ...};
    per_frame as `reconstruction_metrics`.
  """
  tracks = input_pipeline.model_tracks(clip, recon.coords)  # [T, N, C]
  n = clip.num_tracks
  name = input_pipeline.clip_name(clip)
  if n < 2:
    raise input_pipeline.TrackFileError(f'{name}: need at least 2 tracks to score, '
                                        f'got {n}.')
  rng = np.random.default_rng(seed)
  subset = max_tracks is not None and 0 < max_tracks < n
  kept = np.sort(rng.permutation(n)[:max_tracks]) if subset else np.arange(n)
  order = rng.permutation(kept)
  num_folds = max(2, math.ceil(len(order) / max(1, num_query)))
  qframes = clip.query_frames
  t_len = min(clip.num_frames, recon.num_frames)
  pred = np.zeros((t_len, n, tracks.shape[-1]), np.float32)
  pred_vis = np.zeros((t_len, n), bool)
  start = 0
  for fold_size in (len(f) for f in np.array_split(order, num_folds)):
    support, fold = pipeline.split_support_query(order, num_support, fold_size, start)
    start += fold_size
    p, v = reconstruct(recon, clip, tracks, support, fold, qframes)
    pred[:, fold], pred_vis[:, fold] = p, v
  visible = np.asarray(clip.visibility, bool)
  gt_pts, k = metric_space(clip, recon.coords, tracks[:t_len, kept])
  pred_pts, _ = metric_space(clip, recon.coords, pred[:, kept])
  row, per_frame = reconstruction_metrics(gt_pts, visible[:t_len, kept], pred_pts,
                                          pred_vis[:, kept], k)
  row.update(name=name, score=row['average_jaccard'], num_frames=t_len,
             num_tracks=len(kept),
             error_units='m' if recon.coords == 'xyz' else 'px@256')
  return row, per_frame


def mean_scores(recon: Reconstructor, clips: list[clip_lib.Clip], num_support: int,
                num_query: int, seed: int = 0) -> dict[str, float]:
  """`EVAL_KEYS` of `score_clip` averaged over clips."""
  rows = [score_clip(recon, clip, num_support=num_support, num_query=num_query,
                     seed=seed)[0] for clip in clips]
  return {k: float(np.mean([r[k] for r in rows])) for k in EVAL_KEYS}


@evaluators.register('trajan3d.held_out')
def held_out(config: ml_collections.ConfigDict, workdir: str | None, num_clips: int,
             num_support: int, num_query: int, seed: int) -> evaluators.Evaluator:
  """Held-out reconstruction of the run's eval clips, for `config.evals`.

  `mean_scores` (support / query folds of every clip, `EVAL_KEYS` averaged over
  clips) of the parameters of `state` on the first `num_clips` clips (sorted
  paths) of the run's eval directory: `config.data.eval_dir`, or the synthetic
  held-out clips `input_pipeline.eval_dir` renders for the run.

  Args:
    config: the run's config (model, features, data.normalize, data.synthetic).
    workdir: the run directory (where the synthetic eval clips are rendered).
    num_clips: evaluate the first `num_clips` clips.
    num_support, num_query, seed: as in `score_clip`.

  Returns:
    evaluator(state, step, writer=None) -> {metric: float} over `EVAL_KEYS`.

  Raises:
    FileNotFoundError: naming the directory when it holds no .npz clip.
  """
  eval_dir = input_pipeline.eval_dir(config, workdir)
  paths = sorted(str(p) for p in pathlib.Path(eval_dir).rglob('*.npz')) if eval_dir else []
  paths = paths[:int(num_clips)]
  if not paths:
    raise FileNotFoundError(
        f"config.evals: trajan3d.held_out found no .npz clips in {eval_dir or '(no eval dir)'}; "
        'set config.data.eval_dir or config.data.synthetic.num_eval > 0, and '
        'num_clips > 0 (or the evaluator\'s every_steps to 0)')
  clips = [input_pipeline.track_clip(tapvid3d.load_clip(p)) for p in paths]
  recon = Reconstructor(model_lib.build_model_from_config(config), None,
                        input_pipeline.coords_of(config), config.features,
                        config.data.normalize)

  def evaluate(state: Any, step: int, writer: Any = None) -> dict[str, float]:
    del step, writer
    recon.params = jax.device_get(state.params)
    return mean_scores(recon, clips, int(num_support), int(num_query), int(seed))

  return evaluate
