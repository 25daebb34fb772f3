"""TracksTo4D network: golden forward parity and structural properties."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracks4d import model

FORWARD_CASES = ('forward_00', 'forward_01', 'forward_02')


@functools.lru_cache(maxsize=None)
def _apply_fn(predict_focal_length: bool):
  net = model.TracksTo4D(predict_focal_length=predict_focal_length)
  return jax.jit(net.apply)


@pytest.mark.parametrize('case', FORWARD_CASES)
def test_forward_matches_official(case, t4d_golden, golden_case_grad, normwise_rel):
  data = np.load(t4d_golden / f'{case}.npz')
  _, out, _ = golden_case_grad(case, 0)  # Shared with the gradient test of loss_total.
  depth = data['depths']  # [b, F, N]
  depth_s = data['depths_static']
  for name, ours in out.items():
    ref = data[name]
    if name == 'focal' and ref.shape == ():
      np.testing.assert_array_equal(ours, 1.0)
      continue
    if name in ('projections', 'projections_static'):
      # Entries with depth in (0.005, 0.1) are ill-conditioned (error ~ |x| dz / z^2).
      z = depth if name == 'projections' else depth_s
      good = np.broadcast_to(((z <= 0.005) | (z >= 0.1))[:, :, None, :], ref.shape)
      err = normwise_rel(np.where(good, ours, 0.0), np.where(good, ref, 0.0))
      assert err < 1e-4, (case, name, err)
      assert normwise_rel(ours, ref) < 1e-3, (case, name)
    else:
      err = normwise_rel(ours, ref)
      assert err < 1e-4, (case, name, err)
  # Coefficient 0 is exactly 1.
  np.testing.assert_array_equal(out['basis_coeffs'][:, 0], 1.0)


@pytest.fixture(scope='module')
def small_setup(golden_params):
  rng = np.random.default_rng(0)
  b, n, f = 1, 9, 16
  xy = rng.normal(scale=0.4, size=(b, n, 2, f)).astype(np.float32)
  vis = (rng.random((b, n, 1, f)) > 0.2).astype(np.float32)
  return golden_params, np.concatenate([xy, vis], axis=2)


def test_point_permutation_equivariance(small_setup):
  params, tracks = small_setup
  apply = _apply_fn(False)
  perm = np.array([3, 0, 8, 1, 7, 2, 6, 4, 5])
  out = apply({'params': params}, jnp.asarray(tracks))
  out_p = apply({'params': params}, jnp.asarray(tracks[:, perm]))
  np.testing.assert_allclose(out_p.translations, out.translations, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out_p.rotations, out.rotations, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out_p.nr, np.asarray(out.nr)[:, perm], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out_p.depths, np.asarray(out.depths)[:, :, perm], rtol=1e-4,
                             atol=1e-5)


def test_point_mask_ignores_padding(small_setup):
  params, tracks = small_setup
  apply = _apply_fn(False)
  ref = apply({'params': params}, jnp.asarray(tracks))
  # Pad with 4 arbitrary points that the mask switches off.
  junk = np.random.default_rng(1).normal(size=(1, 4, 3, tracks.shape[-1])).astype(np.float32)
  padded = np.concatenate([tracks, junk], axis=1)
  mask = np.array([[True] * tracks.shape[1] + [False] * 4])
  out = apply({'params': params}, jnp.asarray(padded), jnp.asarray(mask))
  n = tracks.shape[1]
  np.testing.assert_allclose(out.translations, ref.translations, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.projections)[..., :n], ref.projections,
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.bases)[:, :n], ref.bases, rtol=1e-4, atol=1e-6)
  # An all-true mask is the unmasked network.
  out_all = apply({'params': params}, jnp.asarray(tracks), jnp.ones((1, n), bool))
  np.testing.assert_allclose(out_all.depths, ref.depths, rtol=1e-5, atol=1e-6)


def test_frame_mask_batches_windows_of_different_lengths(small_setup):
  """Two windows (16 and 11 frames) padded to 20 in one batch equal their unpadded runs."""
  params, tracks = small_setup
  apply = _apply_fn(False)
  short = tracks[..., :11]
  pad_to = 20
  rng = np.random.default_rng(3)

  def padded(t):
    junk = rng.normal(size=(*t.shape[:-1], pad_to - t.shape[-1])).astype(np.float32)
    return np.concatenate([t, junk], axis=-1)

  batch = np.concatenate([padded(tracks), padded(short)], axis=0)  # [2, N, 3, 20]
  frame_mask = np.arange(pad_to)[None, :] < np.array([[16], [11]])
  out = apply({'params': params}, jnp.asarray(batch), None, jnp.asarray(frame_mask))
  for i, ref_in in enumerate((tracks, short)):
    ref = apply({'params': params}, jnp.asarray(ref_in))
    f = ref_in.shape[-1]
    for name in ('translations', 'rotations'):
      np.testing.assert_allclose(np.asarray(getattr(out, name))[i, :f],
                                 np.asarray(getattr(ref, name))[0], rtol=1e-4, atol=1e-5,
                                 err_msg=name)
    np.testing.assert_allclose(np.asarray(out.basis_coeffs)[i, :, :f],  # [K, F]
                               np.asarray(ref.basis_coeffs)[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.bases)[i], np.asarray(ref.bases)[0],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.depths)[i, :f], np.asarray(ref.depths)[0],
                               rtol=1e-4, atol=1e-5)
  # An all-true mask is the unmasked (official) network.
  full = apply({'params': params}, jnp.asarray(tracks), None,
               jnp.ones((1, tracks.shape[-1]), bool))
  ref = apply({'params': params}, jnp.asarray(tracks))
  np.testing.assert_allclose(full.depths, ref.depths, rtol=1e-5, atol=1e-6)


def test_short_videos_wrap_the_circular_convolution(golden_params):
  # The official network fails below 15 frames; ours extends the periodic convolution.
  tracks = np.random.default_rng(2).normal(scale=0.3, size=(2, 5, 3, 7)).astype(np.float32)
  out = _apply_fn(True)({'params': golden_params}, jnp.asarray(tracks))
  assert out.projections.shape == (2, 7, 2, 5)
  assert out.focal.shape == (2, 7, 1)
  rot = np.asarray(out.rotations, np.float64)
  np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape),
                             atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
  assert np.all(np.asarray(out.nr) > 0)


def test_positional_encoding_layout():
  v = jnp.asarray([[0.25, -0.5, 1.0]], jnp.float32)
  e = np.asarray(model.positional_encoding(v, 2))
  assert e.shape == (1, 3 + 2 * 3 * 2)
  np.testing.assert_allclose(e[0, :3], [0.25, -0.5, 1.0])
  np.testing.assert_allclose(e[0, 3:6], np.sin(np.pi * np.array([0.25, -0.5, 1.0])), atol=1e-6)
  np.testing.assert_allclose(e[0, 6:9], np.cos(np.pi * np.array([0.25, -0.5, 1.0])), atol=1e-6)
  np.testing.assert_allclose(e[0, 9:12], np.sin(2 * np.pi * np.array([0.25, -0.5, 1.0])),
                             atol=1e-6)


def test_time_embedding_uses_divisor_half_minus_one():
  pe = model.sincos_time_embedding(3, 8)
  omega = 1.0 / 10000.0 ** (np.arange(4) / 3.0)
  np.testing.assert_allclose(pe[2, :4], np.sin(2 * omega), rtol=1e-6)
  np.testing.assert_allclose(pe[2, 4:], np.cos(2 * omega), rtol=1e-6)
  np.testing.assert_array_equal(pe[0], [0, 0, 0, 0, 1, 1, 1, 1])


def test_rotation_from_6d_rows():
  r = np.asarray(model.rotation_from_6d(jnp.asarray([2.0, 0, 0, 1.0, 3.0, 0])))
  np.testing.assert_allclose(r, np.eye(3), atol=1e-7)
  r = np.asarray(model.rotation_from_6d(jnp.asarray([0.0, 1, 0, 1.0, 0, 0])))
  # Rows: v1 = y, v2 = x, v3 = y x x = -z.
  np.testing.assert_allclose(r, [[0, 1, 0], [1, 0, 0], [0, 0, -1]], atol=1e-7)


def _attention_post_scaled(params, x, key_mask, num_heads, head_dim):
  """The textbook form: logits = (q k^T) * head_dim^-0.5, scaled after the product."""
  ln = params['norm']
  mean = jnp.mean(x, -1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
  y = (x - mean) * (jax.lax.rsqrt(var + model.LAYER_NORM_EPS) * ln['scale']) + ln['bias']
  hp = jax.lax.Precision.HIGHEST
  qkv = jnp.dot(y, params['qkv']['kernel'], precision=hp)
  q, k, v = (t.reshape(*t.shape[:-1], num_heads, head_dim) for t in jnp.split(qkv, 3, -1))
  logits = jnp.einsum('slhd,smhd->shlm', q, k, precision=hp) * head_dim**-0.5
  logits = jnp.where(key_mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
  out = jnp.einsum('shlm,smhd->slhd', jax.nn.softmax(logits, axis=-1), v, precision=hp)
  return jnp.dot(out.reshape(*out.shape[:-2], -1), params['out']['kernel'], precision=hp)


@pytest.mark.parametrize('head_dim', [16, 8])
def test_attention_scale_before_product_is_bit_identical(head_dim):
  # head_dim 16: the power-of-two scale 1/4 is applied to the queries; head_dim 8: after
  # the product. Both must equal the post-scaled form exactly, forward and gradients.
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(5, 7, 24)), jnp.float32)  # [S, L, C]
  key_mask = jnp.asarray(rng.random((5, 7)) < 0.8).at[:, 0].set(True)
  attn = model.Attention(num_heads=2, head_dim=head_dim)
  params = attn.init(jax.random.PRNGKey(0), x, key_mask)['params']
  ours = jax.jit(lambda p, x: attn.apply({'params': p}, x, key_mask))
  ref = jax.jit(lambda p, x: _attention_post_scaled(p, x, key_mask, 2, head_dim))
  np.testing.assert_array_equal(np.asarray(ours(params, x)), np.asarray(ref(params, x)))
  cot = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  g_ours = jax.jit(jax.grad(lambda p, x: jnp.sum(ours(p, x) * cot), argnums=(0, 1)))(params, x)
  g_ref = jax.jit(jax.grad(lambda p, x: jnp.sum(ref(p, x) * cot), argnums=(0, 1)))(params, x)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
