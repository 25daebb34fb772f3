"""TracksTo4D training losses (official train.py / `get_losses`), pure functions of arrays.

Conventions: `tracks` is the network input [b, N, 3, F] (normalised x, y rows first),
`visible` the visibility mask [b, F, N] (frame-major, as the official `tracks_vis`).
Averages run over the visible entries of all batch elements jointly; an optional
`point_mask` [b, N] (False = padded point) removes padded points from every term.
`loss_terms` and `camera_init_loss` are computed from sums over the batch
(`loss_sums`, `camera_init_sums`) that add over examples, divided afterwards
(`combine_loss_terms`, `combine_camera_init`), so that gradient accumulation over
micro-batches divides by the whole batch's counts (`tapkit.train.accumulation`).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from tracks4d.model import TracksTo4DOutput

Array = jax.Array

# Released json configs.
DEFAULT_LOSS_COEFFS: Mapping[str, float] = {
    'reprojection_dynamic_coeff': 50.0,
    'sparsity_dynamic_coeff': 0.001,
}
# Camera-initialisation target: cameras 15 units behind the origin, identity rotation.
CAMERA_INIT_TRANSLATION = (0.0, 0.0, -15.0)
CAMERA_INIT_ROTATION_WEIGHT = 100.0
CAMERA_INIT_NORMALISER = 100.0
CAMERA_INIT_EXIT_THRESHOLD = 1e-4  # The warm-up phase ends the first time L_init < this.
TRAIN_LOSS_CLAMP = 100.0  # From epoch 4 on the total training loss is min(L, 100).

LOSS_NAMES = ('loss_total', 'loss_sparsity', 'loss_negative_depth', 'loss_reprojection',
              'loss_reprojection_static')  # Official `get_losses` order.


def _track_xy(tracks: Array) -> Array:
  """[b, N, C, F] -> [b, F, 2, N] (x_n, y_n rows), the layout of the projections."""
  return jnp.transpose(tracks[:, :, :2, :], (0, 3, 2, 1))


def _mask(visible: Array, point_mask: Array | None) -> Array:
  visible = visible.astype(bool)
  if point_mask is not None:
    visible = visible & point_mask.astype(bool)[:, None, :]
  return visible  # [b, F, N]


def _masked_sum(values: Array, mask: Array) -> Array:
  return jnp.sum(jnp.where(mask, values, 0.0))


def _masked_mean(values: Array, mask: Array) -> Array:
  # Empty mask gives 0/0 = NaN, like the official mean of an empty selection.
  return _masked_sum(values, mask) / jnp.sum(mask)


def _distance(projections: Array, tracks: Array, mask: Array) -> tuple[Array, Array]:
  """Euclidean reprojection distance r [b, F, N] and its square (hidden entries: 1)."""
  sq = jnp.sum((projections - _track_xy(tracks)) ** 2, axis=2)  # [b, F, N]
  # Masked-out entries get a dummy 1 so that sqrt's gradient at 0 cannot produce NaN.
  sq = jnp.where(mask, sq, 1.0)
  return jnp.sqrt(sq), sq


def reprojection_loss(projections: Array, tracks: Array, visible: Array,
                      point_mask: Array | None = None) -> Array:
  """L_rep = mean over visible (b, f, n) of ||pi^d - u||_2.

  Args:
    projections: [b, F, 2, N] dynamic projections (normalised image coords).
    tracks: [b, N, C>=2, F] network input.
    visible: [b, F, N] bool.
    point_mask: optional [b, N] bool.
  """
  mask = _mask(visible, point_mask)
  r, _ = _distance(projections, tracks, mask)
  return _masked_mean(r, mask)


def static_reprojection_loss(projections_static: Array, tracks: Array, visible: Array,
                             nr: Array, point_mask: Array | None = None) -> Array:
  """Robust static term: mean over visible of log(NR_n + r_s^2 / NR_n).

  For a fixed residual r the minimiser is NR = r, so NR [b, N] learns each point's
  motion level. `projections_static` [b, F, 2, N].
  """
  mask = _mask(visible, point_mask)
  return _masked_mean(_static_residual(projections_static, tracks, mask, nr), mask)


def _static_residual(projections_static: Array, tracks: Array, mask: Array, nr: Array
                     ) -> Array:
  """log(NR_n + r_s^2 / NR_n) [b, F, N] (hidden entries: r_s = 1)."""
  r, _ = _distance(projections_static, tracks, mask)
  nr_f = nr[:, None, :]  # [b, 1, N] broadcast over frames.
  return jnp.log(nr_f + r**2 / nr_f)


def negative_depth_loss(depths: Array, visible: Array,
                        point_mask: Array | None = None) -> Array:
  """L_neg = SUM (not mean) over visible entries of max(-z, 0); `depths` [b, F, N]."""
  mask = _mask(visible, point_mask)
  # -min(z, 0) as the official (-clamp(max=0)); its gradient is -1 for z <= 0.
  return -jnp.sum(jnp.where(mask & (depths <= 0.0), depths, 0.0))


def sparsity_loss(bases: Array, nr: Array, point_mask: Array | None = None) -> Array:
  """L_sparse = mean over (b, N, 3, K-1) of |B[..., 1:]| / stop_gradient(NR).

  Args:
    bases: [b, N, 3, K].
    nr: [b, N] (not differentiated through: points with large motion level may move).
    point_mask: optional [b, N] bool; padded points are left out of the mean.
  """
  vals = _sparsity_values(bases, nr)
  if point_mask is None:
    return jnp.mean(vals)
  m = jnp.broadcast_to(point_mask.astype(bool)[:, :, None, None], vals.shape)
  return _masked_mean(vals, m)


def _sparsity_values(bases: Array, nr: Array) -> Array:
  """|B[..., 1:]| / stop_gradient(NR) [b, N, 3, K-1]."""
  return jnp.abs(bases[..., 1:] / jax.lax.stop_gradient(nr)[:, :, None, None])


def _coeffs(coeffs: Mapping[str, float] | None) -> tuple[float, float]:
  coeffs = DEFAULT_LOSS_COEFFS if coeffs is None else coeffs
  unknown = sorted(set(coeffs) - set(DEFAULT_LOSS_COEFFS))
  if unknown:
    raise KeyError(f'loss coefficients: unknown keys {unknown}; expected a subset of '
                   f'{sorted(DEFAULT_LOSS_COEFFS)}')
  get = lambda k: float(coeffs[k]) if k in coeffs else DEFAULT_LOSS_COEFFS[k]
  return get('reprojection_dynamic_coeff'), get('sparsity_dynamic_coeff')


def loss_sums(outputs: TracksTo4DOutput, tracks: Array, visible: Array,
              point_mask: Array | None = None) -> tuple[dict[str, Array], dict[str, Array]]:
  """Sums over the batch from which `combine_loss_terms` forms the loss terms.

  Every entry adds over examples, so the sums of micro-batches are those of the whole
  batch (exact gradient accumulation, `tapkit.train.accumulation`).

  Args:
    outputs, tracks, visible, point_mask: as `loss_terms`.

  Returns:
    (totals, weights): totals {'reprojection': sum over visible (b, f, n) of the
    dynamic reprojection distance, 'reprojection_static': sum over visible of the
    robust static term, 'negative_depth': the negative-depth loss (already a sum),
    'sparsity': sum of |B[..., 1:]| / NR over the real points}; weights {'visible':
    number of visible entries (int32), 'sparsity': number of summed basis
    entries}, both independent of the outputs.
  """
  mask = _mask(visible, point_mask)
  r, _ = _distance(outputs.projections, tracks, mask)
  static = _static_residual(outputs.projections_static, tracks, mask, outputs.nr)
  vals = _sparsity_values(outputs.bases, outputs.nr)
  if point_mask is None:
    sparse_total, sparse_count = jnp.sum(vals), jnp.asarray(vals.size, jnp.float32)
  else:
    m = jnp.broadcast_to(point_mask.astype(bool)[:, :, None, None], vals.shape)
    sparse_total, sparse_count = _masked_sum(vals, m), jnp.sum(m)
  totals = {'reprojection': _masked_sum(r, mask),
            'reprojection_static': _masked_sum(static, mask),
            'negative_depth': negative_depth_loss(outputs.depths, visible, point_mask),
            'sparsity': sparse_total}
  weights = {'visible': jnp.sum(mask), 'sparsity': sparse_count}
  return totals, weights


def combine_loss_terms(totals: Mapping[str, Array], weights: Mapping[str, Array],
                       coeffs: Mapping[str, float] | None = None) -> dict[str, Array]:
  """The loss terms of `loss_terms` from the sums of `loss_sums`.

  Reprojection terms are means over the visible entries of all batch elements jointly
  (an empty mask gives 0/0 = NaN, like the official mean of an empty selection).
  """
  c_rep, c_sparse = _coeffs(coeffs)
  rep = totals['reprojection'] / weights['visible']
  static = totals['reprojection_static'] / weights['visible']
  neg = totals['negative_depth']
  sparse = totals['sparsity'] / weights['sparsity']
  total = static + rep * c_rep + neg + sparse * c_sparse
  return {'loss_total': total, 'loss_sparsity': sparse, 'loss_negative_depth': neg,
          'loss_reprojection': rep, 'loss_reprojection_static': static}


def loss_terms(outputs: TracksTo4DOutput, tracks: Array, visible: Array,
               coeffs: Mapping[str, float] | None = None,
               point_mask: Array | None = None) -> dict[str, Array]:
  """All loss terms of the official `get_losses`.

  L = L_static + c_rep * L_rep + L_neg + c_sparse * L_sparse with c_rep, c_sparse from
  `coeffs` (keys 'reprojection_dynamic_coeff' = 50, 'sparsity_dynamic_coeff' = 0.001
  by default); `combine_loss_terms(loss_sums(...))`.

  Args:
    outputs: network outputs.
    tracks: [b, N, 3, F] network input.
    visible: [b, F, N] bool.
    coeffs: loss coefficients (missing keys take the released defaults).
    point_mask: optional [b, N] bool.

  Returns:
    {'loss_total', 'loss_sparsity', 'loss_negative_depth', 'loss_reprojection',
     'loss_reprojection_static'} scalars.
  """
  _coeffs(coeffs)  # Unknown coefficient names fail before any work.
  totals, weights = loss_sums(outputs, tracks, visible, point_mask)
  return combine_loss_terms(totals, weights, coeffs)


def clamp_training_loss(loss: Array, max_value: float = TRAIN_LOSS_CLAMP) -> Array:
  """min(L, max_value) with torch.clamp's gradient: 1 while L <= max_value, else 0."""
  return jnp.where(loss <= max_value, loss, max_value)


