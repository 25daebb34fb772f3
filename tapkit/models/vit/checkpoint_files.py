"""Backbone checkpoint files: reading `.pth` / `.safetensors` / `.npz` state dicts into our
parameter tree (names converted by `convert`), and writing them.

Only weights are read, through the validating readers of `tapkit.io`: `.safetensors` with its
header checked before any tensor is allocated, `.npz` without pickle, `.pth` with
`torch.load(weights_only=True)` when torch is installed and with the restricted pure-Python
reader otherwise. Every tensor must be a float array (integer, boolean, string and object
arrays are refused) and finite (NaN / Inf refused unless `allow_nonfinite=True`); it becomes
float32 here (float16 / bfloat16 widen exactly).
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np

from tapkit.io import BadFileError, read_npz, read_safetensors, read_torch_state
from tapkit.io.checks import check_float_tensors
from tapkit.models.vit.config import PRESETS, BackboneConfig, get_config
from tapkit.models.vit.convert import (CheckpointError, StateDict, _clean_hub, _fmt,
                                        _MODEL_PREFIXES, _strip_common_prefix,
                                        export_hub_state_dict, export_transformers_state_dict,
                                        params_from_hub_state_dict,
                                        params_from_transformers_state_dict)
from tapkit.models.vit.vit import VisionTransformer

TORCH_EXTENSIONS = ('.pth', '.pt', '.bin', '.ckpt')


def _read_torch_state_dict(path: str) -> StateDict:
  obj = read_torch_state(path, widen_bfloat16=True)
  for key in ('teacher', 'model', 'state_dict'):  # training checkpoints wrap the state dict
    if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
      obj = obj[key]
      break
  if not isinstance(obj, Mapping):
    raise CheckpointError(f'{path}: expected a state dict, got {type(obj).__name__}')
  for k, v in obj.items():
    if not isinstance(k, str):
      raise CheckpointError(f'{path}: state dict key {k!r} is not a string')
    if not isinstance(v, np.ndarray):
      raise CheckpointError(f'{path}: entry {k!r} is a {type(v).__name__}, not a tensor')
  return dict(obj)


def _read_state_dict(path: str, allow_nonfinite: bool = False) -> StateDict:
  """name -> float32 array of a checkpoint file, dtypes and values checked."""
  ext = os.path.splitext(path)[1].lower()
  if not os.path.isfile(path):
    raise FileNotFoundError(f'load_checkpoint: no file {path}')
  try:
    if ext == '.safetensors':
      sd = read_safetensors(path)
    elif ext == '.npz':
      sd = read_npz(path)
    elif ext in TORCH_EXTENSIONS:
      sd = _read_torch_state_dict(path)
    else:
      raise CheckpointError(f'{path}: unknown checkpoint format {ext!r} (use .safetensors, '
                            '.npz or .pth)')
    if not sd:
      raise CheckpointError(f'{path}: the checkpoint holds no tensors')
    check_float_tensors(path, sd, allow_nonfinite=allow_nonfinite)
  except BadFileError as e:
    raise CheckpointError(str(e)) from e
  return {k: np.asarray(v, np.float32) for k, v in sd.items()}


def detect_layout(sd: Mapping[str, Any]) -> str:
  """'hub' (official names) or 'transformers'."""
  keys = list(sd)
  if any(k.endswith('embeddings.cls_token') for k in keys):
    return 'transformers'
  if any(k.split('.')[-1] == 'cls_token' or re.search(r'(^|\.)blocks\.\d', k) for k in keys):
    return 'hub'
  raise CheckpointError(f'unrecognised checkpoint names (first: {_fmt(keys[:5])}): neither '
                        'torch.hub (cls_token, blocks.N) nor transformers names')


def _cls_width(sd: Mapping[str, Any]) -> int:
  """Width of the model from its cls_token [1, 1, D] (the architecture's fingerprint)."""
  names = [k for k in sd if k.endswith('cls_token')]
  if not names:
    raise CheckpointError('cannot infer the architecture: no cls_token in the checkpoint; '
                          'pass arch=<preset or BackboneConfig>')
  shape = np.shape(sd[names[0]])
  if not shape:
    raise CheckpointError(f'{names[0]} is a scalar, expected shape [1, 1, D]')
  return shape[-1]


def _num_tokens(name: str, value: Any) -> int:
  """Number of register tokens of a [1, R, D] entry."""
  shape = np.shape(value)
  if len(shape) != 3:
    raise CheckpointError(f'{name} has shape {shape}, expected [1, R, D]')
  return shape[1]


def infer_arch(sd: Mapping[str, Any], layout: str) -> str:
  """The preset whose family, width, depth and registers match a state dict."""
  if layout == 'hub':
    sd = _clean_hub(sd)
    names = set(sd)
    fam = ('dinov3' if ('storage_tokens' in names or 'pos_embed' not in names)
           else 'dinov2' if any(n.endswith('ls1.gamma') for n in names) else 'dino')
    d = _cls_width(sd)
    depth = len({int(m.group(1)) for n in names
                 if (m := re.match(r'^blocks\.(?:\d+\.)?(\d+)\.', n))})
    regs = [_num_tokens(k, v) for k, v in sd.items()
            if k.endswith(('register_tokens', 'storage_tokens'))]
  else:
    sd = _strip_common_prefix(sd, _MODEL_PREFIXES)
    names = set(sd)
    fam = ('dinov3' if any(n.startswith(('model.layer.', 'layer.')) for n in names)
           else 'dinov2' if any('layer_scale1' in n for n in names) else 'dino')
    d = _cls_width(sd)
    depth = len({int(m.group(1)) for n in names
                 if (m := re.match(r'^(?:model\.layer|encoder\.layer|layers|layer)\.(\d+)\.', n))})
    regs = [_num_tokens(k, v) for k, v in sd.items() if k.endswith('register_tokens')]
  r = regs[0] if regs else 0
  for name, cfg in PRESETS.items():
    if (cfg.family, cfg.hidden_size, cfg.num_layers, cfg.num_register_tokens) == (fam, d, depth, r):
      return name
  raise CheckpointError(f'no preset matches a {fam} checkpoint with width {d}, {depth} blocks and '
                        f'{r} registers: pass arch=BackboneConfig(...)')


def load_checkpoint(path: str, arch: str | BackboneConfig | None = None, *,
                    source: str | None = None, strict: bool = True,
                    allow_nonfinite: bool = False, **module_kwargs) -> tuple[VisionTransformer, dict]:
  """(module, params) from an official `.pth` (torch.hub names) or a `.safetensors` / `.npz` file
  (transformers names, current or legacy, or hub names).

  Args:
    path: the file. `.pth` needs torch and is read with `weights_only=True`.
    arch: preset name or config; None infers the preset from the names and shapes.
    source: 'hub' / 'transformers' semantics of the preset (position-embedding resize, DINO eps);
      default: the layout of the file's names. Ignored when arch is a BackboneConfig.
    strict: raise on unexpected names (missing / mis-shaped names always raise).
    allow_nonfinite: accept NaN / Inf weights (for forensic use); by default they raise,
      naming every offending tensor and its count of bad values.
    **module_kwargs: for `VisionTransformer` (precision, remat).
  """
  path = os.fspath(path)
  sd = _read_state_dict(path, allow_nonfinite)
  try:
    layout = detect_layout(sd)
    if arch is None:
      arch = infer_arch(sd, layout)
  except CheckpointError as e:
    raise CheckpointError(f'{path}: {e}') from None
  cfg = arch if isinstance(arch, BackboneConfig) else get_config(arch, source=source or layout)
  try:
    if layout == 'hub':
      params = params_from_hub_state_dict(sd, cfg, where=path, strict=strict)
    else:
      params = params_from_transformers_state_dict(sd, cfg, where=path, strict=strict)
  except (KeyError, IndexError, TypeError) as e:  # A name the conversion needs is malformed.
    raise CheckpointError(f'{path}: does not fit {cfg.name}: {type(e).__name__}: {e}') from None
  return VisionTransformer(cfg, **module_kwargs), params


def save_checkpoint(path: str, params: Mapping[str, Any], config: BackboneConfig,
                    layout: str = 'transformers') -> None:
  """Write params as `.safetensors` (numpy) or `.pth` (torch) with transformers or hub names."""
  path = os.fspath(path)
  if layout == 'transformers':
    sd = export_transformers_state_dict(params, config)
  elif layout == 'hub':
    sd = export_hub_state_dict(params, config)
  else:
    raise ValueError(f"save_checkpoint: layout must be 'transformers' or 'hub', got {layout!r}")
  ext = os.path.splitext(path)[1].lower()
  if ext == '.safetensors':
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    save_file(sd, path)
  elif ext in ('.pth', '.pt'):
    import torch  # pylint: disable=g-import-not-at-top
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
  else:
    raise ValueError(f'save_checkpoint: {path}: use .safetensors or .pth')
