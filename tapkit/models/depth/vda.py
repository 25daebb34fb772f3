"""Video Depth Anything (Chen et al., CVPR 2025) in Flax: DINOv2 encoder + spatio-temporal DPT head.

  module = VideoDepthAnything(get_vda_config('vits'))
  depth = module.apply({'params': params}, x)       # x [B, T, H, W, 3] normalised, H, W % 14 == 0
  # depth [B, T, H, W]: relative models give affine-invariant inverse depth (larger = nearer),
  # metric models depth in metres.

The encoder is `tapkit.models.vit.VisionTransformer` with the official DINOv2 position-embedding
rule (bicubic resample with scale factor (n + 0.1)/37, `interpolate_offset=0.1`); the four
selected blocks' outputs pass through the final LayerNorm and their patch tokens feed the head
(`dpt.DPTHead(temporal=True)`). T ≤ 32 frames per forward (the motion modules' position table).
Videos of any length go through `tapkit.models.depth.video.infer_video_depth`.

Parameter tree: {'pretrained': ViT tree (see `tapkit.models.vit.vit`), 'head': DPT tree}.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tapkit.models import jitted
from tapkit.models.depth.dpt import DPTHead, resize_bilinear_corners
from tapkit.models.vit.config import BackboneConfig, get_config
from tapkit.models.vit.vit import VisionTransformer

Array = jax.Array
PrecisionLike = Any


@dataclasses.dataclass(frozen=True)
class VDAConfig:
  """Architecture of a Video Depth Anything / Depth Anything V2 model.

  Attributes:
    name: preset name ('vits', 'vitb', 'vitl', 'tiny').
    backbone: the DINOv2 encoder (official hub position-embedding rule for the presets).
    layer_indices: 0-based encoder blocks whose (final-LayerNorm-ed) outputs feed the head.
    features: fusion width F.
    out_channels: reassemble widths (C1, C2, C3, C4).
    num_frames: motion-module position-table length (longest clip per forward, 32).
    mm_heads: motion-module attention heads.
    metric: the checkpoint outputs metric depth (metres); only changes the video procedure (no
      scale/shift alignment between windows).
  """
  name: str
  backbone: BackboneConfig
  layer_indices: tuple[int, int, int, int]
  features: int
  out_channels: tuple[int, int, int, int]
  num_frames: int = 32
  mm_heads: int = 8
  metric: bool = False

  def replace(self, **changes) -> 'VDAConfig':
    return dataclasses.replace(self, **changes)


def _preset(name: str, vit: str, layers, features, out_channels) -> VDAConfig:
  return VDAConfig(name=name, backbone=get_config(vit, source='hub'),
                   layer_indices=tuple(layers), features=features,
                   out_channels=tuple(out_channels))


VDA_PRESETS: dict[str, VDAConfig] = {
    'vits': _preset('vits', 'dinov2_vits14', (2, 5, 8, 11), 64, (48, 96, 192, 384)),
    'vitb': _preset('vitb', 'dinov2_vitb14', (2, 5, 8, 11), 128, (96, 192, 384, 768)),
    'vitl': _preset('vitl', 'dinov2_vitl14', (4, 11, 17, 23), 256, (256, 512, 1024, 1024)),
    # Tests and CLI smoke runs: a 4-block width-32 DINOv2 (37×37 position grid, official resize
    # rule) and the narrowest head the motion modules allow (multiples of 32 for GroupNorm).
    'tiny': VDAConfig(
        name='tiny',
        backbone=BackboneConfig(
            name='vda_tiny', family='dinov2', patch_size=14, hidden_size=32, num_layers=4,
            num_heads=2, mlp_dim=128, image_size=518, layerscale=True, use_mask_token=True,
            interpolate_offset=0.1),
        layer_indices=(0, 1, 2, 3), features=32, out_channels=(16, 32, 32, 64)),
}


def get_vda_config(encoder: str, metric: bool = False, **overrides) -> VDAConfig:
  """A preset ('vits', 'vitb', 'vitl', 'tiny'); `metric` marks a metric checkpoint."""
  if encoder not in VDA_PRESETS:
    raise ValueError(f'encoder must be one of {sorted(VDA_PRESETS)}, got {encoder!r}')
  return dataclasses.replace(VDA_PRESETS[encoder], metric=metric, **overrides)


def encode(backbone: VisionTransformer, images: Array,
           layer_indices: tuple[int, ...]) -> tuple[list[Array], tuple[int, int]]:
  """The four head inputs: patch tokens [N, ph·pw, D] of the selected blocks after the final
  LayerNorm, and the grid (ph, pw)."""
  out = backbone(images, return_layers=layer_indices, norm_layers=True)
  return [out.patch_tokens(i) for i in layer_indices], out.grid


def check_input_size(height: int, width: int, patch: int) -> None:
  if height % patch or width % patch:
    raise ValueError(f'image size {height}×{width} must be a multiple of {patch} on both sides '
                     '(resize with tapkit.models.depth.video.network_size first)')


class VideoDepthAnything(nn.Module):
  """Video Depth Anything forward: clips [B, T, H, W, 3] -> depth [B, T, H, W].

  Attributes:
    config: the architecture (`get_vda_config`).
    precision: matmul precision (None: JAX default; 'highest' for float32 parity on GPU/TPU).
  """
  config: VDAConfig
  precision: PrecisionLike = None

  @nn.compact
  def __call__(self, x: Array, return_intermediates: bool = False) -> Array | dict[str, Any]:
    """Depth of each frame.

    Args:
      x: [B, T, H, W, 3] frames normalised with the ImageNet mean/std; T ≤ num_frames; H, W
        multiples of 14.
      return_intermediates: also return the head inputs and output.

    Returns:
      depth [B, T, H, W] float32 (≥ 0), or a dict {'depth', 'tokens' (4 × [B·T, ph·pw, D]),
      'head' [B·T, H, W, 1]} when `return_intermediates`.
    """
    cfg = self.config
    if x.ndim != 5 or x.shape[-1] != 3:
      raise ValueError(f'VideoDepthAnything: x must be [B, T, H, W, 3], got {x.shape}')
    b, t, h, w, _ = x.shape
    if t > cfg.num_frames:
      raise ValueError(f'VideoDepthAnything: {t} frames per clip exceed {cfg.num_frames}')
    check_input_size(h, w, cfg.backbone.patch_size)
    backbone = VisionTransformer(cfg.backbone, self.precision, name='pretrained')
    tokens, grid = encode(backbone, x.reshape(b * t, h, w, 3), cfg.layer_indices)
    head = DPTHead(cfg.features, cfg.out_channels, temporal=True, mm_heads=cfg.mm_heads,
                   max_frames=cfg.num_frames, precision=self.precision, name='head')
    out = head(tokens, grid, num_frames=t)  # [B·T, 14ph, 14pw, 1]
    depth = nn.relu(resize_bilinear_corners(out, (h, w)))[..., 0].reshape(b, t, h, w)
    if return_intermediates:
      return {'depth': depth, 'tokens': tokens, 'head': out}
    return depth


def cast_params(params: Any, dtype: Any) -> Any:
  """Parameters in the compute dtype `dtype` (e.g. bfloat16), except the head's last two
  convolutions, which the original keeps in float32 under autocast."""
  if jnp.dtype(dtype) == jnp.float32:
    return params

  def cast(path, leaf):
    keys = [getattr(k, 'key', '') for k in path]
    if any(str(k).startswith('output_conv2') for k in keys):
      return leaf
    return leaf.astype(dtype)
  return jax.tree_util.tree_map_with_path(cast, params)


def init_vda_params(config: VDAConfig, rng: Array | None = None) -> dict:
  """Randomly initialised parameters (tests, CLI `--random_weights_for_testing`)."""
  rng = jax.random.PRNGKey(0) if rng is None else rng
  p = config.backbone.patch_size
  x = jnp.zeros((1, 2, 2 * p, 2 * p, 3), jnp.float32)
  # One compiled init per config and process.
  return jitted.jitted_init(VideoDepthAnything(config))(rng, x)['params']
