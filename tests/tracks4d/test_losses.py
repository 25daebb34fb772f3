"""TracksTo4D losses: golden values and gradients (stop-gradient structure), warm-up loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracks4d import losses
from tracks4d import model

PRETRAIN_TERM = len(losses.LOSS_NAMES)  # Index of the warm-up loss in golden_case_grad.


def _check_grads(data, name, grads, param_keys, normwise_rel, bar):
  """Compares `grads` (torch-named) with the golden grad/<name>/* and gradnorm/<name>."""
  worst = 0.0
  checked = 0
  for key in data.files:
    if key.startswith(f'grad/{name}/'):
      pname = key.split('/', 2)[2]
      err = normwise_rel(grads[pname], data[key])
      assert err < bar, (name, pname, err)
      worst = max(worst, err)
      checked += 1
  assert checked >= 4, f'no golden gradients for {name}'
  norms = np.array([np.linalg.norm(grads[k].astype(np.float64)) for k in param_keys])
  ref = data[f'gradnorm/{name}']
  err = normwise_rel(norms, ref)
  assert err < bar, (name, 'gradnorm', err)
  if ref.max() == 0:  # e.g. negative-depth loss with every point in front: exactly zero.
    np.testing.assert_array_equal(norms, 0.0)
  return max(worst, err)


# (case, loss terms whose gradients are checked, gradient bar). forward_01 has ~6% of
# the depths behind the cameras: gradients near the clamp are ill-conditioned (official
# f32 vs f64 differ by ~7e-4), hence the looser bar. Every term is checked on the
# smallest case; the others check the total (and the clamp-specific depth term).
GRAD_CASES = [
    ('forward_00', ('loss_total',), 1e-4),
    ('forward_01', ('loss_total', 'loss_negative_depth'), 1e-3),
    ('forward_02', losses.LOSS_NAMES, 1e-4),
]


@pytest.mark.parametrize('case,grad_terms,grad_bar', GRAD_CASES)
def test_loss_terms_and_gradients(case, grad_terms, grad_bar, t4d_golden, golden_case_grad,
                                  normwise_rel):
  data = np.load(t4d_golden / f'{case}.npz')
  param_keys = [str(k) for k in np.load(t4d_golden / 'param_keys.npy')]
  values, _, _ = golden_case_grad(case, 0)
  for i, name in enumerate(losses.LOSS_NAMES):
    ref = float(data[name])
    assert abs(values[i] - ref) <= 1e-4 * max(abs(ref), 1e-6), (name, values[i], ref)
  for name in grad_terms:
    _, _, grads = golden_case_grad(case, losses.LOSS_NAMES.index(name))
    _check_grads(data, name, grads, param_keys, normwise_rel, grad_bar)


def test_camera_init_loss_and_gradients(t4d_golden, golden_case_grad, normwise_rel):
  data = np.load(t4d_golden / 'pretrain_loss_00.npz')
  values, out, grads = golden_case_grad('pretrain_loss_00', PRETRAIN_TERM)
  np.testing.assert_allclose(out['translations'], data['translations'], rtol=1e-5, atol=1e-5)
  ref = float(data['loss_pretrain'])
  assert abs(float(values[PRETRAIN_TERM]) - ref) <= 1e-6 * ref
  param_keys = [str(k) for k in np.load(t4d_golden / 'param_keys.npy')]
  assert _check_grads(data, 'loss_pretrain', grads, param_keys, normwise_rel, 1e-5) < 1e-5
  for suffix in ('', '_near', '_random'):
    ours = float(losses.camera_init_loss(jnp.asarray(data[f'translations{suffix}']),
                                         jnp.asarray(data[f'rotations{suffix}'])))
    ref = float(data[f'loss_pretrain{suffix}'])
    assert abs(ours - ref) <= 1e-6 * ref, (suffix, ours, ref)
  assert float(data['loss_pretrain_near']) < losses.CAMERA_INIT_EXIT_THRESHOLD


def test_camera_init_loss_formula():
  # Two frames, batch 1: sum over frames, mean over (batch, coordinate).
  t = jnp.asarray([[[1.0, 0.0, -15.0], [0.0, 2.0, -13.0]]])
  r = jnp.broadcast_to(jnp.eye(3), (1, 2, 3, 3)).at[0, 0, 0, 1].set(0.6)
  expected = ((1.0 + 4.0 + 4.0) / 3.0 + 100.0 * 0.36 / 18.0) / 100.0
  assert abs(float(losses.camera_init_loss(t, r)) - expected) < 1e-7


def _toy_outputs(rng, b=1, n=4, f=3, k=3):
  proj = rng.normal(size=(b, f, 2, n)).astype(np.float32)
  return model.TracksTo4DOutput(
      focal=jnp.ones((b, f, 1)), projections=jnp.asarray(proj),
      projections_static=jnp.asarray(proj + 0.5), rotations=jnp.zeros((b, f, 3, 3)),
      translations=jnp.zeros((b, f, 3)),
      bases=jnp.asarray(rng.normal(size=(b, n, 3, k)).astype(np.float32)),
      points3d=jnp.zeros((b, f, 3, n)), points3d_static=jnp.zeros((b, f, 3, n)),
      depths=jnp.asarray(rng.normal(size=(b, f, n)).astype(np.float32)),
      depths_static=jnp.zeros((b, f, n)), basis_coeffs=jnp.ones((b, k, f)),
      points3d_camera=jnp.zeros((b, f, 3, n)),
      nr=jnp.asarray(rng.uniform(0.5, 2.0, size=(b, n)).astype(np.float32)))


def test_loss_terms_by_hand_with_point_mask():
  rng = np.random.default_rng(0)
  out = _toy_outputs(rng)
  tracks = rng.normal(size=(1, 4, 3, 3)).astype(np.float32)
  vis = np.array([[[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 1, 1]]], bool)
  mask = np.array([[True, True, True, False]])
  terms = losses.loss_terms(out, jnp.asarray(tracks), jnp.asarray(vis),
                            coeffs={'reprojection_dynamic_coeff': 2.0},
                            point_mask=jnp.asarray(mask))
  m = vis & mask[:, None, :]
  u = tracks[:, :, :2, :].transpose(0, 3, 2, 1)
  r = np.sqrt(((np.asarray(out.projections) - u) ** 2).sum(2))[m]
  rs = np.sqrt(((np.asarray(out.projections_static) - u) ** 2).sum(2))
  nr = np.broadcast_to(np.asarray(out.nr)[:, None, :], rs.shape)
  static = np.log(nr + rs**2 / nr)[m].mean()
  neg = np.maximum(-np.asarray(out.depths), 0)[m].sum()
  nr_b = np.asarray(out.nr)[..., None, None]
  sparse = (np.abs(np.asarray(out.bases)[..., 1:]) / nr_b)[:, :3].mean()
  np.testing.assert_allclose(terms['loss_reprojection'], r.mean(), rtol=1e-6)
  np.testing.assert_allclose(terms['loss_reprojection_static'], static, rtol=1e-6)
  np.testing.assert_allclose(terms['loss_negative_depth'], neg, rtol=1e-6)
  np.testing.assert_allclose(terms['loss_sparsity'], sparse, rtol=1e-6)
  np.testing.assert_allclose(terms['loss_total'], static + 2.0 * r.mean() + neg + 0.001 * sparse,
                             rtol=1e-6)


def test_unknown_coefficient_is_rejected():
  out = _toy_outputs(np.random.default_rng(1))
  with pytest.raises(KeyError, match='reprojection_coef'):
    losses.loss_terms(out, jnp.zeros((1, 4, 3, 3)), jnp.ones((1, 3, 4), bool),
                      coeffs={'reprojection_coef': 1.0})


def test_zero_residual_has_finite_gradient_and_clamp():
  # sqrt at a hidden zero residual must not poison the gradient with NaN.
  proj = jnp.zeros((1, 2, 2, 2))
  tracks = jnp.zeros((1, 2, 3, 2)).at[0, 0, 0, 0].set(1.0)
  vis = jnp.asarray([[[True, False], [False, False]]])
  g = jax.grad(lambda p: losses.reprojection_loss(p, tracks, vis))(proj)
  assert np.all(np.isfinite(np.asarray(g)))
  np.testing.assert_allclose(np.asarray(g)[0, 0, 0, 0], -1.0)
  assert float(jax.grad(losses.clamp_training_loss)(jnp.float32(120.0))) == 0.0
  assert float(jax.grad(losses.clamp_training_loss)(jnp.float32(99.0))) == 1.0
  assert float(losses.clamp_training_loss(jnp.float32(120.0))) == 100.0


def test_padded_frames_change_no_loss_term(golden_params):
  """A window padded with junk frames (frame_mask) scores exactly as the window itself."""
  from tracks4d import model as model_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(4)
  n, f, pad_to = 12, 15, 22
  xy = rng.normal(scale=0.4, size=(1, n, 2, f)).astype(np.float32)
  vis = rng.random((1, n, 1, f)) > 0.2
  tracks = np.concatenate([xy, vis.astype(np.float32)], axis=2)
  junk = rng.normal(size=(1, n, 3, pad_to - f)).astype(np.float32)
  padded = np.concatenate([tracks, junk], axis=-1)
  fmask = np.arange(pad_to)[None] < f
  visible = np.swapaxes(vis[:, :, 0], 1, 2)  # [1, F, N]
  visible_padded = np.concatenate([visible, np.ones((1, pad_to - f, n), bool)], 1) & fmask[..., None]
  net = model_lib.TracksTo4D()
  # Jitted, as training runs them (op by op the two forwards cost twice as much).
  apply, loss_terms = jax.jit(net.apply), jax.jit(losses.loss_terms)
  ref = apply({'params': golden_params}, jnp.asarray(tracks))
  out = apply({'params': golden_params}, jnp.asarray(padded), None, jnp.asarray(fmask))
  want = loss_terms(ref, jnp.asarray(tracks), jnp.asarray(visible))
  got = loss_terms(out, jnp.asarray(padded), jnp.asarray(visible_padded))
  for name in want:
    np.testing.assert_allclose(float(got[name]), float(want[name]), rtol=1e-4, err_msg=name)
  np.testing.assert_allclose(
      float(losses.camera_init_loss(out.translations, out.rotations, jnp.asarray(fmask))),
      float(losses.camera_init_loss(ref.translations, ref.rotations)), rtol=1e-5)
