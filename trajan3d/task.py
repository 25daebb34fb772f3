"""TRAJAN / 3DSPA training task for the shared engine (`tapkit.train.loop.Method`).

`build_method` assembles the parts: the model (`trajan3d.model`), the training
data (`trajan3d.input_pipeline`: clip files or synthetic clips, then
support / query sampling, normalisation and features per record) and the loss
(`trajan3d.losses.track_losses` with `config.loss`, as an
`accumulation.SumsLoss`: its batch-wide visible-point normaliser stays exact under
`config.accumulate_steps`). The held-out evaluation is
`config.evals.eval` of type `trajan3d.held_out` (`trajan3d.evaluators`:
reconstruction of the eval clips' query tracks from disjoint support tracks;
average Jaccard / occlusion accuracy / mean error as in `trajan3d.score`),
built and run by the engine.
"""

from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from tapkit.data import arrayrecord
from tapkit.data import pipeline
from tapkit.models import jitted
from tapkit.train import accumulation
from tapkit.train import config as config_lib
from tapkit.train import loop
from trajan3d import input_pipeline
from trajan3d import losses
from trajan3d import model as model_lib


def config_file(config: ml_collections.ConfigDict) -> str:
  """The config file whose base preset lists every key of `config.model.kind`'s method."""
  return 'configs/trajan.py' if config.model.kind == 'trajan' else 'configs/spa3d.py'


def build_method(config: ml_collections.ConfigDict, workdir: str) -> loop.Method:
  """TRAJAN / 3DSPA as an engine Method (see the module docstring).

  `workdir` is the run directory: synthetic clips are rendered into <workdir>/synthetic when
  config.data.train_dir (or config.data.synthetic.dir) does not name the data.

  Raises:
    ValueError: naming the full key when `config` holds a key that the config file of its
      model kind (configs/trajan.py or configs/spa3d.py) does not define.
  """
  config_lib.check_config(config, config_lib.method_reference(config_file(config)))
  if config.data.num_frames != config.model.num_output_frames:
    raise ValueError(f'config.data.num_frames={config.data.num_frames} must equal '
                     f'config.model.num_output_frames={config.model.num_output_frames}.')
  model = model_lib.build_model_from_config(config)
  if pipeline.data_source(config.data) == 'arrayrecord':
    # Records decoded where they are read (grain workers); bad ones skipped by the engine.
    train_dir = config.data.arrayrecord_folder
    source = arrayrecord.ClipRecordSource(train_dir, config.data.arrayrecord_split,
                                          input_pipeline.clip_to_example(config).map)
  else:
    train_dir, pattern, _ = input_pipeline.data_dirs(config, workdir)
    source = input_pipeline.TrackExampleSource(
        train_dir, pattern, input_pipeline.clip_to_example(config),
        max_bad_fraction=float(config.data.max_bad_fraction))
  logging.info('Training on %d clips from %s.', len(source), train_dir)

  def init_fn(rng: jax.Array, batch: dict[str, Any]) -> Any:
    # The parameter shapes depend on the inputs' feature widths only (a checkpoint is
    # checked against `example_inputs`, trajan3d.score): the init runs on example inputs
    # with the batch's feature inputs, through the jitted init that the untrained baseline
    # (evaluate_tapvid3d.random_reconstructor) calls on the same shapes, so that a process
    # doing both compiles it once (engine: `init_outside_jit`).
    inputs = model_lib.example_inputs(model)
    for key, value in input_pipeline.model_inputs(batch).items():
      if key not in inputs:  # dino_features / depth_features [B, S, T, D]
        inputs[key] = jnp.zeros(inputs['support_tracks'].shape[:3] + value.shape[-1:])
    return jitted.jitted_init(model)(rng, inputs)['params']

  def micro_loss_sums(params, batch, rng, state, positions, batch_size):
    # A micro-batch's examples get the latent noise rows of their positions in the whole
    # batch, so that accumulate_steps > 1 reproduces the whole batch's step.
    del rng, state
    out = model.apply({'params': params}, input_pipeline.model_inputs(batch),
                      noise_rows=None if positions is None else (positions, batch_size))
    return losses.track_loss_sums(out.tracks, out.visible_logits, out.certain_logits,
                                  batch['target_points'], batch['target_tracks_visible'],
                                  config.loss)

  def loss_sums(params, batch, rng, state):
    return micro_loss_sums(params, batch, rng, state, None, 0)

  def combine(totals, weights, state):
    del state
    return losses.combine_track_losses(totals, weights, config.loss)

  # Sums over points, then the ratios: exact under config.accumulate_steps.
  loss_fn = accumulation.SumsLoss(loss_sums, combine, micro_loss_sums)

  return loop.Method(init_fn=init_fn, loss_fn=loss_fn, train_source=source,
                     train_transforms=input_pipeline.train_transforms(config),
                     init_outside_jit=True)

