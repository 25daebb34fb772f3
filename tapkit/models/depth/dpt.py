"""DPT depth head of Depth Anything V2, optionally with Video Depth Anything's temporal modules.

Inputs: four patch-token maps [N, ph·pw, D] (N = B·T images; ViT blocks normed by the final
LayerNorm) and the patch grid (ph, pw). Output: depth [N, 14·ph, 14·pw, 1] (ReLU-ed).

  reassemble i = 1..4:  1×1 conv D → C_i, then resize: ConvTranspose ×4 / ×2 / identity /
                        3×3 stride-2 conv (maps of 4ph, 2ph, ph, ⌈ph/2⌉ rows)
  [temporal]            motion modules on maps 3 and 4
  layer{i}_rn           3×3 conv C_i → F, no bias
  refinenet4..1         fusion blocks (residual conv units, bilinear align_corners=True resize,
                        1×1 out conv); [temporal] motion modules after refinenet4 and refinenet3
  output                3×3 conv F → F/2, bilinear (align_corners=True) to 14·ph × 14·pw,
                        3×3 conv F/2 → 32, ReLU, 1×1 conv 32 → 1, ReLU (always in float32)

Parameter tree (ours, NHWC kernels; `convert.py` maps the original names):
  projects_{i}, resize_layers_{0,1} (kernel [C, k, k, C]), resize_layers_3, layer{i}_rn,
  refinenet{i}/{out_conv, resConfUnit1, resConfUnit2}/{conv1, conv2}, output_conv1,
  output_conv2_0, output_conv2_2, motion_modules_{0..3} (temporal only).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from tapkit.models.depth.motion import TemporalModule
from tapkit.ops.sampling import resize

Array = jax.Array
PrecisionLike = Any


def resize_bilinear_corners(x: Array, out_hw: tuple[int, int]) -> Array:
  """torch bilinear `align_corners=True` resize of x [N, H, W, C] to out_hw, in x's dtype."""
  if tuple(x.shape[1:3]) == tuple(out_hw):
    return x  # align_corners=True to the same size is an exact identity
  return resize(x, out_hw, mode='bilinear', align_corners=True)


class StrideConvTranspose(nn.Module):
  """ConvTranspose2d with stride = kernel = k and no padding: a per-pixel Dense to k·k·C_out
  followed by depth-to-space (output pixel (k·i + a, k·j + b) sees input pixel (i, j) only).

  Kernel [C_in, k, k, C_out] (torch's [C_in, C_out, k, k] transposed to (0, 2, 3, 1)).
  """
  features: int
  factor: int
  precision: PrecisionLike = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """x [N, h, w, C_in] -> [N, k·h, k·w, C_out]."""
    n, h, w, c = x.shape
    k = self.factor
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (c, k, k, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    y = jnp.einsum('nhwi,iabo->nhawbo', x, kernel.astype(x.dtype), precision=self.precision)
    return y.reshape(n, h * k, w * k, self.features) + bias.astype(x.dtype)


def _conv(features: int, kernel: int, name: str, precision: PrecisionLike, stride: int = 1,
          bias: bool = True) -> nn.Conv:
  pad = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=bias, precision=precision, name=name)


class ResidualConvUnit(nn.Module):
  """x + conv2(relu(conv1(relu(x)))), 3×3 convs with bias."""
  features: int
  precision: PrecisionLike = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    y = _conv(self.features, 3, 'conv1', self.precision)(nn.relu(x))
    y = _conv(self.features, 3, 'conv2', self.precision)(nn.relu(y))
    return x + y


class FusionBlock(nn.Module):
  """RefineNet fusion: y = a (+ RCU1(b)), y = RCU2(y), bilinear resize (×2 or to `size`), 1×1."""
  features: int
  precision: PrecisionLike = None

  @nn.compact
  def __call__(self, a: Array, b: Array | None = None,
               size: tuple[int, int] | None = None) -> Array:
    """a, b [N, h, w, F] -> [N, size or (2h, 2w), F]."""
    y = a
    if b is not None:
      y = y + ResidualConvUnit(self.features, self.precision, name='resConfUnit1')(b)
    y = ResidualConvUnit(self.features, self.precision, name='resConfUnit2')(y)
    size = (2 * y.shape[1], 2 * y.shape[2]) if size is None else size
    y = resize_bilinear_corners(y, size)
    return _conv(self.features, 1, 'out_conv', self.precision)(y)


