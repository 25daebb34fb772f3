"""The one reader of image files (frames, depth PNGs, annotation masks), pixels capped.

An image header declares its width and height; PIL allocates what they say when the pixels
are decoded. A 1 kB PNG can declare 100 000 x 100 000 pixels (a "decompression bomb").
`open_image` parses the header only, checks `width x height` against `max_pixels`
(`MAX_PIXELS` by default) and only then decodes, inside the `with` block, so that nothing
larger than the cap is ever allocated. Every failure — missing file, unknown or refused format,
a header over the cap, truncated or corrupt pixel data — is a `BadFileError` (a `ValueError`)
naming the file (and the field, for images stored inside another file).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
from collections.abc import Iterator

import numpy as np

from tapkit.io.errors import BadFileError

# Largest image decoded unless the caller says otherwise: 2^26 = 67 M pixels (8192 x 8192),
# above any frame or depth map we read (NAVI's largest photos are ~12 M pixels), and at most
# 268 MB as RGBA.
MAX_PIXELS = 1 << 26
# Formats our datasets use. PIL would otherwise try each of its ~40 plugins on unknown data.
FORMATS = ('PNG', 'JPEG', 'BMP', 'WEBP', 'TIFF', 'GIF', 'PPM')

Source = str | os.PathLike[str] | bytes


def _name(source: Source, name: str | os.PathLike[str] | None) -> str:
  if name is not None:
    return os.fspath(name)
  return '<bytes>' if isinstance(source, bytes) else os.fspath(source)


@contextlib.contextmanager
def open_image(source: Source, *, name: str | os.PathLike[str] | None = None,
               field: str | None = None, max_pixels: int = MAX_PIXELS,
               formats: tuple[str, ...] = FORMATS) -> Iterator['PIL.Image.Image']:  # noqa: F821
  """Opens an image, checks its declared size, decodes it; yields the loaded PIL image.

  Args:
    source: a file path or the encoded bytes.
    name: the file named in errors (default: `source` when it is a path).
    field: the entry inside that file the bytes come from (e.g. 'images_jpeg_bytes[3]').
    max_pixels: largest width x height decoded.
    formats: PIL format names accepted.

  Raises:
    BadFileError (a ValueError) naming the file (and field).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top  # PIL only when decoding.

  where = _name(source, name)
  stream = io.BytesIO(source) if isinstance(source, bytes) else source
  try:
    with warnings.catch_warnings():
      # The size is checked here, against our own cap; PIL's warning adds nothing.
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      image = Image.open(stream, formats=formats)
  except FileNotFoundError:
    raise BadFileError(where, field, 'file not found') from None
  except Image.DecompressionBombError as e:
    raise BadFileError(where, field, f'image too large ({e})') from None
  except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
          TypeError, struct.error) as e:
    raise BadFileError(where, field, f'not a readable image ({type(e).__name__}: {e})'
                       ) from None
  with image:
    width, height = image.size
    if width <= 0 or height <= 0:
      raise BadFileError(where, field, f'image declares an empty size {width} x {height}')
    if width * height > max_pixels:
      raise BadFileError(where, field, f'image declares {width} x {height} = '
                         f'{width * height} pixels, over the limit of {max_pixels}')
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        image.load()
    except Image.DecompressionBombError as e:
      raise BadFileError(where, field, f'image too large ({e})') from None
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, MemoryError,
            struct.error) as e:
      raise BadFileError(where, field, f'truncated or corrupt image data '
                         f'({type(e).__name__}: {e})') from None
    yield image


def read_image(source: Source, mode: str | None = 'RGB', *,
               name: str | os.PathLike[str] | None = None, field: str | None = None,
               max_pixels: int = MAX_PIXELS, dtype: np.dtype | None = None) -> np.ndarray:
  """Decodes an image to a numpy array: [H, W, C] (or [H, W] for single-channel modes).

  Args:
    source: a file path or the encoded bytes.
    mode: PIL mode to convert to ('RGB', 'L', ...); None keeps the file's mode (e.g. 16-bit
      'I;16' depth PNGs).
    name, field, max_pixels: as for `open_image`.
    dtype: dtype of the result (default: PIL's).

  Raises:
    BadFileError (a ValueError) naming the file (and field).
  """
  where = _name(source, name)
  with open_image(source, name=name, field=field, max_pixels=max_pixels) as image:
    try:
      if mode is not None and image.mode != mode:
        image = image.convert(mode)
      return np.asarray(image) if dtype is None else np.asarray(image, dtype=dtype)
    except (OSError, ValueError, TypeError) as e:
      raise BadFileError(where, field, f'cannot convert the image to {mode} '
                         f'({type(e).__name__}: {e})') from None
