"""Official TracksTo4D checkpoints -> Flax parameters (and Adam state), safely.

Readers (no arbitrary pickle execution anywhere; both in `tapkit.io`):
  * `.pt` files written by `torch.save` (zip container): `tapkit.io.torch_state`, i.e.
    `torch.load(path, map_location='cpu', weights_only=True)` with torch importable,
    otherwise its restricted pure-Python reader (tensors as numpy, ordered dicts).
  * flat `.npz` state dicts (`tapkit.io.npz`, pickle-free), e.g. the golden
    `params.npz` (+ optional `param_keys.npy` giving the state-dict order).

Official checkpoint dict, as the official training script saves it: {'epoch': int,
'model_state_dict': state dict, 'optimizer_state_dict': torch Adam state dict, 'loss': float};
the fine-tuning `best_model_temp.pt` is a bare state dict. Both are accepted.

Name mapping (torch -> Flax; Linear weights [out, in] -> Dense kernels [in, out];
Conv1d weight [out, in, k] -> Conv kernel [k, in, out]):
  transformer_my.to_patch_embedding.{0,1,2}     -> embed_norm_in / embed_dense / embed_norm_out
  transformer_my.transformer_{frames,points}.i  -> {frame,point}_transformer_i
    .norm                 -> final_norm
    .layers.0.0.norm      -> attention/norm
    .layers.0.0.to_qkv    -> attention/qkv
    .layers.0.0.to_out    -> attention/out
    .layers.0.1.net.0     -> mlp/norm
    .layers.0.1.net.1     -> mlp/dense_in
    .layers.0.1.net.3     -> mlp/dense_out
  conv_final            -> camera_head
  fc1                   -> point_head
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
from typing import Any, Mapping

import numpy as np

from tapkit.io import BadFileError
from tapkit.io import checks
from tapkit.io import npz as npz_io
from tapkit.io import torch_state

PathLike = str | os.PathLike

NUM_LAYERS = 3


def _build_name_table(num_layers: int = NUM_LAYERS) -> list[tuple[str, tuple[str, ...], str]]:
  """[(torch name, Flax path, kind)] in official state-dict order; kind is 'copy',
  'linear' (transpose) or 'conv' (reverse the axes)."""
  table: list[tuple[str, tuple[str, ...], str]] = []

  def add_norm(torch_prefix, path):
    table.append((f'{torch_prefix}.weight', path + ('scale',), 'copy'))
    table.append((f'{torch_prefix}.bias', path + ('bias',), 'copy'))

  def add_linear(torch_prefix, path, bias=True):
    table.append((f'{torch_prefix}.weight', path + ('kernel',), 'linear'))
    if bias:
      table.append((f'{torch_prefix}.bias', path + ('bias',), 'copy'))

  emb = 'transformer_my.to_patch_embedding'
  add_norm(f'{emb}.0', ('embed_norm_in',))
  add_linear(f'{emb}.1', ('embed_dense',))
  add_norm(f'{emb}.2', ('embed_norm_out',))
  for axis, ours in (('frames', 'frame'), ('points', 'point')):
    for i in range(num_layers):
      t = f'transformer_my.transformer_{axis}.{i}'
      block = (f'{ours}_transformer_{i}',)
      add_norm(f'{t}.norm', block + ('final_norm',))
      add_norm(f'{t}.layers.0.0.norm', block + ('attention', 'norm'))
      add_linear(f'{t}.layers.0.0.to_qkv', block + ('attention', 'qkv'), bias=False)
      add_linear(f'{t}.layers.0.0.to_out', block + ('attention', 'out'), bias=False)
      add_norm(f'{t}.layers.0.1.net.0', block + ('mlp', 'norm'))
      add_linear(f'{t}.layers.0.1.net.1', block + ('mlp', 'dense_in'))
      add_linear(f'{t}.layers.0.1.net.3', block + ('mlp', 'dense_out'))
  table.append(('conv_final.weight', ('camera_head', 'kernel'), 'conv'))
  table.append(('conv_final.bias', ('camera_head', 'bias'), 'copy'))
  add_linear('fc1', ('point_head',))
  return table


NAME_TABLE = _build_name_table()
# Official state-dict order (= optimizer parameter indices).
TORCH_PARAM_KEYS: tuple[str, ...] = tuple(name for name, _, _ in NAME_TABLE)


def _to_flax_array(value: np.ndarray, kind: str) -> np.ndarray:
  if kind == 'linear':
    return np.ascontiguousarray(value.T)  # [out, in] -> [in, out]
  if kind == 'conv':
    return np.ascontiguousarray(value.transpose(2, 1, 0))  # [out, in, k] -> [k, in, out]
  return np.asarray(value)


def _to_torch_array(value: np.ndarray, kind: str) -> np.ndarray:
  if kind == 'linear':
    return np.ascontiguousarray(value.T)
  if kind == 'conv':
    return np.ascontiguousarray(value.transpose(2, 1, 0))
  return np.asarray(value)


def _expected_torch_shapes(width=256, mlp_dim=2048, inner=1024, in_dim=76, k=12,
                           kernel=31) -> dict[str, tuple[int, ...]]:
  shapes = {}
  for name, _, kind in NAME_TABLE:
    if name.startswith('transformer_my.to_patch_embedding.0'):
      shapes[name] = (in_dim,)
    elif name == 'transformer_my.to_patch_embedding.1.weight':
      shapes[name] = (width, in_dim)
    elif name.endswith('to_qkv.weight'):
      shapes[name] = (3 * inner, width)
    elif name.endswith('to_out.weight'):
      shapes[name] = (width, inner)
    elif name.endswith('net.1.weight'):
      shapes[name] = (mlp_dim, width)
    elif name.endswith('net.1.bias'):
      shapes[name] = (mlp_dim,)
    elif name.endswith('net.3.weight'):
      shapes[name] = (width, mlp_dim)
    elif name == 'conv_final.weight':
      shapes[name] = (3 + 1 + k + 6 + 2, width, kernel)
    elif name == 'conv_final.bias':
      shapes[name] = (3 + 1 + k + 6 + 2,)
    elif name == 'fc1.weight':
      shapes[name] = (3 * k + 1, width)
    elif name == 'fc1.bias':
      shapes[name] = (3 * k + 1,)
    else:
      shapes[name] = (width,)
  return shapes


EXPECTED_TORCH_SHAPES = _expected_torch_shapes()


def torch_state_dict_to_flax(state_dict: Mapping[str, Any], source: str = '<state dict>',
                             check_shapes: bool = True, allow_nonfinite: bool = False,
                             what: str = 'parameter') -> dict[str, Any]:
  """Official state dict (torch names, numpy/tensor values) -> Flax `params` tree.

  Args:
    state_dict: torch name -> array.
    source: the file (and field) named in errors.
    check_shapes: compare every shape with the official architecture.
    allow_nonfinite: accept NaN / Inf values (refused by default).
    what: what the arrays are, for the messages ('parameter', 'Adam exp_avg', ...).

  Raises:
    ValueError naming `source` and every missing, unexpected and mis-shaped entry;
    BadFileError (a ValueError) naming every non-float or non-finite entry.
  """
  arrays = {k: _as_numpy(v) for k, v in state_dict.items()}
  not_arrays = sorted(str(k) for k, v in arrays.items() if not isinstance(v, np.ndarray))
  if not_arrays:
    raise BadFileError(source, not_arrays[0], f'{len(not_arrays)} entries are not tensors: '
                       + ', '.join(not_arrays[:10]))
  missing = [k for k in TORCH_PARAM_KEYS if k not in arrays]
  extra = sorted(k for k in arrays if k not in EXPECTED_TORCH_SHAPES)
  misshaped = []
  if check_shapes:
    for k in TORCH_PARAM_KEYS:
      if k in arrays and tuple(arrays[k].shape) != EXPECTED_TORCH_SHAPES[k]:
        misshaped.append(
            f'{k}: got {tuple(arrays[k].shape)}, expected {EXPECTED_TORCH_SHAPES[k]}')
  if missing or extra or misshaped:
    lines = [f'{source}: not a TracksTo4D state dict (width 256, K 12, conv kernel 31).']
    if missing:
      lines.append(f'  missing ({len(missing)}): ' + ', '.join(missing))
    if extra:
      lines.append(f'  unexpected ({len(extra)}): ' + ', '.join(extra))
    if misshaped:
      lines.append(f'  wrong shape ({len(misshaped)}): ' + '; '.join(misshaped))
    raise ValueError('\n'.join(lines))
  checks.check_float_tensors(source, ((k, arrays[k]) for k in TORCH_PARAM_KEYS),
                             allow_nonfinite=allow_nonfinite, what=what)
  params: dict[str, Any] = {}
  for name, path, kind in NAME_TABLE:
    node = params
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = _to_flax_array(arrays[name].astype(np.float32, copy=False), kind)
  return params


def flax_params_to_torch_state_dict(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Inverse of `torch_state_dict_to_flax`: Flax params -> ordered torch-named arrays."""
  if 'params' in params:  # Accept the full variables dict too.
    params = params['params']
  out: dict[str, np.ndarray] = collections.OrderedDict()
  for name, path, kind in NAME_TABLE:
    node = params
    try:
      for p in path:
        node = node[p]
    except (KeyError, TypeError) as e:
      raise ValueError(f'Flax params lack {"/".join(path)} (torch {name})') from e
    out[name] = _to_torch_array(np.asarray(node), kind)
  return out


