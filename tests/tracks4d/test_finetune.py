"""Test-time fine-tuning parity: a few optax Adam steps on the total loss."""

import jax
import numpy as np

from tracks4d import checkpoint
from tracks4d import finetune
from tracks4d import losses
from tracks4d import model


def test_adam_finetune_steps_match_official(t4d_golden, golden_params, normwise_rel):
  data = np.load(t4d_golden / 'finetune_00.npz')
  tracks, vis = data['tracks'], data['tracks_vis']
  ref = data['loss_history']  # [steps + 1, 5]; the golden uses a fresh Adam state.
  steps = ref.shape[0] - 1
  result = finetune.finetune(golden_params, tracks, vis, steps)

  # The official keeps the weights one update past the best (lowest, < 1000) loss.
  assert result.best_step == int(np.argmin(ref[:steps, 0]))
  assert result.best_step == steps - 1  # In this file the loss falls at every step.
  net = model.TracksTo4D()
  out = jax.jit(net.apply)({'params': result.params}, tracks)
  after = losses.loss_terms(out, tracks, vis)
  history = np.concatenate([result.loss_history,
                            [[float(after[k]) for k in losses.LOSS_NAMES]]])
  rel = np.abs(history - ref) / np.maximum(np.abs(ref), 1e-12)
  rel[ref == 0] = np.abs(history[ref == 0])  # Negative-depth loss is exactly 0 here.
  assert rel.max() < 1e-4, rel
  for key, field in (('final/projections', 'projections'), ('final/translations', 'translations'),
                     ('final/NR', 'nr'), ('final/depths', 'depths')):
    err = normwise_rel(getattr(out, field), data[key])
    assert err < 1e-3, (key, err)
  assert history[-1, 0] < history[0, 0]


def test_finetune_threshold_and_checkpoint_moments(golden_params):
  tracks = np.random.default_rng(0).normal(scale=0.3, size=(1, 6, 3, 15)).astype(np.float32)
  tracks[:, :, 2] = 1.0
  vis = np.ones((1, 15, 6), bool)
  # Threshold below every loss: nothing is "best", the initial weights are returned.
  res = finetune.finetune(golden_params, tracks, vis, 2, best_threshold=1e-9)
  assert res.best_step is None and res.best_loss is None
  assert res.params is golden_params and res.loss_history.shape == (2, 5)
  assert np.all(np.isfinite(res.loss_history)) and res.loss_history[1, 0] != res.loss_history[0, 0]
  # Continuing from checkpoint moments: the optax state carries them (count 7 -> 8).
  zeros = jax.tree_util.tree_map(np.zeros_like, golden_params)
  moments = checkpoint.AdamMoments(mu=zeros, nu=zeros, count=7, lr=1e-4, betas=(0.9, 0.999),
                                   eps=1e-8)
  res2 = finetune.finetune(golden_params, tracks, vis, 1, adam_moments=moments)
  assert int(res2.opt_state[0].count) == 8 and res2.best_step == 0
  np.testing.assert_allclose(res2.loss_history[0], res.loss_history[0], rtol=1e-6)
  # Zero moments at step 8 scale Adam's first update by
  # (0.1 / (1 - 0.9^8)) / sqrt(0.001 / (1 - 0.999^8)) relative to a fresh state.
  fresh = finetune.finetune(golden_params, tracks, vis, 1)
  ratio = (0.1 / (1 - 0.9**8)) / np.sqrt(0.001 / (1 - 0.999**8))
  base = np.asarray(golden_params['point_head']['bias'], np.float64)
  d_fresh = np.asarray(fresh.params['point_head']['bias'], np.float64) - base
  d_moments = np.asarray(res2.params['point_head']['bias'], np.float64) - base
  np.testing.assert_allclose(d_moments, ratio * d_fresh, rtol=1e-3, atol=1e-9)
