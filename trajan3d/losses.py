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
  _check(cfg)
  m = (target_visible > 0).astype(jnp.float32)
  num_visible = jnp.maximum(1.0, jnp.sum(m))
  per_point = position_error(tracks, target_points, cfg['position'], cfg['huber_delta'])
  loss_pos = jnp.sum(per_point * m) / num_visible

  bce = optax.sigmoid_binary_cross_entropy(visible_logits, m)  # [B, Q, T, 1]
  if cfg['visibility_normalizer'] == 'visible':
    loss_vis = jnp.sum(bce) / num_visible
  else:
    loss_vis = jnp.mean(bce)

  dist = jnp.linalg.norm(tracks - target_points, axis=-1, keepdims=True)
  certain_target = m * (jax.lax.stop_gradient(dist) < cfg['certainty_threshold'])
  loss_cert = jnp.mean(optax.sigmoid_binary_cross_entropy(certain_logits, certain_target))

  total = (cfg['position_weight'] * loss_pos + cfg['visibility_weight'] * loss_vis)
  if cfg['certainty_weight']:
    total = total + cfg['certainty_weight'] * loss_cert
  aux = {
      'loss_position': loss_pos,
      'loss_visibility': loss_vis,
      'loss_certainty': loss_cert,
      'mean_error': jnp.sum(dist * m) / num_visible,
      'visibility_accuracy': jnp.mean(((visible_logits > 0) == (m > 0)).astype(jnp.float32)),
  }
  return total, aux
