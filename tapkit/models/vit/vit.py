"""DINO / DINOv2 (± registers) / DINOv3 Vision Transformers in Flax linen.

`VisionTransformer(config).apply({'params': params}, images)` maps images [B, H, W, C] (already
normalised) to the final-LayerNorm tokens [B, 1 + R + h·w, D] in transformers' order
(CLS, R registers, patches in row-major order), equal to transformers' `last_hidden_state`.
With `return_layers=(...)` it returns a `BackboneOutput` that also carries the outputs of the
selected blocks (raw block outputs, i.e. transformers' `hidden_states[i + 1]`, without the final
LayerNorm unless `norm_layers=True`; Probe3D uses them raw, DINOv2's
`get_intermediate_layers(norm=True)` normed).

Parameter tree (our names; `convert.py` maps them to transformers and torch.hub names):

  patch_embed/{kernel [p, p, C, D], bias [D]}
  cls_token [1, 1, D]            register_tokens [1, R, D] (R > 0)
  mask_token [1, D] (DINOv2/v3)  pos_embed [1, 1 + G², D] (learned position embedding only)
  block_{i}/norm1/{scale, bias}
  block_{i}/attn/{q_proj, k_proj, v_proj, o_proj}/{kernel [D, D], bias [D]} (no k bias for DINOv3)
  block_{i}/ls1/gamma [D]        block_{i}/ls2/gamma [D]        (LayerScale families)
  block_{i}/norm2/{scale, bias}
  block_{i}/mlp/{fc1, fc2}/{kernel, bias}   or  mlp/{gate_proj, up_proj, down_proj} (gated)
  norm/{scale, bias}
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models import jitted
from tapkit.models.vit.attention import multi_head_attention
from tapkit.models.vit.config import BackboneConfig
from tapkit.models.vit.interpolate import resize_bicubic_hwc
from tapkit.train import precision as precision_lib

Array = jax.Array
PrecisionLike = Any


@flax.struct.dataclass
class BackboneOutput:
  """Tokens of a forward pass.

  Attributes:
    tokens: [B, 1 + R + h·w, D] final-LayerNorm tokens (= transformers' `last_hidden_state`).
    layers: {block index (0-based): [B, 1 + R + h·w, D]} outputs of the requested blocks, raw or
      normed with the final LayerNorm (see `normed`).
    grid: (h, w) patch grid (static).
    num_prefix_tokens: 1 + R (static).
    normed: whether `layers` went through the final LayerNorm (static).
  """
  tokens: Array
  layers: dict[int, Array]
  grid: tuple[int, int] = flax.struct.field(pytree_node=False)
  num_prefix_tokens: int = flax.struct.field(pytree_node=False)
  normed: bool = flax.struct.field(pytree_node=False, default=False)

  def cls(self, layer: int | None = None) -> Array:
    """[B, D] CLS token of the final tokens (layer None) or of block `layer`."""
    return (self.tokens if layer is None else self.layers[layer])[:, 0]

  def patch_tokens(self, layer: int | None = None) -> Array:
    """[B, h·w, D] patch tokens (CLS and registers dropped)."""
    return (self.tokens if layer is None else self.layers[layer])[:, self.num_prefix_tokens:]

  def feature_map(self, layer: int | None = None) -> Array:
    """[B, h, w, D] patch tokens as a feature map."""
    return tokens_to_feature_map(self.tokens if layer is None else self.layers[layer], self.grid,
                                 self.num_prefix_tokens)


def tokens_to_feature_map(tokens: Array, grid: tuple[int, int], num_prefix_tokens: int) -> Array:
  """Patch tokens as a map: tokens [B, P + h·w, D] -> [B, h, w, D] (row-major patch order)."""
  h, w = grid
  if tokens.shape[1] != num_prefix_tokens + h * w:
    raise ValueError(f'tokens_to_feature_map: {tokens.shape[1]} tokens do not hold '
                     f'{num_prefix_tokens} prefix tokens + a {h}×{w} grid')
  return tokens[:, num_prefix_tokens:].reshape(tokens.shape[0], h, w, tokens.shape[-1])


def extract_feature_map(module: 'VisionTransformer', params: Any, images: Array,
                        layer: int | None = None, norm: bool = True) -> Array:
  """Patch features [B, h, w, D] of images [B, H, W, C] (CLS and registers dropped).

  layer None: final-LayerNorm patch tokens (3DPoV's features). layer i: output of block i
  (0-based, negative from the end), through the final LayerNorm when `norm` (DINOv2
  `get_intermediate_layers(norm=True)`), raw otherwise (Probe3D's features).
  """
  if layer is None:
    tokens = module.apply({'params': params}, images)
  else:
    out = module.apply({'params': params}, images, return_layers=(layer,), norm_layers=norm)
    tokens = next(iter(out.layers.values()))
  cfg = module.config
  return tokens_to_feature_map(tokens, cfg.grid_size(images.shape[1], images.shape[2]),
                               cfg.num_prefix_tokens)


def pad_to_patch_multiple(images: Array, patch_size: int, value: float = 0.0) -> Array:
  """Zero-pad images [B, H, W, C] to multiples of p, top/left get ⌊pad/2⌋ (as Probe3D)."""
  _, h, w, _ = images.shape
  ph, pw = (-h) % patch_size, (-w) % patch_size
  return jnp.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
                 constant_values=value)


def rope_tables(grid: tuple[int, int], head_dim: int,
                theta: float) -> tuple[np.ndarray, np.ndarray]:
  """DINOv3 RoPE (cos, sin), each [h·w, head_dim] float32 (inference mode: no
  coordinate augmentation).

  Patch centres normalised per axis to [-1, 1]; angles 2π·coord·θ^(-4k/d) for the y then the x
  coordinate (d/4 frequencies each), tiled twice to length d. Computed in float32 in transformers'
  order of operations so the tables agree with it to the last bit or so.
  """
  coords = _rope_coords(grid)
  return _rope_cos_sin(coords, head_dim, theta)


def _rope_coords(grid: tuple[int, int]) -> np.ndarray:
  """[h·w, 2] (y, x) patch-centre coordinates in [-1, 1], float32."""
  h, w = grid
  ys = np.arange(0.5, h, dtype=np.float32) / np.float32(h)
  xs = np.arange(0.5, w, dtype=np.float32) / np.float32(w)
  coords = np.stack(np.meshgrid(ys, xs, indexing='ij'), axis=-1).reshape(-1, 2)
  return np.float32(2.0) * coords - np.float32(1.0)


def _inv_freq(head_dim: int, theta: float) -> np.ndarray:
  """[head_dim / 4] inverse frequencies θ^(-4k/d), float32."""
  exponents = (np.arange(head_dim // 4, dtype=np.float64) * (4.0 / head_dim)).astype(np.float32)
  return (np.float32(1.0) / np.power(np.float32(theta), exponents)).astype(np.float32)


def _rope_cos_sin(coords, head_dim: int, theta: float):
  """cos/sin [N, d] from coordinates [N, 2] (numpy for static tables, jnp when augmented)."""
  xp = np if isinstance(coords, np.ndarray) else jnp
  inv_freq = _inv_freq(head_dim, theta)
  angles = (np.float32(2 * math.pi) * coords)[:, :, None] * inv_freq[None, None, :]  # [N, 2, d/4]
  angles = angles.reshape(coords.shape[0], -1)  # [N, d/2]: y frequencies then x frequencies
  angles = xp.concatenate([angles, angles], axis=-1)  # [N, d]
  return xp.cos(angles).astype(xp.float32), xp.sin(angles).astype(xp.float32)


def _rotate_half(x: Array) -> Array:
  """(x1, x2) -> (-x2, x1) on the two halves of the last axis."""
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([-x2, x1], axis=-1)


class LayerScale(nn.Module):
  """Per-channel scale γ ⊙ x (DINOv2/DINOv3)."""
  dim: int
  init_value: float = 1.0

  @nn.compact
  def __call__(self, x: Array) -> Array:
    gamma = self.param('gamma', nn.initializers.constant(self.init_value), (self.dim,))
    return x * gamma


class _DenseParams(nn.Module):
  """The parameters of `nn.Dense(features)` (same names, shapes and initialisers), unapplied."""
  features: int
  use_bias: bool

  @nn.compact
  def __call__(self, in_features: int) -> tuple[Array, Array | None]:
    """-> (kernel [in_features, features], bias [features] or None)."""
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (in_features, self.features),
                        jnp.float32)
    bias = (self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
            if self.use_bias else None)
    return kernel, bias


class PatchEmbed(nn.Module):
  """Non-overlapping p×p patches -> linear embedding (the stride-p convolution of the ViTs).

  The parameters are those of `nn.Conv(features, (p, p))` (kernel [p, p, C, D] LeCun-normal,
  bias [D] zeros), applied as one [B·h·w, p·p·C] × [p·p·C, D] matmul on the patches gathered by a
  reshape: the same sums as the convolution (equal to it, or within float32 rounding where XLA
  orders the sum differently) in ~25 % less time, since XLA CPU runs this strided convolution as
  a slower kernel. The bottom/right remainder of
  an image whose size is not a multiple of p is dropped, as by a VALID convolution.
  """
  features: int
  patch_size: int
  precision: PrecisionLike = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: Array) -> Array:
    """images [B, H, W, C] -> [B, H // p, W // p, D]."""
    p = self.patch_size
    b, height, width, c = images.shape
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (p, p, c, self.features),
                        jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
    h, w = height // p, width // p
    patches = images[:, :h * p, :w * p].astype(self.dtype).reshape(b, h, p, w, p, c)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, p * p * c)  # (dy, dx, c) order
    out = jax.lax.dot_general(patches, kernel.reshape(p * p * c, self.features).astype(self.dtype),
                              (((3,), (0,)), ((), ())), precision=self.precision)
    return out + bias.astype(self.dtype)


class Attention(nn.Module):
  """Multi-head self-attention with optional 2-D RoPE on the patch tokens.

  `dtype` is the compute dtype of the projections and of the weighted sum of values; the
  logits are accumulated in float32 and the softmax runs in float32 (bfloat16 logits over
  hundreds of patch tokens would round the attention weights).
  """
  config: BackboneConfig
  precision: PrecisionLike = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, rope: tuple[Array, Array] | None = None) -> Array:
    """x [B, T, D]; rope: (cos, sin) [N, head_dim] for the last N (patch) tokens -> [B, T, D]."""
    cfg = self.config
    b, t, d = x.shape
    heads, hd = cfg.num_heads, cfg.head_dim

    # One [D, 3D] matmul for q, k and v (the parameters stay three Dense layers): a wider
    # matmul runs faster on CPU than three narrow ones.
    kernels, biases = [], []
    for name, use_bias in (('q_proj', cfg.query_bias), ('k_proj', cfg.key_bias),
                           ('v_proj', cfg.value_bias)):
      kernel, bias = _DenseParams(d, use_bias, name=name)(d)
      kernels.append(kernel)
      biases.append(bias if bias is not None else jnp.zeros((d,), kernel.dtype))
    xc, kernel = x.astype(self.dtype), jnp.concatenate(kernels, axis=1).astype(self.dtype)
    qkv = jax.lax.dot_general(xc, kernel, (((2,), (0,)), ((), ())), precision=self.precision)
    qkv = qkv + jnp.concatenate(biases).astype(self.dtype)  # [B, T, 3D]
    q, k, v = jnp.split(qkv.reshape(b, t, 3, heads, hd), 3, axis=2)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # [B, T, H, hd] each
    if rope is not None:
      cos, sin = rope  # [N, hd]
      n = cos.shape[0]
      cos, sin = cos[None, :, None, :], sin[None, :, None, :]
      # Only patch tokens are rotated; CLS and registers keep their q/k (transformers, official).
      def rotate(u: Array) -> Array:
        patches = u[:, t - n:]
        patches = patches * cos + _rotate_half(patches) * sin
        return jnp.concatenate([u[:, :t - n], patches], axis=1)
      q, k = rotate(q), rotate(k)
    # The 1/√hd scale goes on q [B, T, H, hd], not on the logits [B, H, T, T]: T/hd times fewer
    # multiplies, and XLA CPU would otherwise materialise a [B, H, T, T] buffer of the scale for
    # its fused attention kernel. Exact for hd a power of 4 (scale a power of 2: 64 -> 1/8).
    q = q * jnp.asarray(hd ** -0.5, q.dtype)
    # On CPU: a loop over groups of (batch, head) pairs whose [T, T] logits stay in the cache.
    out = multi_head_attention(q, k, v, self.precision).reshape(b, t, d)
    return nn.Dense(d, use_bias=cfg.proj_bias, precision=self.precision, dtype=self.dtype,
                    name='o_proj')(out)


class Mlp(nn.Module):
  """Linear(D, m) -> act -> Linear(m, D), or the gated form down(act(gate(x)) · up(x))."""
  config: BackboneConfig
  precision: PrecisionLike = None
  dtype: Any = jnp.float32  # compute dtype of the matmuls

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """x [B, T, D] -> [B, T, D]."""
    cfg = self.config
    act = (lambda u: nn.gelu(u, approximate=False)) if cfg.hidden_act == 'gelu' else nn.silu
    dense = lambda n, name: nn.Dense(n, use_bias=cfg.mlp_bias, precision=self.precision,
                                     dtype=self.dtype, name=name)
    if cfg.mlp_type == 'gated':
      h = act(dense(cfg.mlp_dim, 'gate_proj')(x)) * dense(cfg.mlp_dim, 'up_proj')(x)
      return dense(cfg.hidden_size, 'down_proj')(h)
    return dense(cfg.hidden_size, 'fc2')(act(dense(cfg.mlp_dim, 'fc1')(x)))


class Block(nn.Module):
  """Pre-norm block: h + γ₁·Attn(LN₁(h)), then + γ₂·MLP(LN₂(h)) (γ = 1 without LayerScale).

  `dtype` is the compute dtype of attention and MLP; the LayerNorms, the LayerScales and the
  residual stream stay float32.
  """
  config: BackboneConfig
  precision: PrecisionLike = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, rope: tuple[Array, Array] | None = None) -> Array:
    """x [B, T, D] -> [B, T, D]."""
    cfg = self.config
    # use_fast_variance=False: E[(x - μ)²] like torch, not E[x²] - μ² (cancellation on large means).
    norm = lambda name: nn.LayerNorm(epsilon=cfg.layer_norm_eps, use_fast_variance=False,
                                     dtype=jnp.float32, name=name)
    y = Attention(cfg, self.precision, self.dtype, name='attn')(norm('norm1')(x), rope)
    y = y.astype(x.dtype)
    if cfg.layerscale:
      y = LayerScale(cfg.hidden_size, cfg.layerscale_init, name='ls1')(y)
    x = x + y
    y = Mlp(cfg, self.precision, self.dtype, name='mlp')(norm('norm2')(x)).astype(x.dtype)
    if cfg.layerscale:
      y = LayerScale(cfg.hidden_size, cfg.layerscale_init, name='ls2')(y)
    return x + y


class VisionTransformer(nn.Module):
  """DINO / DINOv2 / DINOv3 ViT backbone.

  Attributes:
    config: the architecture (see `get_config`).
    precision: matmul precision of Dense/einsum (None = JAX default; use 'highest' on GPU/TPU when
      exact parity with float32 torch matters, the default there is reduced precision).
    remat: what each block keeps for the backward pass (memory for compute when fine-tuning):
      False / 'none' everything, True / 'block' only its input, or a jax.checkpoint policy
      name such as 'dots_saveable' (tapkit/train/precision.py).
    dtype: compute dtype of the patch embedding and the blocks; the final LayerNorm and the
      returned tokens are float32.
  """
  config: BackboneConfig
  precision: PrecisionLike = None
  remat: bool | str = False
  dtype: Any = jnp.float32

  def interpolated_pos_embed(self, pos_embed: Array, grid: tuple[int, int],
                             height: int, width: int) -> Array:
    """Resize the learned position embedding [1, 1 + G², D] to [1, 1 + h·w, D].

    Skipped exactly when h·w = G² and height = width (pixels), as in every reference implementation;
    otherwise a torch-exact bicubic resize in float32 (size or offset scale-factor mode,
    ± antialias).
    """
    cfg = self.config
    g = cfg.pos_embed_grid
    h, w = grid
    if h * w == g * g and height == width:
      return pos_embed
    patch = pos_embed[0, 1:].reshape(g, g, -1)  # [G, G, D]
    if cfg.interpolate_offset > 0:
      # Official hub: scale_factor = (n + offset) / G (output floor(G·scale) = n).
      sf = ((h + cfg.interpolate_offset) / g, (w + cfg.interpolate_offset) / g)
      patch = resize_bicubic_hwc(patch, scale_factor=sf, antialias=cfg.interpolate_antialias)
    else:
      patch = resize_bicubic_hwc(patch, size=(h, w), antialias=cfg.interpolate_antialias)
    if patch.shape[:2] != (h, w):
      raise ValueError(f'position-embedding resize gave {patch.shape[:2]}, expected {(h, w)}')
    patch = patch.astype(pos_embed.dtype).reshape(1, h * w, -1)
    return jnp.concatenate([pos_embed[:, :1], patch], axis=1)

  @nn.compact
  def __call__(self,
               images: Array,
               return_layers: Sequence[int] | None = None,
               norm_layers: bool = False,
               masks: Array | None = None,
               rope_augment: bool = False) -> Array | BackboneOutput:
    """Run the backbone.

    Args:
      images: [B, H, W, C] float, normalised. H, W need not be multiples of p (the remainder is
        cropped by the patch convolution) nor equal to the native size.
      return_layers: block indices (0-based, negative from the end) whose outputs to return; None
        returns only the final tokens.
      norm_layers: apply the final LayerNorm to the returned block outputs.
      masks: optional [B, h·w] bool; True replaces that patch embedding by the mask token
        (DINOv2/v3).
      rope_augment: DINOv3 only: random coordinate shift/jitter/rescale as in training mode of the
        reference code (needs the 'rope' rng). Off by default: deterministic features.

    Returns:
      tokens [B, 1 + R + h·w, D] after the final LayerNorm, or a `BackboneOutput` when
      `return_layers` is given.
    """
    cfg = self.config
    if images.ndim != 4 or images.shape[-1] != cfg.num_channels:
      raise ValueError(f'VisionTransformer({cfg.name}): images must be '
                       f'[B, H, W, {cfg.num_channels}], got {images.shape}')
    b, height, width, _ = images.shape
    grid = cfg.grid_size(height, width)
    if min(grid) < 1:
      raise ValueError(f'VisionTransformer({cfg.name}): image {height}×{width} is smaller than one '
                       f'{cfg.patch_size}-px patch')
    d = cfg.hidden_size
    init = nn.initializers.truncated_normal(0.02)

    p = cfg.patch_size
    x = PatchEmbed(d, p, self.precision, self.dtype, name='patch_embed')(images)  # [B, h, w, D]
    x = x.astype(jnp.float32)  # the residual stream is float32
    x = x.reshape(b, grid[0] * grid[1], d)  # [B, N, D] row-major patches
    mask_token = (self.param('mask_token', nn.initializers.zeros, (1, d))
                  if cfg.use_mask_token else None)
    if masks is not None:
      if mask_token is None:
        raise ValueError(f'VisionTransformer({cfg.name}): masks given but the model has no mask '
                         'token')
      x = jnp.where(masks[..., None], mask_token[None].astype(x.dtype), x)

    cls_token = self.param('cls_token', init, (1, 1, d))
    registers = (self.param('register_tokens', init, (1, cfg.num_register_tokens, d))
                 if cfg.num_register_tokens else None)
    x = jnp.concatenate([jnp.broadcast_to(cls_token, (b, 1, d)).astype(x.dtype), x], axis=1)
    rope = None
    if cfg.pos_embed == 'learned':
      g = cfg.pos_embed_grid
      pos_embed = self.param('pos_embed', init, (1, 1 + g * g, d))
      # Position embedding on CLS + patches, before the registers are inserted (registers get none,
      # as in DINOv2).
      x = x + self.interpolated_pos_embed(pos_embed, grid, height, width).astype(x.dtype)
    else:
      if rope_augment:
        coords = jnp.asarray(_rope_coords(grid))
        coords = self._augment_coords(coords)
        rope = _rope_cos_sin(coords, cfg.head_dim, cfg.rope_theta)
      else:
        cos, sin = rope_tables(grid, cfg.head_dim, cfg.rope_theta)
        rope = (jnp.asarray(cos), jnp.asarray(sin))
    if registers is not None:
      x = jnp.concatenate([x[:, :1], jnp.broadcast_to(registers, (b,) + registers.shape[1:]).astype(
          x.dtype), x[:, 1:]], axis=1)

    wanted = set()
    if return_layers is not None:
      for i in return_layers:
        j = i + cfg.num_layers if i < 0 else i
        if not 0 <= j < cfg.num_layers:
          raise ValueError(f'VisionTransformer({cfg.name}): layer {i} out of range for '
                           f'{cfg.num_layers} blocks')
        wanted.add(j)
    remat = {True: 'block', False: 'none'}.get(self.remat, self.remat)
    block_cls = precision_lib.remat_block(Block, remat)
    final_norm = nn.LayerNorm(epsilon=cfg.layer_norm_eps, use_fast_variance=False,
                              dtype=jnp.float32, name='norm')
    layers = {}
    for i in range(cfg.num_layers):
      x = block_cls(cfg, self.precision, self.dtype, name=f'block_{i}')(x, rope)
      if i in wanted:
        layers[i] = x
    tokens = final_norm(x)
    if return_layers is None:
      return tokens
    if norm_layers:
      layers = {i: final_norm(y) for i, y in layers.items()}
    return BackboneOutput(tokens=tokens, layers=layers, grid=grid,
                          num_prefix_tokens=cfg.num_prefix_tokens, normed=norm_layers)

  def _augment_coords(self, coords: Array) -> Array:
    """DINOv3 training-mode coordinate augmentation (shift, jitter per axis; rescale shared)."""
    cfg = self.config
    rng = self.make_rng('rope')
    k1, k2, k3 = jax.random.split(rng, 3)
    if cfg.rope_shift is not None:
      s = cfg.rope_shift
      coords = coords + jax.random.uniform(k1, (1, 2), minval=-s, maxval=s)
    if cfg.rope_jitter is not None:
      r = math.log(cfg.rope_jitter)
      coords = coords * jnp.exp(jax.random.uniform(k2, (1, 2), minval=-r, maxval=r))
    if cfg.rope_rescale is not None:
      r = math.log(cfg.rope_rescale)
      coords = coords * jnp.exp(jax.random.uniform(k3, (1, 1), minval=-r, maxval=r))
    return coords


def build(config: BackboneConfig, **kwargs) -> VisionTransformer:
  """The module for a config (kwargs: precision, remat)."""
  return VisionTransformer(config, **kwargs)


def init_params(config: BackboneConfig, rng: Array | None = None,
                image_size: int | None = None) -> dict:
  """Randomly initialised parameters (truncated normal 0.02 tokens, LeCun-normal Dense, LayerScale
  at `layerscale_init`), mainly for tests and training from scratch."""
  rng = jax.random.PRNGKey(0) if rng is None else rng
  size = image_size or config.image_size
  images = jnp.zeros((1, size, size, config.num_channels), jnp.float32)
  # One compiled program instead of op-by-op dispatch (much faster to start on CPU), compiled
  # once per config, image size and process.
  return jitted.jitted_init(VisionTransformer(config))(rng, images)['params']


def param_shapes(config: BackboneConfig) -> dict:
  """Parameter tree of ShapeDtypeStructs (no allocation; works for the full-size presets)."""
  return _param_shapes(config)


@functools.lru_cache(maxsize=64)
def _param_shapes(config: BackboneConfig) -> dict:
  # Cached: tracing a 24-block model takes seconds and the converters ask for every load.
  images = jax.ShapeDtypeStruct((1, config.patch_size, config.patch_size, config.num_channels),
                                jnp.float32)
  out = jax.eval_shape(lambda x: VisionTransformer(config).init(jax.random.PRNGKey(0), x), images)
  return out['params']