def camera_init_sums(translations: Array, rotations: Array, frame_mask: Array | None = None
                     ) -> tuple[dict[str, Array], dict[str, Array]]:
  """Sums over the batch from which `combine_camera_init` forms the warm-up loss.

  Args:
    translations, rotations, frame_mask: as `camera_init_loss`.

  Returns:
    (totals, weights): totals {'camera_translation': sum over (b, c) of
    sum_f (t_f,c - tau_c)^2, 'camera_rotation': sum over b of each sample's mean
    of (R - I)^2 over its real frames (without `frame_mask`: sum over (b, f) of
    the per-frame mean)}; weights {'camera_translation': b * 3,
    'camera_rotation': b (b * F without `frame_mask`)}.
  """
  tau = jnp.asarray(CAMERA_INIT_TRANSLATION, translations.dtype)
  rot_err = jnp.mean((rotations - jnp.eye(3, dtype=rotations.dtype)) ** 2, axis=(-2, -1))
  if frame_mask is None:
    trans = jnp.sum((translations - tau) ** 2, axis=1)  # sum over frames
    rot = rot_err
  else:
    m = frame_mask.astype(translations.dtype)  # [b, F]
    trans = jnp.sum((translations - tau) ** 2 * m[..., None], axis=1)
    rot = jnp.sum(rot_err * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
  totals = {'camera_translation': jnp.sum(trans), 'camera_rotation': jnp.sum(rot)}
  weights = {'camera_translation': jnp.asarray(trans.size, jnp.float32),
             'camera_rotation': jnp.asarray(rot.size, jnp.float32)}
  return totals, weights


def combine_camera_init(totals: Mapping[str, Array], weights: Mapping[str, Array]) -> Array:
  """The camera-initialisation loss from the sums of `camera_init_sums`."""
  trans_term = totals['camera_translation'] / weights['camera_translation']
  rot_term = totals['camera_rotation'] / weights['camera_rotation']
  return (trans_term + rot_term * CAMERA_INIT_ROTATION_WEIGHT) / CAMERA_INIT_NORMALISER


def camera_init_loss(translations: Array, rotations: Array,
                     frame_mask: Array | None = None) -> Array:
  """Camera-initialisation warm-up loss of train.py (used while epoch < 100).

  L_init = [mean over (b, c) of sum_f (t_f,c - tau_c)^2 + 100 mean((R - I)^2)] / 100,
  tau = (0, 0, -15).

  Args:
    translations: [b, F, 3] camera centres.
    rotations: [b, F, 3, 3] (any matrices; the loss is a plain function of them).
    frame_mask: optional [b, F] bool, False for padded frames: they are left out of the
      sum over frames, and the rotation mean is taken over each sample's real frames
      (then over the batch), so a padded window scores as its unpadded self.
  """
  return combine_camera_init(*camera_init_sums(translations, rotations, frame_mask))
