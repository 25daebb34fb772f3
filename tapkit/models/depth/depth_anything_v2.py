"""Depth Anything V2 (single image) in Flax, and conversion from transformers.

  module, params = from_transformers(hf_model)       # DepthAnythingForDepthEstimation
  depth = module.apply({'params': params}, images)   # images [B, H, W, 3] normalised -> [B, H, W]

The same network as Video Depth Anything without the temporal modules: DINOv2 encoder, four
final-LayerNorm-ed block outputs, DPT head (`dpt.DPTHead(temporal=False)`), relative depth
(affine-invariant inverse depth, ReLU) or metric depth (sigmoid · max_depth, metres).

Position embedding: transformers' `Dinov2Backbone` resizes the 37×37 table to the target grid
*size*; the original Depth-Anything-V2 code (like VDA) uses the hub rule with scale factor
(n + 0.1)/37. `from_transformers(..., pos_embed_rule='transformers')` (default) equals the
transformers model; `'official'` equals the original code with the same weights. Both agree at
518×518 (no resize).

Parameter tree: {'pretrained': ViT tree, 'head': DPT tree} (as `vda.VideoDepthAnything` minus the
motion modules).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models.depth.convert import _TO_OURS, head_table
from tapkit.models.depth.dpt import DPTHead
from tapkit.models.depth.vda import check_input_size, encode
from tapkit.models.vit.config import BackboneConfig
from tapkit.models.vit.convert import CheckpointError, config_from_transformers
from tapkit.models.vit.convert import \
    params_from_transformers_state_dict as vit_params_from_transformers
from tapkit.models.vit.vit import VisionTransformer

Array = jax.Array
PrecisionLike = Any


@dataclasses.dataclass(frozen=True)
class DepthAnythingV2Config:
  """Architecture of a Depth Anything V2 model.

  Attributes:
    backbone: the DINOv2 encoder.
    layer_indices: 0-based blocks feeding the head (transformers `out_indices` − 1).
    features: fusion width F.
    out_channels: reassemble widths (C1..C4).
    head_hidden: width of the last hidden conv (32).
    metric: metric model: sigmoid · max_depth (metres); otherwise ReLU · max_depth (relative).
    max_depth: output scale (transformers' `max_depth`, 1 for relative models).
  """
  backbone: BackboneConfig
  layer_indices: tuple[int, int, int, int]
  features: int
  out_channels: tuple[int, int, int, int]
  head_hidden: int = 32
  metric: bool = False
  max_depth: float = 1.0


class DepthAnythingV2(nn.Module):
  """Depth Anything V2: images [B, H, W, 3] (normalised, H, W multiples of 14) -> depth [B, H, W].

  Attributes:
    config: the architecture.
    precision: matmul precision.
  """
  config: DepthAnythingV2Config
  precision: PrecisionLike = None

  @nn.compact
  def __call__(self, images: Array) -> Array:
    cfg = self.config
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'DepthAnythingV2: images must be [B, H, W, 3], got {images.shape}')
    check_input_size(images.shape[1], images.shape[2], cfg.backbone.patch_size)
    backbone = VisionTransformer(cfg.backbone, self.precision, name='pretrained')
    tokens, grid = encode(backbone, images, cfg.layer_indices)
    head = DPTHead(cfg.features, cfg.out_channels, temporal=False, head_hidden=cfg.head_hidden,
                   sigmoid=cfg.metric, max_depth=cfg.max_depth, precision=self.precision,
                   name='head')
    return head(tokens, grid)[..., 0]


_HF_RENAMES = (
    (r'^head\.projects\.(\d)\.', r'neck.reassemble_stage.layers.\1.projection.'),
    (r'^head\.resize_layers\.(\d)\.', r'neck.reassemble_stage.layers.\1.resize.'),
    (r'^head\.scratch\.output_conv1\.', 'head.conv1.'),
    (r'^head\.scratch\.output_conv2\.0\.', 'head.conv2.'),
    (r'^head\.scratch\.output_conv2\.2\.', 'head.conv3.'),
)


def _hf_head_name(name: str) -> str:
  """Original DPT-head name -> transformers `DepthAnythingForDepthEstimation` name."""
  for pattern, repl in _HF_RENAMES:
    if re.match(pattern, name):
      return re.sub(pattern, repl, name)
  if m := re.match(r'^head\.scratch\.layer(\d)_rn\.(.+)$', name):
    return f'neck.convs.{int(m.group(1)) - 1}.{m.group(2)}'
  m = re.match(r'^head\.scratch\.refinenet(\d)\.(.+)$', name)
  if m is None:
    raise ValueError(f'no transformers name for {name}')
  stage, rest = 4 - int(m.group(1)), m.group(2)
  rest = rest.replace('out_conv.', 'projection.')
  rest = re.sub(r'resConfUnit(\d)\.conv(\d)\.', r'residual_layer\1.convolution\2.', rest)
  return f'neck.fusion_stage.layers.{stage}.{rest}'


def transformers_head_table() -> dict[str, tuple[tuple[str, ...], str]]:
  """{transformers name: (our path in the head tree, kind)} of the DPT neck and head."""
  return {_hf_head_name(n): v for n, v in head_table(temporal=False).items()}


# transformers keeps the first fusion layer's residual unit although it never receives a
# residual (the original's refinenet4.resConfUnit1): ignored.
_UNUSED_HF = re.compile(r'^neck\.fusion_stage\.layers\.0\.residual_layer1\.')


def params_from_transformers_state_dict(sd: Mapping[str, Any], config: DepthAnythingV2Config,
                                        where: str = 'state_dict') -> dict:
  """Our {'pretrained', 'head'} tree from a transformers DepthAnythingForDepthEstimation state
  dict (numpy arrays). Raises CheckpointError listing missing / unexpected / mis-shaped names."""
  backbone = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
  pretrained = vit_params_from_transformers(backbone, config.backbone, where)
  table = transformers_head_table()
  rest = {k: v for k, v in sd.items() if not k.startswith('backbone.') and not _UNUSED_HF.match(k)}
  missing = sorted(set(table) - set(rest))
  unexpected = sorted(set(rest) - set(table))
  if missing or unexpected:
    raise CheckpointError(f'{where}: DPT head names do not fit: missing {missing[:8]}, '
                          f'unexpected {unexpected[:8]}')
  head: dict = {}
  for name, (path, kind) in table.items():
    node = head
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = jnp.asarray(np.ascontiguousarray(_TO_OURS[kind](np.asarray(rest[name],
                                                                                np.float32))))
  shapes = jax.eval_shape(lambda: init_params(config))['head']
  got = jax.tree.map(lambda a: a.shape, head)
  want = jax.tree.map(lambda a: a.shape, shapes)
  if got != want:
    raise CheckpointError(f'{where}: DPT head shapes do not fit the config')
  return {'pretrained': pretrained, 'head': head}


def init_params(config: DepthAnythingV2Config, rng: Array | None = None) -> dict:
  """Randomly initialised parameters."""
  rng = jax.random.PRNGKey(0) if rng is None else rng
  p = config.backbone.patch_size
  return DepthAnythingV2(config).init(rng, jnp.zeros((1, 2 * p, 2 * p, 3), jnp.float32))['params']


def config_from_hf(hf_config: Any,
                   pos_embed_rule: Literal['transformers', 'official'] = 'transformers'
                   ) -> DepthAnythingV2Config:
  """DepthAnythingV2Config of a transformers `DepthAnythingConfig` (DINOv2 backbone)."""
  bc = hf_config.backbone_config
  if getattr(bc, 'model_type', None) != 'dinov2':
    raise ValueError('from_transformers: only DINOv2 backbones, got '
                     f'{getattr(bc, "model_type", None)!r}')
  if tuple(hf_config.reassemble_factors) != (4, 2, 1, 0.5):
    raise ValueError(f'from_transformers: reassemble_factors must be (4, 2, 1, 0.5), got '
                     f'{hf_config.reassemble_factors}')
  if pos_embed_rule not in ('transformers', 'official'):
    raise ValueError(f"pos_embed_rule must be 'transformers' or 'official', got {pos_embed_rule!r}")
  backbone = config_from_transformers(bc, name='depth_anything_v2_backbone')
  backbone = backbone.replace(use_mask_token=True)
  if pos_embed_rule == 'official':
    backbone = backbone.replace(interpolate_offset=0.1, interpolate_antialias=False)
  out_indices = [int(i) for i in bc.out_indices]
  metric = hf_config.depth_estimation_type == 'metric'
  return DepthAnythingV2Config(
      backbone=backbone, layer_indices=tuple(i - 1 for i in out_indices),
      features=int(hf_config.fusion_hidden_size),
      out_channels=tuple(int(c) for c in hf_config.neck_hidden_sizes),
      head_hidden=int(hf_config.head_hidden_size),
      metric=metric, max_depth=float(hf_config.max_depth))


def from_transformers(hf_model: Any,
                      pos_embed_rule: Literal['transformers', 'official'] = 'transformers',
                      precision: PrecisionLike = None) -> tuple[DepthAnythingV2, dict]:
  """(module, params) of a transformers `DepthAnythingForDepthEstimation`.

  Args:
    hf_model: the transformers model (any weights).
    pos_embed_rule: 'transformers' equals the transformers model at every size; 'official' uses
      the original Depth-Anything-V2 code's position-embedding resize (module docstring).
    precision: matmul precision.
  """
  if type(hf_model).__name__ != 'DepthAnythingForDepthEstimation':
    raise ValueError(f'from_transformers: expected DepthAnythingForDepthEstimation, got '
                     f'{type(hf_model).__name__}')
  config = config_from_hf(hf_model.config, pos_embed_rule)
  sd = {k: v.detach().to('cpu').float().numpy() for k, v in hf_model.state_dict().items()}
  params = params_from_transformers_state_dict(sd, config,
                                               where='DepthAnythingForDepthEstimation')
  return DepthAnythingV2(config, precision), params
