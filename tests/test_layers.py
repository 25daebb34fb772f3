"""The house rules, checked statically over the source tree (imports inside functions included).

  * `tapkit` (the base layer) imports no method package; a method package imports `tapkit`
    only, never another method; `tapkit3d` (the app layer) may import everything.
  * No import cycle between modules.
  * No library module reads absl flags (only `tapkit.train.launch` defines them).
  * One restricted unpickler class in the codebase (`tapkit.io`).
  * No source file outside tests / configs / benchmarks longer than 650 lines.
"""

from __future__ import annotations

import ast
import collections
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASE = 'tapkit'
METHODS = ('trajan3d', 'tracks4d', 'dpov_jax')
APP = 'tapkit3d'
PACKAGES = (BASE, *METHODS, APP)
MAX_LINES = 650


def _modules() -> dict[str, pathlib.Path]:
  mods = {}
  for pkg in PACKAGES:
    for path in (ROOT / pkg).rglob('*.py'):
      parts = path.relative_to(ROOT).with_suffix('').parts
      if parts[-1] == '__init__':
        parts = parts[:-1]
      mods['.'.join(parts)] = path
  return mods


def _imports(name: str, path: pathlib.Path, mods: dict[str, pathlib.Path]) -> set[str]:
  """Project modules that `name` imports anywhere in its file."""
  is_package = path.name == '__init__.py'
  found = set()

  def resolve(target: str) -> str | None:
    while target and target not in mods:
      target = target.rpartition('.')[0]
    return target or None

  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = name.split('.') if is_package else name.split('.')[:-1]
        base = base[:len(base) - (node.level - 1)]
        module = '.'.join(base + ([node.module] if node.module else []))
      else:
        module = node.module or ''
      # `from pkg import sub` imports the submodule when there is one, else names of `pkg`.
      targets = [f'{module}.{a.name}' if f'{module}.{a.name}' in mods else module
                 for a in node.names]
    else:
      continue
    for target in targets:
      if target.split('.')[0] in PACKAGES:
        resolved = resolve(target)
        if resolved and resolved != name:
          found.add(resolved)
  return found


def _graph() -> dict[str, set[str]]:
  mods = _modules()
  return {name: _imports(name, path, mods) for name, path in mods.items()}


def _allowed(src: str, dst: str) -> bool:
  a, b = src.split('.')[0], dst.split('.')[0]
  if a == b or a == APP:
    return True
  if a in METHODS:
    return b == BASE
  return False  # tapkit imports nothing above it


def test_layers():
  bad = sorted(f'{a} -> {b}' for a, deps in _graph().items() for b in deps if not _allowed(a, b))
  assert not bad, 'layer violations:\n  ' + '\n  '.join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan, iterative)."""
  index, low, on_stack, stack, out = {}, {}, set(), [], []
  counter = 0
  for root in graph:
    if root in index:
      continue
    work = [(root, iter(sorted(graph[root])))]
    index[root] = low[root] = counter
    counter += 1
    stack.append(root)
    on_stack.add(root)
    while work:
      node, children = work[-1]
      advanced = False
      for child in children:
        if child not in index:
          index[child] = low[child] = counter
          counter += 1
          stack.append(child)
          on_stack.add(child)
          work.append((child, iter(sorted(graph.get(child, ())))))
          advanced = True
          break
        if child in on_stack:
          low[node] = min(low[node], index[child])
      if advanced:
        continue
      work.pop()
      if work:
        low[work[-1][0]] = min(low[work[-1][0]], low[node])
      if low[node] == index[node]:
        component = []
        while True:
          member = stack.pop()
          on_stack.discard(member)
          component.append(member)
          if member == node:
            break
        if len(component) > 1:
          out.append(sorted(component))
  return out


def test_no_import_cycles():
  cycles = _cycles(_graph())
  assert not cycles, f'import cycles: {cycles}'


def _library_files():
  for name, path in _modules().items():
    yield name, path


def test_no_library_module_reads_absl_flags():
  offenders = []
  for name, path in _library_files():
    if name == 'tapkit.train.launch':
      continue
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
      if isinstance(node, ast.Attribute) and node.attr == 'FLAGS':
        offenders.append(f'{name}:{node.lineno}')
  assert not offenders, offenders


def test_one_restricted_unpickler():
  classes = []
  for name, path in _library_files():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ClassDef):
        for base in node.bases:
          text = ast.unparse(base)
          if text.endswith('Unpickler'):
            classes.append(f'{name}.{node.name}')
  assert len(classes) == 1, classes
  assert classes[0].startswith('tapkit.io.'), classes


def test_no_long_source_files():
  long = []
  for path in ROOT.rglob('*.py'):
    rel = path.relative_to(ROOT)
    if rel.parts[0] in ('tests', 'configs', 'benchmarks', '.venv', 'build') or '.venv' in rel.parts:
      continue
    lines = len(path.read_text().splitlines())
    if lines > MAX_LINES:
      long.append(f'{rel}: {lines}')
  assert not long, long
