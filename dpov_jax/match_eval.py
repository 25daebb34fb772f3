"""Learning-signal check: nearest-neighbour matching of tracked points between distant frames.

For each held-out clip (frames [T, H, W, 3], ground-truth tracks [T, N, 2], visibility [T, N];
the synthetic eval clips of a run by default), the backbone's final-norm patch-token maps of
frame 0 and of the last clip frame (frame T - 1, (T - 1) * regular_step video frames later) are
computed. The feature of each grid point at its frame-0 position is read from the frame-0 map
exactly as the 3DPoV loss reads it (latent tracking: bilinear on the token grid, spec a.6); the
same read at every `stride`-th pixel centre of the distant frame gives the candidates. The
prediction is the candidate pixel with the highest cosine similarity; points visible in both
frames are scored against their true position in the distant frame:

  match_acc      share of points with error <= threshold_px (pixels of the input)
  match_err_px   mean error in pixels (median also reported)
  static_acc     the same accuracy for the "nothing moved" guess (prediction = query position),
                 for scale: features must beat it to have learnt anything about appearance.

    python -m dpov_jax.match_eval --workdir /tmp/dpov            # start vs. latest checkpoint
    python -m dpov_jax.match_eval --workdir /tmp/dpov --step 100 --num_clips 12
    python -m dpov_jax.match_eval --workdir /tmp/dpov --radius_px 28   # local search window

The CLI rebuilds the run's starting backbone from its config.json (backbone.init_checkpoint or
the seeded random init), reads the student (`params`) and the EMA teacher (`ema_params`) of the
checkpoint, prints a table and writes <workdir>/match_eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dpov_jax import loss as pov_loss


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
  q = pov_loss.l2_normalize(pov_loss.sample_at_tracks(map0, queries, image_size, 'off'))
  c = pov_loss.l2_normalize(pov_loss.sample_at_tracks(map1, cand, image_size, 'off'))
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
    from dpov_jax import data  # pylint: disable=g-import-not-at-top
    from tapkit.models.vit import tokens_to_feature_map  # pylint: disable=g-import-not-at-top
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


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m dpov_jax.match_eval', description=__doc__.split(
      '\n')[0])
  p.add_argument('--workdir', required=True, help='a dpov_jax.train workdir')
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  p.add_argument('--num_clips', type=int, default=None,
                 help='held-out clips (default: config.evals.eval.num_clips)')
  p.add_argument('--threshold_px', type=float, default=None,
                 help='accuracy threshold in input pixels (default: '
                      'config.evals.eval.threshold_px)')
  p.add_argument('--stride', type=int, default=1, help='candidate spacing in pixels')
  p.add_argument('--radius_px', type=float, default=0.0,
                 help='local search window radius in pixels (0 = whole frame)')
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = _parse(argv)
  import ml_collections  # pylint: disable=g-import-not-at-top

  from dpov_jax import task  # pylint: disable=g-import-not-at-top
  from tapkit.train import checkpoint as engine_ckpt  # pylint: disable=g-import-not-at-top

  path = os.path.join(args.workdir, 'config.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: missing; is {args.workdir} a dpov_jax.train workdir?')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  for field in ('backbone', 'data', 'evals'):
    if field not in config:
      raise ValueError(f'{path}: field {field} is missing (not a dpov_jax run?)')
  ev = config.evals.eval
  threshold = args.threshold_px if args.threshold_px is not None else ev.threshold_px
  num_clips = args.num_clips or int(ev.num_clips)
  module = task.build_backbone(config)
  clips = task.eval_clips(config, args.workdir, num_clips)
  matcher = Matcher(module, clips, threshold, int(ev.batch_size), args.stride,
                    args.radius_px)
  step, state = engine_ckpt.load_state_numpy(args.workdir, args.step)
  rows = {'static (no motion)': matcher.static_baseline(),
          'start backbone': matcher(task.initial_backbone_params(config, args.workdir)),
          f'student @ {step}': matcher(state['params']['backbone'])}
  if 'ema_params' in state:
    rows[f'teacher @ {step}'] = matcher(state['ema_params']['backbone'])
  print(f'{num_clips} held-out clips, frame 0 vs frame {config.data.num_frames - 1} '
        f'({(config.data.num_frames - 1) * config.data.regular_step} frames apart), '
        f'threshold {threshold:g} px, search radius '
        f'{f"{args.radius_px:g} px" if args.radius_px > 0 else "whole frame"}')
  print(f'{"features":<22} {"acc":>7} {"mean px":>8} {"median px":>9} {"points":>7}')
  for name, r in rows.items():
    print(f'{name:<22} {r["acc"]:7.4f} {r["err_px"]:8.2f} {r["median_err_px"]:9.2f} '
          f'{int(r["num_points"]):7d}')
  out = {'step': step, 'threshold_px': threshold, 'radius_px': args.radius_px,
         'num_clips': num_clips, 'rows': rows}
  with open(os.path.join(args.workdir, 'match_eval.json'), 'w') as f:
    json.dump(out, f, indent=2)
  return out


if __name__ == '__main__':
  main(sys.argv[1:])
