"""Exact weight converters between our Flax parameter tree and transformers / torch.hub checkpoints.

Three name spaces:

- ours: the Flax tree documented in `vit.py` (`block_{i}/attn/q_proj/kernel` ...);
- transformers: the in-memory `state_dict()` names of transformers 5.x `ViTModel` (DINO v1),
  `Dinov2Model`, `Dinov2WithRegistersModel`, `DINOv3ViTModel`; older Hub safetensors names
  (`encoder.layer.N.attention.attention.query`, DINOv3 `layer.N.`) are renamed on load;
- hub: the official `.pth` state dicts (`blocks.N.attn.qkv`, `ls1.gamma`, `storage_tokens`, ...).

Layout changes: Linear weight [out, in] <-> Dense kernel [in, out]; Conv [D, C, p, p] <->
[p, p, C, D]; LayerNorm weight <-> scale; hub qkv [3D, D] <-> q, k, v; DINOv3 k bias masked out
by `bias_mask`.
Checkpoint files (reading, writing, preset inference) are in `checkpoint_files`.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import jax.numpy as jnp
import numpy as np

from tapkit.models.vit.config import BackboneConfig
from tapkit.models.vit.vit import VisionTransformer, param_shapes

StateDict = dict[str, np.ndarray]
Path = tuple[str, ...]


class CheckpointError(ValueError):
  """A checkpoint that does not fit the architecture: names the source and the parameters."""


# --------------------------------------------------------------------------------------------------
# Name tables: transformers name -> (our path, kind)
# --------------------------------------------------------------------------------------------------

def _mask_kind(cfg: BackboneConfig) -> str:
  # Dinov2 / Dinov2WithRegisters store the mask token as [1, D]; ViT and DINOv3 as [1, 1, D].
  return 'same' if cfg.family == 'dinov2' else 'unsqueeze'


def _patch_prefix(family: str) -> str:
  return ('embeddings.patch_embeddings.' if family == 'dinov3'
          else 'embeddings.patch_embeddings.projection.')


def transformers_table(cfg: BackboneConfig) -> dict[str, tuple[Path, str]]:
  """{transformers name: (our parameter path, kind)}, kind in same/linear/conv/unsqueeze."""
  fam = cfg.family
  table: dict[str, tuple[Path, str]] = {}
  table['embeddings.cls_token'] = (('cls_token',), 'same')
  if cfg.num_register_tokens:
    table['embeddings.register_tokens'] = (('register_tokens',), 'same')
  if cfg.use_mask_token:
    table['embeddings.mask_token'] = (('mask_token',), _mask_kind(cfg))
  if cfg.pos_embed == 'learned':
    table['embeddings.position_embeddings'] = (('pos_embed',), 'same')
  patch = _patch_prefix(fam)
  table[patch + 'weight'] = (('patch_embed', 'kernel'), 'conv')
  table[patch + 'bias'] = (('patch_embed', 'bias'), 'same')
  layer = {'dino': 'layers.{}.', 'dinov2': 'encoder.layer.{}.', 'dinov3': 'model.layer.{}.'}[fam]
  norms = ('layernorm_before', 'layernorm_after') if fam == 'dino' else ('norm1', 'norm2')
  if cfg.mlp_type == 'gated':
    mlp = {'gate_proj': 'gate_proj', 'up_proj': 'up_proj', 'down_proj': 'down_proj'}
  elif fam == 'dinov3':
    mlp = {'up_proj': 'fc1', 'down_proj': 'fc2'}
  else:
    mlp = {'fc1': 'fc1', 'fc2': 'fc2'}
  for i in range(cfg.num_layers):
    pre, blk = layer.format(i), f'block_{i}'
    for theirs, ours in zip(norms, ('norm1', 'norm2')):
      table[f'{pre}{theirs}.weight'] = ((blk, ours, 'scale'), 'same')
      table[f'{pre}{theirs}.bias'] = ((blk, ours, 'bias'), 'same')
    for proj, bias in (('q_proj', cfg.query_bias), ('k_proj', cfg.key_bias),
                       ('v_proj', cfg.value_bias), ('o_proj', cfg.proj_bias)):
      table[f'{pre}attention.{proj}.weight'] = ((blk, 'attn', proj, 'kernel'), 'linear')
      if bias:
        table[f'{pre}attention.{proj}.bias'] = ((blk, 'attn', proj, 'bias'), 'same')
    if cfg.layerscale:
      table[f'{pre}layer_scale1.lambda1'] = ((blk, 'ls1', 'gamma'), 'same')
      table[f'{pre}layer_scale2.lambda1'] = ((blk, 'ls2', 'gamma'), 'same')
    for theirs, ours in mlp.items():
      table[f'{pre}mlp.{theirs}.weight'] = ((blk, 'mlp', ours, 'kernel'), 'linear')
      if cfg.mlp_bias:
        table[f'{pre}mlp.{theirs}.bias'] = ((blk, 'mlp', ours, 'bias'), 'same')
  final = 'norm' if fam == 'dinov3' else 'layernorm'
  table[f'{final}.weight'] = (('norm', 'scale'), 'same')
  table[f'{final}.bias'] = (('norm', 'bias'), 'same')
  return table


def _to_ours(value: np.ndarray, kind: str) -> np.ndarray:
  if kind == 'linear':
    return value.T
  if kind == 'conv':
    return value.transpose(2, 3, 1, 0)
  if kind == 'unsqueeze':
    return value.reshape(value.shape[0], -1)
  return value


def _to_theirs(value: np.ndarray, kind: str) -> np.ndarray:
  if kind == 'linear':
    return value.T
  if kind == 'conv':
    return value.transpose(3, 2, 0, 1)
  if kind == 'unsqueeze':
    return value.reshape(value.shape[0], 1, -1)
  return value


def _shape_to_theirs(shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
  return tuple(_to_theirs(np.empty(shape, np.int8), kind).shape)


def _flatten(tree: Mapping[str, Any], prefix: Path = ()) -> dict[Path, Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _unflatten(flat: Mapping[Path, Any]) -> dict:
  tree: dict = {}
  for path, v in flat.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return tree


def _fmt(names: Iterable[str], limit: int = 12) -> str:
  names = sorted(names)
  more = f' ... (+{len(names) - limit} more)' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


# --------------------------------------------------------------------------------------------------
# transformers name space
# --------------------------------------------------------------------------------------------------

# Older Hub names -> transformers 5 in-memory names (our anchored version of the renames the
# transformers loader applies; `legacy_checkpoint_renames` in shared/data/param_trees/hf_*.json).
_LEGACY_RENAMES = {
    'dino': [(r'^encoder\.layer\.(\d+)\.', r'layers.\1.'),
             (r'^(layers\.\d+)\.attention\.attention\.query\.', r'\1.attention.q_proj.'),
             (r'^(layers\.\d+)\.attention\.attention\.key\.', r'\1.attention.k_proj.'),
             (r'^(layers\.\d+)\.attention\.attention\.value\.', r'\1.attention.v_proj.'),
             (r'^(layers\.\d+)\.attention\.output\.dense\.', r'\1.attention.o_proj.'),
             (r'^(layers\.\d+)\.intermediate\.dense\.', r'\1.mlp.fc1.'),
             (r'^(layers\.\d+)\.output\.dense\.', r'\1.mlp.fc2.')],
    'dinov2': [(r'^(encoder\.layer\.\d+)\.attention\.attention\.query\.', r'\1.attention.q_proj.'),
               (r'^(encoder\.layer\.\d+)\.attention\.attention\.key\.', r'\1.attention.k_proj.'),
               (r'^(encoder\.layer\.\d+)\.attention\.attention\.value\.', r'\1.attention.v_proj.'),
               (r'^(encoder\.layer\.\d+)\.attention\.output\.dense\.', r'\1.attention.o_proj.')],
    'dinov3': [(r'^layer\.(\d+)\.', r'model.layer.\1.')],
}
# Parts of transformers models that are not the backbone: ignored on load.
_IGNORED_TRANSFORMERS = (r'^pooler\.', r'^rope_embeddings\.inv_freq$')
_MODEL_PREFIXES = ('vit.', 'dinov2.', 'dinov2_with_registers.', 'dinov3_vit.', 'backbone.')


def _strip_common_prefix(sd: Mapping[str, Any], prefixes: Iterable[str]) -> dict[str, Any]:
  """Drop a wrapper prefix ('module.', 'vit.', ...) that every key shares."""
  sd = dict(sd)
  changed = True
  while changed and sd:
    changed = False
    for p in prefixes:
      if all(k.startswith(p) for k in sd):
        sd = {k[len(p):]: v for k, v in sd.items()}
        changed = True
  return sd


def normalize_transformers_names(sd: Mapping[str, np.ndarray], family: str) -> StateDict:
  """Rename older Hub safetensors names to the transformers 5 in-memory names (idempotent)."""
  out = {}
  for name, value in _strip_common_prefix(sd, _MODEL_PREFIXES).items():
    for pattern, repl in _LEGACY_RENAMES[family]:
      name = re.sub(pattern, repl, name)
    out[name] = value
  return out


def params_from_transformers_state_dict(sd: Mapping[str, np.ndarray], cfg: BackboneConfig,
                                        where: str = 'state_dict', strict: bool = True) -> dict:
  """Our parameter tree from a transformers state dict (current or legacy names).

  Args:
    sd: {name: array-like} (numpy or anything `np.asarray` takes).
    cfg: the architecture.
    where: the source (file name) for error messages.
    strict: raise on unexpected names (missing or mis-shaped ones always raise).

  Raises:
    CheckpointError naming `where` and every missing, unexpected and mis-shaped parameter.
  """
  sd = normalize_transformers_names(sd, cfg.family)
  if not cfg.num_register_tokens and np.size(sd.get('embeddings.register_tokens', 1)) == 0:
    sd.pop('embeddings.register_tokens')  # DINOv3ViTModel keeps a [1, 0, D] parameter
  table = transformers_table(cfg)
  shapes = {p: tuple(s.shape) for p, s in _flatten(param_shapes(cfg)).items()}
  ours_in_table = {path for path, _ in table.values()}
  if ours_in_table != set(shapes):  # Guards the table against the module (a programming error).
    raise AssertionError(f'name table and module disagree: {sorted(ours_in_table ^ set(shapes))}')
  missing = [n for n in table if n not in sd]
  ignored = [n for n in sd if any(re.search(p, n) for p in _IGNORED_TRANSFORMERS)]
  unexpected = [n for n in sd if n not in table and n not in ignored]
  flat, mis = {}, []
  for name, (path, kind) in table.items():
    if name not in sd:
      continue
    value = np.asarray(sd[name])
    want = _shape_to_theirs(shapes[path], kind)
    if tuple(value.shape) != want:
      mis.append(f'{name}: {tuple(value.shape)} (expected {want})')
      continue
    flat[path] = jnp.asarray(_to_ours(value, kind).astype(np.float32))
  problems = []
  if missing:
    problems.append(f'missing {len(missing)}: {_fmt(missing)}')
  if mis:
    problems.append(f'wrong shape {len(mis)}: {_fmt(mis)}')
  if unexpected and strict:
    problems.append(f'unexpected {len(unexpected)}: {_fmt(unexpected)}')
  if problems:
    raise CheckpointError(f'{where} does not fit {cfg.name} ({cfg.family}, transformers names): '
                          + '; '.join(problems))
  return _unflatten(flat)


def export_transformers_state_dict(params: Mapping[str, Any], config: BackboneConfig) -> StateDict:
  """{transformers 5 state_dict name: float32 numpy array}, loadable with
  `model.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` (ViTModel without pooler)."""
  flat = _flatten(params)
  table = transformers_table(config)
  missing = [('/'.join(p)) for p, _ in table.values() if p not in flat]
  if missing:
    raise CheckpointError(f'export: params lack {_fmt(missing)} for {config.name}')
  extra = set(flat) - {p for p, _ in table.values()}
  if extra:
    raise CheckpointError(f'export: params have unknown entries {_fmt("/".join(p) for p in extra)}')
  # Fresh, writable, C-contiguous copies (torch.from_numpy warns on read-only views of jax arrays).
  out = {name: np.array(_to_theirs(np.asarray(flat[path], np.float32), kind), np.float32, order='C')
         for name, (path, kind) in table.items()}
  if config.family == 'dinov3' and not config.num_register_tokens:
    out['embeddings.register_tokens'] = np.zeros((1, 0, config.hidden_size), np.float32)
  return out


# --------------------------------------------------------------------------------------------------
# torch.hub (official) name space <-> transformers names
# --------------------------------------------------------------------------------------------------

_HUB_PREFIXES = ('module.', 'backbone.', 'teacher.', 'model.')
# Projection / classification heads of training checkpoints: not part of the backbone.
_HUB_HEADS = ('head.', 'dino_head.', 'ibot_head.')


def _clean_hub(sd: Mapping[str, Any]) -> dict[str, Any]:
  """Strip wrapper prefixes and drop training heads ('module.backbone.blocks.0.x' -> 'blocks.0.x')."""
  sd = _strip_common_prefix(sd, _HUB_PREFIXES)
  sd = {k: v for k, v in sd.items() if not k.startswith(_HUB_HEADS)}
  return _strip_common_prefix(sd, _HUB_PREFIXES)


def _rope_periods(cfg: BackboneConfig) -> np.ndarray:
  """Official DINOv3 `rope_embed.periods` buffer: θ^(2k / (d/2)), k < d/4 (float32)."""
  d = cfg.head_dim
  k = np.arange(d // 4, dtype=np.float32)
  exponents = np.float32(2) * k / np.float32(d // 2)
  return np.power(np.float32(cfg.rope_theta), exponents).astype(np.float32)


def hub_to_transformers(sd: Mapping[str, np.ndarray], cfg: BackboneConfig,
                        where: str = 'state_dict') -> StateDict:
  """Official hub names -> transformers names (qkv split, k-bias mask applied, LayerScale renamed).

  Unknown names are kept unchanged so that the loader reports them as unexpected.
  """
  fam = cfg.family
  sd = _clean_hub(sd)
  # Chunked training checkpoints: blocks.<chunk>.<index>. -> blocks.<index>.
  sd = {re.sub(r'^blocks\.\d+\.(\d+)\.', r'blocks.\1.', k): np.asarray(v) for k, v in sd.items()}
  layer = {'dino': 'layers.{}.', 'dinov2': 'encoder.layer.{}.', 'dinov3': 'model.layer.{}.'}[fam]
  norms = {'norm1': 'layernorm_before', 'norm2': 'layernorm_after'} if fam == 'dino' else {
      'norm1': 'norm1', 'norm2': 'norm2'}
  mlp = {'fc1': 'up_proj', 'fc2': 'down_proj'} if fam == 'dinov3' else {'fc1': 'fc1', 'fc2': 'fc2'}
  final = 'norm.' if fam == 'dinov3' else 'layernorm.'
  patch = _patch_prefix(fam)
  d = cfg.hidden_size
  out: StateDict = {}
  for name, value in sd.items():
    if name == 'cls_token':
      out['embeddings.cls_token'] = value
    elif name == 'pos_embed':
      out['embeddings.position_embeddings'] = value
    elif name == 'mask_token':
      out['embeddings.mask_token'] = value.reshape((1, -1) if fam == 'dinov2' else (1, 1, -1))
    elif name in ('register_tokens', 'storage_tokens'):
      out['embeddings.register_tokens'] = value
    elif name.startswith('patch_embed.proj.'):
      out[patch + name[len('patch_embed.proj.'):]] = value
    elif name.startswith('norm.'):
      out[final + name[len('norm.'):]] = value
    elif name == 'rope_embed.periods':
      expected = _rope_periods(cfg)
      if value.shape != expected.shape or not np.allclose(value, expected, rtol=1e-5, atol=0):
        raise CheckpointError(f'{where}: rope_embed.periods {value.tolist()} do not match base '
                              f'θ = {cfg.rope_theta} and head_dim {cfg.head_dim} of {cfg.name}')
    elif (m := re.match(r'^blocks\.(\d+)\.(.+)$', name)):
      i, rest = int(m.group(1)), m.group(2)
      pre = layer.format(i)
      if rest.startswith(('norm1.', 'norm2.')):
        out[pre + norms[rest[:5]] + rest[5:]] = value
      elif rest == 'attn.qkv.weight':
        if value.shape[0] != 3 * d:
          raise CheckpointError(f'{where}: {name} has shape {value.shape}, expected ({3 * d}, {d})')
        for j, proj in enumerate(('q_proj', 'k_proj', 'v_proj')):
          out[f'{pre}attention.{proj}.weight'] = value[j * d:(j + 1) * d]
      elif rest == 'attn.qkv.bias':
        bias = value
        mask = sd.get(f'blocks.{i}.attn.qkv.bias_mask')
        if mask is not None:
          bias = bias * np.asarray(mask, bias.dtype)  # the official forward multiplies them
        for j, (proj, keep) in enumerate((('q_proj', cfg.query_bias), ('k_proj', cfg.key_bias),
                                          ('v_proj', cfg.value_bias))):
          part = bias[j * d:(j + 1) * d]
          if keep:
            out[f'{pre}attention.{proj}.bias'] = part
          elif np.any(part != 0):
            raise CheckpointError(f'{where}: {name} has a non-zero {proj[0]} bias but {cfg.name} '
                                  f'has none ({proj[0]}_bias=False)')
      elif rest == 'attn.qkv.bias_mask':
        continue
      elif rest.startswith('attn.proj.'):
        out[f'{pre}attention.o_proj.{rest[len("attn.proj."):]}'] = value
      elif rest in ('ls1.gamma', 'ls2.gamma'):
        out[f'{pre}layer_scale{rest[2]}.lambda1'] = value
      elif rest.split('.')[0] == 'mlp' and rest.split('.')[1] in mlp:
        _, fc, leaf = rest.split('.')
        out[f'{pre}mlp.{mlp[fc]}.{leaf}'] = value
      else:
        out[name] = value
    else:
      out[name] = value
  return out


def transformers_to_hub(sd: Mapping[str, np.ndarray], cfg: BackboneConfig) -> StateDict:
  """transformers names -> official hub names (inverse of `hub_to_transformers`; DINOv3 gets a zero
  k bias, its `bias_mask` and the `rope_embed.periods` buffer)."""
  fam = cfg.family
  layer = {'dino': 'layers.{}.', 'dinov2': 'encoder.layer.{}.', 'dinov3': 'model.layer.{}.'}[fam]
  norms = ('layernorm_before', 'layernorm_after') if fam == 'dino' else ('norm1', 'norm2')
  mlp = ('up_proj', 'down_proj') if fam == 'dinov3' else ('fc1', 'fc2')
  final = 'norm.' if fam == 'dinov3' else 'layernorm.'
  patch = _patch_prefix(fam)
  d = cfg.hidden_size
  out: StateDict = {'cls_token': sd['embeddings.cls_token']}
  if 'embeddings.position_embeddings' in sd:
    out['pos_embed'] = sd['embeddings.position_embeddings']
  if 'embeddings.mask_token' in sd:
    out['mask_token'] = sd['embeddings.mask_token'].reshape(1, -1)
  if np.size(sd.get('embeddings.register_tokens', ())):
    key = 'storage_tokens' if fam == 'dinov3' else 'register_tokens'
    out[key] = sd['embeddings.register_tokens']
  out['patch_embed.proj.weight'] = sd[patch + 'weight']
  out['patch_embed.proj.bias'] = sd[patch + 'bias']
  if fam == 'dinov3':
    out['rope_embed.periods'] = _rope_periods(cfg)
  for i in range(cfg.num_layers):
    pre, hub = layer.format(i), f'blocks.{i}.'
    for theirs, ours in zip(norms, ('norm1', 'norm2')):
      out[f'{hub}{ours}.weight'] = sd[f'{pre}{theirs}.weight']
      out[f'{hub}{ours}.bias'] = sd[f'{pre}{theirs}.bias']
    out[f'{hub}attn.qkv.weight'] = np.concatenate(
        [sd[f'{pre}attention.{p}.weight'] for p in ('q_proj', 'k_proj', 'v_proj')], axis=0)
    if cfg.query_bias or cfg.key_bias or cfg.value_bias:
      zeros = np.zeros((d,), np.float32)
      out[f'{hub}attn.qkv.bias'] = np.concatenate(
          [sd.get(f'{pre}attention.{p}.bias', zeros) for p in ('q_proj', 'k_proj', 'v_proj')])
      if fam == 'dinov3':
        flags = (cfg.query_bias, cfg.key_bias, cfg.value_bias)
        out[f'{hub}attn.qkv.bias_mask'] = np.concatenate(
            [np.full((d,), float(b), np.float32) for b in flags])
    out[f'{hub}attn.proj.weight'] = sd[f'{pre}attention.o_proj.weight']
    if f'{pre}attention.o_proj.bias' in sd:
      out[f'{hub}attn.proj.bias'] = sd[f'{pre}attention.o_proj.bias']
    if cfg.layerscale:
      out[f'{hub}ls1.gamma'] = sd[f'{pre}layer_scale1.lambda1']
      out[f'{hub}ls2.gamma'] = sd[f'{pre}layer_scale2.lambda1']
    for theirs, ours in zip(mlp, ('fc1', 'fc2')):
      out[f'{hub}mlp.{ours}.weight'] = sd[f'{pre}mlp.{theirs}.weight']
      if f'{pre}mlp.{theirs}.bias' in sd:
        out[f'{hub}mlp.{ours}.bias'] = sd[f'{pre}mlp.{theirs}.bias']
  out['norm.weight'] = sd[final + 'weight']
  out['norm.bias'] = sd[final + 'bias']
  return {k: np.array(v, np.float32, order='C') for k, v in out.items()}


def export_hub_state_dict(params: Mapping[str, Any], config: BackboneConfig) -> StateDict:
  """{official torch.hub state_dict name: float32 numpy array}, for the hub models'
  `load_state_dict(strict=True)`."""
  if config.mlp_type == 'gated':
    raise ValueError('export_hub_state_dict: gated MLPs have no hub layout here')
  return transformers_to_hub(export_transformers_state_dict(params, config), config)


def params_from_hub_state_dict(sd: Mapping[str, np.ndarray], cfg: BackboneConfig,
                               where: str = 'state_dict', strict: bool = True) -> dict:
  """Our parameter tree from an official hub state dict (see `hub_to_transformers`)."""
  hf = hub_to_transformers(sd, cfg, where)
  try:
    return params_from_transformers_state_dict(hf, cfg, where, strict)
  except CheckpointError as e:
    raise CheckpointError(str(e).replace('transformers names', 'hub names converted to '
                                         'transformers names')) from None


# --------------------------------------------------------------------------------------------------
# transformers models and configs
# --------------------------------------------------------------------------------------------------

_SUPPORTED = ('ViTModel', 'Dinov2Model', 'Dinov2WithRegistersModel', 'DINOv3ViTModel')


def _square(value, what: str, where: str) -> int:
  if isinstance(value, (list, tuple)):
    if len(set(value)) != 1:
      raise ValueError(f'{where}: non-square {what} {value} is not supported')
    value = value[0]
  return int(value)


def _act(name: Any, where: str, allowed: tuple[str, ...]) -> str:
  if name not in allowed:
    raise ValueError(f'{where}: hidden_act {name!r} is not supported (only {allowed}; '
                              "transformers' 'gelu' is the exact erf GELU)")
  return name


def config_from_transformers(hf_config: Any, name: str | None = None) -> BackboneConfig:
  """BackboneConfig of a transformers ViT / Dinov2 / Dinov2WithRegisters / DINOv3ViT config."""
  mt = getattr(hf_config, 'model_type', None)
  where = f'transformers config (model_type={mt!r})'
  d = int(hf_config.hidden_size)
  common = dict(hidden_size=d, num_layers=int(hf_config.num_hidden_layers),
                num_heads=int(hf_config.num_attention_heads),
                num_channels=int(getattr(hf_config, 'num_channels', 3)),
                patch_size=_square(hf_config.patch_size, 'patch_size', where),
                image_size=_square(hf_config.image_size, 'image_size', where),
                layer_norm_eps=float(hf_config.layer_norm_eps))
  if mt == 'vit':
    if getattr(hf_config, 'head_dim', d // common['num_heads']) * common['num_heads'] != d:
      raise ValueError(f'{where}: head_dim × heads must equal hidden_size')
    q = bool(hf_config.qkv_bias)
    return BackboneConfig(name=name or 'transformers_vit', family='dino',
                          mlp_dim=int(hf_config.intermediate_size),
                          hidden_act=_act(hf_config.hidden_act, where, ('gelu',)),
                          query_bias=q, key_bias=q, value_bias=q, **common)
  if mt in ('dinov2', 'dinov2_with_registers'):
    if getattr(hf_config, 'use_swiglu_ffn', False):
      raise ValueError(f'{where}: use_swiglu_ffn=True (ViT-g) is not supported')
    q = bool(hf_config.qkv_bias)
    reg = int(getattr(hf_config, 'num_register_tokens', 0)) if mt == 'dinov2_with_registers' else 0
    return BackboneConfig(
        name=name or f'transformers_{mt}', family='dinov2',
        mlp_dim=int(d * hf_config.mlp_ratio), num_register_tokens=reg,
        hidden_act=_act(hf_config.hidden_act, where, ('gelu',)), layerscale=True,
        layerscale_init=float(hf_config.layerscale_value), query_bias=q, key_bias=q, value_bias=q,
        use_mask_token=(mt == 'dinov2_with_registers'
                        or bool(getattr(hf_config, 'use_mask_token', True))),
        interpolate_offset=0.0, interpolate_antialias=(mt == 'dinov2_with_registers'), **common)
  if mt == 'dinov3_vit':
    return BackboneConfig(
        name=name or 'transformers_dinov3_vit', family='dinov3',
        mlp_dim=int(hf_config.intermediate_size),
        num_register_tokens=int(hf_config.num_register_tokens),
        hidden_act=_act(hf_config.hidden_act, where, ('gelu', 'silu')),
        mlp_type='gated' if hf_config.use_gated_mlp else 'mlp', layerscale=True,
        layerscale_init=float(hf_config.layerscale_value), query_bias=bool(hf_config.query_bias),
        key_bias=bool(hf_config.key_bias), value_bias=bool(hf_config.value_bias),
        proj_bias=bool(hf_config.proj_bias), mlp_bias=bool(hf_config.mlp_bias), pos_embed='rope',
        rope_theta=float(hf_config.rope_theta), rope_shift=hf_config.pos_embed_shift,
        rope_jitter=hf_config.pos_embed_jitter, rope_rescale=hf_config.pos_embed_rescale,
        use_mask_token=True, **common)
  raise ValueError(f'{where}: only vit, dinov2, dinov2_with_registers and dinov3_vit '
                            'configs are supported')


def _tensor_to_numpy(t: Any) -> np.ndarray:
  if hasattr(t, 'detach'):  # a torch tensor: float32 on the CPU (bf16/fp16 widen exactly)
    import torch  # pylint: disable=g-import-not-at-top
    return t.detach().to(device='cpu', dtype=torch.float32).numpy()
  return np.asarray(t, np.float32)


def from_transformers(hf_model: Any, **module_kwargs) -> tuple[VisionTransformer, dict]:
  """(module, params) equal to a transformers `ViTModel` (DINO configs), `Dinov2Model`,
  `Dinov2WithRegistersModel` or `DINOv3ViTModel` (or a task model wrapping one).

  Our outputs equal the model's `last_hidden_state` (ViTModel with `interpolate_pos_encoding=True`
  at sizes other than the config's). `module_kwargs` go to `VisionTransformer` (precision, remat).
  """
  model = hf_model
  if type(model).__name__ not in _SUPPORTED:
    base = getattr(model, 'base_model', None)
    if base is None or type(base).__name__ not in _SUPPORTED:
      raise ValueError(f'from_transformers: {type(hf_model).__name__} is not one of '
                                f'{_SUPPORTED}')
    model = base
  cls = type(model).__name__
  name = getattr(model.config, '_name_or_path', '') or None
  cfg = config_from_transformers(model.config, name=name)
  if cls == 'ViTModel' and getattr(model.embeddings, 'mask_token', None) is not None:
    cfg = cfg.replace(use_mask_token=True)
  sd = {k: _tensor_to_numpy(v) for k, v in model.state_dict().items()}
  params = params_from_transformers_state_dict(sd, cfg, where=f'{cls}.state_dict()')
  return VisionTransformer(cfg, **module_kwargs), params
