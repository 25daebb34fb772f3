"""The only readers of external binary formats.

Every reader validates before it allocates (sizes declared in headers are checked against the
file and against a cap) and fails with `BadFileError`, a `ValueError` naming the file and the
field:

* `npz`: `.npz` archives and `.npy` files without a general unpickler (`read_npz`,
  `read_npy`, `list_fields`, `write_npz`);
* `safetensors`: `.safetensors` files, header parsed here (`read_safetensors`);
* `torch_state`: torch `.pt` / `.pth` files, with or without torch (`read_torch_state`);
* `unpickle`: the one allow-list unpickler with bounded work (`load`,
  `numpy_array_globals`), for the pickles the formats above and dataset files contain;
* `image`: images (frames, depth PNGs), pixel count checked on the header before decoding
  (`read_image`, `open_image`);
* `jsonfile`: JSON annotations, size and nesting depth bounded (`read_json`);
* `matfile`: MATLAB `.mat` files, declared sizes checked before loading (`read_mat`);
* `checks`: float dtypes and finite values of checkpoint arrays (`check_float_tensors`);
* `batch`: directory-level runs that go on past a bad file and list it (`BatchRun`).
"""

from tapkit.io.checks import check_float_tensors
from tapkit.io.errors import BadFileError, UnsafePickleError
from tapkit.io.image import read_image
from tapkit.io.jsonfile import read_json
from tapkit.io.npz import list_fields, read_npy, read_npz, write_npz
from tapkit.io.safetensors import read_safetensors
from tapkit.io.torch_state import read_torch_state
from tapkit.io.unpickle import numpy_array_globals
from tapkit.io.unpickle import load as restricted_load

__all__ = [
    'BadFileError', 'UnsafePickleError', 'list_fields', 'read_npy', 'read_npz', 'write_npz',
    'read_safetensors', 'read_torch_state', 'numpy_array_globals', 'restricted_load',
    'check_float_tensors', 'read_image', 'read_json',
]
