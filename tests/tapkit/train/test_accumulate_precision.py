"""bfloat16 compute in the engine's (accumulated) step: float32 master state, bf16 matmuls.

The 3DSPA training step (a tiny model, accumulate_steps 2, exact SumsLoss
accumulation) is lowered with compute dtype bfloat16: its dots take bfloat16
operands, while the attention softmax (exp), the q/k RMS norms and LayerNorms
(rsqrt) and the loss are float32, as trajan3d/attention.py says. A toy run
trained in bfloat16 keeps float32 parameters, Adam moments and EMA in its
checkpoint.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tapkit.train import accumulation
from tapkit.train import config as config_lib
from tapkit.train import loop
from tapkit.train import step as step_lib
from tapkit.train import toy_task as toy
from tapkit.train import workdir as workdir_lib
from tapkit.train.state import TrainState
from trajan3d import losses
from trajan3d import model as trajan_model

_LOSS_CFG = {'position': 'l1', 'huber_delta': 0.1, 'position_weight': 1.0,
             'visibility_weight': 1.0, 'visibility_normalizer': 'all',
             'certainty_weight': 0.0, 'certainty_threshold': 0.1}


def _spa3d_step(dtype):
  """(jitted engine step, state, batch, metrics) of a tiny 3DSPA in `dtype`."""
  model = trajan_model.build_model(
      '3dspa_nofeat', num_output_frames=6, num_latent_tokens=4, num_frequencies=2,
      latent_token_dim=8, track_token_dim=16, encoder_latent_dim=16, decoder_num_channels=136,
      num_heads=2, qkv_size=16, input_track_layers=1, input_track_mlp=16,
      tracks_to_latents_layers=1, tracks_to_latents_mlp=16, decompress_layers=1,
      decompress_mlp=16, readout_layers=1, readout_mlp=16, dtype=dtype)
  inputs = trajan_model.example_inputs(model, batch_size=4, num_tracks=5, num_frames=6,
                                       num_queries=3)
  rng = np.random.default_rng(0)
  inputs['support_tracks'] = jnp.asarray(rng.normal(size=inputs['support_tracks'].shape),
                                         jnp.float32)
  batch = {'inputs': inputs,
           'target_points': jnp.asarray(rng.normal(size=(4, 3, 6, 3)), jnp.float32),
           'target_visible': jnp.asarray(rng.random((4, 3, 6, 1)) < 0.7, jnp.float32)}
  params = jax.jit(model.init)(jax.random.PRNGKey(0),
                               jax.tree.map(lambda x: x[:1], inputs))['params']

  def sums(p, b, rng, state):
    del rng, state
    out = model.apply({'params': p}, b['inputs'])
    return losses.track_loss_sums(out.tracks, out.visible_logits, out.certain_logits,
                                  b['target_points'], b['target_visible'], _LOSS_CFG)

  loss_fn = accumulation.SumsLoss(
      sums, lambda t, w, state: losses.combine_track_losses(t, w, _LOSS_CFG))
  tx = optax.adam(1e-3)
  state = TrainState.create(params=params, opt_state=tx.init(params),
                            rng=jax.random.PRNGKey(1))
  metrics_cls = step_lib.metrics_class(step_lib.aux_names(loss_fn, params, batch, state, False))
  step = jax.jit(step_lib.make_train_step(loss_fn, tx, metrics_cls, accumulate_steps=2))
  return step, state, batch, metrics_cls.empty()


def _ops(hlo: str, op: str) -> list[str]:
  """Element types of the results of every `op` in StableHLO text."""
  types = []
  for line in hlo.splitlines():
    if f'stablehlo.{op} ' in line or f'stablehlo.{op}(' in line:
      types.append(re.findall(r'x(bf16|f32|f64)>', line.split('->')[-1])[-1:] or ['scalar'])
  return [t[0] for t in types]


def test_bfloat16_step_runs_dots_in_bfloat16_and_softmax_norms_loss_in_float32():
  step, state, batch, metrics = _spa3d_step(jnp.bfloat16)
  hlo = step.lower(state, batch, metrics).as_text()
  dots = _ops(hlo, 'dot_general')
  assert dots.count('bf16') >= 10, dots  # the projections and MLPs
  # Softmax (exp) and normalisations (rsqrt) stay float32.
  assert _ops(hlo, 'exponential') and 'bf16' not in _ops(hlo, 'exponential')
  assert _ops(hlo, 'rsqrt') and 'bf16' not in _ops(hlo, 'rsqrt')
  new_state, new_metrics, _ = step(state, batch, metrics)
  for leaf in jax.tree.leaves((new_state.params, new_state.opt_state)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
  loss = new_metrics.compute()['loss']
  # The float32 step on the same batch: the same loss to bfloat16 precision.
  step32, state32, batch32, metrics32 = _spa3d_step(jnp.float32)
  assert 'bf16' not in _ops(step32.lower(state32, batch32, metrics32).as_text(), 'dot_general')
  loss32 = step32(state32, batch32, metrics32)[1].compute()['loss']
  assert np.isfinite(float(loss)) and float(loss) != float(loss32)
  np.testing.assert_allclose(float(loss), float(loss32), rtol=0.05)


def test_bfloat16_run_checkpoints_float32_params_moments_and_ema(tmp_path):
  config = config_lib.load_config('configs/toy.py:smoke')
  config.precision.compute_dtype = 'bfloat16'
  config.accumulate_steps = 2
  config.total_steps = 4
  config.optimizer.warmup_steps = 1
  config.checkpoint.every_steps = 2
  config.ema.momentum = 0.9
  state = loop.train(config, tmp_path, toy.build_method(config, tmp_path))
  step, stored = workdir_lib.load_state(tmp_path)
  assert step == 4
  floats = [x for x in jax.tree.leaves(
      (stored['params'], stored['opt_state'], stored['ema_params']))
            if np.issubdtype(np.asarray(x).dtype, np.floating)]
  assert len(floats) >= 3 * len(jax.tree.leaves(state.params))  # params, mu, nu, ema
  assert {np.asarray(x).dtype for x in floats} == {np.dtype(np.float32)}
  assert float(stored['skipped_steps']) == 0
