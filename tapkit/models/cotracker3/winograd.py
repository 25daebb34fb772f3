"""3×3 stride-1 convolutions by the Winograd minimal-filtering algorithm F(2×2, 3×3).

Each 2×2 block of outputs is computed from the 4×4 input tile around it: the tile and the
kernel are mapped into a 4×4 "transform domain" (input: Bᵀ·d·B, additions and subtractions
only; kernel: G·g·Gᵀ with factors ±1/2, exact in binary floating point), multiplied there
elementwise, which over channels becomes 16 independent matrix products [tiles, C] × [C, O],
and mapped back (Aᵀ·m·A, additions only). That takes 16 multiplications per 2×2 outputs and
input channel instead of 36 (2.25× fewer), and the products are plain matrix multiplications,
which XLA's CPU backend runs closer to peak than its direct convolution.

The result equals the direct convolution (zero padding 1, channels last) up to float32
rounding: the transforms only add, subtract and halve, so the difference is a few units in the
last place of the accumulated sums (measured ~2e-6 relative for 416 input channels).

Transforms (rows = tile positions 0..3 of the padded input, outputs 0..1):
  Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]
  G  = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]
  Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
HIGHEST = jax.lax.Precision.HIGHEST
# From this many 2×2 output tiles on, the 16 transform-domain products run as separate matrix
# products (faster on CPU: 78 -> 41 ms for the 416-channel conv of 8 frames at 64×96); below
# it, as one batched product (a 4×6-tile map of 8 frames: 0.70 vs 0.81 ms). Same values.
SEPARATE_PRODUCTS_MIN_TILES = 256

def _kernel_rows(g0: Array, g1: Array, g2: Array) -> tuple[Array, ...]:
  """G applied along one axis to the three kernel taps."""
  return g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2


def _kernel_parts(kernel: Array) -> list[tuple[Array, ...]]:
  """G·g·Gᵀ as 4 × 4 separate [C, O] arrays (no stacking: XLA's CPU backend emits a fused
  concatenation of many operands slowly, and each part feeds its own product)."""
  rows = _kernel_rows(kernel[0], kernel[1], kernel[2])  # 4 × [3, C, O]
  return [_kernel_rows(r[0], r[1], r[2]) for r in rows]


def transform_kernel(kernel: Array) -> Array:
  """G·g·Gᵀ of every (input, output) channel pair: [3, 3, C, O] -> [4, 4, C, O]."""
  return jnp.stack([jnp.stack(parts) for parts in _kernel_parts(kernel)])


def _input_rows(s0: Array, s1: Array, s2: Array, s3: Array) -> tuple[Array, ...]:
  """Bᵀ applied along one axis to the four tile positions (each an array of tiles)."""
  return s0 - s2, s1 + s2, s2 - s1, s1 - s3


def conv3x3(x: Array, kernel: Array, bias: Array | None = None) -> Array:
  """Zero-padded ('SAME') 3×3 convolution, stride 1, by Winograd F(2×2, 3×3).

  Args:
    x: [N, H, W, C] input maps (any H, W ≥ 1; odd sizes are padded to even and cropped).
    kernel: [3, 3, C, O] (HWIO, as `flax.linen.Conv`).
    bias: [O] or None.

  Returns:
    [N, H, W, O], equal to `jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME')` (+ bias)
    up to float32 rounding.
  """
  if x.ndim != 4 or kernel.shape[:2] != (3, 3) or kernel.shape[2] != x.shape[-1]:
    raise ValueError(f'x must be [N, H, W, C] and kernel [3, 3, C, O], got shapes {x.shape} '
                     f'and {kernel.shape}')
  n, h, w, c = x.shape
  o = kernel.shape[-1]
  th, tw = -(-h // 2), -(-w // 2)  # Output tiles along H, W.
  xp = jnp.pad(x, ((0, 0), (1, 1 + 2 * th - h), (1, 1 + 2 * tw - w), (0, 0)))
  # Tile (i, j) covers padded rows 2i .. 2i + 3 and columns 2j .. 2j + 3.
  rows = _input_rows(*[xp[:, k:k + 2 * th:2] for k in range(4)])  # 4 × [N, th, W + 2, C]
  if n * th * tw >= SEPARATE_PRODUCTS_MIN_TILES:
    # One [tiles, C] × [C, O] product per transform-domain position, each fed by its own
    # elementwise fusion: stacking the 16 transformed inputs into one [16, tiles, C] operand
    # costs XLA's CPU backend about as much as the products (the same products either way).
    u = _kernel_parts(kernel.astype(x.dtype))  # 4 × 4 × [C, O]
    m = [[jnp.dot(v.reshape(-1, c), u[a][b], precision=HIGHEST).reshape(n, th, tw, o)
          for b, v in enumerate(_input_rows(*[r[:, :, k:k + 2 * tw:2] for k in range(4)]))]
         for a, r in enumerate(rows)]  # 4 × 4 × [N, th, tw, O]
  else:
    tiles = []
    for r in rows:
      tiles.extend(_input_rows(*[r[:, :, k:k + 2 * tw:2] for k in range(4)]))
    v = jnp.stack(tiles).reshape(16, n * th * tw, c)  # [16, tiles, C]
    u = transform_kernel(kernel.astype(x.dtype)).reshape(16, c, o)
    m = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))),
                            precision=HIGHEST)  # [16, tiles, O]
    m = m.reshape(4, 4, n, th, tw, o)
  # Aᵀ along the tile rows: 2 × 4 × [N, th, tw, O].
  cols = ([m[0][b] + m[1][b] + m[2][b] for b in range(4)],
          [m[1][b] - m[2][b] - m[3][b] for b in range(4)])
  out = jnp.stack([jnp.stack([a[0] + a[1] + a[2], a[1] - a[2] - a[3]], axis=-2) for a in cols],
                  axis=2)  # [N, th, 2, tw, 2, O]
  out = out.reshape(n, 2 * th, 2 * tw, o)[:, :h, :w]
  return out if bias is None else out + bias.astype(out.dtype)


class Conv3x3(nn.Module):
  """`flax.linen.Conv(features, (3, 3), padding=1)` (same parameters 'kernel' [3, 3, C, O] and
  'bias' [O], same initialisers) computed by `conv3x3`."""
  features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', nn.linear.default_kernel_init,
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return conv3x3(x, kernel, bias)
