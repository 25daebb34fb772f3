"""Nearest-neighbour matching of tracked points between two distant frames of a clip.

The measurement behind the 3DPoV training eval hook (dpov_jax/task.py) and the
`python -m dpov_jax.match_eval` command. For each held-out clip (frames [T, H, W, 3], tracks
[T, N, 2] input pixels, visibility [T, N]) frame 0 and the last frame are kept
(`stack_eval_clips`). The backbone's final-norm patch-token maps of both frames are computed; the
feature of each point at its frame-0 position is read from the frame-0 map exactly as the 3DPoV
loss reads it (bilinear on the token grid); the same read at every `stride`-th pixel centre of
the distant frame gives the candidates, and the prediction is the candidate with the highest
cosine similarity (`match_points`). Points visible in both frames are scored against their true
position (`score`): share within `threshold_px`, mean and median error in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dpov_jax import data
from dpov_jax import loss as pov_loss
from tapkit.models.vit import tokens_to_feature_map
from tapkit.ops import numeric


def dense_candidates(image_size: tuple[int, int], stride: int = 1) -> np.ndarray:
  """[M, 2] (x, y) pixel centres every `stride` pixels, row-major."""
  h, w = image_size
  ys, xs = np.meshgrid(np.arange(0, h, stride), np.arange(0, w, stride), indexing='ij')
  return np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)


def match_points(map0: jax.Array, map1: jax.Array, queries: jax.Array,
                 image_size: tuple[int, int], stride: int = 1,
                 radius_px: float = 0.0) -> jax.Array:
  """Nearest-neighbour positions in frame 1 of query points of frame 0.

  Args:
    map0, map1: [Sh, Sw, D] patch-token maps of the two frames.
    queries: [N, 2] (x, y) input pixels in frame 0.
    image_size: (H, W) input pixels.
    stride: candidate spacing in pixels.
    radius_px: > 0 restricts the search to candidates within this distance of the query
      position (a local search window, as trackers use); 0 searches the whole frame.

  Returns:
    [N, 2] (x, y) predicted pixels in frame 1 (a candidate pixel centre).
  """
  cand = jnp.asarray(dense_candidates(image_size, stride))  # [M, 2]
  q = numeric.l2_normalize(pov_loss.sample_at_tracks(map0, queries, image_size, 'off'))
  c = numeric.l2_normalize(pov_loss.sample_at_tracks(map1, cand, image_size, 'off'))
  sim = q @ c.T  # [N, M]
  if radius_px > 0:
    dist2 = jnp.sum(jnp.square(queries[:, None, :] - cand[None]), axis=-1)
    sim = jnp.where(dist2 <= radius_px**2, sim, -jnp.inf)
  best = jnp.argmax(sim, axis=-1)  # [N]
  return cand[best]


def score(pred: np.ndarray, target: np.ndarray, valid: np.ndarray,
          threshold_px: float) -> dict[str, float]:
  """Accuracy within threshold, mean and median pixel error over valid points.

  Args:
    pred, target: [..., N, 2] pixels.
    valid: [..., N] bool.
  """
  err = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(target, np.float64), axis=-1)
  err = err[np.asarray(valid, bool)]
  if err.size == 0:
    raise ValueError('match_eval: no point is visible in both compared frames')
  return {'acc': float(np.mean(err <= threshold_px)), 'err_px': float(np.mean(err)),
          'median_err_px': float(np.median(err)), 'num_points': float(err.size)}


def stack_eval_clips(records: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Frame 0 and the last frame of each record -> {'frames' [C, 2, H, W, 3] uint8,
  'queries' [C, N, 2], 'targets' [C, N, 2], 'valid' [C, N] bool}."""
  frames = np.stack([r['frames'][[0, -1]] for r in records])
  queries = np.stack([r['tracks'][0] for r in records])
  targets = np.stack([r['tracks'][-1] for r in records])
  valid = np.stack([r['visibility'][0] & r['visibility'][-1] for r in records])
  return {'frames': frames, 'queries': queries, 'targets': targets, 'valid': valid}


class Matcher:
  """Jitted matching for one backbone module and one set of eval clips."""

  def __init__(self, module: Any, clips: dict[str, np.ndarray], threshold_px: float,
               batch_size: int = 8, stride: int = 1, radius_px: float = 0.0):
    self._clips = clips
    self._thr = float(threshold_px)
    self._bs = int(batch_size)
    h, w = clips['frames'].shape[2:4]
    cfg = module.config
    grid = cfg.grid_size(h, w)

    def predict(params, frames, queries):
      # frames [b, 2, H, W, 3] uint8 -> [b, N, 2] predictions.
      b = frames.shape[0]
      x = data.normalize_frames(frames).reshape(b * 2, h, w, 3)
      maps = tokens_to_feature_map(module.apply({'params': params}, x), grid,
                                   cfg.num_prefix_tokens).reshape(b, 2, *grid, -1)
      return jax.vmap(lambda m, q: match_points(m[0], m[1], q, (h, w), stride, radius_px))(
          maps, queries)

    self._predict = jax.jit(predict)

  def static_baseline(self) -> dict[str, float]:
    c = self._clips
    return score(c['queries'], c['targets'], c['valid'], self._thr)

  def __call__(self, backbone_params: Any) -> dict[str, float]:
    c = self._clips
    preds = []
    for i in range(0, len(c['frames']), self._bs):
      preds.append(np.asarray(self._predict(backbone_params, c['frames'][i:i + self._bs],
                                            c['queries'][i:i + self._bs])))
    return score(np.concatenate(preds), c['targets'], c['valid'], self._thr)
