"""Backbone configurations: one frozen dataclass for DINO, DINOv2 (± registers) and DINOv3 ViTs.

Presets (DINO S/B-16, DINOv2 S/B/L-14 ± registers, DINOv3 S/B/L-16) come in two flavours that differ
only in how the learned position embedding is resized to other input sizes (and, for DINO v1, in the
LayerNorm eps):

- `source='hub'` (default): the official torch.hub code (`facebookresearch/dino`, `dinov2`,
  `dinov3`), i.e. what 3DPoV uses (paper default `dinov2_vitb14_reg`).
- `source='transformers'`: transformers' `ViTModel` / `Dinov2Model` / `Dinov2WithRegistersModel` /
  `DINOv3ViTModel` with the `facebook/*` configs.

| preset        | offset / antialias (hub) | offset / antialias (transformers) | eps (hub / hf) |
| ------------- | ------------------------ | --------------------------------- | -------------- |
| dino_vit*16   | 0.1 / no                 | 0 / no                            | 1e-6 / 1e-12   |
| dinov2_vit*14 | 0.1 / no                 | 0 / no                            | 1e-6           |
| dinov2_*_reg  | 0 / yes                  | 0 / yes                           | 1e-6           |
| dinov3_vit*16 | RoPE, no pos-embed       | same                              | 1e-5           |
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Family = Literal['dino', 'dinov2', 'dinov3']


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
  """Hyper-parameters of a pre-norm ViT backbone (the block shared by all three families).

  Attributes:
    name: preset name (informative).
    family: 'dino' (v1), 'dinov2' (with or without registers) or 'dinov3'.
    patch_size: p, square patches.
    hidden_size: D.
    num_layers: number of blocks L.
    num_heads: attention heads (head_dim = D / heads).
    mlp_dim: hidden width of the MLP (4·D for all presets).
    num_channels: input channels (3).
    image_size: native (training) resolution in pixels; the learned position embedding has
      (image_size / patch_size)² patch positions.
    num_register_tokens: registers (DINOv2 "reg") / storage tokens (DINOv3), inserted after CLS.
    layer_norm_eps: epsilon of every LayerNorm.
    layerscale: whether blocks carry LayerScale vectors γ₁, γ₂.
    layerscale_init: γ value for freshly initialised parameters.
    query_bias, key_bias, value_bias: biases of the q/k/v projections (DINOv3 has no k bias).
    proj_bias: bias of the attention output projection.
    mlp_bias: biases of the MLP linears.
    mlp_type: 'mlp' (Linear-act-Linear) or 'gated' (DINOv3 SwiGLU variants: down(act(gate)·up)).
    hidden_act: 'gelu' (exact erf form) or 'silu'.
    pos_embed: 'learned' (absolute, interpolated) or 'rope' (DINOv3 2-D RoPE on patch tokens).
    interpolate_offset: > 0 selects torch's scale_factor mode with scale (n + offset) / G (hub); 0
      selects size mode.
    interpolate_antialias: torch's `antialias` flag for the position-embedding resize.
    rope_theta: RoPE base θ (DINOv3: 100).
    rope_shift, rope_jitter, rope_rescale: DINOv3 training-time coordinate augmentation (used only
      when the module is called with `rope_augment=True`).
    use_mask_token: the parameter tree holds a mask token [1, D] (DINOv2/v3 checkpoints carry one).
  """
  name: str
  family: Family
  patch_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  num_channels: int = 3
  image_size: int = 224
  num_register_tokens: int = 0
  layer_norm_eps: float = 1e-6
  layerscale: bool = False
  layerscale_init: float = 1.0
  query_bias: bool = True
  key_bias: bool = True
  value_bias: bool = True
  proj_bias: bool = True
  mlp_bias: bool = True
  mlp_type: Literal['mlp', 'gated'] = 'mlp'
  hidden_act: Literal['gelu', 'silu'] = 'gelu'
  pos_embed: Literal['learned', 'rope'] = 'learned'
  interpolate_offset: float = 0.0
  interpolate_antialias: bool = False
  rope_theta: float = 100.0
  rope_shift: float | None = None
  rope_jitter: float | None = None
  rope_rescale: float | None = None
  use_mask_token: bool = False

  def __post_init__(self):
    if self.family not in ('dino', 'dinov2', 'dinov3'):
      raise ValueError(f'BackboneConfig.family must be dino, dinov2 or dinov3, got {self.family!r}')
    if self.hidden_size % self.num_heads:
      raise ValueError(f'BackboneConfig {self.name}: hidden_size {self.hidden_size} is not '
                       f'divisible by num_heads {self.num_heads}')
    if self.pos_embed == 'rope' and self.head_dim % 4:
      raise ValueError(f'BackboneConfig {self.name}: RoPE needs head_dim divisible by 4, got '
                       f'{self.head_dim}')
    if self.pos_embed not in ('learned', 'rope'):
      raise ValueError(f'BackboneConfig.pos_embed must be learned or rope, got {self.pos_embed!r}')
    if self.mlp_type not in ('mlp', 'gated'):
      raise ValueError(f'BackboneConfig.mlp_type must be mlp or gated, got {self.mlp_type!r}')
    if self.hidden_act not in ('gelu', 'silu'):
      raise ValueError(f'BackboneConfig.hidden_act must be gelu or silu, got {self.hidden_act!r}')

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def num_prefix_tokens(self) -> int:
    """CLS + registers: the tokens in front of the patch tokens."""
    return 1 + self.num_register_tokens

  @property
  def pos_embed_grid(self) -> int:
    """G: side of the learned position-embedding grid (14 for DINO at 224, 37 for DINOv2 at 518)."""
    return self.image_size // self.patch_size

  def grid_size(self, height: int, width: int) -> tuple[int, int]:
    """(h, w) patch grid of a height × width image (remainders are cropped, like the Conv)."""
    return height // self.patch_size, width // self.patch_size

  def replace(self, **changes) -> 'BackboneConfig':
    return dataclasses.replace(self, **changes)


def _dino(name: str, d: int, heads: int) -> BackboneConfig:
  return BackboneConfig(name=name, family='dino', patch_size=16, hidden_size=d, num_layers=12,
                        num_heads=heads, mlp_dim=4 * d, image_size=224, layer_norm_eps=1e-6,
                        interpolate_offset=0.1)


def _dinov2(name: str, d: int, heads: int, layers: int, registers: int) -> BackboneConfig:
  return BackboneConfig(
      name=name, family='dinov2', patch_size=14, hidden_size=d, num_layers=layers, num_heads=heads,
      mlp_dim=4 * d, image_size=518, num_register_tokens=registers, layer_norm_eps=1e-6,
      layerscale=True, use_mask_token=True,
      # Hub: the register models resize with size + antialias, the others with the 0.1 offset.
      interpolate_offset=0.0 if registers else 0.1, interpolate_antialias=bool(registers))


def _dinov3(name: str, d: int, heads: int, layers: int) -> BackboneConfig:
  return BackboneConfig(
      name=name, family='dinov3', patch_size=16, hidden_size=d, num_layers=layers, num_heads=heads,
      mlp_dim=4 * d, image_size=224, num_register_tokens=4, layer_norm_eps=1e-5, layerscale=True,
      key_bias=False, pos_embed='rope', rope_theta=100.0, rope_rescale=2.0, use_mask_token=True)


PRESETS: dict[str, BackboneConfig] = {
    'dino_vits16': _dino('dino_vits16', 384, 6),
    'dino_vitb16': _dino('dino_vitb16', 768, 12),
    'dinov2_vits14': _dinov2('dinov2_vits14', 384, 6, 12, 0),
    'dinov2_vitb14': _dinov2('dinov2_vitb14', 768, 12, 12, 0),
    'dinov2_vitl14': _dinov2('dinov2_vitl14', 1024, 16, 24, 0),
    'dinov2_vits14_reg': _dinov2('dinov2_vits14_reg', 384, 6, 12, 4),
    'dinov2_vitb14_reg': _dinov2('dinov2_vitb14_reg', 768, 12, 12, 4),
    'dinov2_vitl14_reg': _dinov2('dinov2_vitl14_reg', 1024, 16, 24, 4),
    'dinov3_vits16': _dinov3('dinov3_vits16', 384, 6, 12),
    'dinov3_vitb16': _dinov3('dinov3_vitb16', 768, 12, 12),
    'dinov3_vitl16': _dinov3('dinov3_vitl16', 1024, 16, 24),
    # Tiny configs for tests and CPU training; 'smoke' is shaped like dinov2_vitb14_reg (registers,
    # LayerScale, antialiased pos-embed resize) with a 4×4 position grid (56 px native).
    'smoke': BackboneConfig(
        name='smoke', family='dinov2', patch_size=14, hidden_size=32, num_layers=2, num_heads=2,
        mlp_dim=128, image_size=56, num_register_tokens=4, layer_norm_eps=1e-6, layerscale=True,
        use_mask_token=True, interpolate_antialias=True),
    # 'tiny': the same shape at width 64 with 4 blocks, the 3DPoV smoke backbone (big enough to
    # learn useful features from a few minutes of CPU pre-training, dpov_jax/pretrain.py).
    'tiny': BackboneConfig(
        name='tiny', family='dinov2', patch_size=14, hidden_size=64, num_layers=4, num_heads=4,
        mlp_dim=256, image_size=56, num_register_tokens=4, layer_norm_eps=1e-6, layerscale=True,
        use_mask_token=True, interpolate_antialias=True),
    'smoke_dino': BackboneConfig(
        name='smoke_dino', family='dino', patch_size=16, hidden_size=32, num_layers=2, num_heads=2,
        mlp_dim=128, image_size=64, layer_norm_eps=1e-6, interpolate_offset=0.1),
    'smoke_dinov3': BackboneConfig(
        name='smoke_dinov3', family='dinov3', patch_size=16, hidden_size=32, num_layers=2,
        num_heads=2, mlp_dim=128, image_size=64, num_register_tokens=4, layer_norm_eps=1e-5,
        layerscale=True, key_bias=False, pos_embed='rope', rope_rescale=2.0, use_mask_token=True),
}

# What transformers' classes do differently from the hub code (see the module docstring).
_TRANSFORMERS_CHANGES = {
    'dino': dict(interpolate_offset=0.0, interpolate_antialias=False, layer_norm_eps=1e-12),
    'dinov2': dict(interpolate_offset=0.0, interpolate_antialias=False),
    'dinov2_reg': dict(interpolate_offset=0.0, interpolate_antialias=True),
    'dinov3': {},
}


def get_config(name: str | BackboneConfig,
               source: Literal['hub', 'transformers'] = 'hub',
               **overrides) -> BackboneConfig:
  """A preset by name (`dino_vits16`, `dinov2_vitb14_reg`, `dinov3_vitb16`, `smoke`, ...).

  Args:
    name: preset name or an existing config (returned with `overrides` applied).
    source: 'hub' for the official torch.hub semantics, 'transformers' for transformers' (only the
      position-embedding resize and the DINO v1 LayerNorm eps differ).
    **overrides: fields to replace, e.g. `num_layers=4`.
  """
  if isinstance(name, BackboneConfig):
    return dataclasses.replace(name, **overrides) if overrides else name
  if name not in PRESETS:
    raise KeyError(f'unknown backbone preset {name!r}; known: {sorted(PRESETS)}')
  config = PRESETS[name]
  if source == 'transformers':
    registers = config.family == 'dinov2' and config.num_register_tokens
    key = 'dinov2_reg' if registers else config.family
    changes = dict(_TRANSFORMERS_CHANGES[key])
    if name.startswith('smoke') or name == 'tiny':
      changes.pop('layer_norm_eps', None)
    config = dataclasses.replace(config, **changes)
  elif source != 'hub':
    raise ValueError(f"get_config: source must be 'hub' or 'transformers', got {source!r}")
  return dataclasses.replace(config, **overrides) if overrides else config
