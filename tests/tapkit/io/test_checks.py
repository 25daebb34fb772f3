"""tapkit.io.checks: float dtypes and finite values of checkpoint arrays."""

import ml_dtypes
import numpy as np
import pytest

from tapkit.io import BadFileError
from tapkit.io.checks import check_float_tensors


def test_float_arrays_pass_and_bfloat16_counts():
  good = {'a': np.ones(3, np.float16), 'b': np.zeros((2, 2), ml_dtypes.bfloat16),
          'c': np.ones(0, np.float64)}
  check_float_tensors('x.npz', good)
  bad = np.array([1.0, np.nan, np.inf], np.float32).astype(ml_dtypes.bfloat16)
  with pytest.raises(BadFileError, match=r"x\.npz: field 'b': 1 parameter\(s\) hold NaN or "
                     r'Inf values .*b \(2 of 3\)'):
    check_float_tensors('x.npz', {'b': bad})


def test_every_nonfinite_entry_is_named_with_its_count():
  a = np.ones((2, 3), np.float32)
  a[0, 1] = np.nan
  b = np.full(4, -np.inf, np.float64)
  with pytest.raises(BadFileError) as e:
    check_float_tensors('w.pt', [('a', a), ('ok', np.ones(2)), ('b', b)], what='tensor')
  assert e.value.field is None
  assert 'w.pt: 2 tensor(s) hold NaN or Inf values' in str(e.value)
  assert 'a (1 of 6); b (4 of 4)' in str(e.value)
  assert 'allow_nonfinite=True' in str(e.value)
  check_float_tensors('w.pt', {'a': a, 'b': b}, allow_nonfinite=True)  # The escape hatch.


@pytest.mark.parametrize('value', [np.ones(2, np.int32), np.array(['1.5']), np.array([True]),
                                   np.array([None], object), np.ones(2, np.complex64)])
def test_non_float_dtypes_are_refused_even_when_nonfinite_allowed(value):
  with pytest.raises(BadFileError, match=r"c\.npz: field 'k': 1 parameter\(s\) are not float "
                     r'arrays .*k \(' + str(value.dtype).replace('[', r'\[')):
    check_float_tensors('c.npz', {'k': value}, allow_nonfinite=True)
