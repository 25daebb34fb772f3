"""Engine defaults, strict key checking and config-file loading.

A method's config file starts from `engine_config()`. Every key there is read
by the engine (see tapkit/train/README.md); methods add their own sub-configs
(e.g. `config.model`, `config.data`) next to them.

Configs are strict: the base preset of a method's config file lists every key
the method knows (with its one default), and `check_config` rejects any other
key by its full dotted name, suggesting the closest known one:

    ValueError: config key 'loss.teacher_refrence_grad' is not known; did you
    mean 'loss.teacher_reference_grad'?

`from_section` builds a dataclass from a sub-config with the same check, so a
dataclass's fields and defaults are the single description of its section.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

import ml_collections
from ml_collections import config_dict

# In a reference mapping, this key stands for "any name": every entry of the
# section is checked against its value (None = the entries are not checked).
ANY = '*'
# Sections whose entries are checked elsewhere: `evals.<name>` holds an
# evaluator's own keyword arguments, checked against its signature when the
# evaluator is built (tapkit/train/evaluators.py).
_OPEN_SECTIONS = {'evals': {ANY: None}}

_T = TypeVar('_T')


def engine_config() -> ml_collections.ConfigDict:
  """Defaults for the engine's keys."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Fixes init, data order, per-record transforms and per-step rngs.
  c.total_steps = 1000
  c.batch_size = 32  # Global batch (all devices of all processes).
  c.log_every = 50

  # Micro-batches per update: batch_size examples per step, batch_size /
  # accumulate_steps of them through the model at a time (a lax.scan).
  c.accumulate_steps = 1
  # Modules compute in compute_dtype; parameters, optimiser state and the loss
  # reduction stay float32 (tapkit/train/precision.py).
  c.precision = ml_collections.ConfigDict({'compute_dtype': 'float32',
                                           'param_dtype': 'float32'})

  c.mesh = ml_collections.ConfigDict({'data': -1, 'fsdp': 1})  # -1 = the rest
  c.sharding = ml_collections.ConfigDict({'fsdp_min_size': 2**16})  # elements

  c.optimizer = ml_collections.ConfigDict({
      'name': 'adamw', 'lr': 1e-3, 'b1': 0.9, 'b2': 0.999, 'eps': 1e-8,
      'weight_decay': 0.0, 'clip_norm': 1.0,
      'schedule': 'cosine', 'warmup_steps': 0, 'end_lr_factor': 0.0,
      'groups': (),  # ((regex, lr_mult), ...); lr_mult 0 = frozen
  })
  # EMA of the params (e.g. a teacher): None = off.
  c.ema = ml_collections.ConfigDict({'momentum': config_dict.placeholder(float)})
  c.guard = ml_collections.ConfigDict({'max_consecutive_bad': 10})
  c.checkpoint = ml_collections.ConfigDict({
      'every_steps': 500, 'keep': 3, 'async_save': True,
      'best_metric': '', 'best_mode': 'min', 'keep_best': 1,
  })
  # max_bad_fraction: a training record that cannot be read (malformed file) is skipped
  # with a logged warning; the run stops once more than this fraction of the source failed.
  c.data = ml_collections.ConfigDict({'worker_count': 0, 'max_bad_fraction': 0.01})
  # Periodic evaluations: `evals.<name> = {'type': ..., 'every_steps': N,
  # ...keyword arguments}` (tapkit/train/evaluators.py); scalars are written as
  # `<name>/<key>`.
  c.evals = ml_collections.ConfigDict()
  # clu Profile hook: first_step 0 = off.
  c.profile = ml_collections.ConfigDict({'first_step': 0, 'num_steps': 5})
  # Multi-host: also on when the env var TAPKIT_DISTRIBUTED=1 is set. Empty /
  # None fields let jax.distributed.initialize() auto-detect (SLURM, TPU, ...).
  c.distributed = ml_collections.ConfigDict({
      'initialize': False,
      'coordinator_address': '',
      'num_processes': config_dict.placeholder(int),
      'process_id': config_dict.placeholder(int),
  })
  return c


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads `path/to/config.py[:arg]` the way `--config` does, for CLIs without absl.

  A relative path that does not exist from the working directory is looked up
  from the repository root, so `configs/x.py` works from anywhere in an editable
  install.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top

  path_text, _, arg = spec.partition(':')
  path = pathlib.Path(path_text)
  if not path.is_absolute() and not path.exists():
    path = pathlib.Path(__file__).resolve().parents[2] / path
  if not path.is_file():
    raise FileNotFoundError(f'config file not found: {path_text}')
  module_spec = importlib.util.spec_from_file_location(f'_config_{path.stem}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def demo_config(spec: str, total_steps: int, fast: bool = False, *, num_train: int | None = None,
                num_eval: int | None = None) -> ml_collections.ConfigDict:
  """A preset (`load_config(spec)`) shortened to `total_steps`, for demos (quickstart, notebooks).

  `num_train` / `num_eval`, when given, set the number of synthetic training / held-out clips
  (`data.synthetic.num_train` / `num_eval`, the same keys in every method).

  With `fast` (plumbing checks of a few steps) it also evaluates and saves every 2 steps, logs
  every step, and caps a learning-rate warm-up at 1 step (the cosine schedule needs more steps
  than warm-up).
  """
  config = load_config(spec)
  config.total_steps = total_steps
  if num_train is not None:
    config.data.synthetic.num_train = num_train
  if num_eval is not None:
    config.data.synthetic.num_eval = num_eval
  if fast:
    for section in config.evals.values():
      section.every_steps = 2
    config.log_every = 1
    config.checkpoint.every_steps = 2
    if config.optimizer.get('warmup_steps', 0) > 1:
      config.optimizer.warmup_steps = 1
  return config
