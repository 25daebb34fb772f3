"""The run directory of a training job: its config, its checkpoints, its state as numpy.

Layout written by the engine:

    <workdir>/config.json                   the resolved config (`launch.save_config`)
    <workdir>/checkpoints/<step>/state/     the TrainState, an orbax PyTree item
    <workdir>/checkpoints/<step>/data/      the grain iterator states

Every CLI that reads a finished (or running) job goes through this module:

    config = workdir.load_config(w)               # ConfigDict from config.json
    w, step = workdir.find_workdir(path)          # path: W, W/checkpoints, W/checkpoints/<s>[/state]
    step, item = workdir.resolve_checkpoint(path) # the orbax item folder of a checkpoint
    step, state = workdir.load_state(w)           # {'params', 'opt_state', 'ema_params', ...}

Config *files* (`configs/x.py:preset`) are read by `tapkit.train.config.load_config`.
Missing parts raise `WorkdirError`, which is both a `ValueError` and a
`FileNotFoundError` and names the path.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

CONFIG_FILE = 'config.json'
CHECKPOINTS = 'checkpoints'
# Names of the orbax items that hold parameters, in order of preference: a bare
# PyTree item ('params', 'default') or the engine's TrainState ('state').
PARAM_ITEMS = ('params', 'state', 'default')
_ITEMS = (*PARAM_ITEMS, 'data')
# Files that mark a folder as an orbax checkpoint (a PyTree item or a manager step).
_ORBAX_MARKERS = ('_METADATA', '_CHECKPOINT_METADATA', 'manifest.ocdbt')
# How many folders above a given path `find_workdir` looks for config.json.
_MAX_LEVELS = 4

PathLike = str | os.PathLike


class WorkdirError(FileNotFoundError, ValueError):
  """A path that is not a run directory, or a run directory missing a part.

  A missing file and an invalid argument at once, so both `except ValueError` and
  `except FileNotFoundError` catch it.
  """


def config_path(workdir: PathLike) -> pathlib.Path:
  """`<workdir>/config.json`."""
  return pathlib.Path(workdir) / CONFIG_FILE


def load_config(workdir: PathLike, required: Sequence[str] = (),
                method: str | None = None) -> ml_collections.ConfigDict:
  """The resolved config a training run wrote to `<workdir>/config.json`.

  Args:
    workdir: the run directory.
    required: top-level fields that must be present (e.g. ('model',)).
    method: name of the method that wrote it, for the error message.

  Raises:
    WorkdirError: config.json is missing.
    ValueError: it is no JSON object, or lacks a required field.
  """
  path = config_path(workdir)
  if not path.is_file():
    raise WorkdirError(f'{path}: missing; {workdir} is not a training run directory (the '
                       f'engine writes {CONFIG_FILE} into its workdir)')
  try:
    with open(path) as f:
      data = json.load(f)
  except ValueError as e:
    raise ValueError(f'{path}: not valid JSON ({e})') from None
  if not isinstance(data, dict):
    raise ValueError(f'{path}: holds a {type(data).__name__}, not a config object')
  config = ml_collections.ConfigDict(data)
  for field in required:
    if field not in config:
      run = f'a {method} run' if method else 'the expected run'
      raise ValueError(f'{path}: field {field} is missing (not {run}?)')
  return config


def find_workdir(path: PathLike) -> tuple[pathlib.Path, int | None]:
  """(workdir, step) of a path inside a run directory.

  Accepted: `W/checkpoints/<step>` or one of its items (`.../<step>/state`) -> (W, step);
  `W/checkpoints` -> (W, None); a folder holding config.json or checkpoints/, or
  a file or folder up to 4 levels below one (e.g. an exported `W/params.npz`)
  -> (that folder, None). The workdir keeps the form of `path` (relative stays
  relative) unless it was found above it.

  Raises:
    WorkdirError: none of these.
  """
  p = pathlib.Path(path)
  if p.name in _ITEMS and p.parent.name.isdigit():
    p = p.parent
  if p.name.isdigit() and p.parent.name == CHECKPOINTS:
    return p.parent.parent, int(p.name)
  if p.name == CHECKPOINTS and p.is_dir():
    return p.parent, None
  for folder in [p, *list(p.resolve().parents)[:_MAX_LEVELS]]:
    if (folder / CONFIG_FILE).is_file() or (folder / CHECKPOINTS).is_dir():
      return folder, None
  raise WorkdirError(f'{path}: not in a training run directory (no {CONFIG_FILE} or '
                     f'{CHECKPOINTS}/ in it or above it) nor W/{CHECKPOINTS}/<step>')


def is_orbax_checkpoint(path: PathLike) -> bool:
  """True for a folder that is an orbax checkpoint (a PyTree item or a manager step)."""
  path = pathlib.Path(path)
  return path.is_dir() and any((path / m).exists() for m in _ORBAX_MARKERS)


def checkpoint_steps(directory: PathLike) -> list[int]:
  """Sorted steps of the complete checkpoints in a manager folder (numbered folders).

  Orbax writes a checkpoint into a temporary folder and renames it to its step
  when complete, so every numbered folder is a complete checkpoint.
  """
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def resolve_checkpoint(path: PathLike, step: int | None = None
                       ) -> tuple[int | None, pathlib.Path]:
  """(step, item folder) of an orbax checkpoint given by any of the layouts in use.

  Layouts, tried in this order:
    * a workdir W (holds `checkpoints/`): its checkpoint manager folder, as below;
    * a manager folder (numbered step folders): step `step`, else the latest;
    * a step folder or a bare PyTree checkpoint.
  In a step folder the item is the first of `params/`, `state/` (the engine's
  TrainState), `default/` that is an orbax checkpoint, else the folder itself.

  Args:
    path: any of the above.
    step: the step to pick in a manager folder (None = the latest). A step folder
      or a bare checkpoint is taken as it is.

  Returns:
    The step (None for a bare checkpoint outside a manager folder) and the folder
    to restore.

  Raises:
    WorkdirError: no such folder, no checkpoint (for `step`), or no orbax checkpoint.
  """
  p = pathlib.Path(path)
  if not p.is_dir():
    raise WorkdirError(f'{path}: no such checkpoint directory.')
  if (p / CHECKPOINTS).is_dir() and not is_orbax_checkpoint(p):
    p = p / CHECKPOINTS
  steps = checkpoint_steps(p)
  if steps and not is_orbax_checkpoint(p):
    if step is None:
      step = steps[-1]
    elif step not in steps:
      raise WorkdirError(f'No checkpoint for step {step} at {p / str(step)}.')
    p = p / str(step)
  elif p.name == CHECKPOINTS and not is_orbax_checkpoint(p):
    raise WorkdirError(f'No checkpoint in {p}.')
  elif p.name.isdigit():
    step = int(p.name)
  elif p.name in _ITEMS and p.parent.name.isdigit():
    step = int(p.parent.name)
  else:
    step = None
  for item in PARAM_ITEMS:
    if is_orbax_checkpoint(p / item):
      return step, p / item
  if is_orbax_checkpoint(p):
    return step, p
  raise WorkdirError(
      f'{path}: not an orbax checkpoint (no {" / ".join(_ORBAX_MARKERS)} in it, in a '
      f'{", ".join(f"{i}/" for i in PARAM_ITEMS)} item, or in the latest numbered step).')


def restore_numpy(item: PathLike) -> Any:
  """Restores an orbax PyTree item as a tree of numpy arrays, on any device topology.

  The arrays are read onto one local device whatever the topology that saved them,
  so evaluation CLIs, converters and tests can read a sharded run's checkpoint.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(item).absolute()  # orbax only accepts absolute paths
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with ocp.StandardCheckpointer() as checkpointer:
    meta = checkpointer.metadata(path)
    meta = getattr(meta, 'item_metadata', meta)
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          meta)
    restored = checkpointer.restore(path, target)
  return jax.tree.map(np.asarray, restored)


def load_state(workdir: PathLike, step: int | None = None) -> tuple[int, dict[str, Any]]:
  """(step, TrainState as a nested dict of numpy arrays) of a workdir's checkpoint.

  Reads `<workdir>/checkpoints/<step>/state` (the latest step when `step` is None),
  on any device topology.

  Raises:
    WorkdirError: no checkpoint (for `step`) in the workdir.
  """
  # Absolute: CLIs pass what the user typed, and orbax needs absolute paths.
  directory = pathlib.Path(os.path.abspath(os.fspath(workdir))) / CHECKPOINTS
  if not checkpoint_steps(directory):
    raise WorkdirError(f'No checkpoint in {directory}.')
  step, item = resolve_checkpoint(directory, step)
  if item != directory / str(step) / 'state':
    raise WorkdirError(f'No checkpoint for step {step} at {directory / str(step) / "state"}.')
  return int(step), restore_numpy(item)
