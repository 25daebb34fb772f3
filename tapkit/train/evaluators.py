"""Evaluators named in the config, shared by training and the offline CLI.

A config lists its periodic evaluations under `config.evals`:

    config.evals.eval = ml_collections.ConfigDict({
        'type': 'tracks4d.held_out',   # a registered name, or 'module.path:Factory'
        'every_steps': 5000,           # 0 = not during training (still runnable offline)
        'max_frames': 50, 'max_points': 1000,   # keyword arguments of the factory
    })

An evaluator type is a factory `factory(config, workdir, **kwargs) -> evaluator`;
the evaluator is called as `evaluator(state, step, writer=None)` and returns
{metric: float}, written as `<name>/<metric>`. `state` has `.params`,
`.ema_params` (or None) and `.step`: the engine passes its TrainState,
`python -m tapkit.evaluate` a host-side `EvalState` read from a checkpoint.

A method registers its types with `@register('<package>.<name>')` in its
module `<package>/evaluators.py`. The base layer never imports a method
statically: a registered name that is not known yet makes `resolve` import
`<package>.evaluators` by name, and 'module.path:Factory' imports
`module.path`, both at run time.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

Evaluator = Callable[..., Mapping[str, float]]
Factory = Callable[..., Evaluator]

# Keys of `config.evals.<name>` read by the engine; the rest go to the factory.
ENGINE_KEYS = ('type', 'every_steps')

_REGISTRY: dict[str, Factory] = {}


@dataclasses.dataclass(frozen=True)
class EvalHook:
  """Called every `every_steps` steps (and at the last step) on process-global state.

  `fn(state, step)` returns scalars, written as `<name>/<key>`; it may also
  write images etc. itself through `writer` (passed as a keyword).
  """

  every_steps: int
  fn: Callable[..., Mapping[str, float]]
  name: str = 'eval'


@dataclasses.dataclass(frozen=True)
class EvalState:
  """The parts of a TrainState an evaluator reads, as host (numpy) trees."""

  step: int
  params: Any
  ema_params: Any = None
  extra: Any = None


def register(name: str) -> Callable[[Factory], Factory]:
  """Decorator: registers an evaluator factory under `name` ('<package>.<name>')."""
  if '.' not in name or ':' in name:
    raise ValueError(f"evaluator names look like '<package>.<name>', got {name!r}")

  def decorate(factory: Factory) -> Factory:
    if _REGISTRY.get(name, factory) is not factory:
      raise ValueError(f'evaluator {name!r} is already registered to {_REGISTRY[name]!r}')
    _REGISTRY[name] = factory
    return factory

  return decorate


def registered() -> list[str]:
  """The names registered so far (methods register when their evaluators import)."""
  return sorted(_REGISTRY)


def resolve(type_name: str) -> Factory:
  """The factory of `type_name`: a registered name or 'module.path:Factory'.

  Raises:
    ValueError: naming the type when it cannot be found.
  """
  if ':' in type_name:
    module_name, _, attr = type_name.partition(':')
    module = importlib.import_module(module_name)
    try:
      return getattr(module, attr)
    except AttributeError:
      raise ValueError(f'evaluator type {type_name!r}: module {module_name} has no '
                       f'{attr!r}') from None
  if type_name not in _REGISTRY:
    package = type_name.split('.')[0]
    try:
      importlib.import_module(f'{package}.evaluators')
    except ModuleNotFoundError as e:
      if e.name not in (package, f'{package}.evaluators'):
        raise
  if type_name not in _REGISTRY:
    close = difflib.get_close_matches(type_name, registered(), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f'; registered: {registered()}'
    raise ValueError(f'evaluator type {type_name!r} is not registered{hint}')
  return _REGISTRY[type_name]


def _check_kwargs(factory: Factory, kwargs: Mapping[str, Any], prefix: str) -> None:
  """Rejects keyword arguments the factory does not take, by full dotted name."""
  params = inspect.signature(factory).parameters
  if any(p.kind == p.VAR_KEYWORD for p in params.values()):
    return
  known = [n for n, p in params.items() if n not in ('config', 'workdir') and
           p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
  for key in kwargs:
    if key not in known:
      close = difflib.get_close_matches(key, known, n=1)
      hint = f"; did you mean '{prefix}.{close[0]}'?" if close else f'; known keys: {known}'
      raise ValueError(f"config key '{prefix}.{key}' is not known{hint}")


def build(config: ml_collections.ConfigDict, workdir: str | None, name: str) -> Evaluator:
  """The evaluator `config.evals.<name>`, built for the run in `workdir`."""
  evals = config.evals if 'evals' in config else {}
  if name not in evals:
    raise ValueError(f"config key 'evals.{name}' is not known; evaluators in this config: "
                     f'{sorted(evals)}')
  section = evals[name]
  if 'type' not in section:
    raise ValueError(f"config key 'evals.{name}.type' is missing")
  kwargs = {k: v for k, v in section.items() if k not in ENGINE_KEYS}
  factory = resolve(section.type)
  _check_kwargs(factory, kwargs, f'evals.{name}')
  return factory(config, workdir, **kwargs)


def build_hooks(config: ml_collections.ConfigDict, workdir: str | None) -> list[EvalHook]:
  """EvalHooks of every `config.evals` entry with every_steps > 0 (in config order)."""
  hooks = []
  for name, section in config.evals.items():
    if 'every_steps' not in section:
      raise ValueError(f"config key 'evals.{name}.every_steps' is missing")
    if int(section.every_steps) > 0:
      hooks.append(EvalHook(every_steps=int(section.every_steps),
                            fn=build(config, workdir, name), name=name))
  return hooks
