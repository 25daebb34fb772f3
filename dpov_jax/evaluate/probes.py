"""Probe3D depth / surface-normal probe heads and losses (as Probe3D).

Flax linen modules on channels-last maps and pure loss functions; training
goes through the shared engine (not here). Feature maps are [B, h, w, C]
(C = 2D with dense-cls); heads return [B, 16h, 16w, K] (DPT) or
[B, 4h, 4w, K] (linear). Resizes reproduce torch's F.interpolate
(bilinear / bicubic, align_corners=True) with interpolation matrices.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from tapkit.ops import sampling


def upsample(x: jnp.ndarray, factor: int) -> jnp.ndarray:
  """F.interpolate(scale_factor=factor, bilinear, align_corners=True)."""
  return sampling.resize(x, (x.shape[1] * factor, x.shape[2] * factor), 'bilinear',
                         align_corners=True)


def resize_to(x: jnp.ndarray, out_hw: tuple[int, int],
              mode: str) -> jnp.ndarray:
  """Prediction -> target size: 'bilinear' (depth), 'bicubic' (normals)."""
  return sampling.resize(x, out_hw, mode, align_corners=True)


def _conv(features: int, kernel: int, name: str | None = None) -> nn.Conv:
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)),
                 name=name)


class ResidualConvUnit(nn.Module):
  """x + ReLU(conv(ReLU(conv(x)))) with `kernel` x `kernel` convs."""
  features: int
  kernel: int = 3

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    y = nn.relu(_conv(self.features, self.kernel)(x))
    y = nn.relu(_conv(self.features, self.kernel)(y))
    return y + x


class FusionBlock(nn.Module):
  """out = RCU2(RCU1(x) + skip) (or RCU2(x) without skip)."""
  features: int
  kernel: int = 3
  with_skip: bool = True

  @nn.compact
  def __call__(self, x: jnp.ndarray,
               skip: jnp.ndarray | None = None) -> jnp.ndarray:
    if skip is not None:
      if not self.with_skip:
        raise ValueError('this fusion block takes no skip input')
      x = ResidualConvUnit(self.features, self.kernel, name='rcu1')(x) + skip
    return ResidualConvUnit(self.features, self.kernel, name='rcu2')(x)


class DPTHead(nn.Module):
  """Probe3D DPT head on 4 block outputs.

  Attributes:
    output_dim: 256 depth-bin logits or 4 (normal + kappa).
    hidden_dim: 512 in Probe3D.
    kernel: RCU kernel size (3).
  """
  output_dim: int
  hidden_dim: int = 512
  kernel: int = 3

  @nn.compact
  def __call__(self, feats: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """feats: 4 maps [B, h, w, C_l] -> [B, 16h, 16w, output_dim]."""
    if len(feats) != 4:
      raise ValueError(f'DPT head needs 4 feature maps, got {len(feats)}')
    f = [upsample(nn.Conv(self.hidden_dim, (1, 1), name=f'conv_{i}')(x), 2)
         for i, x in enumerate(feats)]
    out = FusionBlock(self.hidden_dim, self.kernel, with_skip=False,
                      name='ref_3')(f[3])
    for i in (2, 1, 0):
      out = FusionBlock(self.hidden_dim, self.kernel, name=f'ref_{i}')(f[i],
                                                                       out)
    out = upsample(out, 4)
    out = nn.relu(_conv(self.hidden_dim, 3, name='out_conv_0')(out))
    out = _conv(self.output_dim, 3, name='out_conv_1')(out)
    return upsample(out, 2)


class LinearHead(nn.Module):
  """Concat layers on channels, x4 bilinear, one k x k conv (pad k // 2)."""
  output_dim: int
  kernel: int = 1

  @nn.compact
  def __call__(self, feats: Sequence[jnp.ndarray] | jnp.ndarray
               ) -> jnp.ndarray:
    """feats: [B, h, w, C] or list -> [B, 4h, 4w, output_dim]."""
    if isinstance(feats, (list, tuple)):
      feats = jnp.concatenate(feats, axis=-1)
    return _conv(self.output_dim, self.kernel, name='conv')(upsample(feats, 4))


def depth_from_bins(logits: jnp.ndarray, max_depth: float,
                    min_depth: float = 0.001) -> jnp.ndarray:
  """[B, H, W, K] logits -> [B, H, W] depth (metres).

  Depth = sum_k pi_k b_k, b = linspace(min, max, K),
  pi = (ReLU(logits) + 0.1) / sum(ReLU(logits) + 0.1).
  """
  bins = jnp.linspace(min_depth, max_depth, logits.shape[-1])
  p = nn.relu(logits) + 0.1
  p = p / p.sum(-1, keepdims=True)
  return jnp.einsum('bhwk,k->bhw', p, bins)


def relative_depth(depth: np.ndarray) -> np.ndarray:
  """navi_reldepth target: (d - d_min) / max(0.01, d_max - d_min) 0.99 + 0.01.

  Args:
    depth: [H, W] metres, 0 = missing (stays 0).
  """
  valid = depth > 0
  if not valid.any():
    return np.zeros_like(depth)
  lo, hi = depth[valid].min(), depth.max()
  out = (depth - lo) / max(0.01, hi - lo) * 0.99 + 0.01
  return np.where(valid, out, 0.0).astype(depth.dtype)


# ----------------------------------------------------------------------------
# Losses (pure functions).


def sig_loss(pred: jnp.ndarray, gt: jnp.ndarray, sigma: float = 0.85,
             eps: float = 1e-3) -> jnp.ndarray:
  """sqrt(mean g^2 - sigma mean(g)^2), g = log(pred+eps) - log(gt+eps),
  pooled over all valid pixels (gt > 0) of the batch."""
  valid = (gt > 0).astype(pred.dtype)
  n = jnp.maximum(valid.sum(), 1.0)
  g = (jnp.log(pred + eps) - jnp.log(jnp.where(gt > 0, gt, 1.0) + eps)) * valid
  return jnp.sqrt(jnp.maximum((g**2).sum() / n - sigma * (g.sum() / n)**2,
                              0.0))


def gradient_loss(pred: jnp.ndarray, gt: jnp.ndarray,
                  eps: float = 1e-3) -> jnp.ndarray:
  """Multi-scale gradient loss over strides 1, 2, 4, 6 (Probe3D depth probe).

  At each scale, with r = (log(pred+eps) - log(gt+eps)) * valid:
  (sum |r[:, i] - r[:, i+2]| + sum |r[i, :] - r[i+2, :]|) / #valid, counting
  only differences whose two ends are valid.

  Args:
    pred, gt: [B, H, W] depth (metres).
  """
  total = 0.0
  for stride in (1, 2, 4, 6):
    p = pred[:, ::stride, ::stride]
    g = gt[:, ::stride, ::stride]
    valid = (g > 0).astype(p.dtype)
    n = jnp.maximum(valid.sum(), 1.0)
    r = (jnp.log(p + eps) - jnp.log(jnp.where(g > 0, g, 1.0) + eps)) * valid
    v = jnp.abs(r[:, :-2] - r[:, 2:]) * valid[:, :-2] * valid[:, 2:]
    h = jnp.abs(r[:, :, :-2] - r[:, :, 2:]) * valid[:, :, :-2] * valid[:, :,
                                                                      2:]
    total = total + (h.sum() + v.sum()) / n
  return total


# Depth targets above this many metres are invalid, for every dataset: the Probe3D depth loss
# zeroes them (in place, so the metrics computed after it skip them too). A dataset's
# `max_depth` (NAVI 1 m) only sets the range of the probe's depth bins.
DEPTH_TARGET_MAX = 10.0


def depth_loss(pred: jnp.ndarray, gt: jnp.ndarray, max_depth: float = DEPTH_TARGET_MAX,
               weight_sig: float = 10.0,
               weight_grad: float = 0.5) -> jnp.ndarray:
  """10 SigLoss + 0.5 GradLoss with targets > max_depth (metres) treated as invalid."""
  gt = jnp.where(gt > max_depth, 0.0, gt)
  return weight_sig * sig_loss(pred, gt) + weight_grad * gradient_loss(pred,
                                                                       gt)


def uncertainty_normal_loss(pred: jnp.ndarray, gt: jnp.ndarray,
                            valid: jnp.ndarray,
                            eps: float = 1e-4) -> jnp.ndarray:
  """Bae et al. angular loss with concentration kappa (Probe3D normal probe).

  Args:
    pred: [B, H, W, 4] (normal xyz, kappa logit).
    gt: [B, H, W, 3] unit normals.
    valid: [B, H, W] bool.

  Returns:
    mean over valid pixels of log(1 + exp(-kappa pi)) - log(kappa^2 + 1)
    + kappa theta, kappa = ELU(pred_3) + 1.01, theta = arccos(clamp(cos,
    -1 + eps, 1 - eps)).
  """
  n = pred[..., :3]
  cos = (n * gt).sum(-1) / (
      jnp.maximum(jnp.linalg.norm(n, axis=-1), 1e-8) *
      jnp.maximum(jnp.linalg.norm(gt, axis=-1), 1e-8))
  theta = jnp.arccos(jnp.clip(cos, -1 + eps, 1 - eps))
  kappa = nn.elu(pred[..., 3]) + 1.01
  loss = (jnp.log1p(jnp.exp(-kappa * jnp.pi)) - jnp.log(kappa**2 + 1) +
          kappa * theta)
  w = valid.astype(loss.dtype)
  return (loss * w).sum() / jnp.maximum(w.sum(), 1.0)
