"""DINO / DINOv2 (± registers) / DINOv3 ViT backbones in Flax, with exact weight converters.

Typical use:

  module, params = load_checkpoint('dinov2_vitb14_reg4_pretrain.pth', arch='dinov2_vitb14_reg')
  tokens = module.apply({'params': params}, images)          # [B, 1 + 4 + h·w, D], final LayerNorm
  out = module.apply({'params': params}, images, return_layers=(2, 5, 8, 11))
  fmap = out.feature_map()                                    # [B, h, w, D] final-norm patch tokens
  raw = out.feature_map(11)                                   # block 11 output, no final norm
  fmap = extract_feature_map(module, params, images)          # the same in one call

  module, params = from_transformers(hf_model)               # transformers model -> Flax
  sd = export_transformers_state_dict(params, module.config) # Flax -> transformers names
"""

from tapkit.models.vit.config import PRESETS, BackboneConfig, get_config
from tapkit.models.vit.checkpoint_files import detect_layout, load_checkpoint, save_checkpoint
from tapkit.models.vit.convert import (CheckpointError, config_from_transformers,
                                        export_hub_state_dict, export_transformers_state_dict,
                                        from_transformers, hub_to_transformers,
                                        params_from_hub_state_dict,
                                        params_from_transformers_state_dict, transformers_table,
                                        transformers_to_hub)
from tapkit.models.vit.interpolate import bicubic_weights, resize_bicubic_hwc
from tapkit.models.vit.vit import (BackboneOutput, VisionTransformer, build,
                                    extract_feature_map, init_params, pad_to_patch_multiple,
                                    param_shapes, rope_tables, tokens_to_feature_map)

__all__ = [
    'PRESETS', 'BackboneConfig', 'get_config', 'CheckpointError', 'config_from_transformers',
    'detect_layout', 'export_hub_state_dict', 'export_transformers_state_dict', 'from_transformers',
    'hub_to_transformers', 'load_checkpoint', 'params_from_hub_state_dict',
    'params_from_transformers_state_dict', 'save_checkpoint', 'transformers_table',
    'transformers_to_hub', 'bicubic_weights', 'resize_bicubic_hwc', 'BackboneOutput',
    'VisionTransformer', 'build', 'extract_feature_map', 'init_params', 'pad_to_patch_multiple',
    'param_shapes', 'rope_tables', 'tokens_to_feature_map',
]
