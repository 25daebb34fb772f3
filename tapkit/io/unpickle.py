"""The one restricted unpickler: an allow-list of globals and bounded work.

A general unpickler runs whatever callable a file names, so no user file is ever handed to
`pickle.load`. Every pickle we read (tensor containers inside torch `.pt` files, the NYUv2
test pickle of Probe3D, 1-D arrays of `bytes` inside TAPVid-3D `.npz` files) goes through
`load`, which

1. scans the opcode stream first, without building anything (`pickletools.genops` over a
   reader that refuses any declared length beyond the end of the data, so a lying length
   field cannot make it allocate). The scan rebuilds the shape of the object graph: which
   object contains which, through memo references too. It refuses
   * a graph whose fully expanded size (every shared reference counted once per use, as a
     consumer walking the result would see it) exceeds `max_nodes` — a "billion laughs"
     pickle of lists of lists of one shared list is tiny on disk and linear to unpickle,
     but exponential for any code that walks the result;
   * nesting deeper than `max_depth`, and self-referencing structures;
   * more than `max_bytes` of bytes/str payload in total;
   * extension codes and out-of-band buffers (never used by the files we read);
2. then unpickles with `RestrictedUnpickler`, whose `find_class` resolves only the
   `(module, name)` pairs of the caller's allow-list, to the objects the caller chose (often
   inert stand-ins), and refuses everything else before anything is called. Persistent ids
   are refused unless the caller passes a `persistent_load` function.

Every failure is a `BadFileError` naming the file and field; refusals (forbidden global,
limits) are its subclass `UnsafePickleError`, which is also a `pickle.UnpicklingError`.

`numpy_array_globals()` is the allow-list for pickles of plain numpy arrays and scalars.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import numpy as np

from tapkit.io.errors import BadFileError, UnsafePickleError

# Default work limits. Tensor containers and dataset pickles are far below them: a torch state
# dict of a ViT-g (~600 tensors) expands to ~20k objects and nests < 10 deep. The scan keeps a
# small record per object, so `max_nodes` also bounds its own memory (~100 bytes an object).
MAX_DEPTH = 64
MAX_NODES = 1_000_000
MAX_BYTES = 1 << 36  # 64 GiB of bytes/str payload in one pickle.
# Longest newline-terminated argument (text opcodes: INT, LONG, STRING, GLOBAL names).
_MAX_LINE = 1 << 16

AllowList = Mapping[tuple[str, str], Any]

# Opcodes that push one object built from their argument alone.
_ATOMS = frozenset({
    'INT', 'BININT', 'BININT1', 'BININT2', 'LONG', 'LONG1', 'LONG4', 'STRING', 'BINSTRING',
    'SHORT_BINSTRING', 'BINBYTES', 'SHORT_BINBYTES', 'BINBYTES8', 'BYTEARRAY8', 'UNICODE',
    'SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8', 'NONE', 'NEWTRUE', 'NEWFALSE', 'FLOAT',
    'BINFLOAT', 'EMPTY_LIST', 'EMPTY_DICT', 'EMPTY_TUPLE', 'EMPTY_SET', 'GLOBAL', 'PERSID'})
_REFUSED = frozenset({'EXT1', 'EXT2', 'EXT4', 'NEXT_BUFFER', 'READONLY_BUFFER'})
_NO_STACK_EFFECT = frozenset({'PROTO', 'FRAME', 'STOP'})


class _BoundedReader:
  """File-like view that refuses reads past `size` instead of allocating for them."""

  def __init__(self, file: BinaryIO, size: int, source: str, field: str | None):
    self._file = file
    self._left = size
    self._source = source
    self._field = field

  def read(self, n: int = -1) -> bytes:
    if n is None or n < 0:
      n = self._left
    if n > self._left:
      raise BadFileError(self._source, self._field, f'truncated pickle: an argument declares '
                         f'{n} bytes but only {self._left} remain')
    data = self._file.read(n)
    self._left -= len(data)
    return data

  def readline(self, limit: int = -1) -> bytes:
    del limit
    line = self._file.readline(min(_MAX_LINE, self._left))
    self._left -= len(line)
    if not line.endswith(b'\n'):
      raise BadFileError(self._source, self._field,
                         f'pickle text argument longer than {_MAX_LINE} bytes or truncated')
    return line


def _scan(reader: _BoundedReader, source: str, field: str | None, max_depth: int,
          max_nodes: int, max_bytes: int) -> None:
  """Checks the opcode stream against the work limits (module docstring) without unpickling."""

  def refuse(message: str):
    raise UnsafePickleError(source, field, message)

  children: list[list[int]] = []  # node id -> ids of the objects it holds

  def new(kids=()) -> int:
    if len(children) >= max_nodes:
      refuse(f'more than {max_nodes} objects')
    children.append(list(kids))
    return len(children) - 1

  stack: list[int] = []
  metastack: list[list[int]] = []
  memo: dict[int, int] = {}
  payload = 0

  def pop_mark() -> list[int]:
    nonlocal stack
    items = stack
    stack = metastack.pop()
    return items

  try:
    for opcode, arg, _ in pickletools.genops(reader):
      name = opcode.name
      if isinstance(arg, (bytes, bytearray, str)):
        payload += len(arg)
        if payload > max_bytes:
          refuse(f'more than {max_bytes} bytes of payload')
      if name in _REFUSED:
        refuse(f'opcode {name} is not allowed')
      elif name in _NO_STACK_EFFECT:
        continue
      elif name in _ATOMS:
        stack.append(new())
      elif name == 'MARK':
        metastack.append(stack)
        stack = []
      elif name == 'POP':
        if stack:
          stack.pop()
        else:
          pop_mark()
      elif name == 'POP_MARK':
        pop_mark()
      elif name == 'DUP':
        stack.append(stack[-1])
      elif name in ('TUPLE', 'LIST', 'DICT', 'FROZENSET', 'OBJ', 'INST'):
        items = pop_mark()  # Rebinds `stack`: evaluate before appending to it.
        stack.append(new(items))
      elif name in ('TUPLE1', 'TUPLE2', 'TUPLE3'):
        n = int(name[-1])
        if len(stack) < n:
          raise IndexError('stack underflow')
        items = stack[-n:]
        del stack[-n:]
        stack.append(new(items))
      elif name in ('APPEND', 'BUILD'):
        value = stack.pop()
        children[stack[-1]].append(value)
      elif name == 'SETITEM':
        value, key = stack.pop(), stack.pop()
        children[stack[-1]].extend((key, value))
      elif name in ('APPENDS', 'SETITEMS', 'ADDITEMS'):
        items = pop_mark()
        children[stack[-1]].extend(items)
      elif name in ('PUT', 'BINPUT', 'LONG_BINPUT', 'MEMOIZE'):
        memo[len(memo) if name == 'MEMOIZE' else arg] = stack[-1]
        if len(memo) > max_nodes:
          refuse(f'more than {max_nodes} memo entries')
      elif name in ('GET', 'BINGET', 'LONG_BINGET'):
        stack.append(memo[arg])
      elif name in ('REDUCE', 'NEWOBJ', 'STACK_GLOBAL', 'BINPERSID'):
        n = {'REDUCE': 2, 'NEWOBJ': 2, 'STACK_GLOBAL': 2, 'BINPERSID': 1}[name]
        items = stack[-n:]
        if len(items) != n:
          raise IndexError('stack underflow')
        del stack[-n:]
        stack.append(new(items))
      elif name == 'NEWOBJ_EX':
        items = stack[-3:]
        if len(items) != 3:
          raise IndexError('stack underflow')
        del stack[-3:]
        stack.append(new(items))
      else:
        refuse(f'unknown opcode {name}')
  except BadFileError:
    raise
  except (ValueError, IndexError, KeyError, EOFError) as e:
    raise BadFileError(source, field, f'malformed pickle ({type(e).__name__}: {e})') from None
  if len(stack) != 1 or metastack:
    raise BadFileError(source, field, 'malformed pickle (unbalanced stack at STOP)')

  # Expanded size and depth of the result, each node's computed once (iterative post-order).
  size: dict[int, int] = {}
  depth: dict[int, int] = {}
  on_path: set[int] = set()
  work: list[tuple[int, bool]] = [(stack[0], False)]
  while work:
    node, done = work.pop()
    if done:
      on_path.discard(node)
      kids = children[node]
      size[node] = 1 + sum(size[k] for k in kids)
      depth[node] = 1 + max((depth[k] for k in kids), default=0)
      if size[node] > max_nodes:
        refuse(f'structure expands to more than {max_nodes} objects (shared references '
               'repeated, "billion laughs")')
      if depth[node] > max_depth:
        refuse(f'structure nested deeper than {max_depth} levels')
      continue
    if node in size:
      continue
    if node in on_path:
      refuse('self-referencing structure')
    on_path.add(node)
    work.append((node, True))
    for kid in children[node]:
      if kid in on_path:
        refuse('self-referencing structure')
      if kid not in size:
        work.append((kid, False))


class RestrictedUnpickler(pickle.Unpickler):
  """`pickle.Unpickler` that resolves only the globals of `allowed`.

  Use it through `load`, which bounds the work first; on its own it only restricts globals.
  """

  def __init__(self, file: BinaryIO, allowed: AllowList, *, source: str,
               field: str | None = None,
               persistent_load: Callable[[Any], Any] | None = None):
    super().__init__(file)
    self._allowed = allowed
    self._source = source
    self._field = field
    self._persistent = persistent_load

  def find_class(self, module: str, name: str) -> Any:
    key = (module, name)
    if key not in self._allowed:
      raise UnsafePickleError(self._source, self._field,
                              f'refusing to load global {module}.{name} (not in the allow-list)')
    return self._allowed[key]

  def persistent_load(self, pid: Any) -> Any:
    if self._persistent is None:
      raise UnsafePickleError(self._source, self._field, 'persistent ids are not allowed')
    return self._persistent(pid)


def load(data: bytes | BinaryIO, allowed: AllowList, *, source: str | os.PathLike[str],
         field: str | None = None, persistent_load: Callable[[Any], Any] | None = None,
         max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES,
         max_bytes: int = MAX_BYTES) -> Any:
  """Unpickles `data` with only the globals of `allowed`, after checking the work limits.

  Args:
    data: the pickle bytes, or a seekable binary file positioned at the pickle (read to its end).
    allowed: {(module, name): object returned for that global}.
    source: the file, for error messages.
    field: the entry inside the file (archive member), for error messages.
    persistent_load: called with each persistent id; None refuses them.
    max_depth, max_nodes, max_bytes: the work limits (module docstring).

  Returns:
    The unpickled object.

  Raises:
    UnsafePickleError: a refused global, persistent id or structure (also a
      `pickle.UnpicklingError`).
    BadFileError: a malformed or truncated pickle, or an error raised by an allowed callable.
  """
  source = os.fspath(source)
  file = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
  start = file.tell()
  end = file.seek(0, io.SEEK_END)
  file.seek(start)
  _scan(_BoundedReader(file, end - start, source, field), source, field, max_depth, max_nodes,
        max_bytes)
  file.seek(start)
  try:
    return RestrictedUnpickler(file, allowed, source=source, field=field,
                               persistent_load=persistent_load).load()
  except BadFileError:
    raise
  except Exception as e:  # pylint: disable=broad-exception-caught
    # Whatever an allowed callable or the unpickler trips on (wrong arguments, bad state):
    # the file is malformed.
    raise BadFileError(source, field, f'malformed pickle ({type(e).__name__}: {e})') from None


# ------------------------------------------------------------------ numpy arrays


class _NdarrayMarker:
  """Stands for `numpy.ndarray` inside a pickle: only `_reconstruct` accepts it (not callable)."""


_NDARRAY = _NdarrayMarker()


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
  """numpy's `_reconstruct`, restricted to the empty placeholder numpy writes.

  numpy pickles an array as `_reconstruct(ndarray, (0,), b'b')` followed by BUILD with the
  real shape, dtype and raw bytes; `ndarray.__setstate__` then checks the bytes against the
  shape before using them. Any other shape here would allocate from an unchecked number.
  """
  from numpy._core import multiarray  # pylint: disable=g-import-not-at-top
  if subtype is not _NDARRAY:
    raise pickle.UnpicklingError('_reconstruct may only build numpy.ndarray')
  if tuple(shape) != (0,):
    raise pickle.UnpicklingError(f'_reconstruct placeholder shape must be (0,), got {shape!r}')
  return multiarray._reconstruct(np.ndarray, (0,), typecode)  # pylint: disable=protected-access


def numpy_array_globals() -> dict[tuple[str, str], Any]:
  """Allow-list for pickles of plain numpy arrays, dtypes and scalars (numpy 1.x and 2.x names).

  Arrays come back as real `np.ndarray`s: the raw bytes of each are checked by numpy against its
  declared shape and dtype before they are used, and their size is bounded by the pickle's size.
  """
  from numpy._core import multiarray  # pylint: disable=g-import-not-at-top
  out: dict[tuple[str, str], Any] = {('numpy', 'ndarray'): _NDARRAY, ('numpy', 'dtype'): np.dtype}
  for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
    out[(module, '_reconstruct')] = _reconstruct
    out[(module, 'scalar')] = multiarray.scalar
  return out
