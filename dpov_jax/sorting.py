"""Differentiable sorting networks (diffsort semantics) in JAX.

Re-derivation of Petersen et al., "Differentiable Sorting Networks" (ICML 2021)
and "Monotonic Differentiable Sorting Networks" (ICLR 2022) as the PyPI package
`diffsort` 0.2.0 computes them (spec: shared/spec/dpov.md, part (b)).

    sorted_x, perm = diff_sort(x, network='bitonic', steepness=10.0,
                               art_lambda=0.25, distribution='cauchy')

for x [..., n] returns sorted_x [..., n] (relaxed, ascending) and perm
[..., n, n] with sorted_x[..., r] = sum_i x[..., i] * perm[..., i, r]: axis -2
is the input item, axis -1 the rank. This is exactly the second output of
`diffsort.DiffSortNet(network, n, ...)(x)`.

Implementation notes (why it looks the way it does):
* diffsort updates the n x n matrix with dense one-hot products, O(n^3) per
  layer. Here every layer gathers the (lower, upper) wire pairs from static
  tables and mixes them elementwise, O(n^2) per layer, with the same arithmetic
  (alpha * a + (1 - alpha) * b), so results agree with diffsort to rounding
  (float64 goldens: values and matrices to ~1e-13).
* The matrix is stored transposed, [wire, item], so that a wire is a
  contiguous row and the gathers move whole rows.
* All layers are padded to the same number of pairs and run as one
  `lax.scan`: compile time does not grow with the number of layers.
* n that are not powers of two use virtual wires in front (b.2): comparators
  between a virtual and a real wire get a constant alpha (1 ascending, 0
  descending) that leaves the real value on its wire, exactly like diffsort's
  identity comparators; virtual wires hold zero rows and never mix into real
  ones. Odd-even boundary wires are pseudo-pairs (w, w) with alpha = 1.
* Rows are processed in chunks with `lax.map` and `jax.checkpoint`, so one
  chunk's matrices stay in cache through all layers and the backward pass
  recomputes a chunk's forward instead of storing every layer for every row.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import jax
import jax.numpy as jnp
import numpy as np

NETWORKS = ('bitonic', 'odd_even')
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


# ---------------------------------------------------------------------------
# Relaxed swap weights.
# ---------------------------------------------------------------------------


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _normal_cdf(v: jax.Array, steepness: float) -> jax.Array:
  sigma = 1.0 / steepness
  return 0.5 + 0.5 * jax.lax.erf(v / sigma / math.sqrt(2))


@_normal_cdf.defjvp
def _normal_cdf_jvp(steepness, primals, tangents):
  (v,), (t,) = primals, tangents
  # diffsort's custom backward keeps sigma = 1/steepness as a float32 tensor,
  # so its derivative uses sigma rounded to float32 (even for float64 input).
  sigma = float(np.float32(1.0 / steepness))
  dv = t / sigma / math.sqrt(math.pi * 2) * jnp.exp(-0.5 * (v / sigma)**2)
  return _normal_cdf(v, steepness), dv


def swap_weight(v: jax.Array, distribution: str, steepness: float,
                art_lambda: float) -> jax.Array:
  """alpha = P(a is the smaller value) for v = b - a, as diffsort computes it.

  Args:
    v: [...] differences b - a.
    distribution: one of DISTRIBUTIONS.
    steepness: inverse temperature s.
    art_lambda: exponent of `logistic_phi`.

  Returns:
    [...] weights in [0, 1]; 0.5 at v = 0.
  """
  if distribution == 'logistic':
    return jax.nn.sigmoid(v * steepness)
  if distribution == 'logistic_phi':
    # The +1e-10 keeps ties (v = 0) finite in value and gradient.
    return jax.nn.sigmoid(v * steepness / (jnp.abs(v) + 1e-10)**art_lambda)
  if distribution == 'gaussian':
    return _normal_cdf(v, steepness)
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
# Forward pass on one chunk of rows.
# ---------------------------------------------------------------------------


def _sort_chunk(x: jax.Array, net: Network, distribution: str,
                steepness: float,
                art_lambda: float) -> tuple[jax.Array, jax.Array]:
  """Runs the network on x [C, n] -> (sorted [C, n], transposed perm [C, n, n]).

  The permutation is kept as [C, wire, item] so that the two wires of a pair
  are contiguous rows; one `lax.scan` step per layer keeps compile time
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
  is_forced = np.isnan(net.forced) == False  # noqa: E712 (numpy array)
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
  return xv[:, pad:], mat[:, pad:]


# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------


@functools.partial(
    jax.jit,
    static_argnames=('network', 'steepness', 'art_lambda', 'distribution',
                     'chunk_size'))
def diff_sort(x: jax.Array,
              network: str = 'bitonic',
              steepness: float = 10.0,
              art_lambda: float = 0.25,
              distribution: str = 'cauchy',
              chunk_size: int = 16) -> tuple[jax.Array, jax.Array]:
  """Relaxed sort of the last axis with a differentiable sorting network.

  Matches `diffsort.DiffSortNet(network, n, steepness=steepness,
  art_lambda=art_lambda, distribution=distribution)(x)` for x [B, n], in the
  dtype of x, and extends it to any leading batch shape.

  Args:
    x: [..., n] floating values; n >= 1.
    network: 'bitonic' or 'odd_even'.
    steepness: inverse temperature of the relaxed swaps (static).
    art_lambda: exponent of the 'logistic_phi' distribution (static).
    distribution: one of 'logistic', 'logistic_phi', 'gaussian',
      'reciprocal', 'cauchy', 'optimal' (static).
    chunk_size: rows processed together (performance knob only).

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
  *batch, n = x.shape
  net = get_network(network, n)
  steepness = float(steepness)
  art_lambda = float(art_lambda)

  rows = math.prod(batch)
  flat = x.reshape(rows, n)
  if rows == 0 or net.num_layers == 0:
    eye = jnp.broadcast_to(jnp.eye(n, dtype=x.dtype), (*batch, n, n))
    return x, eye
  chunk = max(1, min(chunk_size, rows))
  num_chunks = -(-rows // chunk)
  # Padding rows are zeros (ties): harmless, and sliced away below.
  flat = jnp.pad(flat, ((0, num_chunks * chunk - rows), (0, 0)))

  @jax.checkpoint
  def run(xc: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _sort_chunk(xc, net, distribution, steepness, art_lambda)

  if num_chunks == 1:
    ys, mats = run(flat)
  else:
    ys, mats = jax.lax.map(run, flat.reshape(num_chunks, chunk, n))
    ys = ys.reshape(num_chunks * chunk, n)
    mats = mats.reshape(num_chunks * chunk, n, n)
  ys = ys[:rows].reshape(*batch, n)
  # [rows, wire (= rank), item] -> [..., item, rank].
  perm = jnp.swapaxes(mats[:rows], -1, -2).reshape(*batch, n, n)
  return ys, perm


def network_size(network: str, n: int) -> tuple[int, list[int]]:
  """Number of layers and of real comparators per layer (for reports)."""
  net = get_network(network, n)
  real = (net.lower != net.upper) & (net.lower >= net.offset)
  return net.num_layers, [int(c) for c in real.sum(axis=1)]
