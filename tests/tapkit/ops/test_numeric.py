"""l2_normalize (torch F.normalize semantics) and the numpy / jax dispatch."""

import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.ops import numeric


def test_l2_normalize_known_values_and_zero_vector():
  x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-13, 0.0]])
  out = numeric.l2_normalize(x)
  # A zero vector stays zero; a norm below eps divides by eps (1e-13 / 1e-12 = 0.1).
  np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [0.1, 0.0]], rtol=1e-12)
  np.testing.assert_allclose(numeric.l2_normalize(x.T, axis=0), out.T, rtol=1e-12)


def test_l2_normalize_jax_and_torch():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 4, 16)).astype(np.float32)
  out = numeric.l2_normalize(jnp.asarray(x))
  assert isinstance(out, type(jnp.zeros(1)))
  np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(out), numeric.l2_normalize(x), rtol=1e-6)
  torch = pytest.importorskip('torch')
  want = torch.nn.functional.normalize(torch.from_numpy(x), dim=-1).numpy()
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-6, atol=1e-7)


def test_array_module():
  assert numeric.array_module(np.zeros(2)) is np
  assert numeric.array_module([1.0, 2.0]) is np
  assert numeric.array_module(jnp.zeros(2)) is jnp