def _keys_of(reference: Any) -> Mapping[str, Any] | None:
  """The known keys of `reference` as {name: sub-reference}, or None for a leaf."""
  if isinstance(reference, type) and dataclasses.is_dataclass(reference):
    return {f.name: None for f in dataclasses.fields(reference)}
  if isinstance(reference, (Mapping, ml_collections.ConfigDict)):
    return {k: reference[k] for k in reference.keys()}
  if isinstance(reference, Collection) and not isinstance(reference, str):
    return {k: None for k in reference}
  return None


def _is_section(x: Any) -> bool:
  return isinstance(x, (Mapping, ml_collections.ConfigDict))


def _join(prefix: str, key: str) -> str:
  return f'{prefix}.{key}' if prefix else key


def check_keys(config: Any, reference: Any, prefix: str = '') -> None:
  """Raises if `config` holds a key that `reference` does not know, at any depth.

  Args:
    config: a ConfigDict or mapping (sub-configs are checked recursively where
      the reference also has a section there).
    reference: the known keys: a ConfigDict / mapping (values are the
      sub-references; a value that is not a mapping is a leaf), a dataclass
      type (its field names) or a collection of names. A mapping key `ANY`
      ('*') admits any name and checks each entry against its value (None:
      not checked).
    prefix: the dotted name of `config` inside the whole config, used in the
      error ('' at the top level).

  Raises:
    ValueError: "config key 'a.b.c' is not known; did you mean 'a.b.d'?".
  """
  known = _keys_of(reference)
  items = _keys_of(config)
  if known is None or items is None:
    return
  wildcard = known.get(ANY) if ANY in known else None
  for key in items:
    if key in known and key != ANY:
      if _is_section(known[key]) and _is_section(config[key]):
        check_keys(config[key], known[key], _join(prefix, key))
    elif ANY in known:
      if wildcard is not None and _is_section(config[key]):
        check_keys(config[key], wildcard, _join(prefix, key))
    else:
      names = [k for k in known if k != ANY]
      # A close spelling, else the known keys that extend this one ('dir' -> 'train_dir').
      close = difflib.get_close_matches(key, names, n=1) or sorted(
          k for k in names if key in k.split('_'))
      if len(close) == 1:
        hint = f"; did you mean '{_join(prefix, close[0])}'?"
      elif close:
        hint = '; did you mean one of ' + ', '.join(f"'{_join(prefix, k)}'" for k in close) + '?'
      else:
        hint = f'; known keys here: {sorted(names)}'
      raise ValueError(f"config key '{_join(prefix, key)}' is not known{hint}")


def check_config(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict,
                 any_name: tuple[str, ...] = ()) -> None:
  """`check_keys` of a whole config against a method's reference config.

  Args:
    config: the config a method is built from.
    reference: the base preset of the method's config file (all known keys).
    any_name: dotted names of sections whose entries are user-named (e.g.
      'data.sources'); each entry is checked against the reference's first
      entry there.
  """
  ref = reference.to_dict() if isinstance(reference, ml_collections.ConfigDict) else dict(reference)
  ref.update(_OPEN_SECTIONS)
  for dotted in any_name:
    *parents, last = dotted.split('.')
    node = ref
    for part in parents:
      node = node[part]
    entries = node[last]
    node[last] = {ANY: next(iter(entries.values())) if entries else None}
  check_keys(config, ref)


def from_section(cls: type[_T], section: Any, prefix: str) -> _T:
  """`cls(**section)` for a dataclass `cls`, rejecting keys that are not fields.

  Fields missing from `section` keep the dataclass defaults, so the dataclass
  holds each default once. `prefix` is the section's dotted name (e.g. 'loss').
  """
  check_keys(section, cls, prefix)
  items = section.items() if hasattr(section, 'items') else dict(section).items()
  return cls(**dict(items))


def method_reference(config_file: str, preset: str | None = None) -> ml_collections.ConfigDict:
  """The base preset of a method's config file: its full set of known keys."""
  return load_config(f'{config_file}:{preset}' if preset else config_file)
