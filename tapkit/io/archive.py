"""Zip containers (`.npz`, torch `.pt`): opening them and bounding a member's size before reading.

A zip member's uncompressed size is a number in its header, written by whoever made the file.
Before anything is allocated from it, it is checked against what the member can really hold:

* stored members (no compression) hold exactly their compressed size;
* deflated members expand at most 1032 times (deflate's largest ratio: a 258-byte match coded
  in 2 bits), plus `DEFLATE_MARGIN` bytes for the stream's fixed overhead on tiny members;
* other compression methods (bzip2, lzma) are refused: none of our formats uses them.

`zipfile` itself stops reading at the declared size and checks the CRC at the end.
"""

from __future__ import annotations

import os
import zipfile

from tapkit.io.errors import BadFileError

ARCHIVE = '<archive>'
DEFLATE_MAX_RATIO = 1032
DEFLATE_MARGIN = 1024


def open_zip(path: str | os.PathLike[str], what: str = '.npz (zip) archive') -> zipfile.ZipFile:
  """Opens a zip archive; a missing, truncated or non-zip file raises BadFileError."""
  try:
    return zipfile.ZipFile(path)
  except FileNotFoundError:
    raise BadFileError(path, ARCHIVE, 'file not found') from None
  except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
    raise BadFileError(path, ARCHIVE, f'not a readable {what}, e.g. truncated ({e})') from None


def checked_member_size(info: zipfile.ZipInfo, path: str | os.PathLike[str], field: str,
                        max_bytes: int) -> int:
  """The declared uncompressed size of `info`, after checking it is possible and <= max_bytes."""
  size = info.file_size
  if info.compress_type == zipfile.ZIP_STORED:
    if size != info.compress_size:
      raise BadFileError(path, field, f'stored member declares {size} bytes but holds '
                         f'{info.compress_size}')
  elif info.compress_type == zipfile.ZIP_DEFLATED:
    bound = info.compress_size * DEFLATE_MAX_RATIO + DEFLATE_MARGIN
    if size > bound:
      raise BadFileError(path, field, f'member declares {size} bytes, more than its '
                         f'{info.compress_size} compressed bytes can hold ({bound})')
  else:
    raise BadFileError(path, field, f'unsupported zip compression method {info.compress_type} '
                       '(only stored and deflated)')
  if size > max_bytes:
    raise BadFileError(path, field, f'member of {size} bytes exceeds the limit of {max_bytes} '
                       'bytes')
  return size
