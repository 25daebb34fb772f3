"""Video Depth Anything checkpoints: the official `video_depth_anything_*.pth` state dicts <-> Flax.

The released files (`video_depth_anything_{vits,vitb,vitl}.pth` and the `metric_` ones) are bare
state dicts: `pretrained.*` (DINOv2, official hub names: fused `attn.qkv`, `ls1.gamma`, ...) and
`head.*` (the spatio-temporal DPT head, motion modules included, with the persistent buffers
`…pos_encoder.pe`). Layout changes: Linear [out, in] -> Dense kernel [in, out]; Conv
[out, in, kh, kw] -> [kh, kw, in, out]; ConvTranspose [in, out, k, k] -> [in, k, k, out];
`pos_encoder.pe` [1, L, C] -> [L, C]; norm weight -> scale.

  module, params = load_vda_checkpoint('video_depth_anything_vits.pth')       # encoder inferred
  params = params_from_vda_state_dict(state_dict, get_vda_config('vits'))
  state_dict = export_vda_state_dict(params, config)                          # official names
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from tapkit.io import BadFileError, read_torch_state
from tapkit.models.depth.vda import VDAConfig, VideoDepthAnything, get_vda_config
from tapkit.models.vit.config import BackboneConfig
from tapkit.models.vit.convert import export_hub_state_dict, params_from_hub_state_dict

Path = tuple[str, ...]
StateDict = dict[str, np.ndarray]

# Official entries that no forward pass reads (kept in every checkpoint, written as zeros).
UNUSED_HEAD = tuple(f'head.scratch.refinenet4.resConfUnit1.{c}.{w}'
                    for c in ('conv1', 'conv2') for w in ('weight', 'bias'))


def _conv_names(table: dict, theirs: str, ours: Path, bias: bool = True,
                kind: str = 'conv') -> None:
  table[f'{theirs}.weight'] = (ours + ('kernel',), kind)
  if bias:
    table[f'{theirs}.bias'] = (ours + ('bias',), 'same')


def _norm_names(table: dict, theirs: str, ours: Path) -> None:
  table[f'{theirs}.weight'] = (ours + ('scale',), 'same')
  table[f'{theirs}.bias'] = (ours + ('bias',), 'same')


def head_table(temporal: bool = True, prefix: str = 'head.') -> dict[str, tuple[Path, str]]:
  """{official DPT-head name: (our path inside the head tree, kind)} (kind: same / conv / convT /
  linear / pe), without the unused refinenet4.resConfUnit1."""
  t: dict[str, tuple[Path, str]] = {}
  for i in range(4):
    _conv_names(t, f'{prefix}projects.{i}', (f'projects_{i}',))
  _conv_names(t, f'{prefix}resize_layers.0', ('resize_layers_0',), kind='convT')
  _conv_names(t, f'{prefix}resize_layers.1', ('resize_layers_1',), kind='convT')
  _conv_names(t, f'{prefix}resize_layers.3', ('resize_layers_3',))
  s = f'{prefix}scratch.'
  for i in range(1, 5):
    _conv_names(t, f'{s}layer{i}_rn', (f'layer{i}_rn',), bias=False)
    _conv_names(t, f'{s}refinenet{i}.out_conv', (f'refinenet{i}', 'out_conv'))
    for unit in ((2,) if i == 4 else (1, 2)):
      for c in (1, 2):
        _conv_names(t, f'{s}refinenet{i}.resConfUnit{unit}.conv{c}',
                    (f'refinenet{i}', f'resConfUnit{unit}', f'conv{c}'))
  _conv_names(t, f'{s}output_conv1', ('output_conv1',))
  _conv_names(t, f'{s}output_conv2.0', ('output_conv2_0',))
  _conv_names(t, f'{s}output_conv2.2', ('output_conv2_2',))
  if temporal:
    for m in range(4):
      tt, mm = f'{prefix}motion_modules.{m}.temporal_transformer.', (f'motion_modules_{m}',)
      _norm_names(t, f'{tt}norm', mm + ('norm',))
      _conv_names(t, f'{tt}proj_in', mm + ('proj_in',), kind='linear')
      _conv_names(t, f'{tt}proj_out', mm + ('proj_out',), kind='linear')
      blk = f'{tt}transformer_blocks.0.'
      for k in range(2):
        att, ours = f'{blk}attention_blocks.{k}.', mm + (f'attention_blocks_{k}',)
        for proj in ('to_q', 'to_k', 'to_v'):
          _conv_names(t, att + proj, ours + (proj,), bias=False, kind='linear')
        _conv_names(t, att + 'to_out.0', ours + ('to_out',), kind='linear')
        t[att + 'pos_encoder.pe'] = (ours + ('pos_encoder_pe',), 'pe')
        _norm_names(t, f'{blk}norms.{k}', mm + (f'norms_{k}',))
      _conv_names(t, f'{blk}ff.net.0.proj', mm + ('ff_proj',), kind='linear')
      _conv_names(t, f'{blk}ff.net.2', mm + ('ff_out',), kind='linear')
      _norm_names(t, f'{blk}ff_norm', mm + ('ff_norm',))
  return t


_TO_OURS = {'same': lambda v: v, 'linear': lambda v: v.T,
            'conv': lambda v: v.transpose(2, 3, 1, 0), 'convT': lambda v: v.transpose(0, 2, 3, 1),
            'pe': lambda v: v.reshape(v.shape[1:])}
_TO_THEIRS = {'same': lambda v: v, 'linear': lambda v: v.T,
              'conv': lambda v: v.transpose(3, 2, 0, 1), 'convT': lambda v: v.transpose(0, 3, 1, 2),
              'pe': lambda v: v[None]}


def encoder_hub_shapes(cfg: BackboneConfig, prefix: str = 'pretrained.') -> dict[str, tuple]:
  """{official DINOv2 name: shape} of a hub-layout ViT without registers."""
  d, m, p, g = cfg.hidden_size, cfg.mlp_dim, cfg.patch_size, cfg.pos_embed_grid
  s = {'cls_token': (1, 1, d), 'pos_embed': (1, 1 + g * g, d), 'mask_token': (1, d),
       'patch_embed.proj.weight': (d, cfg.num_channels, p, p), 'patch_embed.proj.bias': (d,),
       'norm.weight': (d,), 'norm.bias': (d,)}
  for i in range(cfg.num_layers):
    b = f'blocks.{i}.'
    s.update({b + 'norm1.weight': (d,), b + 'norm1.bias': (d,), b + 'norm2.weight': (d,),
              b + 'norm2.bias': (d,), b + 'attn.qkv.weight': (3 * d, d),
              b + 'attn.qkv.bias': (3 * d,), b + 'attn.proj.weight': (d, d),
              b + 'attn.proj.bias': (d,), b + 'ls1.gamma': (d,), b + 'ls2.gamma': (d,),
              b + 'mlp.fc1.weight': (m, d), b + 'mlp.fc1.bias': (m,), b + 'mlp.fc2.weight': (d, m),
              b + 'mlp.fc2.bias': (d,)})
  return {prefix + k: v for k, v in s.items()}


@functools.lru_cache(maxsize=16)
def _head_param_shapes(config: VDAConfig) -> dict[Path, tuple]:
  p = config.backbone.patch_size
  x = jax.ShapeDtypeStruct((1, 2, 2 * p, 2 * p, 3), jnp.float32)
  tree = jax.eval_shape(lambda v: VideoDepthAnything(config).init(jax.random.PRNGKey(0), v), x)
  flat = jax.tree_util.tree_flatten_with_path(tree['params']['head'])[0]
  return {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def expected_shapes(config: VDAConfig) -> dict[str, tuple]:
  """{official state_dict name: torch shape} of a checkpoint for `config` (all entries)."""
  shapes = encoder_hub_shapes(config.backbone)
  ours = _head_param_shapes(config)
  for name, (path, kind) in head_table().items():
    shapes[name] = tuple(_TO_THEIRS[kind](np.empty(ours[path], np.int8)).shape)
  f = config.features
  for name in UNUSED_HEAD:
    shapes[name] = (f, f, 3, 3) if name.endswith('weight') else (f,)
  return shapes


def _fmt(names, limit: int = 12) -> str:
  names = sorted(names)
  more = f' ... (+{len(names) - limit} more)' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


def check_state_dict(sd: Mapping[str, Any], config: VDAConfig, where: str) -> StateDict:
  """Validated float32 copy of an official state dict.

  Raises:
    BadFileError naming `where` and every missing, unexpected, mis-shaped, non-float or
    non-finite entry.
  """
  want = expected_shapes(config)
  missing = [n for n in want if n not in sd]
  extra = [n for n in sd if n not in want]
  wrong, bad_type, not_finite, out = [], [], [], {}
  for name, shape in want.items():
    if name not in sd:
      continue
    v = sd[name]
    if not isinstance(v, np.ndarray) or not np.issubdtype(v.dtype, np.floating):
      bad_type.append(f'{name} ({getattr(v, "dtype", type(v).__name__)})')
      continue
    if tuple(v.shape) != shape:
      wrong.append(f'{name} {tuple(v.shape)} (expected {shape})')
      continue
    v = np.asarray(v, np.float32)
    if not np.all(np.isfinite(v)):
      not_finite.append(name)
      continue
    out[name] = v
  problems = []
  for label, names in (('missing', missing), ('unexpected', extra), ('wrong shape', wrong),
                       ('not floating point', bad_type), ('not finite', not_finite)):
    if names:
      problems.append(f'{label} {len(names)}: {_fmt(names)}')
  if problems:
    field = (missing + extra + wrong + bad_type + not_finite)[0].split(' ')[0]
    raise BadFileError(where, field, f'not a Video Depth Anything {config.name} state dict: '
                       + '; '.join(problems))
  return out


def params_from_vda_state_dict(sd: Mapping[str, Any], config: VDAConfig,
                               where: str = 'state_dict') -> dict:
  """Our parameter tree {'pretrained', 'head'} from an official state dict (validated first)."""
  sd = check_state_dict(sd, config, where)
  enc = {k[len('pretrained.'):]: v for k, v in sd.items() if k.startswith('pretrained.')}
  pretrained = params_from_hub_state_dict(enc, config.backbone, where=where)
  head: dict = {}
  for name, (path, kind) in head_table().items():
    node = head
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = jnp.asarray(np.ascontiguousarray(_TO_OURS[kind](sd[name])))
  return {'pretrained': pretrained, 'head': head}


def export_vda_state_dict(params: Mapping[str, Any], config: VDAConfig) -> StateDict:
  """{official name: float32 array}, loadable by the original model with strict=True (the unused
  refinenet4.resConfUnit1 entries are zeros)."""
  out = {f'pretrained.{k}': v for k, v in
         export_hub_state_dict(params['pretrained'], config.backbone).items()}
  for name, (path, kind) in head_table().items():
    node = params['head']
    for k in path:
      node = node[k]
    out[name] = np.array(_TO_THEIRS[kind](np.asarray(node, np.float32)), order='C')
  f = config.features
  for name in UNUSED_HEAD:
    out[name] = np.zeros((f, f, 3, 3) if name.endswith('weight') else (f,), np.float32)
  return out


_WIDTHS = {384: 'vits', 768: 'vitb', 1024: 'vitl'}


def read_vda_state_dict(path: str | os.PathLike[str]) -> StateDict:
  """The {name: array} mapping of an official `.pth` (weights only; bfloat16 widened)."""
  obj = read_torch_state(path, widen_bfloat16=True)
  if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
    raise BadFileError(path, None, f'expected a state dict (name -> tensor), got '
                       f'{type(obj).__name__}')
  return dict(obj)


def load_vda_checkpoint(path: str | os.PathLike[str], encoder: str | None = None,
                        metric: bool = False,
                        precision: Any = None) -> tuple[VideoDepthAnything, dict]:
  """(module, params) from an official `video_depth_anything_*.pth` / `metric_…` file.

  Args:
    path: the checkpoint.
    encoder: 'vits' / 'vitb' / 'vitl', or None to infer it from the encoder width.
    metric: a metric checkpoint (switches off the window alignment of the video procedure).
    precision: matmul precision of the module.

  Raises:
    BadFileError naming the file and every bad entry.
  """
  sd = read_vda_state_dict(path)
  if encoder is None:
    pos = sd.get('pretrained.pos_embed')
    width = int(pos.shape[-1]) if isinstance(pos, np.ndarray) and pos.ndim == 3 else None
    if width not in _WIDTHS:
      raise BadFileError(path, 'pretrained.pos_embed', 'cannot infer the encoder (expected width '
                         f'384, 768 or 1024, got {width}); pass encoder=')
    encoder = _WIDTHS[width]
  config = get_vda_config(encoder, metric=metric)
  params = params_from_vda_state_dict(sd, config, where=os.fspath(path))
  return VideoDepthAnything(config, precision), params