# ------------------------------------------------------------------ torch files

# The torch-free reader and the torch-backed one live in `tapkit.io.torch_state`.
read_torch_zip = torch_state.read_torch_zip


def _as_numpy(value: Any) -> Any:
  return torch_state.tensor_to_numpy(value)


def read_torch_file(path: PathLike, use_torch: bool | None = None) -> Any:
  """Loads a `torch.save` file safely; tensors become numpy arrays (bfloat16 kept).

  Args:
    path: the `.pt` file.
    use_torch: True = torch.load(weights_only=True) (torch must be importable);
      False = the restricted pure-Python reader; None = torch when importable.
  """
  return torch_state.read_torch_state(path, use_torch=use_torch)


# ------------------------------------------------------------------ checkpoints


@dataclasses.dataclass
class TracksTo4DCheckpoint:
  """A loaded official checkpoint.

  Attributes:
    params: Flax parameter tree for `TracksTo4D` (use as {'params': params}).
    state_dict: torch-named float32 arrays in official order.
    epoch: training epoch (None for bare state dicts / npz).
    loss: mean training loss of that epoch (None when absent).
    optimizer_state: the torch Adam state dict (numpy leaves) or None.
    source: the file it was read from (named in errors).
    allow_nonfinite: whether NaN / Inf values were accepted when loading.
  """

  params: dict[str, Any]
  state_dict: dict[str, np.ndarray]
  epoch: int | None = None
  loss: float | None = None
  optimizer_state: dict[str, Any] | None = None
  source: str = '<checkpoint>'
  allow_nonfinite: bool = False

  def adam_state(self) -> 'AdamMoments':
    """Adam moments of the checkpoint in Flax layout (see `torch_adam_to_flax`)."""
    if self.optimizer_state is None:
      raise ValueError(f'{self.source}: checkpoint has no optimizer_state_dict')
    return torch_adam_to_flax(self.optimizer_state, source=self.source,
                              allow_nonfinite=self.allow_nonfinite)


