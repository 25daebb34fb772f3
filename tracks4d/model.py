"""TracksTo4D network (Kasten et al., NeurIPS 2024) as a Flax linen module.

From 2D point tracks of a video the network predicts, in one forward pass, per-frame
cameras (camera-to-world rotation R_f and centre t_f), a per-point basis of 3D
positions B (static point + K-1 motion bases), per-frame basis coefficients and a
per-point uncertainty NR ("motion level"), as the official TracksTo4DNet built for the
released checkpoints.

Array layouts follow the official implementation so that checkpoints, losses and
metrics line up one to one:
  tracks            [b, N, 3, F]  rows (x_n, y_n, visibility); x_n, y_n normalised by
                                  the inverse intrinsics (unitless image-plane coords)
  projections       [b, F, 2, N]  normalised image coordinates
  rotations         [b, F, 3, 3]  camera-to-world, rows are the 6-D-derived v1, v2, v3
  translations      [b, F, 3]     camera centres in world units
  points3d*         [b, F, 3, N]
  depths*           [b, F, N]     camera z, unclamped
  bases             [b, N, 3, K]
  basis_coeffs      [b, K, F]     row 0 is exactly 1
  nr                [b, N]
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from tapkit.train import precision as precision_lib

Array = jax.Array
PrecisionLike = Any

# Numerical constants of the official implementation.
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm default.
NR_EPS = 1e-5  # NR = ELU(v) + 1 + 1e-5 keeps the uncertainty strictly positive.
MIN_DEPTH = 0.01  # Depth clamp of the projection denominator.
FOCAL_SCALE = 0.05  # focal_f = 1 + 0.05 * c_f,3 when the focal length is predicted.


@struct.dataclass
class TracksTo4DOutput:
  """Forward outputs (official layouts; see the module docstring)."""

  focal: Array  # [b, F, 1] focal factor (ones when not predicted).
  projections: Array  # [b, F, 2, N] dynamic points projected, normalised coords.
  projections_static: Array  # [b, F, 2, N] static points projected.
  rotations: Array  # [b, F, 3, 3] camera-to-world rotations.
  translations: Array  # [b, F, 3] camera centres (world).
  bases: Array  # [b, N, 3, K] per-point bases; [..., 0] is the static point.
  points3d: Array  # [b, F, 3, N] dynamic world points.
  points3d_static: Array  # [b, F, 3, N] static world points.
  depths: Array  # [b, F, N] camera z of the dynamic points (unclamped).
  depths_static: Array  # [b, F, N] camera z of the static points (unclamped).
  basis_coeffs: Array  # [b, K, F] per-frame coefficients; row 0 == 1.
  points3d_camera: Array  # [b, F, 3, N] dynamic points in camera coordinates.
  nr: Array  # [b, N] per-point uncertainty, > 0.

  def to_official(self) -> dict[str, Array]:
    """The outputs under the official forward-return names (as in the golden files)."""
    return {OFFICIAL_OUTPUT_NAMES[k]: getattr(self, k) for k in OFFICIAL_OUTPUT_NAMES}


# Our field name -> name in the official forward return / golden files.
OFFICIAL_OUTPUT_NAMES = {
    'focal': 'focal',
    'projections': 'projections',
    'projections_static': 'projections_static',
    'rotations': 'rotations',
    'translations': 'translations',
    'bases': 'B',
    'points3d': 'points3D',
    'points3d_static': 'points3D_static',
    'depths': 'depths',
    'depths_static': 'depths_static',
    'basis_coeffs': 'basis_coeffs',
    'points3d_camera': 'points3D_camera',
    'nr': 'NR',
}


def positional_encoding(values: Array, num_frequencies: int) -> Array:
  """Fourier features of the raw inputs, official layout.

  Args:
    values: [..., C] inputs (x_n, y_n, visibility).
    num_frequencies: J; frequencies w_j = 2^j * pi, j = 0..J-1.

  Returns:
    [..., C + 2*C*J]: the raw values, then for each frequency (frequency-major) the
    sines of the C channels followed by their cosines.
  """
  # 2^j * pi rounded to float32 equals 2^j * float32(pi): the same constant torch uses.
  freqs = jnp.asarray(
      np.array([(2.0**j) * np.pi for j in range(num_frequencies)], np.float32))
  proj = values[..., None, :] * freqs[:, None]  # [..., J, C]
  feats = jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)  # [..., J, 2C]
  feats = feats.reshape(*values.shape[:-1], -1)  # [..., 2CJ]
  return jnp.concatenate([values, feats], axis=-1)


def sincos_time_embedding(num_frames: int, dim: int) -> np.ndarray:
  """Fixed sine-cosine embedding of frame indices (float32, computed like the official).

  omega_i = 10000^(-i / (dim/2 - 1)), i = 0..dim/2-1 (note the divisor dim/2 - 1).

  Returns:
    [num_frames, dim]: [sin(t*omega), cos(t*omega)].
  """
  if dim % 2:
    raise ValueError(f'time embedding width must be even, got {dim}')
  half = dim // 2
  # Same float32 rounding steps as the official: i/(half-1), 10000**., 1/.
  omega = (np.arange(half, dtype=np.float32) / np.float32(half - 1)).astype(np.float32)
  omega = (np.float32(1.0) / np.power(np.float32(10000.0), omega)).astype(np.float32)
  angles = np.arange(num_frames, dtype=np.float32)[:, None] * omega[None, :]
  return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def rotation_from_6d(vec6: Array) -> Array:
  """Gram-Schmidt 6-D rotation parameterisation.

  Args:
    vec6: [..., 6] = (a, b).

  Returns:
    [..., 3, 3] whose ROWS are v1 = a/|a|, v2 = normalised(b - (b.v1) v1), v3 = v1 x v2.
  """
  a, b = vec6[..., :3], vec6[..., 3:]
  v1 = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
  v2 = b - jnp.sum(b * v1, axis=-1, keepdims=True) * v1
  v2 = v2 / jnp.linalg.norm(v2, axis=-1, keepdims=True)
  v3 = jnp.cross(v1, v2)
  return jnp.stack([v1, v2, v3], axis=-2)


def _layer_norm(name: str) -> nn.LayerNorm:
  # Exact two-pass variance like torch (the fast E[x^2]-E[x]^2 form loses digits).
  # float32 output whatever the compute dtype: the statistics and the residual
  # stream keep float32 precision.
  return nn.LayerNorm(epsilon=LAYER_NORM_EPS, use_fast_variance=False, dtype=jnp.float32,
                      name=name)


class Attention(nn.Module):
  """Pre-norm multi-head self-attention, bias-free projections.

  Attributes:
    num_heads: heads (16).
    head_dim: width per head (64).
    precision: matmul precision.
    dtype: compute dtype of the projections and the weighted sum of values; the
      logits are accumulated in float32 and the softmax runs in float32 (bfloat16
      logits would round the weights over 50-frame / 1000-point sequences).
  """

  num_heads: int = 16
  head_dim: int = 64
  precision: PrecisionLike = jax.lax.Precision.HIGHEST
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, key_mask: Array | None = None) -> Array:
    """x: [S, L, C] sequences; key_mask: [S, L] bool (False = ignored key) or None."""
    inner = self.num_heads * self.head_dim
    y = _layer_norm('norm')(x)
    qkv = nn.Dense(3 * inner, use_bias=False, precision=self.precision, dtype=self.dtype,
                   name='qkv')(y)
    q, k, v = jnp.split(qkv, 3, axis=-1)  # [S, L, H*D] each, heads laid out (head, dim).
    split = lambda t: t.reshape(*t.shape[:-1], self.num_heads, self.head_dim)
    q, k, v = split(q), split(k), split(v)  # [S, L, H, D]
    scale = self.head_dim**-0.5
    # A power-of-two scale (head_dim 4, 16, 64, ...) is exact in any float format, so applying
    # it to the queries gives bit-identical logits and gradients, and XLA's CPU backend then no
    # longer materialises the scale as a full [S, H, L, L] operand.
    pre_scaled = math.frexp(scale)[0] == 0.5
    if pre_scaled:
      q = q * jnp.asarray(scale, q.dtype)
    logits = jnp.einsum('slhd,smhd->shlm', q, k, precision=self.precision,
                        preferred_element_type=jnp.float32)  # [S, H, L, L]
    if not pre_scaled:
      logits = logits * scale
    if key_mask is not None:
      neg = jnp.finfo(logits.dtype).min
      logits = jnp.where(key_mask[:, None, None, :], logits, neg)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum('shlm,smhd->slhd', weights.astype(v.dtype), v, precision=self.precision)
    out = out.reshape(*out.shape[:-2], inner)  # [S, L, H*D]
    out = nn.Dense(x.shape[-1], use_bias=False, precision=self.precision, dtype=self.dtype,
                   name='out')(out)
    return out.astype(x.dtype)


class FeedForward(nn.Module):
  """LayerNorm -> Linear(C->mlp_dim) -> exact GELU -> Linear(mlp_dim->C)."""

  mlp_dim: int = 2048
  precision: PrecisionLike = jax.lax.Precision.HIGHEST
  dtype: Any = jnp.float32  # compute dtype of the two matmuls

  @nn.compact
  def __call__(self, x: Array) -> Array:
    y = _layer_norm('norm')(x)
    y = nn.Dense(self.mlp_dim, precision=self.precision, dtype=self.dtype, name='dense_in')(y)
    y = jax.nn.gelu(y, approximate=False)
    y = nn.Dense(x.shape[-1], precision=self.precision, dtype=self.dtype, name='dense_out')(y)
    return y.astype(x.dtype)


class TransformerBlock(nn.Module):
  """One depth-1 transformer: x += Attn(LN x); x += FF(LN x); x = LN(x)."""

  num_heads: int = 16
  head_dim: int = 64
  mlp_dim: int = 2048
  precision: PrecisionLike = jax.lax.Precision.HIGHEST
  dtype: Any = jnp.float32  # compute dtype (Attention, FeedForward)

  @nn.compact
  def __call__(self, x: Array, key_mask: Array | None = None) -> Array:
    """x: [S, L, C]; key_mask: [S, L] bool or None. Returns [S, L, C]."""
    x = x + Attention(self.num_heads, self.head_dim, self.precision, self.dtype,
                      name='attention')(x, key_mask)
    x = x + FeedForward(self.mlp_dim, self.precision, self.dtype, name='mlp')(x)
    return _layer_norm('final_norm')(x)


class TracksTo4D(nn.Module):
  """TracksTo4D network.

  Attributes:
    width: token width C (256).
    num_layers: rounds of (frame transformer, point transformer) (3).
    num_heads, head_dim, mlp_dim: transformer sizes (16, 64, 2048).
    positional_dim: number of Fourier frequencies of the input encoding (12).
    num_bases: K (12).
    camera_kernel_size: kernel of the circular camera convolution over time (31;
      the official configs' `conv_kernel_size` = 15 is unused by the network).
    predict_focal_length: focal_f = 1 + 0.05 c_f,3 instead of the constant 1.
    precision: matmul precision (HIGHEST = true float32, as the official).
    dtype: compute dtype of the embedding and transformer matmuls. LayerNorms,
      softmax, the camera and per-point heads (camera poses, 3D bases) and
      everything after them stay float32.
    remat: 'none' | 'block' | a jax.checkpoint policy name for every transformer
      block (tapkit/train/precision.py).
  """

  width: int = 256
  num_layers: int = 3
  num_heads: int = 16
  head_dim: int = 64
  mlp_dim: int = 2048
  positional_dim: int = 12
  num_bases: int = 12
  camera_kernel_size: int = 31
  predict_focal_length: bool = False
  precision: PrecisionLike = jax.lax.Precision.HIGHEST
  dtype: Any = jnp.float32
  remat: str = 'none'

  @property
  def num_camera_channels(self) -> int:
    # translation 3 + focal 1 + K coefficients + 6-D rotation + 2 unused channels.
    return 3 + 1 + self.num_bases + 6 + 2

  def _encode(self, tracks: Array, point_mask: Array | None = None,
              frame_mask: Array | None = None) -> Array:
    """Encoder: tracks [b, N, C_in, F] -> features [b, N, F, width].

    A plain helper of the compact `__call__` (its submodules are registered there).
    """
    b, n, _, f = tracks.shape
    x = jnp.swapaxes(tracks, 2, 3)  # [b, N, F, C_in]
    x = positional_encoding(x, self.positional_dim)  # [b, N, F, C_in*(1+2J)]
    # A constant-1 channel is appended before the embedding (official).
    x = jnp.concatenate([x, jnp.ones((*x.shape[:-1], 1), x.dtype)], axis=-1)
    x = _layer_norm('embed_norm_in')(x)
    x = nn.Dense(self.width, precision=self.precision, dtype=self.dtype, name='embed_dense')(x)
    x = _layer_norm('embed_norm_out')(x)  # [b, N, F, C]
    # Time embedding added once; no positional information along the point axis, so
    # the network is equivariant to point permutations.
    x = x + jnp.asarray(sincos_time_embedding(f, self.width))[None, None]

    point_keys = None
    if point_mask is not None:
      # Padded points must not act as keys in point attention.
      point_keys = jnp.broadcast_to(point_mask[:, None, :], (b, f, n)).reshape(b * f, n)

    frame_keys = None
    if frame_mask is not None:
      # Padded frames must not act as keys in frame attention.
      frame_keys = jnp.broadcast_to(frame_mask[:, None, :], (b, n, f)).reshape(b * n, f)

    kwargs = dict(num_heads=self.num_heads, head_dim=self.head_dim, mlp_dim=self.mlp_dim,
                  precision=self.precision, dtype=self.dtype)
    block = precision_lib.remat_block(TransformerBlock, self.remat)
    x = x.reshape(b * n, f, self.width)  # [b*N, F, C]: each point's frames a sequence.
    for i in range(self.num_layers):
      x = block(**kwargs, name=f'frame_transformer_{i}')(x, frame_keys)
      x = x.reshape(b, n, f, self.width).transpose(0, 2, 1, 3).reshape(b * f, n, self.width)
      x = block(**kwargs, name=f'point_transformer_{i}')(x, point_keys)
      x = x.reshape(b, f, n, self.width).transpose(0, 2, 1, 3).reshape(b * n, f, self.width)
    return x.reshape(b, n, f, self.width)

  @nn.compact
  def __call__(self, tracks: Array, point_mask: Array | None = None,
               frame_mask: Array | None = None) -> TracksTo4DOutput:
    """Forward pass.

    Args:
      tracks: [b, N, 3, F] float32: normalised x, y and visibility (0./1.) rows.
      point_mask: optional [b, N] bool, False for padded points: they are excluded as
        attention keys and from the camera head's mean over points (their own outputs
        are computed but meaningless). None = every point is real (official).
      frame_mask: optional [b, F] bool, True for the first F_b frames of sample b and
        False for padding after them. Real frames then get exactly the outputs of the
        unpadded F_b-frame input: padded frames are no attention keys, the camera head's
        circular convolution wraps at F_b, and the per-point head averages real frames.
        Outputs at padded frames are meaningless. None = every frame is real (official).

    Returns:
      TracksTo4DOutput (official layouts).
    """
    b, n, _, f = tracks.shape
    k = self.num_bases
    h = self._encode(tracks, point_mask, frame_mask)  # [b, N, F, C]

    # ---- Camera head: mean over points, circular 1-D convolution over time.
    if point_mask is None:
      pooled = jnp.mean(h, axis=1)  # [b, F, C]
    else:
      w = point_mask.astype(h.dtype)[:, :, None, None]
      pooled = jnp.sum(h * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
    pad = self.camera_kernel_size // 2
    # Circular padding (the first frame sees the last ones). The official torch code
    # fails for F < pad; 'wrap' extends the same periodic convolution to any F.
    if frame_mask is None:
      padded = jnp.pad(pooled, ((0, 0), (pad, pad), (0, 0)), mode='wrap')
    else:
      # Wrap at each sample's real length L_b: position t reads frame t mod L_b.
      length = jnp.maximum(jnp.sum(frame_mask, axis=1), 1)  # [b]
      index = jnp.mod(jnp.arange(-pad, f + pad)[None, :], length[:, None])  # [b, F+2p]
      padded = jnp.take_along_axis(pooled, index[..., None], axis=1)
    cams = nn.Conv(self.num_camera_channels, (self.camera_kernel_size,), padding='VALID',
                   precision=self.precision, name='camera_head')(padded)  # [b, F, 24]

    translations = cams[..., 0:3]  # [b, F, 3]
    if self.predict_focal_length:
      focal = 1.0 + FOCAL_SCALE * cams[..., 3:4]  # [b, F, 1]
    else:
      focal = jnp.ones((b, f, 1), cams.dtype)
    # Coefficient 0 is pinned to exactly 1 (official in-place clamp: no gradient).
    coeffs = jnp.concatenate(
        [jnp.ones((b, f, 1), cams.dtype), cams[..., 5:4 + k]], axis=-1)  # [b, F, K]
    rotations = rotation_from_6d(cams[..., 4 + k:10 + k])  # [b, F, 3, 3]

    # ---- Per-point head: mean over frames, Linear(C -> 3K + 1).
    if frame_mask is None:
      frames_mean = jnp.mean(h, axis=2)  # [b, N, C]
    else:
      fw = frame_mask.astype(h.dtype)[:, None, :, None]  # [b, 1, F, 1]
      frames_mean = jnp.sum(h * fw, axis=2) / jnp.maximum(jnp.sum(fw, axis=2), 1.0)
    per_point = nn.Dense(3 * k + 1, precision=self.precision, name='point_head')(
        frames_mean)  # [b, N, 3K+1]
    bases = per_point[..., :3 * k].reshape(b, n, 3, k)  # [b, N, 3, K] coordinate-major.
    nr = jax.nn.elu(per_point[..., 3 * k]) + 1.0 + NR_EPS  # [b, N]

    # ---- 3D points (world). Static: B_0 (times c_0 = 1). Dynamic: the motion bases on
    # top of a stopped-gradient B_0, so the dynamic branch never moves the static shape.
    static = bases[..., 0]  # [b, N, 3]
    motion = jnp.einsum('bnck,bfk->bfnc', bases[..., 1:], coeffs[..., 1:],
                        precision=self.precision)  # [b, F, N, 3]
    dynamic = motion + jax.lax.stop_gradient(static)[:, None]  # [b, F, N, 3]
    static_f = jnp.broadcast_to(static[:, None], dynamic.shape)  # [b, F, N, 3]

    # ---- World -> camera: P = R^T (X - t). The dynamic branch sees stopped cameras, so
    # cameras are trained by the static branch only.
    def to_camera(points, rot, trans):
      return jnp.einsum('bfji,bfnj->bfni', rot, points - trans[:, :, None, :],
                        precision=self.precision)  # [b, F, N, 3]

    cam_dynamic = to_camera(dynamic, jax.lax.stop_gradient(rotations),
                            jax.lax.stop_gradient(translations))
    cam_static = to_camera(static_f, rotations, translations)

    # focal [b, F, 1] -> [b, F, 1, 1] to broadcast over points and both coordinates.
    focal_b = focal[:, :, None, :]

    def project(p):
      z = p[..., 2]
      # torch.clamp(min=0.01): gradient flows for z >= 0.01, zero below.
      denom = jnp.where(z >= MIN_DEPTH, z, MIN_DEPTH)
      return focal_b * p[..., 0:2] / denom[..., None]  # [b, F, N, 2]

    to_cfn = lambda a: jnp.swapaxes(a, -1, -2)  # [b, F, N, c] -> [b, F, c, N]
    return TracksTo4DOutput(
        focal=focal,
        projections=to_cfn(project(cam_dynamic)),
        projections_static=to_cfn(project(cam_static)),
        rotations=rotations,
        translations=translations,
        bases=bases,
        points3d=to_cfn(dynamic),
        points3d_static=to_cfn(static_f),
        depths=cam_dynamic[..., 2],
        depths_static=cam_static[..., 2],
        basis_coeffs=jnp.swapaxes(coeffs, 1, 2),
        points3d_camera=to_cfn(cam_dynamic),
        nr=nr,
    )
