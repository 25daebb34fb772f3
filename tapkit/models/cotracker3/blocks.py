"""Building blocks of CoTracker3 (Flax linen + pure functions), matching the official PyTorch code.

Layout conventions (ours, channels last):

* feature maps [B, T, H, W, C] (official: [B, T, C, H, W]);
* coordinates are pixel-index coordinates in the align-corners convention: integer values are
  pixel (or feature-cell) centres, x ∈ [0, W − 1] spans the map; out-of-map positions are
  clamped to the border (never zeros);
* neighbourhoods of radius r are [..., P, P, C] with P = 2r + 1 and the first grid axis moving
  x, the second y (the official ordering: support index k = P·i + j is the point
  (x + i − r, y + j − r)).

Pieces:

* `bilinear_sampler`, `sample_features5d`: the official sampler conventions on official
  layouts ([B, C, H, W] / [B, C, T, H, W] with (x, y) / (t, x, y) pixel coordinates), built on
  `tapkit.ops.sampling.bilinear_sample`; used by tests and by callers holding torch-layout maps.
* `sample_neighbourhoods`: the model's fast path: the P × P neighbourhood of every point on a
  chosen frame, from one (P + 1)² integer patch per point (all taps share the fractional part).
* `posenc`, `time_embedding_table`, `interpolate_time_embedding`.
* `resize_align_corners`: the CNN's bilinear stage resize as two-tap gathers.
* Flax modules: `BasicEncoder` (feature CNN), `Mlp` (the correlation MLP uses exact GELU, the
  transformer MLPs the tanh approximation), `Attention`, `AttnBlock`, `CrossAttnBlock`,
  `EfficientUpdateFormer`.
"""

from __future__ import annotations

import math
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models.cotracker3 import winograd
from tapkit.ops import numeric
from tapkit.ops import sampling

Array = jax.Array
HIGHEST = jax.lax.Precision.HIGHEST

LATENT_DIM = 128  # Feature channels D.
HIDDEN = 384  # Transformer width E.
NUM_HEADS = 8
NUM_VIRTUAL = 64
CORR_RADIUS = 3
CORR_LEVELS = 4
STRIDE = 4
TOKEN_DIM = 1110  # 1 + 1 + 4·256 + 84.
# The feature CNN's 3×3 stride-1 convolutions (95 % of its multiply-adds) run as Winograd
# F(2×2, 3×3): 2.25× fewer multiplications, equal to the direct convolution to float32 rounding
# (False: XLA's direct convolution, e.g. for timing comparisons; set before tracing).
WINOGRAD = True


# ------------------------------------------------------------------------------------------------
# Sampling.


def bilinear_sampler(inputs: Array, coords: Array) -> Array:
  """The official `bilinear_sampler` (align_corners=True, border padding) on official layouts.

  Args:
    inputs: [B, C, H, W] maps, or [B, C, T, H, W] videos.
    coords: [B, Ho, Wo, 2] (x, y) pixel coordinates for 4-D inputs, or [B, R1, R2, R3, 3]
      (t, x, y) for 5-D inputs (trilinear: a fractional t blends two frames).

  Returns:
    [B, C, Ho, Wo] or [B, C, R1, R2, R3].
  """
  inputs = jnp.asarray(inputs)
  coords = jnp.asarray(coords)
  if inputs.ndim == 4:
    b, c = inputs.shape[:2]
    image = jnp.moveaxis(inputs, 1, -1)  # [B, H, W, C]
    out = sampling.bilinear_sample(image, coords[..., 0].reshape(b, -1),
                                   coords[..., 1].reshape(b, -1), padding='border')
    return jnp.moveaxis(out.reshape(coords.shape[:-1] + (c,)), -1, 1)
  if inputs.ndim == 5:
    video = jnp.moveaxis(inputs, 1, -1)  # [B, T, H, W, C]
    out = _trilinear(video, coords[..., 0].reshape(coords.shape[0], -1),
                     coords[..., 1].reshape(coords.shape[0], -1),
                     coords[..., 2].reshape(coords.shape[0], -1))
    return jnp.moveaxis(out.reshape(coords.shape[:-1] + (inputs.shape[1],)), -1, 1)
  raise ValueError(f'inputs must be [B, C, H, W] or [B, C, T, H, W], got shape {inputs.shape}')


