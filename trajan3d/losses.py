"""Training losses of TRAJAN / 3DSPA (as the 3DSPA release's training code).

Pure functions of arrays. Shapes: B batch, Q query tracks, T frames, D = 2
(TRAJAN, normalised [0, 1]) or 3 (3DSPA, metres).

The release (`compute_loss_3d`) is

    m     = target visibility                          [B, Q, T, 1] in {0, 1}
    L_pos = sum |pred - gt| * m / max(1, sum m)          (L1 summed over coords)
    L_vis = sum BCE(visible_logits, m) / max(1, sum m)   (over ALL points)
    total = 5000 L_pos + 1e-8 L_vis

`track_losses` computes the same terms with configurable weights, an optional
Huber position loss, the choice of BCE normaliser ('visible' = release,
'all' = plain mean) and an optional certainty term for TRAJAN, whose target
is "visible and within `certainty_threshold` of the ground truth" (TAPIR's
definition; the prediction error is not differentiated through it).
It is `combine_track_losses(track_loss_sums(...))`: sums over points that add over
examples, then the ratios, so that gradient accumulation over micro-batches divides
by the whole batch's visible count (`tapkit.train.accumulation.SumsLoss`).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

POSITION_LOSSES = ('l1', 'huber')
NORMALIZERS = ('all', 'visible')


def _check(cfg: Mapping[str, Any]) -> None:
  if cfg['position'] not in POSITION_LOSSES:
    raise ValueError(f'config.loss.position must be one of {POSITION_LOSSES}, got '
                     f'{cfg["position"]!r}.')
  if cfg['visibility_normalizer'] not in NORMALIZERS:
    raise ValueError(f'config.loss.visibility_normalizer must be one of {NORMALIZERS}, '
                     f'got {cfg["visibility_normalizer"]!r}.')


def position_error(pred: jax.Array, target: jax.Array, kind: str = 'l1',
                   huber_delta: float = 0.1) -> jax.Array:
  """Per-point position loss summed over coordinates.

  Args:
    pred, target: [..., D].
    kind: 'l1' (sum of |d|) or 'huber' (sum of optax Huber per coordinate,
      quadratic below `huber_delta`, in the units of the tracks).

  Returns:
    [..., 1] per-point loss.
  """
  diff = pred - target
  if kind == 'l1':
    per_coord = jnp.abs(diff)
  else:
    per_coord = optax.huber_loss(diff, delta=huber_delta)
  return jnp.sum(per_coord, axis=-1, keepdims=True)


def track_loss_sums(
    tracks: jax.Array,  # [B, Q, T, D]
    visible_logits: jax.Array,  # [B, Q, T, 1]
    certain_logits: jax.Array,  # [B, Q, T, 1]
    target_points: jax.Array,  # [B, Q, T, D]
    target_visible: jax.Array,  # [B, Q, T, 1] 0/1
    cfg: Mapping[str, Any],
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """Sums over the batch's points from which `combine_track_losses` forms the loss.

  Every entry adds over examples, so the sums of micro-batches are those of the
  whole batch (exact gradient accumulation, `tapkit.train.accumulation`).

  Args:
    tracks, visible_logits, certain_logits, target_points, target_visible: as
      `track_losses`.
    cfg: `config.loss` (position, huber_delta, certainty_threshold are read here).

  Returns:
    (totals, weights): totals {'position': position loss summed over visible
    points, 'visibility': BCE summed over all points, 'certainty': certainty BCE
    summed over all points, 'error': Euclidean error summed over visible points
    (track units), 'correct': number of points whose visibility is predicted
    right}; weights {'visible': number of visible points, 'points': number of
    points B * Q * T}, both independent of the predictions.
  """
  _check(cfg)
  m = (target_visible > 0).astype(jnp.float32)
  per_point = position_error(tracks, target_points, cfg['position'], cfg['huber_delta'])
  bce = optax.sigmoid_binary_cross_entropy(visible_logits, m)  # [B, Q, T, 1]
  dist = jnp.linalg.norm(tracks - target_points, axis=-1, keepdims=True)
  certain_target = m * (jax.lax.stop_gradient(dist) < cfg['certainty_threshold'])
  totals = {
      'position': jnp.sum(per_point * m),
      'visibility': jnp.sum(bce),
      'certainty': jnp.sum(optax.sigmoid_binary_cross_entropy(certain_logits, certain_target)),
      'error': jnp.sum(dist * m),
      'correct': jnp.sum(((visible_logits > 0) == (m > 0)).astype(jnp.float32)),
  }
  weights = {'visible': jnp.sum(m), 'points': jnp.asarray(m.size, jnp.float32)}
  return totals, weights


def combine_track_losses(totals: Mapping[str, jax.Array], weights: Mapping[str, jax.Array],
                         cfg: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The weighted loss and its parts from the sums of `track_loss_sums`.

  Position and (with visibility_normalizer 'visible') visibility are divided by
  max(1, number of visible points), the other means by the number of points.

  Returns:
    (total [], aux) as `track_losses`.
  """
  _check(cfg)
  num_visible = jnp.maximum(1.0, weights['visible'])
  loss_pos = totals['position'] / num_visible
  if cfg['visibility_normalizer'] == 'visible':
    loss_vis = totals['visibility'] / num_visible
  else:
    loss_vis = totals['visibility'] / weights['points']
  loss_cert = totals['certainty'] / weights['points']
  total = (cfg['position_weight'] * loss_pos + cfg['visibility_weight'] * loss_vis)
  if cfg['certainty_weight']:
    total = total + cfg['certainty_weight'] * loss_cert
  aux = {
      'loss_position': loss_pos,
      'loss_visibility': loss_vis,
      'loss_certainty': loss_cert,
      'mean_error': totals['error'] / num_visible,
      'visibility_accuracy': totals['correct'] / weights['points'],
  }
  return total, aux


def track_losses(
    tracks: jax.Array,  # [B, Q, T, D]
    visible_logits: jax.Array,  # [B, Q, T, 1]
    certain_logits: jax.Array,  # [B, Q, T, 1]
    target_points: jax.Array,  # [B, Q, T, D]
    target_visible: jax.Array,  # [B, Q, T, 1] 0/1
    cfg: Mapping[str, Any],
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Weighted TRAJAN / 3DSPA loss and its parts.

  Args:
    tracks, visible_logits, certain_logits: model outputs.
    target_points, target_visible: ground truth of the query tracks (padded
      frames must have visibility 0).
    cfg: `config.loss` (position, huber_delta, position_weight,
      visibility_weight, visibility_normalizer, certainty_weight,
      certainty_threshold).

  Returns:
    (total [], aux) with aux = {'loss_position', 'loss_visibility',
    'loss_certainty', 'mean_error' (mean Euclidean error of visible points,
    track units), 'visibility_accuracy'}.
  """
  totals, weights = track_loss_sums(tracks, visible_logits, certain_logits, target_points,
                                    target_visible, cfg)
  return combine_track_losses(totals, weights, cfg)
