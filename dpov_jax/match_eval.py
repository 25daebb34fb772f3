"""Learning-signal check: nearest-neighbour matching of tracked points between distant frames.

For each held-out clip (frames [T, H, W, 3], ground-truth tracks [T, N, 2], visibility [T, N];
the synthetic eval clips of a run by default), the backbone's final-norm patch-token maps of
frame 0 and of the last clip frame (frame T - 1, (T - 1) * regular_step video frames later) are
computed. The feature of each grid point at its frame-0 position is read from the frame-0 map
exactly as the 3DPoV loss reads it (latent tracking: bilinear on the token grid); the
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

The CLI rebuilds the run's starting backbone from its config.json (backbone.init_checkpoint, the
pre-trained <workdir>/pretrain/backbone.safetensors, or the seeded random init), reads the
student (`params`) and the EMA teacher (`ema_params`) of the checkpoint, prints a table and
writes <workdir>/match_eval.json. The matching itself lives in dpov_jax/matcher.py.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from tapkit import cli


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
  p = cli.ArgumentParser(prog='python -m dpov_jax.match_eval', description=__doc__.split(
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
  # Imported after parsing: `--help` and argument errors need no JAX.
  import ml_collections  # pylint: disable=g-import-not-at-top

  from dpov_jax import matcher as matcher_lib  # pylint: disable=g-import-not-at-top
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
  matcher = matcher_lib.Matcher(module, clips, threshold, int(ev.batch_size),
                                args.stride, args.radius_px)
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
  cli.run(main)
