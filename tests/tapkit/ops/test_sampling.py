"""Bilinear sampling and separable resizing: hand-computed values, and parity with torch."""

import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.ops import sampling

# value(row y, column x) = 10 y + x: bilinear interpolation of a linear map is exact.
_RAMP = (10.0 * np.arange(3)[:, None] + np.arange(4)[None, :]).astype(np.float32)[..., None]


def _sample(image, x, y, padding):
  return np.asarray(sampling.bilinear_sample(
      image, np.asarray(x, np.float32), np.asarray(y, np.float32), padding=padding))[..., 0]


@pytest.mark.parametrize('padding', sampling.PADDING_MODES)
def test_interior_points_are_exact_on_a_ramp(padding):
  out = _sample(_RAMP, [0.0, 1.5, 2.25, 3.0], [0.0, 0.5, 1.75, 2.0], padding)
  np.testing.assert_allclose(out, [0.0, 6.5, 19.75, 23.0], rtol=1e-6)


def test_border_clamps_the_coordinates():
  out = _sample(_RAMP, [-1.0, 5.0, 3.5, 1.0], [-3.0, 1.0, 2.5, 9.0], 'border')
  # (-1, -3) -> (0, 0); (5, 1) -> (3, 1); (3.5, 2.5) -> (3, 2); (1, 9) -> (1, 2).
  np.testing.assert_array_equal(out, [0.0, 13.0, 23.0, 21.0])


def test_zeros_drops_the_taps_outside():
  # x = -0.5 on row 0: half of pixel (0, 0) and half of a zero; x = 3.25 on row 1:
  # 0.75 of pixel (1, 3); (y, x) = (-0.5, -0.5): a quarter of pixel (0, 0) = 0.
  out = _sample(_RAMP + 1.0, [-0.5, 3.25, -0.5, 5.0], [0.0, 1.0, -0.5, 1.0], 'zeros')
  np.testing.assert_allclose(out, [0.5, 0.75 * 14.0, 0.25, 0.0], rtol=1e-6)


def test_clamp_index_keeps_the_weight_past_the_last_centre():
  # Negative coordinates clamp to 0; x = 3.4 reads column 3 twice (0.6 + 0.4 of it).
  out = _sample(_RAMP, [-2.0, 3.4, 3.4], [0.0, 2.3, 0.5], 'clamp_index')
  np.testing.assert_allclose(out, [0.0, 23.0, 8.0], rtol=1e-6)


def test_leading_axes_and_jax_match_numpy():
  rng = np.random.default_rng(0)
  maps = rng.normal(size=(2, 3, 5, 6, 4)).astype(np.float32)  # [B, T, H, W, C]
  x = rng.uniform(-1, 6, (2, 3, 7)).astype(np.float32)
  y = rng.uniform(-1, 5, (2, 3, 7)).astype(np.float32)
  for padding in sampling.PADDING_MODES:
    out = sampling.bilinear_sample(maps, x, y, padding=padding)
    assert out.shape == (2, 3, 7, 4)
    one = sampling.bilinear_sample(maps[1, 2], x[1, 2], y[1, 2], padding=padding)
    np.testing.assert_array_equal(out[1, 2], one)
    out_jax = sampling.bilinear_sample(jnp.asarray(maps), jnp.asarray(x), jnp.asarray(y),
                                       padding=padding)
    assert isinstance(out_jax, type(jnp.zeros(1)))
    np.testing.assert_allclose(np.asarray(out_jax), out, rtol=1e-5, atol=1e-6)


def test_pixel_coords():
  u = np.array([0.0, 0.5, 1.0], np.float32)
  np.testing.assert_array_equal(sampling.pixel_coords(u, 8, align_corners=False),
                                [-0.5, 3.5, 7.5])
  np.testing.assert_array_equal(sampling.pixel_coords(u, 8, align_corners=True), [0.0, 3.5, 7.0])