@dataclasses.dataclass
class AdamMoments:
  """Adam state mapped onto the Flax tree: first/second moments and the step count."""

  mu: dict[str, Any]
  nu: dict[str, Any]
  count: int
  lr: float
  betas: tuple[float, float]
  eps: float

  def to_optax(self, opt_state):
    """Fills an `optax.adam` state (tuple with a ScaleByAdamState) with these moments."""
    import jax.numpy as jnp
    import optax

    def fill(state):
      if isinstance(state, optax.ScaleByAdamState):
        return optax.ScaleByAdamState(
            count=jnp.asarray(self.count, state.count.dtype),
            mu=_fill_like(state.mu, self.mu), nu=_fill_like(state.nu, self.nu))
      if isinstance(state, tuple) and not hasattr(state, '_fields'):
        return tuple(fill(s) for s in state)
      return state
    return fill(opt_state)


def _fill_like(template, values):
  """`values` (nested dicts) cast onto the structure and dtypes of `template`."""
  import jax
  import jax.numpy as jnp
  try:
    return jax.tree_util.tree_map(lambda t, v: jnp.asarray(v, t.dtype), template, values)
  except ValueError as e:
    raise ValueError(f'Adam moments do not match the optimiser state structure: {e}') from e


def _adam_entries(optimizer_state: Any, source: str, param_keys: tuple[str, ...]
                  ) -> tuple[Mapping[str, Any], list[tuple[str, Mapping[str, Any]]]]:
  """(first param group, [(parameter name, its state entry)]) of a torch Adam state dict."""
  field = 'optimizer_state_dict'
  if not isinstance(optimizer_state, Mapping):
    raise BadFileError(source, field, f'is a {type(optimizer_state).__name__}, not a dict')
  for key in ('state', 'param_groups'):
    if key not in optimizer_state:
      raise BadFileError(source, field, f'lacks {key!r}')
  state, groups = optimizer_state['state'], optimizer_state['param_groups']
  if not isinstance(state, Mapping):
    raise BadFileError(source, f'{field}.state', f'is a {type(state).__name__}, not a dict')
  if not isinstance(groups, (list, tuple)) or not groups or not isinstance(groups[0], Mapping):
    raise BadFileError(source, f'{field}.param_groups', 'expected a non-empty list of dicts')
  entries = []
  for i, name in enumerate(param_keys):
    entry = state.get(i, state.get(str(i)))
    if not isinstance(entry, Mapping):
      raise BadFileError(source, f'{field}.state[{i}]', f'no Adam state for parameter {i} '
                         f'({name})')
    for key in ('exp_avg', 'exp_avg_sq', 'step'):
      if key not in entry:
        raise BadFileError(source, f'{field}.state[{i}]', f'lacks {key!r} (parameter {name})')
    entries.append((name, entry))
  return groups[0], entries


