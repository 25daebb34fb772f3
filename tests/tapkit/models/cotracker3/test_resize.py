"""The feature CNN's two-tap align-corners resize against the interpolation-matrix resize."""

import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.models.cotracker3 import blocks
from tapkit.ops import sampling


@pytest.mark.parametrize('in_hw, out_hw', [((32, 48), (16, 24)), ((8, 12), (16, 24)),
                                           ((3, 5), (16, 24)), ((7, 9), (7, 4)), ((1, 6), (4, 3))])
def test_resize_align_corners_equals_matrix_resize(in_hw, out_hw):
  rng = np.random.default_rng(in_hw[0] * 10 + out_hw[1])
  x = jnp.asarray(rng.standard_normal((2,) + in_hw + (5,)), jnp.float32)
  got = np.asarray(blocks.resize_align_corners(x, out_hw))
  want = np.asarray(sampling.resize(x, out_hw, 'bilinear', align_corners=True))
  assert got.shape == (2,) + out_hw + (5,)
  np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)


def test_resize_align_corners_keeps_corners_and_blends_midpoints():
  x = jnp.asarray(np.arange(2 * 3, dtype=np.float32).reshape(1, 2, 3, 1))  # rows 0 1 2 / 3 4 5
  got = np.asarray(blocks.resize_align_corners(x, (3, 5)))[0, ..., 0]
  np.testing.assert_array_equal(got, [[0, 0.5, 1, 1.5, 2], [1.5, 2, 2.5, 3, 3.5], [3, 3.5, 4, 4.5, 5]])
