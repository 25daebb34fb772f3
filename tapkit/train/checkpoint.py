"""Orbax checkpoints of the train state together with the grain iterator state.

Layout: `<workdir>/checkpoints/<step>/{state, data}`. `state` is the TrainState
(as a nested dict, arrays restored straight into their shardings), `data` holds
one JSON file per process with that process's grain iterator state. Orbax
writes into a temporary directory and renames it when complete, so a process
killed mid-save leaves only complete checkpoints behind. Reading a run's checkpoint
outside training (numpy, any topology) is `tapkit.train.workdir.load_state`.
"""

from __future__ import annotations

import os
from typing import Any

import flax
import grain.python as grain
import ml_collections
import orbax.checkpoint as ocp

from tapkit.train import workdir as workdir_lib
from tapkit.train.state import TrainState


def _to_dict(state: TrainState) -> dict[str, Any]:
  # Optional fields (EMA, extra) that are None are left out: orbax stores
  # array trees, and the restore target is built the same way.
  return {k: v for k, v in flax.serialization.to_state_dict(state).items()
          if v is not None}


class Checkpointer:
  """Keeps the last `keep` checkpoints, plus the `keep_best` best by a metric.

  Config (`config.checkpoint`):
    every_steps     save period (the last step and SIGTERM always save)
    keep            number of most recent checkpoints kept (resume uses the latest)
    async_save      write in a background thread (device->host copy is synchronous)
    best_metric     e.g. 'eval/mse' (an EvalHook output): also keep the
                    `keep_best` best checkpoints by it ('' = off)
    best_mode       'min' | 'max'
    keep_best       how many best checkpoints are kept
  """

  def __init__(self, directory: str | os.PathLike, cfg: ml_collections.ConfigDict):
    best_metric = cfg.best_metric or None
    policies = [ocp.checkpoint_managers.LatestN(n=int(cfg.keep))]
    if best_metric:
      mode = cfg.best_mode
      if mode not in ('min', 'max'):
        raise ValueError(f"checkpoint.best_mode must be 'min' or 'max', got {mode!r}.")
      policies.append(ocp.checkpoint_managers.BestN(
          get_metric_fn=lambda m: float(m[best_metric]),
          reverse=mode == 'min',  # BestN keeps the last n after sorting.
          n=int(cfg.keep_best),
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        enable_async_checkpointing=bool(cfg.async_save),
        create=True,
        cleanup_tmp_directories=True,
    )
    self.directory = os.fspath(os.path.abspath(directory))
    self.manager = ocp.CheckpointManager(
        self.directory, item_names=('state', 'data'), options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: TrainState, data_iter: grain.DataLoaderIterator,
           metrics: dict[str, float] | None = None) -> None:
    self.manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(_to_dict(state)),
            data=grain.PyGrainCheckpointSave(data_iter)),
        metrics=metrics, force=True)

  def restore(self, step: int, abstract_state: TrainState,
              data_iter: grain.DataLoaderIterator) -> TrainState:
    """Restores `step` into the shardings of `abstract_state` (ShapeDtypeStructs
    with `.sharding`) and sets `data_iter` to the saved position."""
    restored = self.manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_to_dict(abstract_state)),
            data=grain.PyGrainCheckpointRestore(data_iter)))
    saved = restored['state']
    # Put back the None fields that _to_dict left out.
    full = {k: saved.get(k) for k in flax.serialization.to_state_dict(abstract_state)}
    return flax.serialization.from_state_dict(abstract_state, full)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


# The former name of `workdir.load_state`, kept for its callers.
load_state_numpy = workdir_lib.load_state
