"""Official CoTracker3 checkpoints -> our Flax parameter tree.

The official `state_dict` (PyTorch, `scaled_offline.pth`, `scaled_online.pth`,
`baseline_*.pth`) names map onto `model.CoTrackerThree`'s tree by

  * numbered children `layer1.0`, `time_blocks.2` -> `layer1_0`, `time_blocks_2`;
    `downsample.0` (the 1×1 conv of a Sequential) -> `downsample`;
  * `weight` -> `kernel` (Linear [out, in] transposed; Conv2d [out, in, kh, kw] ->
    [kh, kw, in, out]) or `scale` (the affine LayerNorms `norm_context`); `bias` unchanged;
  * `updateformer.virual_tracks` (sic) unchanged.

The buffer `time_emb` [1, window_len, 1110] is a fixed sine/cosine table: the model recomputes
it, so it may be absent (as in training checkpoints restored across window lengths); when
present it must equal the table.

Files: `.pth` / `.pt` (through `tapkit.io.read_torch_state`, weights only), `.npz`,
`.safetensors`; a bare state dict or a dict holding it under "model" (training checkpoints),
with or without the `module.` prefix of DistributedDataParallel.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from tapkit import io as tio
from tapkit.models.cotracker3 import blocks
from tapkit.models.cotracker3 import model as model_lib

Params = Any
_NUMBERED = re.compile(r'^(.*)_(\d+)$')


def _official_name(path: tuple[str, ...]) -> str:
  parts = []
  for p in path[:-1]:
    if p == 'downsample':
      parts.append('downsample.0')
      continue
    m = _NUMBERED.match(p)
    parts.append(f'{m.group(1)}.{m.group(2)}' if m else p)
  leaf = path[-1]
  parts.append({'kernel': 'weight', 'scale': 'weight'}.get(leaf, leaf))
  return '.'.join(parts)


def _official_shape(leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  if leaf == 'kernel' and len(shape) == 4:  # [kh, kw, in, out] -> [out, in, kh, kw]
    return (shape[3], shape[2], shape[0], shape[1])
  if leaf == 'kernel' and len(shape) == 2:  # [in, out] -> [out, in]
    return (shape[1], shape[0])
  return tuple(shape)


def official_table() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """{official state_dict name: (our parameter path, official shape)} for every parameter
  (the `time_emb` buffer excluded)."""
  return dict(_official_table())


@functools.lru_cache(maxsize=1)
def _official_table() -> tuple[tuple[str, tuple[tuple[str, ...], tuple[int, ...]]], ...]:
  table = {}
  flat = jax.tree_util.tree_flatten_with_path(model_lib.param_shapes())[0]
  for key_path, leaf in flat:
    path = tuple(k.key for k in key_path)
    table[_official_name(path)] = (path, _official_shape(path[-1], tuple(leaf.shape)))
  return tuple(table.items())


def _to_ours(value: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == 'kernel' and value.ndim == 4:
    return np.ascontiguousarray(value.transpose(2, 3, 1, 0))
  if leaf == 'kernel' and value.ndim == 2:
    return np.ascontiguousarray(value.T)
  return value


def unwrap_state_dict(obj: Any, source: str = '<state_dict>') -> dict[str, Any]:
  """A loaded checkpoint object -> the bare state dict ("model" unwrapped, "module." removed)."""
  if not isinstance(obj, Mapping):
    raise tio.BadFileError(source, None, f'expected a state dict (a mapping of names to '
                           f'tensors), got {type(obj).__name__}')
  if 'model' in obj and isinstance(obj['model'], Mapping):
    obj = obj['model']
  out = {}
  for name, value in obj.items():
    name = str(name)
    out[name[len('module.'):] if name.startswith('module.') else name] = value
  return out


def params_from_state_dict(state_dict: Mapping[str, Any], source: str = '<state_dict>'
                           ) -> Params:
  """Official CoTracker3 state dict -> our parameter tree (float32 numpy leaves).

  Args:
    state_dict: official name -> array (numpy, or anything `np.asarray` accepts); a dict with
      the state dict under "model" and `module.`-prefixed names are accepted too.
    source: the file it came from, for error messages.

  Returns:
    The nested parameter tree of `model.CoTrackerThree` (use as `{'params': tree}`).

  Raises:
    BadFileError: missing, unexpected or mis-shaped names (all listed), non-floating or
      non-finite weights (named), or a `time_emb` that is not the sine/cosine table.
  """
  state = unwrap_state_dict(state_dict, source)
  table = official_table()
  time_emb = state.pop('time_emb', None)
  missing = sorted(set(table) - set(state))
  extra = sorted(set(state) - set(table))
  wrong_shape = [f'{name} {tuple(np.shape(state[name]))} (expected {table[name][1]})'
                 for name in sorted(set(table) & set(state))
                 if tuple(np.shape(state[name])) != table[name][1]]
  problems = []
  if missing:
    problems.append(f'missing {len(missing)}: {", ".join(missing)}')
  if extra:
    problems.append(f'unexpected {len(extra)}: {", ".join(extra)}')
  if wrong_shape:
    problems.append(f'wrong shape {len(wrong_shape)}: {"; ".join(wrong_shape)}')
  if problems:
    raise tio.BadFileError(source, None, 'not a CoTracker3 state dict: ' + ' | '.join(problems))
  not_float = [f'{n} ({np.asarray(state[n]).dtype})' for n in sorted(table)
               if not _is_float(np.asarray(state[n]))]
  if not_float:
    raise tio.BadFileError(source, not_float[0].split(' ')[0],
                           f'weights must be floating point: {", ".join(not_float)}')
  params: dict[str, Any] = {}
  bad = []
  for name, (path, _) in table.items():
    value = np.asarray(state[name]).astype(np.float32)
    if not np.all(np.isfinite(value)):
      bad.append(name)
    node = params
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = _to_ours(value, path[-1])
  if bad:
    raise tio.BadFileError(source, bad[0], f'non-finite weights in {", ".join(sorted(bad))}')
  if time_emb is not None:
    _check_time_emb(np.asarray(time_emb), source)
  return params


def _is_float(value: np.ndarray) -> bool:
  return np.issubdtype(value.dtype, np.floating) or value.dtype.name == 'bfloat16'


def _check_time_emb(value: np.ndarray, source: str) -> None:
  if value.ndim != 3 or value.shape[0] != 1 or value.shape[2] != blocks.TOKEN_DIM:
    raise tio.BadFileError(source, 'time_emb', f'expected [1, window_len, {blocks.TOKEN_DIM}], '
                           f'got {value.shape}')
  if not _is_float(value):
    raise tio.BadFileError(source, 'time_emb', f'must be floating point, got {value.dtype}')
  table = blocks.time_embedding_table(value.shape[1])
  err = float(np.max(np.abs(value.astype(np.float64) - table))) if value.size else 0.0
  if not err <= 1e-5:
    raise tio.BadFileError(source, 'time_emb', f'differs from the fixed sine/cosine table by '
                           f'{err:.3g}; the model recomputes this buffer')


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
  """The bare state dict of a `.pth` / `.pt` / `.npz` / `.safetensors` checkpoint (numpy)."""
  path = os.fspath(path)
  ext = os.path.splitext(path)[1].lower()
  if ext == '.npz':
    obj = tio.read_npz(path)
  elif ext == '.safetensors':
    obj = tio.read_safetensors(path)
  else:
    obj = tio.read_torch_state(path, widen_bfloat16=True)
  return unwrap_state_dict(obj, path)


def load_checkpoint(path: str | os.PathLike[str]) -> Params:
  """An official CoTracker3 checkpoint file -> our parameter tree (see the module docstring).

  Raises:
    BadFileError naming the file (and the offending parameters).
  """
  path = os.fspath(path)
  return params_from_state_dict(read_state_dict(path), source=path)
