"""Exports the fine-tuned backbone of a dpov_jax.train workdir as a standard checkpoint.

    python -m dpov_jax.export --workdir /tmp/dpov --out /tmp/dpov/backbone.safetensors
    python -m dpov_jax.export --workdir /tmp/dpov --out dinov2_3dpov.pth --layout hub
    python -m dpov_jax.export --workdir /tmp/dpov --out teacher.safetensors --weights teacher

--layout transformers (default) writes transformers 5 state-dict names (load with
`Dinov2WithRegistersModel.load_state_dict`, or `tapkit.models.vit.load_checkpoint`); --layout hub
writes the official torch.hub names (the `.pth` a `torch.hub.load('facebookresearch/dinov2',
...)` model takes with `load_state_dict(strict=True)`). File types: `.safetensors` (numpy, no
torch needed), `.npz` (numpy) or `.pth` (needs torch). --weights student (default: the trained
parameters) or teacher (the EMA copy). The backbone config is read from <workdir>/config.json and
written next to the weights as <out>.json ({"preset", "source", "num_layers", "arch"}), so that

    module, params = tapkit.models.vit.load_checkpoint(out, arch=<preset or BackboneConfig>)

gives exactly the fine-tuned tokens. The projection head is training-only and not exported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tapkit import cli

if TYPE_CHECKING:
  from tapkit.models import vit as bb  # Imported where used: `--help` needs no JAX.

LAYOUTS = ('transformers', 'hub')
EXTENSIONS = ('.safetensors', '.npz', '.pth', '.pt')


def read_run(workdir: str | os.PathLike, step: int | None = None,
             weights: str = 'student') -> tuple[int, dict, Any, bb.BackboneConfig]:
  """(step, backbone params, ml_collections config, BackboneConfig) of a dpov_jax.train workdir."""
  from dpov_jax import task  # pylint: disable=g-import-not-at-top
  from tapkit.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  workdir = os.fspath(workdir)
  config = workdir_lib.load_config(workdir, required=('backbone',), method='dpov_jax')
  if weights not in ('student', 'teacher'):
    raise ValueError(f"weights must be 'student' or 'teacher', got {weights!r}")
  got_step, state = workdir_lib.load_state(workdir, step)
  key = 'params' if weights == 'student' else 'ema_params'
  if key not in state:
    raise ValueError(f'{workdir}: checkpoint {got_step} has no {key} (teacher weights need '
                     'config.ema.momentum)')
  if 'backbone' not in state[key]:
    raise ValueError(f'{workdir}: checkpoint {got_step} field {key}.backbone is missing')
  return got_step, state[key]['backbone'], config, task.backbone_config(config)


def export(params: Any, config: bb.BackboneConfig, out: str | os.PathLike,
           layout: str = 'transformers') -> dict[str, np.ndarray]:
  """Writes `params` as a `layout` state dict to `out` (.safetensors, .npz or .pth).

  Returns:
    the state dict {name: float32 array} that was written.
  """
  out = os.fspath(out)
  ext = os.path.splitext(out)[1].lower()
  if ext not in EXTENSIONS:
    raise ValueError(f'--out {out}: use one of {EXTENSIONS}')
  from tapkit.models import vit as bb  # pylint: disable=g-import-not-at-top,redefined-outer-name
  if layout == 'transformers':
    sd = bb.export_transformers_state_dict(params, config)
  elif layout == 'hub':
    sd = bb.export_hub_state_dict(params, config)
  else:
    raise ValueError(f'--layout must be one of {LAYOUTS}, got {layout!r}')
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  if ext == '.safetensors':
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    save_file(sd, out)
  elif ext == '.npz':
    np.savez(out, **sd)
  else:
    import torch  # pylint: disable=g-import-not-at-top
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, out)
  return sd


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
  p = cli.ArgumentParser(prog='python -m dpov_jax.export',
                              description='Fine-tuned 3DPoV backbone -> standard checkpoint.')
  p.add_argument('--workdir', required=True)
  p.add_argument('--out', required=True, help='.safetensors | .npz | .pth')
  p.add_argument('--layout', default='transformers', choices=LAYOUTS)
  p.add_argument('--weights', default='student', choices=('student', 'teacher'))
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
  args = _parse(argv)
  step, params, config, cfg = read_run(args.workdir, args.step, args.weights)
  sd = export(params, cfg, args.out, args.layout)
  meta = {'preset': config.backbone.name, 'source': config.backbone.source,
          'num_layers': cfg.num_layers, 'step': step, 'weights': args.weights,
          'layout': args.layout, 'arch': dataclasses.asdict(cfg)}
  with open(args.out + '.json', 'w') as f:
    json.dump(meta, f, indent=2)
  n = sum(v.size for v in sd.values())
  print(f'wrote {args.out}: {len(sd)} tensors, {n / 1e6:.2f}M parameters ({args.weights}, step '
        f'{step}, {args.layout} names) and {args.out}.json')
  return args.out


if __name__ == '__main__':
  cli.run(main)