class DPTHead(nn.Module):
  """Depth Anything V2 DPT head; with `temporal=True` Video Depth Anything's DPTHeadTemporal.

  Attributes:
    features: fusion width F.
    out_channels: reassemble widths (C1, C2, C3, C4).
    temporal: insert the four motion modules (input rows are clips of `num_frames` frames).
    mm_heads: motion-module attention heads.
    max_frames: motion-module position-table length (32).
    head_hidden: width of the last hidden conv (32).
    sigmoid: last activation sigmoid (Depth Anything V2's metric models) instead of ReLU.
    max_depth: factor applied after the last activation (transformers' `max_depth`; 1 for the
      relative and the VDA models).
    precision: matmul precision.
  """
  features: int
  out_channels: Sequence[int]
  temporal: bool = False
  mm_heads: int = 8
  max_frames: int = 32
  head_hidden: int = 32
  sigmoid: bool = False
  max_depth: float = 1.0
  precision: PrecisionLike = None

  @nn.compact
  def __call__(self, tokens: Sequence[Array], grid: tuple[int, int],
               num_frames: int = 1) -> Array:
    """Depth from patch tokens.

    Args:
      tokens: four [N, ph·pw, D] patch-token maps (row-major patches); N = B·num_frames with the
        frames of a clip consecutive (row b·T + t).
      grid: (ph, pw).
      num_frames: T, frames per clip (temporal head only).

    Returns:
      [N, 14·ph, 14·pw, 1] non-negative depth (float32).
    """
    if len(tokens) != 4:
      raise ValueError(f'DPTHead: expected 4 token maps, got {len(tokens)}')
    ph, pw = grid
    n = tokens[0].shape[0]
    if self.temporal and n % num_frames:
      raise ValueError(f'DPTHead: {n} images are not whole clips of {num_frames} frames')
    f, p = self.features, self.precision
    maps = []
    for i, (tok, ch) in enumerate(zip(tokens, self.out_channels)):
      x = tok.reshape(n, ph, pw, tok.shape[-1])
      x = _conv(ch, 1, f'projects_{i}', p)(x)
      if i == 0:
        x = StrideConvTranspose(ch, 4, p, name='resize_layers_0')(x)
      elif i == 1:
        x = StrideConvTranspose(ch, 2, p, name='resize_layers_1')(x)
      elif i == 3:
        x = _conv(ch, 3, 'resize_layers_3', p, stride=2)(x)
      maps.append(x)

    def motion(x: Array, index: int) -> Array:
      if not self.temporal:
        return x
      _, h, w, c = x.shape
      mm = TemporalModule(c, self.mm_heads, self.max_frames, p, name=f'motion_modules_{index}')
      return mm(x.reshape(n // num_frames, num_frames, h, w, c)).reshape(n, h, w, c)

    maps[2] = motion(maps[2], 0)
    maps[3] = motion(maps[3], 1)
    rn = [_conv(f, 3, f'layer{i + 1}_rn', p, bias=False)(x) for i, x in enumerate(maps)]
    size = lambda x: (x.shape[1], x.shape[2])
    path = FusionBlock(f, p, name='refinenet4')(rn[3], size=size(rn[2]))
    path = motion(path, 2)
    path = FusionBlock(f, p, name='refinenet3')(path, rn[2], size=size(rn[1]))
    path = motion(path, 3)
    path = FusionBlock(f, p, name='refinenet2')(path, rn[1], size=size(rn[0]))
    path = FusionBlock(f, p, name='refinenet1')(path, rn[0])
    out = _conv(f // 2, 3, 'output_conv1', p)(path)
    out = resize_bilinear_corners(out, (14 * ph, 14 * pw))
    # The last two convolutions run in float32 whatever the compute dtype (as the original).
    out = out.astype(jnp.float32)
    out = nn.relu(_conv(self.head_hidden, 3, 'output_conv2_0', p)(out))
    out = _conv(1, 1, 'output_conv2_2', p)(out)
    out = jax.nn.sigmoid(out) if self.sigmoid else nn.relu(out)
    return out * self.max_depth if self.max_depth != 1.0 else out
