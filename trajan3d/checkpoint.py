"""Reading, checking and writing TRAJAN / 3DSPA parameters.

Two formats:

* The official flat `.npz` (`track_autoencoder_ckpt.npz`, `3dspa_ckpt.npz`,
  the goldens' `params_*.npz`): one float array per parameter, key = the
  parameter's path inside the Flax `params` collection joined with '/', with
  no leading `params/`, e.g. `tracks_to_latents/layer_3/cross_att/dense_key/
  kernel`. Read with `tapkit.io.npz` (no pickle); written by `save_params_npz`.
* An orbax checkpoint directory from our own training (tapkit's
  `<workdir>/checkpoints/<step>/state`, or any `StandardCheckpointer` /
  `PyTreeCheckpointer` PyTree), holding the parameters under a 'params' key
  or as the bare tree; see `load_orbax_params`.

`load_params(path)` picks the format (directory = orbax, else `.npz`) and
returns a nested dict of float32 numpy arrays. Passing `model` and
`example_inputs` (or `expected`) also checks every name and shape against the
model's `init` and raises a ValueError listing the differences.
"""

from __future__ import annotations

import os
import pathlib
import zipfile
from typing import Any, Mapping, Optional

import jax
import numpy as np

from tapkit.io import BadFileError
from tapkit.io import checks
from tapkit.io import npz as npz_io
from tapkit.train import workdir as workdir_lib

PathLike = str | os.PathLike
# Our flat layout: '/'-joined path -> array.
FlatParams = dict[str, np.ndarray]
_SEP = '/'


class CheckpointError(ValueError):
  """A parameter file that cannot be read, or params that do not match."""


# ------------------------------------------------------------------ trees


def flatten_params(tree: Mapping[str, Any], prefix: str = '') -> FlatParams:
  """Nested dict -> {'a/b/kernel': leaf}. Keys must be non-empty strings
  without '/'."""
  flat = {}
  for key, value in tree.items():
    if not isinstance(key, str) or not key or _SEP in key:
      raise CheckpointError(
          f'parameter tree key {key!r} under {prefix or "<root>"!r} must be a '
          f'non-empty string without {_SEP!r}.')
    name = f'{prefix}{_SEP}{key}' if prefix else key
    if isinstance(value, Mapping):
      flat.update(flatten_params(value, name))
    else:
      flat[name] = value
  return flat


def unflatten_params(flat: Mapping[str, Any], source: str = '<params>'
                     ) -> dict[str, Any]:
  """{'a/b/kernel': leaf} -> nested dict; `source` names the origin in errors."""
  tree: dict[str, Any] = {}
  for name in sorted(flat):
    parts = name.split(_SEP)
    if not name or any(not p for p in parts):
      raise CheckpointError(f'{source}: malformed parameter name {name!r} '
                            '(empty path component).')
    node = tree
    for i, part in enumerate(parts[:-1]):
      node = node.setdefault(part, {})
      if not isinstance(node, dict):
        raise CheckpointError(
            f'{source}: {_SEP.join(parts[:i + 1])!r} is both a parameter and '
            f'a prefix of {name!r}.')
    if parts[-1] in node:
      raise CheckpointError(
          f'{source}: {name!r} is both a parameter and a prefix of other '
          'parameter names.')
    node[parts[-1]] = flat[name]
  return tree


def _as_float32(value: Any, name: str, source: str) -> np.ndarray:
  """Validates one parameter array and returns it as float32 numpy."""
  arr = np.asarray(value)
  if arr.dtype == object:
    raise CheckpointError(f'{source}: parameter {name!r} is an object array; '
                          'parameters must be float arrays.')
  if not np.issubdtype(arr.dtype, np.floating) and arr.dtype.name != 'bfloat16':
    raise CheckpointError(
        f'{source}: parameter {name!r} has dtype {arr.dtype}; parameters must '
        'be float arrays (float16/bfloat16/float32/float64).')
  return arr.astype(np.float32)


# ------------------------------------------------------------------ .npz


def _check_finite(flat: FlatParams, source: str, allow_nonfinite: bool) -> None:
  """NaN / Inf parameters are refused (every one named) unless allowed."""
  try:
    checks.check_float_tensors(source, flat, allow_nonfinite=allow_nonfinite)
  except BadFileError as e:
    raise CheckpointError(str(e)) from None


