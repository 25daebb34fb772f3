"""The one error type of the file readers: a `ValueError` that names the file and the field."""

from __future__ import annotations

import os
import pickle


class BadFileError(ValueError):
  """A file that cannot be read as what it claims to be.

  The message is `"{path}: field '{field}': {message}"` (or `"{path}: {message}"` when the
  problem concerns the whole file), so that a user can find the offending entry.

  Attributes:
    path: the file, as given.
    field: the entry inside it (archive member, tensor or parameter name), or None.
    detail: what was wrong / what was expected.
  """

  def __init__(self, path: str | os.PathLike[str], field: str | None, message: str):
    self.path = os.fspath(path)
    self.field = field
    self.detail = message
    where = f"{self.path}: field '{field}'" if field is not None else self.path
    super().__init__(f'{where}: {message}')

  def __reduce__(self):
    return type(self), (self.path, self.field, self.detail)


class UnsafePickleError(BadFileError, pickle.UnpicklingError):
  """A pickle refused by the restricted unpickler: a global outside the allow-list, a persistent
  id nobody asked for, or a structure over the work limits. Also a `pickle.UnpicklingError`, so
  code that catches unpickling errors keeps working."""
