"""Nearest-neighbour matching of tracked points (dpov_jax/matcher.py)."""

import jax.numpy as jnp
import numpy as np
import pytest

from dpov_jax import matcher


def test_match_points_finds_unique_features():
  # One-hot features per token: bilinear reads at token centres are exact one-hots.
  s, size = 4, (31, 31)  # pixel 10k <-> token k (latent tracking: x * 3 / 30)
  map0 = jnp.eye(s * s).reshape(s, s, s * s)
  map1 = jnp.roll(map0, 1, axis=1)  # everything moved one token (10 px) to the right
  queries = jnp.asarray([[0.0, 0.0], [10.0, 20.0], [20.0, 10.0]])
  pred = matcher.match_points(map0, map1, queries, size)
  np.testing.assert_allclose(np.asarray(pred), [[10, 0], [20, 20], [30, 10]])
  r = matcher.score(np.asarray(pred), np.asarray(pred) + [[3, 4], [0, 0], [30, 40]],
                    np.array([True, True, False]), threshold_px=5.0)
  assert r['acc'] == 1.0 and r['err_px'] == pytest.approx(2.5) and r['num_points'] == 2
