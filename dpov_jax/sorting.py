"""Differentiable sorting networks (diffsort semantics) in JAX.

Re-derivation of Petersen et al., "Differentiable Sorting Networks" (ICML 2021)
and "Monotonic Differentiable Sorting Networks" (ICLR 2022) as the PyPI package
`diffsort` 0.2.0 (PyTorch) computes them.

    sorted_x, perm = diff_sort(x, network='bitonic', steepness=10.0,
                               art_lambda=0.25, distribution='cauchy')

for x [..., n] returns sorted_x [..., n] (relaxed, ascending) and perm
[..., n, n] with sorted_x[..., r] = sum_i x[..., i] * perm[..., i, r]: axis -2
is the input item, axis -1 the rank. This is exactly the second output of
`diffsort.DiffSortNet(network, n, ...)(x)`.

Implementation notes (why it looks the way it does):
* diffsort updates the n x n matrix with dense one-hot products, O(n^3) per
  layer. Here every layer mixes the (lower, upper) wire pairs elementwise,
  O(n^2) per layer, with the same arithmetic (alpha * a + (1 - alpha) * b), so
  results agree with diffsort to rounding (float64 goldens: values and
  matrices to ~1e-13).
* The matrix is kept transposed, [wire, item]: a comparator mixes two rows.
* `steepness` and `art_lambda` are traced, not static: one compilation per
  (network, n, distribution, dtype, batch shape) serves every temperature
  (a steepness schedule does not recompile) and both are differentiable.
* Bitonic networks ("blocked" implementation, the default) use static
  reshapes instead of gathers, with the rows of a chunk as the minor
  (vectorised) axis, [wire, item, row]. During block b a bitonic network only
  mixes wires inside groups of G = 2^(b+1), so the matrix is block diagonal
  until the last block: only the diagonal blocks, [groups, G, G, row], are
  stored and widened at every block start (about half the work for n = 64;
  the off-diagonal entries are exact zeros in diffsort too). The backward
  pass is a hand-written `custom_vjp` that recomputes a chunk's forward and
  runs the layers in reverse on block-diagonal cotangents (the blocks that
  are dropped only ever multiply those exact zeros).
* Odd-even networks ("scan" implementation; also available for bitonic) pad
  every layer to the same number of pairs and run one `lax.scan` step per
  layer with gathers from static tables, so compile time does not grow with
  the n layers; autodiff with `jax.checkpoint` per chunk.
* n that are not powers of two use virtual wires in front (b.2): comparators
  between a virtual and a real wire get a constant alpha (1 ascending, 0
  descending) that leaves the real value on its wire, exactly like diffsort's
  identity comparators; virtual wires never mix into real ones. Odd-even
  boundary wires are pseudo-pairs (w, w) with alpha = 1.
* Rows are processed in chunks with `lax.map`, so one chunk's matrices stay
  in cache through all layers (the blocked default is 2 rows per chunk: on
  a 2-core AVX2 CPU it took 0.65-0.75x the process CPU time of 8-row chunks
  for n = 64, forward + backward) and the backward pass recomputes a chunk's
  forward instead of storing every layer for every row. XLA's CPU runtime
  runs the chunk loop on one core (two independent loops in one program are
  serialised: their bodies share the program's preallocated temporaries).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

NETWORKS = ('bitonic', 'odd_even')
IMPLEMENTATIONS = ('auto', 'blocked', 'scan')
DISTRIBUTIONS = ('logistic', 'logistic_phi', 'gaussian', 'reciprocal',
                 'cauchy', 'optimal')


# ---------------------------------------------------------------------------
# Network structure (static, cached per (network, n)).
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Network:
  """A sorting network on n items as uniform per-layer wire tables.

  Every layer is written as P (lower, upper) wire pairs; wires without a real
  comparator are pseudo-pairs (w, w) with a forced alpha of 1, which copies
  the wire exactly (diffsort's identity comparators do the same). All layers
  have the same P so that the network runs as one `lax.scan`.

  Attributes:
    kind: 'bitonic' or 'odd_even'.
    n: number of real items.
    wires: W, padded wire count (2^ceil(log2 n) for bitonic, n for odd-even).
    offset: number of virtual wires in front (W - n).
    lower, upper: [L, P] int32 wire indices ("a" and "b" wires, a <= b).
    desc: [L, P] bool, the comparator puts the minimum on the upper wire.
    forced: [L, P] float64, NaN where alpha is computed, else its constant
      value (virtual-a / real-b bitonic comparators and pseudo-pairs).
    gather_back: [L, W] int32, position of every wire's new value in the
      concatenation [values for `lower`; values for `upper`].
  """
  kind: str
  n: int
  wires: int
  offset: int
  lower: np.ndarray
  upper: np.ndarray
  desc: np.ndarray
  forced: np.ndarray
  gather_back: np.ndarray

  @property
  def num_layers(self) -> int:
    return self.lower.shape[0]


def _tables(wires: int, layers: list[list[tuple[int, int, bool, float]]]):
  """Packs per-layer comparator lists into uniform [L, P] / [L, W] tables."""
  num_pairs = max((len(layer) for layer in layers), default=0)
  shape = (len(layers), num_pairs)
  lower = np.zeros(shape, np.int32)
  upper = np.zeros(shape, np.int32)
  desc = np.zeros(shape, bool)
  forced = np.ones(shape, np.float64)  # padding pseudo-pairs copy wire 0
  back = np.zeros((len(layers), wires), np.int32)
  for l, layer in enumerate(layers):
    for k, (a, b, is_desc, alpha) in enumerate(layer):
      lower[l, k], upper[l, k], desc[l, k], forced[l, k] = a, b, is_desc, alpha
      back[l, a] = k
      if b != a:
        back[l, b] = num_pairs + k
  return lower, upper, desc, forced, back


@functools.lru_cache(maxsize=None)
def get_network(network: str, n: int) -> Network:
  """Returns the static structure of diffsort's `network` on n items."""
  if n < 1:
    raise ValueError(f'n must be >= 1, got {n}')
  layers = []
  if network == 'bitonic':
    num_blocks = math.ceil(math.log2(n)) if n > 1 else 0
    wires = 2**num_blocks
    offset = wires - n
    for block in range(num_blocks):
      for sub in range(block + 1):
        m = 2**(block - sub)
        layer = []
        for i in range(0, wires, 2 * m):
          for j in range(m):
            a, b = i + j, i + j + m
            is_desc = (a // 2**(block + 1)) % 2 == 1
            alpha = np.nan
            if a < offset <= b:
              # Keep the real value on wire b: ascending puts the max (weight
              # alpha on b) there, descending the min (weight 1 - alpha on b).
              alpha = 0.0 if is_desc else 1.0
            # Virtual-virtual comparators only mix zeros; computing them keeps
            # every layer a full set of W / 2 pairs.
            layer.append((a, b, is_desc, alpha))
        layers.append(layer)
  elif network == 'odd_even':
    wires, offset = n, 0
    for l in range(n):
      start = l % 2
      layer = [(a, a + 1, False, np.nan) for a in range(start, n - 1, 2)]
      paired = {w for a, b, _, _ in layer for w in (a, b)}
      layer += [(w, w, False, 1.0) for w in range(n) if w not in paired]
      layers.append(layer)
  else:
    raise ValueError(f'unknown network {network!r}; expected one of {NETWORKS}')
  return Network(network, n, wires, offset, *_tables(wires, layers))


@dataclasses.dataclass(frozen=True)
class BitonicBlock:
  """One block of a bitonic network in rotated, block-diagonal coordinates.

  During block b the W wires form W / G independent groups of G = 2^(b+1)
  wires, and the block has b + 1 layers with strides G/2, G/4, ..., 1. The
  wires of a group are kept in an order in which every layer compares
  position j with position j + G/2: after each layer the outputs are
  interleaved (position j of the lower half -> 2j, of the upper half ->
  2j + 1), which rotates the bits of the in-group wire index left by one, so
  the next stride's bit comes to the top; after b + 1 layers the order is
  natural again. All layers of a block therefore have the same shapes and
  run as one `lax.scan`.

  Attributes:
    group: G.
    desc: [W / G] bool, the group's comparators put the minimum on the upper
      wire.
    forced: [b + 1, W / G, G / 2] float64 in rotated coordinates, NaN where
      alpha is computed, else the constant alpha of a virtual-a / real-b
      comparator; None if the block has none.
  """
  group: int
  desc: np.ndarray
  forced: np.ndarray | None

  @property
  def num_layers(self) -> int:
    return int(round(math.log2(self.group)))


@functools.lru_cache(maxsize=None)
def bitonic_blocks(n: int) -> tuple[BitonicBlock, ...]:
  """diffsort's bitonic network on n items as `BitonicBlock`s."""
  net = get_network('bitonic', n)
  wires, offset = net.wires, net.offset
  blocks = []
  for block in range(int(round(math.log2(wires)))):
    group = 2**(block + 1)
    groups = wires // group
    desc = np.arange(groups) % 2 == 1
    order = np.arange(wires).reshape(groups, group)  # wire at each position
    forced = np.full((block + 1, groups, group // 2), np.nan)
    for sub in range(block + 1):
      lower, upper = order[:, :group // 2], order[:, group // 2:]
      assert np.all(upper - lower == 2**(block - sub))
      virtual_a = (lower < offset) & (upper >= offset)
      # Keep the real value on wire b (see get_network).
      desc_full = np.broadcast_to(desc[:, None], lower.shape)
      forced[sub][virtual_a] = np.where(desc_full[virtual_a], 0.0, 1.0)
      order = np.stack([lower, upper], axis=2).reshape(groups, group)
    assert np.all(order == np.arange(wires).reshape(groups, group))
    has_forced = not np.isnan(forced).all()
    blocks.append(BitonicBlock(group, desc, forced if has_forced else None))
  return tuple(blocks)


# ---------------------------------------------------------------------------
# Relaxed swap weights.
# ---------------------------------------------------------------------------


@jax.custom_jvp
def _normal_cdf(v: jax.Array, steepness: jax.Array) -> jax.Array:
  sigma = 1 / steepness
  return 0.5 + 0.5 * jax.lax.erf(v / sigma / math.sqrt(2))


@_normal_cdf.defjvp
def _normal_cdf_jvp(primals, tangents):
  (v, steepness), (t_v, t_steepness) = primals, tangents
  sigma = 1 / steepness
  # diffsort's custom backward keeps sigma = 1/steepness as a float32 tensor,
  # so its derivative in v uses sigma rounded to float32 (even for float64
  # input).
  sigma32 = sigma.astype(jnp.float32).astype(v.dtype)
  dv = t_v / sigma32 / math.sqrt(math.pi * 2) * jnp.exp(-0.5 * (v / sigma32)**2)
  # d/ds Phi(v s) = v phi(v s) (diffsort has no gradient in s).
  ds = t_steepness * v / math.sqrt(math.pi * 2) * jnp.exp(-0.5 * (v / sigma)**2)
  return _normal_cdf(v, steepness), dv + ds


def swap_weight(v: jax.Array, distribution: str, steepness: jax.Array | float,
                art_lambda: jax.Array | float) -> jax.Array:
  """alpha = P(a is the smaller value) for v = b - a, as diffsort computes it.

  Args:
    v: [...] differences b - a.
    distribution: one of DISTRIBUTIONS.
    steepness: [] inverse temperature s (traced or a Python float).
    art_lambda: [] exponent of `logistic_phi`.

  Returns:
    [...] weights in [0, 1]; 0.5 at v = 0.
  """
  if distribution == 'logistic':
    return jax.nn.sigmoid(v * steepness)
  if distribution == 'logistic_phi':
    # The +1e-10 keeps ties (v = 0) finite in value and gradient.
    return jax.nn.sigmoid(v * steepness / (jnp.abs(v) + 1e-10)**art_lambda)
  if distribution == 'gaussian':
    return _normal_cdf(v, jnp.asarray(steepness, v.dtype))
  if distribution == 'reciprocal':
    u = steepness * v
    return 0.5 * (u / (2 + jnp.abs(u)) + 1)
  if distribution == 'cauchy':
    u = steepness * v
    return 1 / math.pi * jnp.arctan(u) + 0.5
  if distribution == 'optimal':
    u = steepness * v
    # torch.clamp passes the gradient on the closed interval; `where` does too
    # (jnp.clip would halve it at the bounds).
    clamped = jnp.where(u > 0.25, 0.25, jnp.where(u < -0.25, -0.25, u))
    side = ((u > 0.25).astype(u.dtype) - (u < -0.25).astype(u.dtype))
    return clamped + 0.5 + side * (0.25 - 1 / 16 / (jnp.abs(u) + 1e-10))
  raise ValueError(
      f'unknown distribution {distribution!r}; expected one of {DISTRIBUTIONS}')


# ---------------------------------------------------------------------------
# "scan" implementation: one chunk of rows, gathers from per-layer tables.
# ---------------------------------------------------------------------------


def _sort_chunk_scan(x: jax.Array, net: Network, distribution: str,
                     steepness: jax.Array,
                     art_lambda: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Runs the network on x [C, n] -> (sorted [C, n], perm [C, n, n]).

  The matrix is kept as [C, wire, item] so that the two wires of a pair are
  contiguous rows; one `lax.scan` step per layer keeps compile time
  independent of the number of layers.
  """
  c, n = x.shape
  dtype = x.dtype
  pad = net.offset
  xv = jnp.concatenate([jnp.zeros((c, pad), dtype), x], axis=1)
  # Virtual wires carry zero rows: they never mix into real wires because
  # their comparators have alpha forced to exactly 0 or 1.
  mat = jnp.concatenate(
      [jnp.zeros((c, pad, n), dtype),
       jnp.broadcast_to(jnp.eye(n, dtype=dtype), (c, n, n))], axis=1)
  is_forced = ~np.isnan(net.forced)
  tables = (jnp.asarray(net.lower), jnp.asarray(net.upper),
            jnp.asarray(net.desc), jnp.asarray(is_forced),
            jnp.asarray(np.nan_to_num(net.forced), dtype),
            jnp.asarray(net.gather_back))
  num_pairs = net.lower.shape[1]

  def layer(carry, table):
    xv, mat = carry
    lower, upper, desc, forced, forced_alpha, back = table
    idx = jnp.concatenate([lower, upper])
    vals = jnp.take(xv, idx, axis=1)
    a, b = vals[:, :num_pairs], vals[:, num_pairs:]
    alpha = swap_weight(b - a, distribution, steepness, art_lambda)
    alpha = jnp.where(forced, forced_alpha, alpha)
    one_minus = 1 - alpha
    # Same products and sums as diffsort: min = alpha*a + (1-alpha)*b and
    # max = (1-alpha)*a + alpha*b, routed by p / q (p = alpha ascending,
    # 1 - alpha descending).
    p = jnp.where(desc, one_minus, alpha)
    q = jnp.where(desc, alpha, one_minus)
    new = jnp.concatenate([p * a + q * b, q * a + p * b], axis=1)
    xv = jnp.take(new, back, axis=1)
    rows = jnp.take(mat, idx, axis=1)
    ra, rb = rows[:, :num_pairs], rows[:, num_pairs:]
    p, q = p[..., None], q[..., None]
    new = jnp.concatenate([p * ra + q * rb, q * ra + p * rb], axis=1)
    mat = jnp.take(new, back, axis=1)
    return (xv, mat), None

  (xv, mat), _ = jax.lax.scan(layer, (xv, mat), tables)
  # [C, wire (= rank), item] -> [C, item, rank].
  return xv[:, pad:], jnp.swapaxes(mat[:, pad:], -1, -2)


# ---------------------------------------------------------------------------
# "blocked" bitonic implementation: static reshapes, rows minor, custom VJP.
# ---------------------------------------------------------------------------


def _widen(mat: jax.Array) -> jax.Array:
  """[2k, G, G, C] diagonal blocks -> [k, 2G, 2G, C] (zero off-diagonal)."""
  groups, g, _, c = mat.shape
  pairs = mat.reshape(groups // 2, 2, g, g, c)
  zeros = jnp.zeros_like(pairs[:, 0])
  top = jnp.concatenate([pairs[:, 0], zeros], axis=2)
  bottom = jnp.concatenate([zeros, pairs[:, 1]], axis=2)
  return jnp.concatenate([top, bottom], axis=1)


def _narrow(mat: jax.Array) -> jax.Array:
  """Adjoint of `_widen`: [k, 2G, 2G, C] -> its [2k, G, G, C] diagonal blocks."""
  groups, g2, _, c = mat.shape
  g = g2 // 2
  blocks = mat.reshape(groups, 2, g, 2, g, c)
  return jnp.stack([blocks[:, 0, :, 0], blocks[:, 1, :, 1]],
                   axis=1).reshape(2 * groups, g, g, c)


def _interleave(lo: jax.Array, hi: jax.Array) -> jax.Array:
  """(lo, hi) [groups, G/2, ...] -> [groups, G, ...], lo[j] -> 2j, hi[j] -> 2j+1."""
  out = jnp.stack([lo, hi], axis=2)
  return out.reshape(out.shape[0], -1, *out.shape[3:])


def _deinterleave(arr: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Inverse of `_interleave`."""
  pairs = arr.reshape(arr.shape[0], -1, 2, *arr.shape[2:])
  return pairs[:, :, 0], pairs[:, :, 1]


def _halves(arr: jax.Array) -> tuple[jax.Array, jax.Array]:
  """[groups, G, ...] -> lower and upper halves of the wire axis."""
  half = arr.shape[1] // 2
  return arr[:, :half], arr[:, half:]


def _sum_axis2(arr: jax.Array) -> jax.Array:
  """Sum over axis 2 (a power of two) as a tree of halving adds.

  Keeps the matrix cotangent contraction inside XLA's elementwise loop
  fusion; a `reduce` here is handed to a library kernel that is several times
  slower on these small, rows-minor shapes.
  """
  while arr.shape[2] > 1:
    half = arr.shape[2] // 2
    arr = arr[:, :, :half] + arr[:, :, half:]
  return arr[:, :, 0]


def _block_weights(block: BitonicBlock, v: jax.Array, forced: jax.Array | None,
                   distribution: str, steepness: jax.Array,
                   art_lambda: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Routing weights of one layer: v [groups, G/2, C] -> (p, q), same shape.

  new lower = p * a + q * b, new upper = q * a + p * b for v = b - a.
  """
  alpha = swap_weight(v, distribution, steepness, art_lambda)
  if forced is not None:
    alpha = jnp.where(jnp.isnan(forced)[..., None], alpha,
                      jnp.nan_to_num(forced)[..., None])
  one_minus = 1 - alpha
  if not block.desc.any():
    return alpha, one_minus
  desc = block.desc[:, None, None]
  return jnp.where(desc, one_minus, alpha), jnp.where(desc, alpha, one_minus)


def _bitonic_forward(x: jax.Array, n: int, distribution: str,
                     steepness: jax.Array, art_lambda: jax.Array,
                     keep_tape: bool = False
                     ) -> tuple[jax.Array, jax.Array, list | None]:
  """Bitonic network on rows-minor x [n, C].

  Returns:
    sorted [n, C], transposed matrix [rank, item, C], and, if keep_tape, for
    every block (v [b+1, groups, G/2, C] = b - a, matrix row differences
    a - b [b+1, groups, G/2, G, C]) of all its layers (else None).
  """
  blocks = bitonic_blocks(n)
  c = x.shape[1]
  dtype = x.dtype
  wires = blocks[-1].group
  offset = wires - n
  xv = jnp.concatenate([jnp.zeros((offset, c), dtype), x]) if offset else x
  # Block-diagonal identity with 2 x 2 blocks (virtual wires included: they
  # never mix into real wires, and are sliced away at the end).
  mat = jnp.broadcast_to(jnp.eye(2, dtype=dtype)[None, :, :, None],
                         (wires // 2, 2, 2, c))
  tape = []
  for block in blocks:
    if mat.shape[1] != block.group:
      mat = _widen(mat)

    def layer(carry, forced, block=block):
      xv, mat = carry
      a, b = _halves(xv)
      v = b - a
      p, q = _block_weights(block, v, forced, distribution, steepness,
                            art_lambda)
      ma, mb = _halves(mat)
      # Same products and sums as diffsort for the values: min = alpha*a +
      # (1-alpha)*b and max = (1-alpha)*a + alpha*b, routed by p / q. The
      # matrix rows use q = 1 - p: p*a + q*b = b + p*(a - b) and
      # q*a + p*b = a - p*(a - b), one product instead of four (equal up to
      # rounding), and a - b is the tape entry the backward needs anyway.
      new_xv = _interleave(p * a + q * b, q * a + p * b)
      dm = ma - mb
      shift = p[:, :, None] * dm
      new_mat = _interleave(mb + shift, ma - shift)
      return (new_xv, new_mat), ((v, dm) if keep_tape else None)

    forced = (None if block.forced is None
              else jnp.asarray(block.forced, dtype))
    shaped = (xv.reshape(-1, block.group, c), mat)
    (xv, mat), saved = jax.lax.scan(layer, shaped, forced,
                                    length=block.num_layers, unroll=True)
    xv = xv.reshape(wires, c)
    tape.append(saved)
  return xv[offset:], mat[0, offset:, offset:], (tape if keep_tape else None)


def _bitonic_backward(x: jax.Array, n: int, distribution: str,
                      steepness: jax.Array, art_lambda: jax.Array,
                      grad_sorted: jax.Array, grad_mat: jax.Array
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """VJP of `_bitonic_forward` (recomputes the forward of this chunk).

  Args:
    x: [n, C] rows-minor input.
    n, distribution, steepness, art_lambda: as in the forward.
    grad_sorted: [n, C] cotangent of the sorted values.
    grad_mat: [rank, item, C] cotangent of the transposed matrix.

  Returns:
    Cotangents of x [n, C], steepness [] and art_lambda [].
  """
  blocks = bitonic_blocks(n)
  _, _, tape = _bitonic_forward(x, n, distribution, steepness, art_lambda,
                                keep_tape=True)
  c = x.shape[1]
  wires = blocks[-1].group
  offset = wires - n
  gv = jnp.pad(grad_sorted, ((offset, 0), (0, 0)))
  gm = jnp.pad(grad_mat, ((offset, 0), (offset, 0), (0, 0)))[None]
  d_params = (jnp.zeros_like(steepness), jnp.zeros_like(art_lambda))
  for block, saved in zip(blocks[::-1], tape[::-1]):
    if gm.shape[1] != block.group:
      gm = _narrow(gm)

    def layer(carry, xs, block=block):
      gv, gm, (d_s, d_l) = carry
      v, dm, forced = xs
      weights = lambda v, s, lam: _block_weights(
          block, v, forced, distribution, s, lam)
      (p, q), weights_vjp = jax.vjp(weights, v, steepness, art_lambda)
      glo, ghi = _deinterleave(gv)
      gma, gmb = _deinterleave(gm)
      # new lo = p a + q b, new hi = q a + p b with a - b = -v.
      dg = glo - ghi
      dgm = gma - gmb
      d_p = -dg * v + _sum_axis2(dgm * dm)
      d_v, d_s_layer, d_l_layer = weights_vjp((d_p, jnp.zeros_like(d_p)))
      # v = b - a.
      new_gv = jnp.concatenate([p * glo + q * ghi - d_v,
                                q * glo + p * ghi + d_v], axis=1)
      # As in the forward: p*ga + q*gb = gb + p*(ga - gb), q*ga + p*gb =
      # ga - p*(ga - gb).
      shift = p[:, :, None] * dgm
      new_gm = jnp.concatenate([gmb + shift, gma - shift], axis=1)
      return (new_gv, new_gm, (d_s + d_s_layer, d_l + d_l_layer)), None

    forced = (None if block.forced is None
              else jnp.asarray(block.forced, x.dtype))
    shaped = (gv.reshape(-1, block.group, c), gm, d_params)
    (gv, gm, d_params), _ = jax.lax.scan(layer, shaped, (*saved, forced),
                                         reverse=True, unroll=True)
    gv = gv.reshape(wires, c)
  return gv[offset:], d_params[0], d_params[1]


@functools.lru_cache(maxsize=None)
def _bitonic_chunk_fn(n: int, distribution: str) -> jax.custom_vjp:
  """custom_vjp function (x [C, n], s, lam) -> (sorted [C, n], perm [C, n, n])."""

  @jax.custom_vjp
  def chunk(x: jax.Array, steepness: jax.Array,
            art_lambda: jax.Array) -> tuple[jax.Array, jax.Array]:
    y, mat, _ = _bitonic_forward(x.T, n, distribution, steepness, art_lambda)
    # [rank, item, C] -> [C, item, rank].
    return y.T, jnp.transpose(mat, (2, 1, 0))

  def fwd(x: jax.Array, steepness: jax.Array, art_lambda: jax.Array):
    return chunk(x, steepness, art_lambda), (x, steepness, art_lambda)

  def bwd(res, cts):
    x, steepness, art_lambda = res
    grad_sorted, grad_perm = cts
    gx, gs, gl = _bitonic_backward(x.T, n, distribution, steepness,
                                   art_lambda, grad_sorted.T,
                                   jnp.transpose(grad_perm, (2, 1, 0)))
    return gx.T, gs, gl

  chunk.defvjp(fwd, bwd)
  return chunk


# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------


@functools.partial(
    jax.jit,
    static_argnames=('network', 'distribution', 'chunk_size',
                     'implementation'))
def diff_sort(x: jax.Array,
              network: str = 'bitonic',
              steepness: float | jax.Array = 10.0,
              art_lambda: float | jax.Array = 0.25,
              distribution: str = 'cauchy',
              chunk_size: int | None = None,
              implementation: str = 'auto') -> tuple[jax.Array, jax.Array]:
  """Relaxed sort of the last axis with a differentiable sorting network.

  Matches `diffsort.DiffSortNet(network, n, steepness=steepness,
  art_lambda=art_lambda, distribution=distribution)(x)` for x [B, n], in the
  dtype of x, and extends it to any leading batch shape.

  Args:
    x: [..., n] floating values; n >= 1.
    network: 'bitonic' or 'odd_even' (static).
    steepness: [] inverse temperature of the relaxed swaps (traced: changing
      it does not recompile; differentiable).
    art_lambda: [] exponent of the 'logistic_phi' distribution (traced).
    distribution: one of 'logistic', 'logistic_phi', 'gaussian',
      'reciprocal', 'cauchy', 'optimal' (static).
    chunk_size: rows processed together (performance knob only; None picks
      2 for the blocked bitonic implementation, 16 for the scan one).
    implementation: 'auto' ('blocked' for bitonic, 'scan' for odd-even),
      'blocked' (bitonic only) or 'scan'. Same results up to rounding.

  Returns:
    sorted_x: [..., n] relaxed values in ascending order.
    perm: [..., n, n] soft permutation, perm[..., i, r] = probability that
      input item i lands at rank r (rows and columns sum to 1), so that
      sorted_x = einsum('...i,...ir->...r', x, perm).
  """
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f'diff_sort needs floating input, got {x.dtype}')
  if distribution not in DISTRIBUTIONS:
    raise ValueError(f'unknown distribution {distribution!r}')
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f'unknown implementation {implementation!r}')
  *batch, n = x.shape
  net = get_network(network, n)
  if implementation == 'auto':
    implementation = 'blocked' if network == 'bitonic' else 'scan'
  if implementation == 'blocked' and network != 'bitonic':
    raise ValueError('the blocked implementation is for bitonic networks')
  steepness = jnp.asarray(steepness, x.dtype)
  art_lambda = jnp.asarray(art_lambda, x.dtype)

  rows = math.prod(batch)
  flat = x.reshape(rows, n)
  if rows == 0 or net.num_layers == 0:
    eye = jnp.broadcast_to(jnp.eye(n, dtype=x.dtype), (*batch, n, n))
    return x, eye
  if chunk_size is None:
    chunk_size = 2 if implementation == 'blocked' else 16
  chunk = max(1, min(chunk_size, rows))
  num_chunks = -(-rows // chunk)
  # Padding rows are zeros (ties): harmless, and sliced away below.
  flat = jnp.pad(flat, ((0, num_chunks * chunk - rows), (0, 0)))

  if implementation == 'blocked':
    chunk_fn = _bitonic_chunk_fn(n, distribution)
    run = lambda xc: chunk_fn(xc, steepness, art_lambda)
  else:
    run = jax.checkpoint(lambda xc: _sort_chunk_scan(
        xc, net, distribution, steepness, art_lambda))

  if num_chunks == 1:
    ys, perm = run(flat)
  else:
    ys, perm = jax.lax.map(run, flat.reshape(num_chunks, chunk, n))
    ys = ys.reshape(num_chunks * chunk, n)
    perm = perm.reshape(num_chunks * chunk, n, n)
  return ys[:rows].reshape(*batch, n), perm[:rows].reshape(*batch, n, n)


def network_size(network: str, n: int) -> tuple[int, list[int]]:
  """Number of layers and of real comparators per layer (for reports)."""
  net = get_network(network, n)
  real = (net.lower != net.upper) & (net.lower >= net.offset)
  return net.num_layers, [int(c) for c in real.sum(axis=1)]