def load_npz_params(path: PathLike, allow_nonfinite: bool = False) -> dict[str, Any]:
  """Reads an official flat `.npz` into a nested dict of float32 arrays.

  Args:
    path: the `.npz` file.
    allow_nonfinite: accept NaN / Inf parameters (refused by default).

  Raises:
    CheckpointError: the file is missing, not a zip (.npz) archive, truncated
      or corrupt, empty, holds object (pickled), non-float or (unless allowed)
      non-finite arrays, or has malformed names. The message names the file
      (and the array).
  """
  path = pathlib.Path(path)
  source = str(path)
  if not path.is_file():
    raise CheckpointError(f'{source}: no such parameter file.')
  if not zipfile.is_zipfile(path):
    raise CheckpointError(
        f'{source}: not an .npz (zip) archive, or truncated (no zip central '
        'directory).')
  try:
    arrays = npz_io.read_npz(path)
  except BadFileError as e:
    if e.field in (None, npz_io.ARCHIVE):
      raise CheckpointError(
          f'{source}: corrupt or truncated .npz archive: {e.detail}') from None
    # Object arrays need pickle: refused, as are corrupt or oversized members.
    raise CheckpointError(
        f'{source}: array {e.field!r} cannot be read without pickle or is corrupt: '
        f'{e.detail}') from None
  flat: FlatParams = {name: _as_float32(value, name, source)
                      for name, value in arrays.items()}
  if not flat:
    raise CheckpointError(f'{source}: archive holds no arrays.')
  _check_finite(flat, source, allow_nonfinite)
  return unflatten_params(flat, source)


def save_params_npz(path: PathLike, params: Mapping[str, Any]) -> None:
  """Writes params in the official flat layout (float32, '/'-joined keys).

  `params` is the contents of the `params` collection (a `{'params': ...}`
  variables dict is unwrapped).
  """
  if set(params) == {'params'}:
    params = params['params']
  flat = flatten_params(params)
  arrays = {name: _as_float32(jax.device_get(v), name, str(path))
            for name, v in flat.items()}
  with open(path, 'wb') as f:  # np.savez would append '.npz' to the name.
    np.savez(f, **arrays)


# ------------------------------------------------------------------ orbax


def _resolve_orbax_dir(path: pathlib.Path) -> pathlib.Path:
  """Finds the PyTree item: workdir -> checkpoints/ -> latest step -> item."""
  try:
    return workdir_lib.resolve_checkpoint(path)[1]
  except workdir_lib.WorkdirError:
    return path


def load_orbax_params(directory: PathLike, allow_nonfinite: bool = False
                      ) -> dict[str, Any]:
  """Restores the parameter tree of an orbax PyTree checkpoint.

  Accepted: a PyTree checkpoint directory (`StandardCheckpointer` /
  `PyTreeCheckpointer`), a `CheckpointManager` step directory with a
  `params`, `state` or `default` item, the manager's root (latest step is
  used) or a training workdir holding `checkpoints/` (tapkit's layout
  `<workdir>/checkpoints/<step>/state`). The restored tree may be the bare
  parameters or hold them under 'params' (train state, variables dict).
  Arrays are restored on one local device whatever the saving topology, and
  returned as float32 numpy. Non-float and (unless `allow_nonfinite`) NaN /
  Inf parameters raise CheckpointError naming each of them.
  """
  source = str(directory)
  path = pathlib.Path(directory)
  if not path.is_dir():
    raise CheckpointError(f'{source}: no such checkpoint directory.')
  path = _resolve_orbax_dir(path)
  if not workdir_lib.is_orbax_checkpoint(path):
    raise CheckpointError(
        f'{source}: not an orbax checkpoint (no _METADATA / '
        '_CHECKPOINT_METADATA in it, in a params/, state/ or default/ item, '
        'or in the latest numbered step).')
  try:
    tree = workdir_lib.restore_numpy(path.resolve())
  except Exception as e:  # orbax raises many types; report them uniformly.
    raise CheckpointError(
        f'{source}: orbax restore of {path} failed: {type(e).__name__}: '
        f'{e}') from None
  # Unwrap train states / variables dicts: parameter trees never have a
  # top-level 'params' module.
  while isinstance(tree, Mapping) and 'params' in tree:
    tree = tree['params']
  if not isinstance(tree, Mapping) or not tree:
    raise CheckpointError(f'{source}: restored tree holds no parameter dict.')
  flat = {name: _as_float32(jax.device_get(v), name, source)
          for name, v in flatten_params(tree).items()}
  _check_finite(flat, source, allow_nonfinite)
  return unflatten_params(flat, source)


