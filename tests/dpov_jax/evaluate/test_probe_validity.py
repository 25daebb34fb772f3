"""Probe3D's depth / normal validity on a NAVI-like sample (depths 0.6-1.6 m, probe range 1 m).

Probe3D scores depth where the ground truth is in (0, 10] m (its depth loss zeroes targets above
10 m in place before the metrics) and normals where depth > 0; NAVI's max_depth = 1 m only sets
the range of the probe's depth bins. A 1 m probe therefore cannot reach the far part of a NAVI
object, and the metrics must show it.
"""

import jax.numpy as jnp
import ml_collections
import numpy as np

from dpov_jax.evaluate import metrics, probe_task, probes

H = W = 64
NUM_OBJECT = 3872  # object pixels with depth in [0.6, 1.6] m


def _navi_like():
  depth = np.zeros(H * W, np.float32)
  depth[:NUM_OBJECT] = np.linspace(0.6, 1.6, NUM_OBJECT)  # uniform over the object
  depth[NUM_OBJECT] = 12.0  # one far pixel: a normal target, not a depth target
  normals = np.zeros((H * W, 3), np.float32)
  normals[:, 2] = -1.0
  return depth.reshape(H, W), normals.reshape(H, W, 3)


def test_navi_depth_scored_up_to_10m_and_normals_where_depth_positive():
  depth, normals = _navi_like()
  record = probe_task._record(np.zeros((H, W, 3), np.float32), depth, normals)
  # Depth targets: (0, 10] m, all 3872 object pixels, not only the 1549 within 1 m.
  assert int((record['depth'] > 0).sum()) == NUM_OBJECT
  assert int(((depth > 0) & (depth <= 1.0)).sum()) == 1549
  assert record['depth'].reshape(-1)[NUM_OBJECT] == 0.0
  # Normals: wherever depth > 0, the 12 m pixel included.
  assert int(record['valid'].sum()) == NUM_OBJECT + 1

  # A probe with NAVI's 1 m range saturates at 1 m (its bins end there).
  bins_max = float(probes.depth_from_bins(jnp.full((1, 1, 1, 256), 5.0), 1.0, 0.001).max())
  assert bins_max <= 1.0 + 1e-6
  pred = np.where(depth > 0, np.minimum(depth, 1.0), 0.5).astype(np.float32)
  out = metrics.depth_metrics(pred[None], record['depth'][None])
  # Uniform depth on [0.6, 1.6] against a prediction capped at 1 m: RMSE = sqrt(0.6^3 / 3)
  # = 0.268 m and delta_1 = P(depth < 1.25) = 0.65 (the original's 0.267 / 0.650).
  gt = depth.reshape(-1)[:NUM_OBJECT].astype(np.float64)
  capped = np.minimum(gt, 1.0)
  np.testing.assert_allclose(float(out['rmse']), np.sqrt(np.mean((gt - capped) ** 2)), rtol=1e-5)
  np.testing.assert_allclose(float(out['rmse']), np.sqrt(0.6**3 / 3), atol=2e-3)
  np.testing.assert_allclose(float(out['d1']), np.mean(gt / capped < 1.25), atol=1e-6)
  np.testing.assert_allclose(float(out['d1']), 0.65, atol=1e-3)


def test_probe_loss_uses_targets_up_to_10m_not_the_probe_range():
  depth, normals = _navi_like()
  record = probe_task._record(np.zeros((H, W, 3), np.float32), depth, normals)
  config = ml_collections.ConfigDict({'probe': {'task': 'depth', 'max_depth': 1.0}})
  pred = jnp.asarray(np.where(depth > 0, np.minimum(depth, 1.0), 0.5)[None], jnp.float32)
  batch = {k: jnp.asarray(v[None]) for k, v in record.items()}
  loss = float(probe_task.probe_loss(pred, batch, config))
  gt_10m = jnp.asarray(np.where(depth <= 10.0, depth, 0.0)[None])
  np.testing.assert_allclose(loss, float(probes.depth_loss(pred, gt_10m)), rtol=1e-6)
  within_1m = float(probes.depth_loss(pred, gt_10m, max_depth=1.0))
  assert within_1m < 1e-3 < loss  # the capped prediction is exact within 1 m only