def _trilinear(video: Array, t: Array, x: Array, y: Array) -> Array:
  """video [B, T, H, W, C] at (t, x, y) [B, M] (border clamped) -> [B, M, C]."""
  n_t = video.shape[1]
  t = jnp.clip(t, 0.0, n_t - 1.0)
  t0 = jnp.floor(t).astype(jnp.int32)
  t1 = jnp.minimum(t0 + 1, n_t - 1)
  ft = (t - t0)[..., None]
  b = jnp.arange(video.shape[0])[:, None]

  def frame(ti):  # [B, M, H, W, C] -> bilinear at each point's own frame.
    maps = video[b, ti]
    return sampling.bilinear_sample(maps, x[..., None], y[..., None], padding='border')[..., 0, :]

  return frame(t0) * (1 - ft) + frame(t1) * ft


def sample_features5d(inputs: Array, coords: Array) -> Array:
  """The official `sample_features5d`: inputs [B, T, C, H, W], coords [B, R1, R2, 3] (t, x, y)
  -> [B, R1, R2, C] (trilinear, border)."""
  inputs = jnp.asarray(inputs)
  coords = jnp.asarray(coords)
  b = coords.shape[0]
  video = jnp.moveaxis(inputs, 2, -1)  # [B, T, H, W, C]
  out = _trilinear(video, coords[..., 0].reshape(b, -1), coords[..., 1].reshape(b, -1),
                   coords[..., 2].reshape(b, -1))
  return out.reshape(coords.shape[:-1] + (inputs.shape[2],))


def sample_neighbourhoods(fmaps: Array, frame: Array, x: Array, y: Array,
                          radius: int = CORR_RADIUS) -> Array:
  """Bilinear samples on the (2r+1)² integer-offset grid around points, each on its own frame.

  Equal to sampling every point (x + i − r, y + j − r) with border clamping: clamping a
  coordinate equals clamping both tap indices, so one integer patch of (2r + 2)² cells per point
  (indices clipped to the map) and the point's common fractional part give all samples.

  Args:
    fmaps: [B, T, H, W, C] feature maps.
    frame: [B, M] integer frame index of each point, in [0, T − 1].
    x, y: [B, M] pixel coordinates of the neighbourhood centres.
    radius: r.

  Returns:
    [B, M, P, P, C], P = 2r + 1, axes (x-offset, y-offset).
  """
  _, _, h, w, _ = fmaps.shape
  # Far-away points read only border cells; the clip keeps the integer indices small.
  x = jnp.clip(x, -2.0 * radius - 2, w + 2.0 * radius + 2)
  y = jnp.clip(y, -2.0 * radius - 2, h + 2.0 * radius + 2)
  x0 = jnp.floor(x)
  y0 = jnp.floor(y)
  fx = (x - x0)[..., None, None, None]  # [B, M, 1, 1, 1]
  fy = (y - y0)[..., None, None, None]
  offsets = jnp.arange(-radius, radius + 2, dtype=jnp.int32)
  ix = jnp.clip(x0.astype(jnp.int32)[..., None] + offsets, 0, w - 1)  # [B, M, P + 1]
  iy = jnp.clip(y0.astype(jnp.int32)[..., None] + offsets, 0, h - 1)
  b = jnp.arange(fmaps.shape[0])[:, None, None, None]
  patch = fmaps[b, frame[:, :, None, None], iy[:, :, :, None], ix[:, :, None, :]]  # [B,M,y,x,C]
  rows = patch[:, :, :, :-1] * (1 - fx) + patch[:, :, :, 1:] * fx  # [B, M, P + 1, P, C]
  out = rows[:, :, :-1] * (1 - fy) + rows[:, :, 1:] * fy  # [B, M, P(y), P(x), C]
  return jnp.swapaxes(out, 2, 3)


# ------------------------------------------------------------------------------------------------
# Embeddings.


def posenc(x: Array, min_deg: int = 0, max_deg: int = 10) -> Array:
  """[..., c] -> [..., c + 2·c·(max_deg − min_deg)]: x, sin(x·2^k), sin(x·2^k + π/2).

  The sine features are ordered k-major (index c·k' + channel).
  """
  scales = jnp.asarray([2.0 ** i for i in range(min_deg, max_deg)], x.dtype)
  xb = (x[..., None, :] * scales[:, None]).reshape(x.shape[:-1] + (-1,))
  emb = jnp.sin(jnp.concatenate([xb, xb + jnp.asarray(0.5 * np.pi, x.dtype)], axis=-1))
  return jnp.concatenate([x, emb], axis=-1)