# ------------------------------------------------------------------ checks


def expected_param_shapes(model: Any, example_inputs: Mapping[str, Any]
                          ) -> dict[str, tuple[int, ...]]:
  """{name: shape} of `model.init(..., example_inputs)['params']`, computed
  abstractly (no parameter memory). Feature keys present in
  `example_inputs` decide whether 3DSPA's projections exist."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), example_inputs)
  return {name: tuple(s.shape)
          for name, s in flatten_params(shapes['params']).items()}


def check_params(params: Mapping[str, Any],
                 expected: Mapping[str, Any],
                 source: str = '<params>') -> None:
  """Compares names and shapes of `params` with `expected`.

  Args:
    params: nested parameter dict.
    expected: {name: shape} (see `expected_param_shapes`) or a nested dict of
      arrays / shape structs.
    source: file name used in the message.

  Raises:
    CheckpointError: listing exactly the missing, unexpected and mis-shaped
      names.
  """
  got = {n: tuple(np.shape(v)) for n, v in flatten_params(params).items()}
  if any(isinstance(v, Mapping) for v in expected.values()):
    expected = {n: tuple(np.shape(v))
                for n, v in flatten_params(expected).items()}
  want = {n: tuple(s.shape) if hasattr(s, 'shape') else tuple(s)
          for n, s in expected.items()}
  missing = sorted(set(want) - set(got))
  extra = sorted(set(got) - set(want))
  misshaped = sorted(n for n in set(want) & set(got) if want[n] != got[n])
  if missing or extra or misshaped:
    lines = [f'{source}: parameters do not match the model '
             f'({len(missing)} missing, {len(extra)} unexpected, '
             f'{len(misshaped)} mis-shaped).']
    lines += [f'  missing: {n} {list(want[n])}' for n in missing]
    lines += [f'  unexpected: {n} {list(got[n])}' for n in extra]
    lines += [f'  mis-shaped: {n} file {list(got[n])} model {list(want[n])}'
              for n in misshaped]
    raise CheckpointError('\n'.join(lines))


def load_params(path: PathLike,
                model: Any = None,
                example_inputs: Optional[Mapping[str, Any]] = None,
                expected: Optional[Mapping[str, Any]] = None,
                allow_nonfinite: bool = False,
                ) -> dict[str, Any]:
  """Loads parameters from an official `.npz` or an orbax directory.

  Args:
    path: `.npz` file (official flat layout) or orbax checkpoint directory.
    model: optional model; the loaded names and shapes are then checked
      against `model.init` (computed abstractly).
    example_inputs: model inputs for that check (shapes only matter).
      Default: small zero inputs, with `dino_features` / `depth_features`
      iff the file holds `dino_projection` / `depth_projection`.
    expected: alternatively, the expected {name: shape} or nested tree.
    allow_nonfinite: accept NaN / Inf parameters (for forensic use); by
      default they raise, naming every offending parameter and its count.

  Returns:
    Nested dict of float32 numpy arrays, for `model.apply({'params': p}, x)`.

  Raises:
    CheckpointError (a ValueError) naming the file and the offending fields.
  """
  path = pathlib.Path(path)
  params = (load_orbax_params(path, allow_nonfinite) if path.is_dir()
            else load_npz_params(path, allow_nonfinite))
  if model is not None:
    if example_inputs is None:
      # Feature inputs exactly when the file has their projections, so that
      # only a model that cannot create them (use_dino/use_depth False)
      # reports them as unexpected.
      from trajan3d import model as model_lib  # pylint: disable=g-import-not-at-top
      example_inputs = model_lib.example_inputs(
          model, dino='dino_projection' in params,
          depth='depth_projection' in params)
    expected = expected_param_shapes(model, example_inputs)
  if expected is not None:
    check_params(params, expected, str(path))
  return params