def test_errors():
  with pytest.raises(ValueError, match='padding'):
    sampling.bilinear_sample(_RAMP, np.zeros(2), np.zeros(2), padding='reflect')
  with pytest.raises(ValueError, match='leading axes'):
    sampling.bilinear_sample(_RAMP, np.zeros((1, 2)), np.zeros((1, 2)))


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('padding', ['zeros', 'border'])
def test_matches_torch_grid_sample(align_corners, padding):
  torch = pytest.importorskip('torch')
  rng = np.random.default_rng(1)
  image = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)  # [B, H, W, C]
  grid = rng.uniform(-1.3, 1.3, (2, 40, 2)).astype(np.float32)  # [B, N, (x, y)] in [-1, 1]
  want = torch.nn.functional.grid_sample(
      torch.from_numpy(image).permute(0, 3, 1, 2), torch.from_numpy(grid)[:, None],
      mode='bilinear', padding_mode=padding, align_corners=align_corners)
  want = want[:, :, 0].permute(0, 2, 1).numpy()  # [B, N, C]
  u = (grid + 1) / 2
  x = sampling.pixel_coords(u[..., 0], 7, align_corners=align_corners)
  y = sampling.pixel_coords(u[..., 1], 5, align_corners=align_corners)
  for xp in (np, jnp):
    got = sampling.bilinear_sample(xp.asarray(image), xp.asarray(x), xp.asarray(y),
                                   padding=padding)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_clamp_index_matches_torch_interpolate():
  torch = pytest.importorskip('torch')
  rng = np.random.default_rng(2)
  image = rng.normal(size=(4, 5, 3)).astype(np.float32)  # [h, w, C]
  out_h, out_w = 14, 9
  want = torch.nn.functional.interpolate(
      torch.from_numpy(image).permute(2, 0, 1)[None], size=(out_h, out_w), mode='bilinear',
      align_corners=False)[0].permute(1, 2, 0).numpy()  # [out_h, out_w, C]
  # Output pixel (i, j) reads source coordinate (dst + 0.5) * in / out - 0.5.
  ys, xs = np.meshgrid((np.arange(out_h) + 0.5) * 4 / out_h - 0.5,
                       (np.arange(out_w) + 0.5) * 5 / out_w - 0.5, indexing='ij')
  for xp in (np, jnp):
    got = sampling.bilinear_sample(
        xp.asarray(image), xp.asarray(xs.reshape(-1).astype(np.float32)),
        xp.asarray(ys.reshape(-1).astype(np.float32)), padding='clamp_index')
    np.testing.assert_allclose(np.asarray(got).reshape(out_h, out_w, 3), want, rtol=1e-5,
                               atol=1e-6)


def test_bicubic_matrix_matches_torch_formula():
  # Upsampling [0, 1] to 4 with a = -0.75, align_corners=False, border
  # clamped: sources -0.25, 0.25, 0.75, 1.25.
  m = sampling.bicubic_matrix(2, 4)
  np.testing.assert_allclose(m @ np.array([0.0, 1.0]),
                             [-0.10546875, 0.2265625, 0.7734375, 1.10546875])
  np.testing.assert_allclose(m.sum(1), 1.0)
  np.testing.assert_allclose(sampling.bicubic_matrix(5, 5), np.eye(5), atol=1e-12)
  f = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
  up = np.asarray(sampling.resize(jnp.asarray(f), (6, 8), 'bicubic'))
  ref = np.einsum('Yy,yxd,Xx->YXd', sampling.bicubic_matrix(3, 6), f,
                  sampling.bicubic_matrix(4, 8))
  np.testing.assert_allclose(up, ref, rtol=1e-5, atol=1e-5)


def test_bilinear_matrix_known_rows():
  # align_corners=True, 3 -> 5: sources 0, 0.5, 1, 1.5, 2.
  np.testing.assert_allclose(sampling.bilinear_matrix(3, 5, align_corners=True) @ [0.0, 2.0, 4.0],
                             [0.0, 1.0, 2.0, 3.0, 4.0])
  # align_corners=False, 2 -> 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (index clamped).
  np.testing.assert_allclose(sampling.bilinear_matrix(2, 4, align_corners=False) @ [0.0, 4.0],
                             [0.0, 1.0, 3.0, 4.0])
  np.testing.assert_allclose(sampling.source_coords(2, 4, align_corners=False),
                             [-0.25, 0.25, 0.75, 1.25])


@pytest.mark.parametrize('mode', ['bilinear', 'bicubic'])
@pytest.mark.parametrize('align_corners', [False, True])
def test_resize_matches_torch_interpolate(mode, align_corners):
  torch = pytest.importorskip('torch')
  x = np.random.default_rng(3).normal(size=(2, 5, 6, 3)).astype(np.float32)  # [B, H, W, C]
  for out_hw in ((11, 4), (3, 13)):
    want = torch.nn.functional.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2), size=out_hw, mode=mode,
        align_corners=align_corners).permute(0, 2, 3, 1).numpy()
    got = np.asarray(sampling.resize(jnp.asarray(x), out_hw, mode, align_corners))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    one = np.asarray(sampling.resize(jnp.asarray(x[1]), out_hw, mode, align_corners))
    np.testing.assert_allclose(one, want[1], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='mode'):
    sampling.resize(jnp.asarray(x), (4, 4), 'area')