def _scalar(value: Any, kind: type, source: str, field: str) -> Any:
  """A finite number from a checkpoint scalar (python number or 0-d array)."""
  array = np.asarray(_as_numpy(value))
  if array.size != 1 or array.dtype.kind not in 'iuf' or not np.all(np.isfinite(array)):
    raise BadFileError(source, field, f'expected a finite number, got {value!r:.80}')
  return kind(array.reshape(()))


def torch_adam_to_flax(optimizer_state: Mapping[str, Any],
                       param_keys: tuple[str, ...] = TORCH_PARAM_KEYS,
                       source: str = '<optimizer state>',
                       allow_nonfinite: bool = False) -> AdamMoments:
  """torch Adam state dict -> moments on the Flax tree (index i <-> i-th state-dict key).

  Raises:
    BadFileError (a ValueError) naming `source` and the field: missing groups or entries,
    non-float or (unless `allow_nonfinite`) NaN / Inf moments, bad step counts.
  """
  group, entries = _adam_entries(optimizer_state, source, param_keys)
  mu_sd, nu_sd, steps = {}, {}, set()
  for i, (name, entry) in enumerate(entries):
    mu_sd[name] = entry['exp_avg']
    nu_sd[name] = entry['exp_avg_sq']
    steps.add(_scalar(entry['step'], int, source, f'optimizer_state_dict.state[{i}].step'))
  if len(steps) != 1:
    raise BadFileError(source, 'optimizer_state_dict',
                       f'parameters have different step counts {sorted(steps)}')
  mu = torch_state_dict_to_flax(mu_sd, source=f'{source} [exp_avg]',
                                allow_nonfinite=allow_nonfinite, what='Adam exp_avg')
  nu = torch_state_dict_to_flax(nu_sd, source=f'{source} [exp_avg_sq]',
                                allow_nonfinite=allow_nonfinite, what='Adam exp_avg_sq')
  field = 'optimizer_state_dict.param_groups[0]'
  betas = group.get('betas', (0.9, 0.999))
  if not isinstance(betas, (list, tuple)) or len(betas) != 2:
    raise BadFileError(source, f'{field}.betas', f'expected two numbers, got {betas!r:.80}')
  return AdamMoments(
      mu=mu, nu=nu, count=steps.pop(),
      lr=_scalar(group.get('lr', 1e-4), float, source, f'{field}.lr'),
      betas=tuple(_scalar(b, float, source, f'{field}.betas') for b in betas),
      eps=_scalar(group.get('eps', 1e-8), float, source, f'{field}.eps'))


