"""The one reader of JSON dataset files (annotations, sidecars), size and nesting bounded.

`json.loads` recurses once per nesting level, so a file of 100 000 `[` raises
`RecursionError` (or worse, exhausts the C stack); it also accepts any file size and reports
undecodable bytes as `UnicodeDecodeError` without the file's name. `read_json` reads at most
`max_bytes`, decodes strict UTF-8, measures the nesting depth with a linear scan that skips
string contents before parsing anything, and turns every failure into a `BadFileError`
(a `ValueError`) naming the file.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from tapkit.io.errors import BadFileError

# Deepest nesting of arrays / objects accepted; dataset annotations nest < 10 deep.
MAX_DEPTH = 100
# Largest JSON file read (bytes): the largest annotation files we read are ~100 MB.
MAX_BYTES = 1 << 30

# A JSON string (its escapes included) or one bracket; anything else is skipped.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_FIELD = '<json>'


def nesting_depth(text: str) -> int:
  """Deepest nesting of `[` / `{` in JSON text, not counting brackets inside strings."""
  depth = deepest = 0
  for match in _TOKENS.finditer(text):
    token = match.group()
    if token in ('[', '{'):
      depth += 1
      deepest = max(deepest, depth)
    elif token in (']', '}'):
      depth -= 1
  return deepest


def parse_json(text: bytes | str, name: str | os.PathLike[str], max_depth: int = MAX_DEPTH
               ) -> Any:
  """Parses JSON text (bytes: strict UTF-8, an optional BOM skipped) from the file `name`.

  Raises:
    BadFileError (a ValueError) naming `name`.
  """
  if isinstance(text, bytes):
    try:
      text = text.decode('utf-8-sig')
    except UnicodeDecodeError as e:
      raise BadFileError(name, _FIELD, f'not UTF-8 text ({e})') from None
  depth = nesting_depth(text)
  if depth > max_depth:
    raise BadFileError(name, _FIELD, f'JSON nests {depth} levels deep, more than the limit '
                       f'of {max_depth}')
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise BadFileError(name, _FIELD, f'invalid JSON ({e})') from None
  except (RecursionError, ValueError, MemoryError) as e:
    raise BadFileError(name, _FIELD, f'unparsable JSON ({type(e).__name__}: {e})') from None


def read_json(path: str | os.PathLike[str], max_depth: int = MAX_DEPTH,
              max_bytes: int = MAX_BYTES) -> Any:
  """Reads a JSON file with bounded size and nesting (module docstring).

  Raises:
    BadFileError (a ValueError) naming the file.
  """
  try:
    with open(path, 'rb') as f:
      size = os.fstat(f.fileno()).st_size
      if size > max_bytes:
        raise BadFileError(path, _FIELD, f'file of {size} bytes exceeds the limit of '
                           f'{max_bytes} bytes')
      data = f.read(max_bytes + 1)
  except FileNotFoundError:
    raise BadFileError(path, _FIELD, 'file not found') from None
  except IsADirectoryError:
    raise BadFileError(path, _FIELD, 'is a directory, not a JSON file') from None
  except OSError as e:
    raise BadFileError(path, _FIELD, f'cannot read ({e})') from None
  if len(data) > max_bytes:
    raise BadFileError(path, _FIELD, f'file exceeds the limit of {max_bytes} bytes')
  return parse_json(data, path, max_depth)