def time_embedding_table(length: int, dim: int = TOKEN_DIM) -> np.ndarray:
  """The fixed sine/cosine time embedding [length, dim] (float64 maths, rounded to float32).

  Row p = [sin(p·ω_k), cos(p·ω_k)], ω_k = 10000^(−k/(dim/2)), k = 0 .. dim/2 − 1.
  """
  half = dim // 2
  omega = 1.0 / 10000 ** (np.arange(half, dtype=np.float64) / (dim / 2.0))
  ang = np.arange(length, dtype=np.float64)[:, None] * omega[None, :]
  return np.concatenate([np.sin(ang), np.cos(ang)], axis=1).astype(np.float32)


def interpolate_time_embedding(table: np.ndarray, length: int) -> np.ndarray:
  """Linear resampling [L, D] -> [length, D] with half-pixel source positions (torch's
  `F.interpolate(mode='linear', align_corners=False)`), returned unchanged for length == L.

  The source index is (i + 0.5)·s − 0.5 with s = float32(L / length), evaluated exactly and
  rounded once to float32 (as torch's CPU kernel does), clamped below at 0.
  """
  n_in = table.shape[0]
  if length == n_in:
    return table
  scale = np.float64(np.float32(n_in / length))
  src = (scale * (np.arange(length, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
  src = np.maximum(src, np.float32(0))
  i0 = np.floor(src).astype(np.int64)
  i1 = np.minimum(i0 + 1, n_in - 1)
  lam1 = (src - i0.astype(np.float32))[:, None]
  lam0 = np.float32(1) - lam1
  return (lam0 * table[i0] + lam1 * table[i1]).astype(np.float32)


def interpolate_time_embedding_traced(table: np.ndarray, length: Array, out_len: int) -> Array:
  """`interpolate_time_embedding` to a traced length, padded: [L, D] -> [..., out_len, D].

  Rows i < length equal `interpolate_time_embedding(table, length)` (the same float32 source
  indices, computed exactly in float32 arithmetic); rows i ≥ length are finite filler. The scale
  float32(L / length) is one correctly rounded float32 division (rounding the float64 quotient
  to float32 gives the same value: double rounding is harmless for division from 53 to 24 bits).
  The source index (i + 0.5)·s − 0.5 is then formed without rounding error: s is split into two
  12-bit halves, so both partial products with i + 0.5 (at most 12 bits for out_len ≤ 2048) are
  exact, subtracting 0.5 from the high product is exact, and the final addition rounds once.

  Args:
    table: [L, D] the embedding to resample.
    length: int array [...] (e.g. [] or [B]), the true length(s), 1 ≤ length ≤ out_len.
    out_len: the static padded length, at most 2048.

  Returns:
    [..., out_len, D] float32.
  """
  if out_len > 2048:
    raise ValueError(f'out_len must be at most 2048 for the exact traced resampling, got {out_len}')
  n_in = table.shape[0]
  i0, i1, lam1 = _traced_source_positions(n_in, length, out_len)
  lam1 = lam1[..., None]
  lam0 = jnp.float32(1) - lam1
  table = jnp.asarray(table, jnp.float32)
  # Both products are rounded to float32 before the sum, as in the NumPy version: an integer
  # no-op the compiler cannot see through (OR with a traced zero) keeps it from fusing a
  # product and the sum into one fused multiply-add.
  zero = jnp.minimum(jnp.min(jnp.asarray(length, jnp.int32)), 0)
  rounded = lambda v: jax.lax.bitcast_convert_type(
      jax.lax.bitcast_convert_type(v, jnp.int32) | zero, jnp.float32)
  return rounded(lam0 * table[i0]) + rounded(lam1 * table[i1])


def _traced_source_positions(n_in: int, length: Array, out_len: int):
  """Source rows i0, i1 (int32) and weight lam1 (float32) [..., out_len] of the half-pixel
  linear resampling from n_in rows to `length` rows (see `interpolate_time_embedding_traced`)."""
  length = jnp.asarray(length, jnp.int32)[..., None]  # [..., 1]
  scale = jnp.float32(n_in) / length.astype(jnp.float32)
  bits = jax.lax.bitcast_convert_type(scale, jnp.uint32)
  scale_hi = jax.lax.bitcast_convert_type(bits & jnp.uint32(0xFFFFF000), jnp.float32)
  scale_lo = scale - scale_hi  # Exact: the low 12 significant bits.
  pos = jnp.arange(out_len, dtype=jnp.float32) + jnp.float32(0.5)  # [out_len], exact.
  src = (scale_hi * pos - jnp.float32(0.5)) + scale_lo * pos  # [..., out_len]
  src = jnp.maximum(src, jnp.float32(0))
  i0 = jnp.minimum(jnp.floor(src).astype(jnp.int32), n_in - 1)  # The clip only acts on padding.
  i1 = jnp.minimum(i0 + 1, n_in - 1)
  return i0, i1, src - i0.astype(jnp.float32)


# ------------------------------------------------------------------------------------------------
# Feature CNN.


def instance_norm(x: Array, eps: float = 1e-5) -> Array:
  """Per-sample, per-channel normalisation over H, W (biased variance, no affine). x [N,H,W,C]."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return (x - mean) / jnp.sqrt(var + eps)


def _conv(features: int, kernel: int, stride: int = 1, name: str | None = None) -> nn.Module:
  """A zero-padded conv with bias; 3×3 stride-1 ones run as Winograd F(2×2, 3×3) (same params)."""
  if kernel == 3 and stride == 1 and WINOGRAD:
    return winograd.Conv3x3(features, name=name)
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), precision=HIGHEST, name=name)


class ResidualBlock(nn.Module):
  """Two 3×3 conv + InstanceNorm + ReLU; a 1×1 strided conv + norm on the skip when stride > 1."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    y = nn.relu(instance_norm(_conv(self.features, 3, self.stride, name='conv1')(x)))
    y = nn.relu(instance_norm(_conv(self.features, 3, name='conv2')(y)))
    if self.stride != 1:
      x = instance_norm(nn.Conv(self.features, (1, 1), strides=(self.stride, self.stride),
                                padding='VALID', precision=HIGHEST, name='downsample')(x))
    return nn.relu(x + y)


class BasicEncoder(nn.Module):
  """The feature CNN: [N, H, W, 3] normalised frames (H, W multiples of 4) -> [N, H/4, W/4, 128].

  Stages at 1/2 (64 ch), 1/4 (96), 1/8 (128), 1/16 (128) of the input (ceil sizes); each is
  resized to H/4 × W/4 (bilinear, align-corners), concatenated (416 ch), then 3×3 conv to 256,
  InstanceNorm, ReLU and a 1×1 conv to 128. With `return_stages` also returns the four stage
  outputs (before the resize).
  """
  output_dim: int = LATENT_DIM

  @nn.compact
  def __call__(self, x: Array, return_stages: bool = False):
    _, h, w, _ = x.shape
    out_hw = (h // STRIDE, w // STRIDE)
    x = nn.relu(instance_norm(_conv(64, 7, 2, name='conv1')(x)))
    stages = []
    for i, (dim, stride) in enumerate(((64, 1), (96, 2), (128, 2), (128, 2))):
      x = ResidualBlock(dim, stride, name=f'layer{i + 1}_0')(x)
      x = ResidualBlock(dim, 1, name=f'layer{i + 1}_1')(x)
      stages.append(x)
    resized = [s if s.shape[1:3] == out_hw else resize_align_corners(s, out_hw) for s in stages]
    x = _conv(256, 3, name='conv2')(jnp.concatenate(resized, axis=-1))
    x = nn.relu(instance_norm(x))
    x = nn.Conv(self.output_dim, (1, 1), padding='VALID', precision=HIGHEST, name='conv3')(x)
    return (x, stages) if return_stages else x


def _lerp_axis(x: Array, out_size: int, axis: int) -> Array:
  """Two-tap linear resampling of one axis, first and last sample centres aligned."""
  in_size = x.shape[axis]
  src = sampling.source_coords(in_size, out_size, align_corners=True)
  i0 = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  t = src - i0
  shape = [1] * x.ndim
  shape[axis] = out_size
  w0 = jnp.asarray((1.0 - t).reshape(shape), x.dtype)
  w1 = jnp.asarray(t.reshape(shape), x.dtype)
  return jnp.take(x, i0, axis=axis) * w0 + jnp.take(x, i1, axis=axis) * w1


def resize_align_corners(x: Array, out_hw: tuple[int, int]) -> Array:
  """Bilinear resize (align-corners) of [N, H, W, C] maps to out_hw, as two-tap gathers.

  The same map as `sampling.resize(x, out_hw, 'bilinear', align_corners=True)` (equal to
  float32 rounding): each output reads two rows, then two columns, instead of a product with
  the mostly-zero interpolation matrices (whose operand transposes cost more on CPU).
  """
  return _lerp_axis(_lerp_axis(x, out_hw[0], 1), out_hw[1], 2)


def l2_normalize_features(x: Array) -> Array:
  """f / sqrt(max(Σ f², 1e-12)) over the last axis."""
  return numeric.l2_normalize(x, axis=-1, eps=1e-6)


def avg_pool2(x: Array) -> Array:
  """2×2 average pooling, stride 2, of [..., H, W, C] (an odd last row / column is dropped)."""
  h, w = x.shape[-3] // 2, x.shape[-2] // 2
  x = x[..., :2 * h, :2 * w, :]
  x = x.reshape(x.shape[:-3] + (h, 2, w, 2, x.shape[-1]))
  return (x[..., 0, :, 0, :] + x[..., 0, :, 1, :] + x[..., 1, :, 0, :] + x[..., 1, :, 1, :]) / 4


# ------------------------------------------------------------------------------------------------
# MLPs and the update transformer.


class Mlp(nn.Module):
  """Linear -> GELU (exact erf, or tanh approximation) -> Linear."""
  hidden: int
  out: int
  approximate_gelu: bool

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = nn.Dense(self.hidden, precision=HIGHEST, name='fc1')(x)
    x = jax.nn.gelu(x, approximate=self.approximate_gelu)
    return nn.Dense(self.out, precision=HIGHEST, name='fc2')(x)


class Attention(nn.Module):
  """Multi-head attention: q = to_q(x), [k | v] = to_kv(context), 8 heads.

  `mask` [..., K] (True = attend; leading axes broadcast against x's leading axes) excludes keys:
  their weights are exactly zero, so excluded keys (e.g. padding) cannot change the result.
  """
  dim: int = HIDDEN
  num_heads: int = NUM_HEADS

  @nn.compact
  def __call__(self, x: Array, context: Array | None = None,
               mask: Array | None = None) -> Array:
    context = x if context is None else context
    head = self.dim // self.num_heads
    q = nn.Dense(self.dim, precision=HIGHEST, name='to_q')(x)
    kv = nn.Dense(2 * self.dim, precision=HIGHEST, name='to_kv')(context)
    k, v = kv[..., :self.dim], kv[..., self.dim:]
    split = lambda a: a.reshape(a.shape[:-1] + (self.num_heads, head))
    q, k, v = split(q), split(k), split(v)  # [..., N, h, d]
    sim = jnp.einsum('...qhd,...khd->...hqk', q, k, precision=HIGHEST) * (head ** -0.5)
    if mask is not None:
      sim = jnp.where(mask[..., None, None, :], sim, jnp.finfo(sim.dtype).min)
    attn = jax.nn.softmax(sim, axis=-1)
    out = jnp.einsum('...hqk,...khd->...qhd', attn, v, precision=HIGHEST)
    out = out.reshape(out.shape[:-2] + (self.dim,))
    return nn.Dense(self.dim, precision=HIGHEST, name='to_out')(out)


def _plain_layer_norm(x: Array, eps: float = 1e-6) -> Array:
  return nn.LayerNorm(epsilon=eps, use_bias=False, use_scale=False,
                      use_fast_variance=False)(x)


class AttnBlock(nn.Module):
  """x += Attn(LN(x)); x += MLP(LN(x)) (LayerNorms without affine, eps 1e-6; tanh GELU).

  `mask` [..., K]: keys to attend to (see `Attention`).
  """

  @nn.compact
  def __call__(self, x: Array, mask: Array | None = None) -> Array:
    x = x + Attention(name='attn')(_plain_layer_norm(x), mask=mask)
    return x + Mlp(4 * HIDDEN, HIDDEN, approximate_gelu=True, name='mlp')(_plain_layer_norm(x))


class CrossAttnBlock(nn.Module):
  """x += Attn(LN(x), norm_context(context)); x += MLP(LN(x)); norm_context is affine, eps 1e-5.

  `mask` [..., K]: context tokens to attend to (see `Attention`).
  """

  @nn.compact
  def __call__(self, x: Array, context: Array, mask: Array | None = None) -> Array:
    context = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name='norm_context')(context)
    x = x + Attention(name='cross_attn')(_plain_layer_norm(x), context, mask=mask)
    return x + Mlp(4 * HIDDEN, HIDDEN, approximate_gelu=True, name='mlp')(_plain_layer_norm(x))


class EfficientUpdateFormer(nn.Module):
  """The update transformer: tokens [B, N, T, 1110] -> [B, N, T, 4] (Δx, Δy, Δvis, Δconf).

  64 learned virtual tracks join the N point tracks; each of the 3 layers runs self-attention
  along time per track, then (with `add_space_attn`) per frame: virtual <- points
  (cross-attention), virtual self-attention, points <- virtual (cross-attention).

  Padding: `frame_mask` [B, T] (True = real frame) removes padded frames from the time
  attention's keys, `point_mask` [B, N] (True = real point) removes padded points from the
  virtual <- points attention's keys; nothing else mixes frames or points, so the outputs of
  real points at real frames do not depend on the padding (padded outputs are meaningless).
  """
  depth: int = 3

  @nn.compact
  def __call__(self, x: Array, add_space_attn: bool = True, frame_mask: Array | None = None,
               point_mask: Array | None = None) -> Array:
    virtual = self.param('virual_tracks', nn.initializers.normal(1.0), (1, NUM_VIRTUAL, 1, HIDDEN))
    tokens = nn.Dense(HIDDEN, precision=HIGHEST, name='input_transform')(x)
    b, n, t, _ = tokens.shape
    time_mask = None if frame_mask is None else frame_mask[:, None, :]  # [B, 1, T]
    space_mask = None if point_mask is None else point_mask[:, None, :]  # [B, 1, N]
    for i in range(self.depth):
      # Attention over T per track.
      if i == 0:
        # The virtual tracks enter equal at every frame (no time embedding), so their first
        # time block sees T identical tokens: its output is the one-frame result, the same for
        # every frame and batch element (with or without padded frames).
        block = AttnBlock(name='time_blocks_0')
        virt = jnp.broadcast_to(block(virtual.astype(tokens.dtype)), (b, NUM_VIRTUAL, t, HIDDEN))
        tokens = jnp.concatenate([block(tokens, mask=time_mask), virt], axis=1)
      else:
        tokens = AttnBlock(name=f'time_blocks_{i}')(tokens, mask=time_mask)
      if add_space_attn:
        space = jnp.swapaxes(tokens, 1, 2)  # [B, T, N + V, E]
        point, virt = space[:, :, :n], space[:, :, n:]
        virt = CrossAttnBlock(name=f'space_virtual2point_blocks_{i}')(virt, point, space_mask)
        virt = AttnBlock(name=f'space_virtual_blocks_{i}')(virt)
        point = CrossAttnBlock(name=f'space_point2virtual_blocks_{i}')(point, virt)
        tokens = jnp.swapaxes(jnp.concatenate([point, virt], axis=2), 1, 2)
      elif self.is_initializing():
        zeros = jnp.zeros((1, 1, 1, HIDDEN), tokens.dtype)
        CrossAttnBlock(name=f'space_virtual2point_blocks_{i}')(zeros, zeros)
        AttnBlock(name=f'space_virtual_blocks_{i}')(zeros)
        CrossAttnBlock(name=f'space_point2virtual_blocks_{i}')(zeros, zeros)
    tokens = tokens[:, :n]
    flow = nn.Dense(2, precision=HIGHEST, name='flow_head')(tokens)
    vis_conf = nn.Dense(2, precision=HIGHEST, name='vis_conf_head')(tokens)
    return jnp.concatenate([flow, vis_conf], axis=-1)


def num_params(tree) -> int:
  """Total number of parameters of a (possibly abstract) parameter tree."""
  return sum(math.prod(v.shape) for v in jax.tree_util.tree_leaves(tree))
