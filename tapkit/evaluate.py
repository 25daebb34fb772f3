"""Runs one of a finished run's evaluators once, on a checkpoint.

    python -m tapkit.evaluate --workdir /tmp/t4d --eval eval            # latest checkpoint
    python -m tapkit.evaluate --workdir /tmp/t4d --eval eval --step 200

Reads the run's `config.json` and the checkpointed state, builds the evaluator
`config.evals.<NAME>` exactly as training does (tapkit/train/evaluators.py;
the evaluator's module is found from its type string at run time), calls it
once, prints its metrics and writes them to `<workdir>/eval_<NAME>.json`:

    {"eval": NAME, "type": ..., "step": S, "metrics": {metric: value}}
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

import ml_collections

from tapkit import cli
from tapkit.train import evaluators


def load_run_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The resolved config a training run wrote to `<workdir>/config.json`.

  Raises:
    FileNotFoundError: naming the file when the workdir has none.
    ValueError: naming the file when it is not a JSON object.
  """
  path = os.path.join(os.fspath(workdir), 'config.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: missing; is {workdir} the workdir of a training run?')
  with open(path) as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not valid JSON ({e})') from e
  if not isinstance(data, dict):
    raise ValueError(f'{path}: expected a JSON object, got {type(data).__name__}')
  return ml_collections.ConfigDict(data)


def run(workdir: str | os.PathLike, name: str, step: int | None = None) -> dict[str, Any]:
  """Evaluates checkpoint `step` (default: the latest) of `workdir` with `config.evals.<name>`.

  Returns:
    {'eval': name, 'type': type string, 'step': step, 'metrics': {metric: float}}, also
    written to `<workdir>/eval_<name>.json`.
  """
  workdir = os.fspath(workdir)
  config = load_run_config(workdir)
  evaluator = evaluators.build(config, workdir, name)
  # Imported here: the checkpoint library loads JAX, which `--help` does not need.
  from tapkit.train import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  step, tree = ckpt_lib.load_state_numpy(workdir, step)
  state = evaluators.EvalState(step=step, params=tree['params'],
                               ema_params=tree.get('ema_params'), extra=tree.get('extra'))
  metrics = {k: float(v) for k, v in (evaluator(state, step) or {}).items()}
  out = {'eval': name, 'type': str(config.evals[name].type), 'step': int(step),
         'metrics': metrics}
  with open(os.path.join(workdir, f'eval_{name}.json'), 'w') as f:
    json.dump(out, f, indent=2)
  return out


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
  p = cli.ArgumentParser(prog='python -m tapkit.evaluate',
                              description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='the workdir of a training run')
  p.add_argument('--eval', required=True, dest='name',
                 help='evaluator name: an entry of config.evals in <workdir>/config.json')
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = _parse(argv)
  out = run(args.workdir, args.name, args.step)
  print(f'{args.name} ({out["type"]}) at step {out["step"]} of {args.workdir}:')
  width = max((len(k) for k in out['metrics']), default=0)
  for key, value in out['metrics'].items():
    print(f'  {key:<{width}}  {value:.6g}')
  print(f'wrote {os.path.join(args.workdir, f"eval_{args.name}.json")}')
  return out


if __name__ == '__main__':
  cli.run(main)