def load_npz_state_dict(path: PathLike, keys_path: PathLike | None = None) -> dict[str, np.ndarray]:
  """Reads a flat `.npz` state dict; ordered by `keys_path` (a `.npy` of names) if given."""
  path = pathlib.Path(path)
  arrays = npz_io.read_npz(path)
  if keys_path is not None:
    names = npz_io.read_npy(keys_path)
    if names.ndim != 1 or names.dtype.kind not in 'US':
      raise BadFileError(keys_path, '<array>', f'expected a 1-D array of names, got '
                         f'{names.dtype} of shape {names.shape}')
    keys = [str(k) for k in names]
    absent = [k for k in keys if k not in arrays]
    if absent:
      raise BadFileError(path, None, f'keys listed in {keys_path} are missing: {absent}')
    arrays = collections.OrderedDict((k, arrays[k]) for k in keys)
  return arrays


def _checked_tensors(sd: Mapping[str, Any], opt: Any, prefix: str
                     ) -> list[tuple[str, Any]]:
  """(name, array) of every weight and every Adam moment found in a checkpoint."""
  named = [(f'{prefix}{k}', _as_numpy(v)) for k, v in sd.items()]
  state = opt.get('state') if isinstance(opt, Mapping) else None
  if isinstance(state, Mapping):
    for i, entry in state.items():
      if isinstance(entry, Mapping):
        named += [(f'optimizer_state_dict.state[{i}].{key}', _as_numpy(entry[key]))
                  for key in ('exp_avg', 'exp_avg_sq') if key in entry]
  return named


def load_torch_checkpoint(path: PathLike, use_torch: bool | None = None,
                          allow_nonfinite: bool = False) -> TracksTo4DCheckpoint:
  """Loads an official TracksTo4D checkpoint (`.pt` dict or bare state dict, or `.npz`).

  Args:
    path: the `.pt` or `.npz` file.
    use_torch: see `read_torch_file`.
    allow_nonfinite: accept NaN / Inf weights and Adam moments (for forensic use); by
      default they raise, naming every offending parameter and its count of bad values.

  Raises:
    ValueError: naming the file and the missing / unexpected / mis-shaped entries; a
      `BadFileError` for unreadable files, non-float or non-finite weights or moments and
      malformed optimizer states.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'{path}: checkpoint not found')
  if path.suffix == '.npz':
    obj: Any = load_npz_state_dict(path)
  else:
    obj = read_torch_file(path, use_torch=use_torch)
  if not isinstance(obj, Mapping):
    raise ValueError(f'{path}: expected a dict, got {type(obj).__name__}')
  epoch = loss = opt = None
  if 'model_state_dict' in obj:
    sd = obj['model_state_dict']
    epoch = obj.get('epoch')
    loss = obj.get('loss')
    opt = obj.get('optimizer_state_dict')
    if not isinstance(sd, Mapping):
      raise ValueError(f'{path}: field model_state_dict is a {type(sd).__name__}, not a dict')
    source = f'{path} [model_state_dict]'
  else:
    sd = obj
    source = str(path)
  # Every weight and Adam moment is checked (dtype, finiteness) before names and shapes, so
  # that all offending tensors of the file are named in one message.
  prefix = '' if sd is obj else 'model_state_dict.'
  checks.check_float_tensors(path, _checked_tensors(sd, opt, prefix),
                             allow_nonfinite=allow_nonfinite, what='tensor')
  params = torch_state_dict_to_flax(sd, source=source, allow_nonfinite=allow_nonfinite)
  state_dict = collections.OrderedDict(
      (k, np.asarray(_as_numpy(sd[k]), np.float32)) for k in TORCH_PARAM_KEYS)
  if opt is not None:  # Moments are checked now, not when they are first used.
    torch_adam_to_flax(opt, source=str(path), allow_nonfinite=allow_nonfinite)
  return TracksTo4DCheckpoint(
      params=params, state_dict=state_dict,
      epoch=None if epoch is None else _scalar(epoch, int, str(path), 'epoch'),
      loss=None if loss is None else _scalar(loss, float, str(path), 'loss'),
      optimizer_state=opt, source=str(path), allow_nonfinite=allow_nonfinite)
