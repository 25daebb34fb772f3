"""Tests of the Probe3D probe heads and losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpov_jax.evaluate import probes


def test_dpt_head_shapes_and_params():
  feats = [jnp.ones((1, 2, 3, 8)) * (i + 1) for i in range(4)]
  head = probes.DPTHead(output_dim=4, hidden_dim=8)
  params = jax.jit(head.init)(jax.random.PRNGKey(0), feats)
  out = jax.jit(head.apply)(params, feats)
  assert out.shape == (1, 32, 48, 4)  # 16 h x 16 w.
  names = set(params['params'])
  assert {'conv_0', 'conv_3', 'ref_0', 'ref_3', 'out_conv_0',
          'out_conv_1'} <= names
  assert 'rcu1' not in params['params']['ref_3']  # deepest block: no skip.
  assert params['params']['conv_2']['kernel'].shape == (1, 1, 8, 8)
  with pytest.raises(ValueError, match='4 feature maps'):
    head.apply(params, feats[:3])


def test_linear_head_concatenates_and_upsamples():
  feats = [jnp.ones((1, 2, 3, 5)), jnp.zeros((1, 2, 3, 7))]
  head = probes.LinearHead(output_dim=256, kernel=3)
  params = head.init(jax.random.PRNGKey(0), feats)
  assert params['params']['conv']['kernel'].shape == (3, 3, 12, 256)
  assert head.apply(params, feats).shape == (1, 8, 12, 256)


def test_upsample_align_corners_keeps_linear_ramps():
  x = jnp.arange(3.0)[None, :, None, None] * jnp.ones((1, 3, 2, 1))
  up = probes.upsample(x, 2)
  np.testing.assert_allclose(up[0, :, 0, 0], np.linspace(0, 2, 6), atol=1e-6)
  # Bicubic a = -0.75 is not exact on ramps: at source 0.5 the taps
  # (0, 0, 1, 2) (border clamped) weigh (-3/32, 19/32, 19/32, -3/32).
  np.testing.assert_allclose(
      probes.resize_to(x, (5, 2), 'bicubic')[0, :, 0, 0],
      [0.0, 0.40625, 1.0, 1.59375, 2.0], atol=1e-6)


def test_depth_from_bins():
  logits = jnp.zeros((1, 1, 1, 256))
  np.testing.assert_allclose(probes.depth_from_bins(logits, 10.0),
                             [[[(0.001 + 10.0) / 2]]], rtol=1e-6)
  logits = jnp.zeros((1, 1, 1, 256)).at[..., -1].set(1e6)
  np.testing.assert_allclose(probes.depth_from_bins(logits, 10.0),
                             [[[10.0]]], rtol=1e-4)


def test_relative_depth():
  d = np.array([[0.0, 1.0], [2.0, 3.0]])
  np.testing.assert_allclose(probes.relative_depth(d),
                             [[0.0, 0.01], [0.505, 1.0]])


def test_sig_and_gradient_loss_known_values():
  sig_loss = jax.jit(probes.sig_loss)
  gradient_loss = jax.jit(probes.gradient_loss)
  eps = 1e-3
  gt = jnp.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]])
  c = 1.5
  pred = (gt + eps) * c - eps  # g = log c everywhere.
  assert sig_loss(pred, gt) == pytest.approx(np.log(c) * np.sqrt(0.15),
                                                    rel=1e-4)
  assert gradient_loss(pred, gt) == pytest.approx(0.0, abs=1e-6)
  a = 0.3
  g = jnp.array([[[0.0, a, 0.0, 0.0, 0.0]]])
  pred = (gt + eps) * jnp.exp(g) - eps
  # Stride 1: |g1 - g3| = a over 5 valid pixels; coarser strides see 0.
  assert gradient_loss(pred, gt) == pytest.approx(a / 5, rel=1e-4)
  # An invalid end removes that difference; invalid pixels leave the count.
  gt_hole = gt.at[0, 0, 3].set(0.0)
  assert gradient_loss(pred, gt_hole) == pytest.approx(0.0, abs=1e-6)
  # depth_loss zeroes targets beyond max_depth.
  assert probes.depth_loss(gt, gt * 100, max_depth=10.0) == 0.0


def test_uncertainty_normal_loss():
  gt = jnp.zeros((1, 1, 2, 3)).at[..., 2].set(1.0)
  pred = jnp.concatenate([gt * 2.0, jnp.zeros((1, 1, 2, 1))], -1)
  kappa = 1.01
  theta = np.arccos(1 - 1e-4)
  expect = np.log1p(np.exp(-kappa * np.pi)) - np.log(kappa**2 + 1) + (
      kappa * theta)
  valid = jnp.array([[[True, True]]])
  assert probes.uncertainty_normal_loss(pred, gt, valid) == pytest.approx(
      expect, rel=1e-5)
  # A 90 degree error on a masked-out pixel does not count.
  pred = pred.at[0, 0, 1, :3].set(jnp.array([1.0, 0.0, 0.0]))
  valid = jnp.array([[[True, False]]])
  assert probes.uncertainty_normal_loss(pred, gt, valid) == pytest.approx(
      expect, rel=1e-5)
