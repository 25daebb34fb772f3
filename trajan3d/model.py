"""TRAJAN (`TrackAutoEncoder`, 2D) and 3DSPA (`TrackAutoEncoder3D`) in Flax linen.

Re-implemented after the released TRAJAN / 3DSPA code, with the fixes 3DSPA needs
to run (see `TrackAutoEncoder3D`), matching its jitted float32 outputs. The
parameter trees equal the released checkpoints'
(`shared/data/param_trees/{trajan,3dspa,3dspa_nofeat}.json`) by construction:
top-level submodules are `initializer`, `track_token_projection`,
`input_track_transformer`, `tracks_to_latents`, `compressor`, `decompressor`,
`decompress_attn`, `query_encoder`, `track_readout_attn`, `track_predictor`,
plus `input_readout_token`, `dino_projection`, `depth_projection` for 3DSPA.

Inputs (one leading batch axis B; N support tracks; T input frames; Q queries;
D = 2 for TRAJAN, 3 for 3DSPA):

  support_tracks          [B, N, T, D] float  TRAJAN: (x, y) normalised [0, 1];
                                               3DSPA: (x, y, z) camera metres
  support_tracks_visible  [B, N, T, 1] float  non-zero = visible
  query_points            [B, Q, 1 + D] float (t, x, y[, z]); t a frame index
                                               (optional: 32x32 grid at t = 0)
  boundary_frame          [B] int             first padded frame
  dino_features           [B, N, T, 768]      3DSPA only, optional
  depth_features          [B, N, T, 256]      3DSPA only, optional

Run it under `jax.jit` in float32: the released outputs were produced jitted
(see `SinusoidalEmbedding` for why eager execution differs by ~1e-3).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tapkit.train import precision as precision_lib
from trajan3d import attention

Precision = attention.Precision

# The decoder appends this many "time" channels to every latent token: a
# window of the latent channels starting at `_TIME_SHIFT * query_frame`.
_TIME_FEAT_CHANNELS = 128
_TIME_SHIFT = 5
# Side of the default query grid (Q = 32 * 32 queries at frame 0).
_GRID_SIZE = 32
# Latents are quantised to steps of 1 / _LATENT_LEVELS after clipping.
_LATENT_LEVELS = 128.0


@flax.struct.dataclass
class TrackAutoEncoderResults:
  """Decoder outputs.

  Attributes:
    tracks: [B, Q, T_out, D] predicted positions, input units.
    visible_logits: [B, Q, T_out, 1] visibility logits (positive = visible).
    certain_logits: [B, Q, T_out, 1] certainty logits (zeros for 3DSPA, which
      does not predict certainty).
  """

  tracks: Any
  visible_logits: Any
  certain_logits: Any

  # Hard predictions in {0, 1} (float32).
  @property
  def visible(self) -> jax.Array:
    """[B, Q, T_out, 1] `visible_logits > 0`; the rule to use for 3DSPA."""
    return (self.visible_logits > 0).astype(jnp.float32)

  @property
  def certain(self) -> jax.Array:
    """[B, Q, T_out, 1] `certain_logits > 0` (always 0 for 3DSPA)."""
    return (self.certain_logits > 0).astype(jnp.float32)

  @property
  def visible_and_certain_prob(self) -> jax.Array:
    """[B, Q, T_out, 1] soft visibility `sigmoid(v) * sigmoid(c)` in [0, 1]."""
    return jax.nn.sigmoid(self.visible_logits) * jax.nn.sigmoid(
        self.certain_logits)

  @property
  def visible_and_certain(self) -> jax.Array:
    """[B, Q, T_out, 1] library rule `sigmoid(v) * sigmoid(c) > 0.5`.

    Meaningless for 3DSPA (certain_logits = 0 makes it always 0).
    """
    return (self.visible_and_certain_prob > 0.5).astype(jnp.float32)

  @property
  def occluded_tapir(self) -> jax.Array:
    """[B, Q, T_out, 1] TRAJAN colab rule `(1-sig(v)) * (1-sig(c)) > 0.5`.

    This is TAPIR's `postprocess_occlusions`; it is NOT the complement of
    `visible_and_certain`: at sigmoid(v) = sigmoid(c) = 0.6 a point is neither
    visible-and-certain nor occluded.
    """
    occ = (1.0 - jax.nn.sigmoid(self.visible_logits)) * (
        1.0 - jax.nn.sigmoid(self.certain_logits))
    return (occ > 0.5).astype(jnp.float32)


NoiseRows = tuple[jax.Array, int]  # (positions [B] int32, whole batch size)


def _quantize_latents(latents: jax.Array, noise_rows: NoiseRows | None = None
                      ) -> jax.Array:
  """Clip to [-1, 1] and quantise with fixed-key noise (straight-through).

  d = round(z * 128) / 128 + u / 128 - 1/256 with u = uniform(PRNGKey(0),
  z.shape): the noise has the batch shape, so batch element b always gets
  noise slice b (results depend on the position of a clip in the batch, as
  in the release). Forward value ~d, gradient identity w.r.t. clipped z.

  Args:
    latents: [B, K, C] encoder output.
    noise_rows: (positions [B] int32, whole batch size N) for a micro-batch:
      element b gets row positions[b] of uniform(PRNGKey(0), [N, K, C]), its
      noise in one step on the whole batch. None: rows 0..B-1 of [B, K, C].

  Returns:
    [B, K, C] quantised latents.
  """
  latents = jnp.clip(latents, -1.0, 1.0)
  disc = jnp.round(latents * _LATENT_LEVELS) / _LATENT_LEVELS
  if noise_rows is None:
    noise = jax.random.uniform(jax.random.PRNGKey(0), disc.shape)
  else:
    positions, whole_batch = noise_rows
    noise = jax.random.uniform(jax.random.PRNGKey(0), (whole_batch, *disc.shape[1:]))
    noise = jnp.take(noise, positions, axis=0)  # [B, K, C]
  disc = disc + noise / _LATENT_LEVELS - 1.0 / (2.0 * _LATENT_LEVELS)
  return latents - jax.lax.stop_gradient(latents - disc)


def _time_window(latents: jax.Array, query_frame: jax.Array) -> jax.Array:
  """Per query, the window of latent channels `[5 qf, 5 qf + 128)`.

  Equals the released `einsum(latents, eye(128, C, k=5 * qf))`: channel j of
  the result is latent channel `j + 5 qf` when that index is in `[0, C)`, else
  0; computed here as a gather instead of a [Q, 128, C] matmul.

  Args:
    latents: [B, K, C] decompressed latent tokens.
    query_frame: [B, Q] int32 query frames.

  Returns:
    [B, Q, K, 128] appended channels.
  """
  num_channels = latents.shape[-1]
  idx = (query_frame[..., jnp.newaxis] * _TIME_SHIFT
         + jnp.arange(_TIME_FEAT_CHANNELS))  # [B, Q, 128]
  valid = (idx >= 0) & (idx < num_channels)  # [B, Q, 128]
  safe = jnp.clip(idx, 0, num_channels - 1)

  def gather_one(lat, ind):  # [K, C], [Q, 128] -> [Q, K, 128]
    return jnp.moveaxis(jnp.take(lat, ind, axis=-1), 0, 1)

  window = jax.vmap(gather_one)(latents, safe)  # [B, Q, K, 128]
  return jnp.where(valid[:, :, jnp.newaxis, :], window, 0.0)


class _TrackAutoEncoderBase(nn.Module):
  """Shared encoder/decoder of TRAJAN and 3DSPA (see module docstring).

  Attributes:
    num_output_frames: T_out, frames predicted per query.
    num_latent_tokens: K latent tokens.
    latent_token_dim: width of the (quantised) latents.
    num_frequencies: F of the sinusoidal embedding.
    track_scale_factor: coordinates are divided by it before embedding.
    time_scale_factor: query time feature is `frame // time_scale_factor`.
    track_token_dim: width of per-frame track tokens.
    encoder_latent_dim: width of the latent queries of `tracks_to_latents`.
    decoder_num_channels: width of the readout tokens (the decompressor
      outputs `decoder_num_channels - 128`).
    decoder_scan_chunk_size: if set, queries are decoded in chunks of this
      many inside a scan, so peak memory does not grow with Q. Q need not be
      a multiple (the last chunk is padded and the padding discarded).
    num_heads, qkv_size: attention heads / total q-k-v width of every stack.
    *_layers, *_mlp: depth and MLP width of the four transformer stacks.
    remat_decoder: rematerialise the per-chunk readout in the backward pass.
    remat: 'none' | 'block' | a jax.checkpoint policy name, applied to every
      transformer block of the four stacks (tapkit/train/precision.py).
    precision: matmul precision of every dot (None = JAX default; CPU float32
      is exact float32 either way).
    dtype: compute dtype of the projections and transformer blocks. The
      sinusoidal embeddings, norms, attention softmax, the compressor (its
      output is rounded to the quantisation grid) and the track predictor
      (positions in metres, visibility logits) stay float32.
  """

  num_output_frames: int = 150
  num_latent_tokens: int = 128
  latent_token_dim: int = 64
  num_frequencies: int = 32
  track_scale_factor: float = 1.0
  time_scale_factor: float = 150.0
  track_token_dim: int = 256
  encoder_latent_dim: int = 512
  decoder_num_channels: int = 1024
  decoder_scan_chunk_size: Optional[int] = None
  num_heads: int = 8
  qkv_size: int = 512
  input_track_layers: int = 2
  input_track_mlp: int = 1024
  tracks_to_latents_layers: int = 6
  tracks_to_latents_mlp: int = 2048
  decompress_layers: int = 3
  decompress_mlp: int = 2048
  readout_layers: int = 4
  readout_mlp: int = 1024
  remat_decoder: bool = False
  remat: str = 'none'
  precision: Precision = None
  dtype: Any = jnp.float32

  # Number of spatial coordinates per point (2: x, y; 3: x, y, z).
  num_coords: ClassVar[int] = 2

  def setup(self):
    if self.decoder_num_channels <= _TIME_FEAT_CHANNELS:
      raise ValueError(
          f'decoder_num_channels={self.decoder_num_channels} must exceed '
          f'{_TIME_FEAT_CHANNELS}.')
    if (self.decoder_scan_chunk_size is not None
        and self.decoder_scan_chunk_size < 1):
      raise ValueError('decoder_scan_chunk_size must be None or >= 1, got '
                       f'{self.decoder_scan_chunk_size}.')
    dense = lambda n: nn.Dense(n, precision=self.precision, dtype=self.dtype)
    dense32 = lambda n: nn.Dense(n, precision=self.precision)
    stack = lambda mlp, layers: attention.ImprovedTransformer(
        qkv_size=self.qkv_size, num_heads=self.num_heads, mlp_size=mlp,
        num_layers=layers, precision=self.precision, dtype=self.dtype, remat=self.remat)
    self.initializer = attention.ParamStateInit(
        shape=(self.num_latent_tokens, self.encoder_latent_dim))
    self.sinusoidal_embedding = attention.SinusoidalEmbedding(
        num_frequencies=self.num_frequencies)
    self.track_token_projection = dense(self.track_token_dim)
    self.input_track_transformer = stack(
        self.input_track_mlp, self.input_track_layers)
    self.tracks_to_latents = stack(
        self.tracks_to_latents_mlp, self.tracks_to_latents_layers)
    self.compressor = dense32(self.latent_token_dim)
    self.decompressor = dense(self.decoder_num_channels - _TIME_FEAT_CHANNELS)
    self.decompress_attn = stack(self.decompress_mlp, self.decompress_layers)
    self.query_encoder = dense(self.decoder_num_channels)
    self.track_readout_attn = stack(self.readout_mlp, self.readout_layers)
    self.track_predictor = dense32(self.num_output_frames * 4)
    self._setup_extra(dense)

  def _setup_extra(self, dense):
    """Hook for model-specific submodules (3DSPA)."""
    del dense

  # ------------------------------------------------------------------ inputs

  def _check_inputs(self, inputs: Mapping[str, Any]) -> tuple[int, int, int]:
    """Validates shapes; returns (B, N, T). Raises ValueError naming the key."""
    name = type(self).__name__
    for key in ('support_tracks', 'support_tracks_visible', 'boundary_frame'):
      if key not in inputs:
        raise ValueError(f'{name}: inputs lack required key {key!r}.')
    tracks = inputs['support_tracks']
    if tracks.ndim != 4 or tracks.shape[-1] != self.num_coords:
      raise ValueError(
          f'{name}: support_tracks must be [B, N, T, {self.num_coords}], got '
          f'{tuple(tracks.shape)}.')
    b, n, t, _ = tracks.shape
    vis = inputs['support_tracks_visible']
    if tuple(vis.shape) not in ((b, n, t, 1), (b, n, t)):
      raise ValueError(
          f'{name}: support_tracks_visible must be [{b}, {n}, {t}, 1], got '
          f'{tuple(vis.shape)}.')
    if np.ndim(inputs['boundary_frame']) not in (0, 1) or (
        np.ndim(inputs['boundary_frame']) == 1
        and np.shape(inputs['boundary_frame'])[0] != b):
      raise ValueError(
          f'{name}: boundary_frame must be [{b}] (or a scalar), got shape '
          f'{np.shape(inputs["boundary_frame"])}.')
    qp = inputs.get('query_points')
    if qp is not None and (qp.ndim != 3 or qp.shape[0] != b
                           or qp.shape[-1] != 1 + self.num_coords):
      raise ValueError(
          f'{name}: query_points must be [{b}, Q, {1 + self.num_coords}] '
          f'(t, coords), got {tuple(qp.shape)}.')
    return b, n, t

  @staticmethod
  def _visible(inputs: Mapping[str, Any]) -> jax.Array:
    """Support visibility as bool [B, N, T] (any non-zero = visible)."""
    vis = jnp.asarray(inputs['support_tracks_visible'])
    if vis.ndim == 4:
      vis = vis[..., 0]
    return vis.astype(jnp.bool_)

  def _embed_support(self, tracks: jax.Array) -> jax.Array:
    """Embeds (coords, t / T) of every support point.

    Args:
      tracks: [B, N, T, D] support coordinates.

    Returns:
      [B, N, T, track_token_dim] track tokens (before feature terms).
    """
    num_frames = tracks.shape[-2]
    # Frame feature t / T with T the given (padded) length, not T_out.
    frame = jnp.arange(num_frames) / num_frames  # [T]
    frame = jnp.broadcast_to(frame[:, jnp.newaxis], tracks.shape[:-1] + (1,))
    coords = jnp.concatenate(
        [jnp.asarray(tracks, jnp.float32), frame.astype(jnp.float32)], -1)
    emb = self.sinusoidal_embedding(coords / self.track_scale_factor)
    return self.track_token_projection(emb)  # [B, N, T, W]

  @staticmethod
  def _key_validity(visible: jax.Array, boundary: jax.Array) -> jax.Array:
    """[B, N, T] bool: frame j is a valid key iff visible and j < boundary."""
    num_frames = visible.shape[-1]
    boundary = jnp.broadcast_to(jnp.asarray(boundary), visible.shape[:1])
    before = jnp.arange(num_frames) < boundary[:, jnp.newaxis, jnp.newaxis]
    return visible & before

  # ----------------------------------------------------------------- encoder

  def encode_tracks(self, inputs: Mapping[str, Any]) -> jax.Array:
    """Per-track summary tokens [B, N, track_token_dim]."""
    raise NotImplementedError  # Implemented by TrackAutoEncoder(3D).

  def encode(self, inputs: Mapping[str, Any]) -> jax.Array:
    """Encodes the support tracks.

    Returns:
      [B, num_latent_tokens, latent_token_dim] latents, before clipping and
      quantisation (the released `encode()` output).
    """
    b, _, _ = self._check_inputs(inputs)
    track_tokens = self.encode_tracks(inputs)  # [B, N, W]
    latents = self.initializer(batch_shape=(b,))  # [B, K, encoder_latent_dim]
    # Latents cross-attend to every support track, unmasked (invisible or
    # padding tracks take part too, as in the release).
    latents = self.tracks_to_latents(latents, track_tokens)
    return self.compressor(latents)  # [B, K, latent_token_dim]

  # ----------------------------------------------------------------- decoder

  def default_query_points(self, batch_size: int) -> jax.Array:
    """The 32x32 grid at frame 0 used when no `query_points` are given.

    Query `i * 32 + j` is at x = c_j, y = c_i with c_k = k/32 + 1/64 (z = 0
    for 3DSPA).

    Returns:
      [batch_size, 1024, 1 + D] (t, x, y[, z]) float32.
    """
    centres = jnp.arange(_GRID_SIZE) / float(_GRID_SIZE) + 1.0 / (2 * _GRID_SIZE)
    qx, qy = jnp.meshgrid(centres, centres)  # [32, 32], x varies along j
    cols = [jnp.zeros_like(qx), qx, qy] + [jnp.zeros_like(qx)] * (
        self.num_coords - 2)
    grid = jnp.reshape(jnp.stack(cols, axis=-1), (-1, 1 + self.num_coords))
    return jnp.broadcast_to(grid.astype(jnp.float32),
                            (batch_size,) + grid.shape)

  def decompress(self, latents: jax.Array, discretize: bool = True,
                 noise_rows: NoiseRows | None = None) -> jax.Array:
    """Quantises (noise rows: `_quantize_latents`), decompresses -> [B, K, Cd - 128]."""
    if discretize:
      latents = _quantize_latents(latents, noise_rows)
    else:
      latents = jnp.clip(latents, -1.0, 1.0)
    return self.decompress_attn(self.decompressor(latents))

  def _decode_queries(
      self,
      latents: jax.Array,  # [B, K, Cd - 128] decompressed
      query_points: jax.Array,  # [B, Qc, 1 + D]
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Reads out tracks for a set of queries from decompressed latents."""
    # Half-to-even rounding of the query time, as the release.
    query_frame = jnp.round(query_points[..., 0]).astype(jnp.int32)  # [B, Qc]
    ident = self.sinusoidal_embedding(
        query_points[..., 1:] / self.track_scale_factor)  # [B, Qc, D * 2F]
    # Floor division makes this 0 for every frame < time_scale_factor; kept
    # because it fixes the width of the query_encoder kernel.
    time_feat = query_frame[..., jnp.newaxis] // self.time_scale_factor
    query = jnp.concatenate([ident, time_feat.astype(ident.dtype)], -1)
    # The release embeds the embedded point a second time.
    query_token = self.query_encoder(self.sinusoidal_embedding(
        query / self.track_scale_factor))  # [B, Qc, Cd]

    b, num_queries = query_frame.shape
    tiled = jnp.broadcast_to(latents[:, jnp.newaxis],
                             (b, num_queries) + latents.shape[1:])
    tokens = jnp.concatenate(
        [tiled, _time_window(latents, query_frame)], -1)  # [B, Qc, K, Cd]
    tokens = jnp.concatenate(
        [query_token[:, :, jnp.newaxis, :], tokens], axis=2)  # [B, Qc, K+1, Cd]
    out = self.track_readout_attn(tokens)[:, :, 0, :]  # [B, Qc, Cd]
    return self._split_prediction(self.track_predictor(out))

  def _split_prediction(self, out: jax.Array
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """[B, Q, 4 T_out] -> tracks [B,Q,T,D], visible, certain [B,Q,T,1]."""
    raise NotImplementedError  # Implemented by TrackAutoEncoder(3D).

  def decode(
      self,
      latents: jax.Array,  # [B, K, latent_token_dim]
      query_points: Optional[jax.Array] = None,  # [B, Q, 1 + D]
      discretize: bool = True,
      noise_rows: NoiseRows | None = None,
  ) -> TrackAutoEncoderResults:
    """Decodes latents at the query points (default: the 32x32 grid).

    With `decoder_scan_chunk_size = h`, the queries are decoded h at a time
    in a scan (padded to a multiple of h, padding dropped), so the readout
    activations scale with h, not Q. The latents are decompressed once.
    `noise_rows`: the quantisation noise of a micro-batch (`_quantize_latents`).
    """
    if query_points is None:
      query_points = self.default_query_points(latents.shape[0])
    query_points = jnp.asarray(query_points, jnp.float32)
    if (query_points.ndim != 3 or query_points.shape[0] != latents.shape[0]
        or query_points.shape[-1] != 1 + self.num_coords):
      raise ValueError(
          f'{type(self).__name__}.decode: query_points must be '
          f'[{latents.shape[0]}, Q, {1 + self.num_coords}] (t, coords), got '
          f'{tuple(query_points.shape)}.')
    dense_latents = self.decompress(latents, discretize, noise_rows)  # [B, K, Cd - 128]

    decode_fn = type(self)._decode_queries
    if self.remat_decoder:
      decode_fn = nn.remat(decode_fn)
    b, num_queries, width = query_points.shape
    h = self.decoder_scan_chunk_size
    if h is None or num_queries <= h:
      tracks, vis, cert = decode_fn(self, dense_latents, query_points)
    else:
      num_chunks = -(-num_queries // h)
      pad = num_chunks * h - num_queries
      # Pad with copies of the first query (any valid query would do).
      padded = jnp.concatenate(
          [query_points,
           jnp.broadcast_to(query_points[:, :1], (b, pad, width))], axis=1)
      chunks = jnp.reshape(padded, (b, num_chunks, h, width))

      def body(module, carry, chunk):  # chunk [B, h, 1 + D]
        return carry, decode_fn(module, dense_latents, chunk)

      scan = nn.scan(body, variable_broadcast='params',
                     split_rngs={'params': False}, in_axes=1, out_axes=1,
                     length=num_chunks)
      _, outs = scan(self, None, chunks)  # each [B, num_chunks, h, T, c]
      tracks, vis, cert = (
          jnp.reshape(o, (b, num_chunks * h) + o.shape[3:])[:, :num_queries]
          for o in outs)
    return TrackAutoEncoderResults(
        tracks=tracks, visible_logits=vis, certain_logits=cert)

  def __call__(self, inputs: Mapping[str, Any], discretize: bool = True,
               noise_rows: NoiseRows | None = None) -> TrackAutoEncoderResults:
    """Encodes, decodes at the query points; `noise_rows`: see `_quantize_latents`."""
    latents = self.encode(inputs)
    return self.decode(latents, inputs.get('query_points'), discretize, noise_rows)


class TrackAutoEncoder(_TrackAutoEncoderBase):
  """TRAJAN: 2D point-track autoencoder (defaults = released module).

  Outputs `tracks [B, Q, T_out, 2]` (normalised [0, 1]), `visible_logits` and
  `certain_logits` [B, Q, T_out, 1]. The released module declares an unused
  `input_readout_token`; it has no parameters and is omitted here.
  """

  num_coords: ClassVar[int] = 2

  def encode_tracks(self, inputs: Mapping[str, Any]) -> jax.Array:
    """Per-track masked mean of the transformed frame tokens [B, N, 256]."""
    tokens = self._embed_support(inputs['support_tracks'])  # [B, N, T, W]
    visible = self._visible(inputs)  # [B, N, T]
    valid = self._key_validity(visible, inputs['boundary_frame'])
    # Every query frame of a track sees the same key-validity row.
    mask = jnp.broadcast_to(valid[..., jnp.newaxis, :],
                            valid.shape + valid.shape[-1:])  # [B, N, T, T]
    tokens = self.input_track_transformer(tokens, self_mask=mask)
    # Mean over visible frames; the boundary is not used here (as released):
    # frames after it that are marked visible are averaged in too.
    vis = visible[..., jnp.newaxis]  # [B, N, T, 1]
    return jnp.sum(tokens * vis, axis=-2) / jnp.maximum(
        1.0, jnp.sum(vis, axis=-2))  # [B, N, W]

  def _split_prediction(self, out):
    t = self.num_output_frames
    tracks = jnp.stack([out[..., :t], out[..., t:2 * t]], axis=-1)
    return (tracks, out[..., 2 * t:3 * t, jnp.newaxis],
            out[..., 3 * t:, jnp.newaxis])


class TrackAutoEncoder3D(_TrackAutoEncoderBase):
  """3DSPA: 3D point-track autoencoder with optional DINO / depth features.

  Differences to TRAJAN: (x, y, z) coordinates (metres, not normalised), a
  learned readout token per track instead of the masked mean, optional
  `dino_features` / `depth_features` projected to `track_token_dim` and added
  to the frame tokens (the fix used by the goldens: the released code projects
  them to 768 / 256, which cannot be added to the 384-wide tokens, so it cannot
  run), and no certainty head: `certain_logits` are zeros, so use `results.visible`.

  The projections are created lazily: a model initialised without feature
  inputs (or with `use_dino` / `use_depth` False) has no such parameters.
  """

  latent_token_dim: int = 96
  track_token_dim: int = 384
  decoder_num_channels: int = 1280
  dino_feature_dim: int = 768
  depth_feature_dim: int = 256
  use_dino: bool = True
  use_depth: bool = True
  qkv_size: int = 768
  input_track_layers: int = 3
  input_track_mlp: int = 1536
  tracks_to_latents_layers: int = 4
  tracks_to_latents_mlp: int = 2048
  decompress_layers: int = 4
  decompress_mlp: int = 2048
  readout_layers: int = 4
  readout_mlp: int = 1536

  num_coords: ClassVar[int] = 3

  def _setup_extra(self, dense):
    self.input_readout_token = attention.ParamStateInit(
        shape=(1, self.track_token_dim))
    if self.use_dino:
      self.dino_projection = dense(self.track_token_dim)
    if self.use_depth:
      self.depth_projection = dense(self.track_token_dim)

  def _check_features(self, inputs: Mapping[str, Any], key: str):
    """Returns `inputs[key]` as float32 [B, N, T, C] (None if absent).

    Only the leading axes are checked: as in the release, the projection's
    input width follows the data (`dino_feature_dim` / `depth_feature_dim`
    document the usual 768 / 256 widths; the outputs are track_token_dim).
    """
    feats = inputs.get(key)
    if feats is None:
      return None
    lead = tuple(inputs['support_tracks'].shape[:-1])
    if feats.ndim != 4 or tuple(feats.shape[:-1]) != lead:
      raise ValueError(
          f'TrackAutoEncoder3D: {key} must be {list(lead) + ["C"]}, got '
          f'{list(feats.shape)}.')
    return jnp.asarray(feats, jnp.float32)

  def encode_tracks(self, inputs: Mapping[str, Any]) -> jax.Array:
    """Per-track readout token after the input transformer [B, N, 384]."""
    tokens = self._embed_support(inputs['support_tracks'])  # [B, N, T, W]
    if self.use_dino:
      dino = self._check_features(inputs, 'dino_features')
      if dino is not None:
        tokens = tokens + self.dino_projection(dino)
    if self.use_depth:
      depth = self._check_features(inputs, 'depth_features')
      if depth is not None:
        tokens = tokens + self.depth_projection(depth)
    b, n = tokens.shape[:2]
    readout = self.input_readout_token(batch_shape=(b, n))  # [B, N, 1, W]
    tokens = jnp.concatenate([readout, tokens], axis=-2)  # [B, N, T+1, W]

    valid = self._key_validity(self._visible(inputs),
                               inputs['boundary_frame'])  # [B, N, T]
    # Readout key always valid, so no row is ever fully masked.
    valid = jnp.concatenate([jnp.ones_like(valid[..., :1]), valid], -1)
    mask = jnp.broadcast_to(valid[..., jnp.newaxis, :],
                            valid.shape + valid.shape[-1:])  # [B,N,T+1,T+1]
    tokens = self.input_track_transformer(tokens, self_mask=mask)
    return tokens[..., 0, :]  # [B, N, W]

  def _split_prediction(self, out):
    t = self.num_output_frames
    tracks = jnp.stack(
        [out[..., :t], out[..., t:2 * t], out[..., 2 * t:3 * t]], axis=-1)
    visible_logits = out[..., 3 * t:, jnp.newaxis]
    return tracks, visible_logits, jnp.zeros_like(visible_logits)


def build_model(kind: str, **config) -> _TrackAutoEncoderBase:
  """`TrackAutoEncoder` for kind 'trajan', `TrackAutoEncoder3D` for '3dspa'
  (features on) or '3dspa_nofeat' (features off); `config` overrides fields."""
  if kind == 'trajan':
    return TrackAutoEncoder(**config)
  if kind == '3dspa':
    return TrackAutoEncoder3D(**config)
  if kind == '3dspa_nofeat':
    config = {'use_dino': False, 'use_depth': False, **config}
    return TrackAutoEncoder3D(**config)
  raise ValueError(f"unknown model kind {kind!r}: expected 'trajan', "
                   "'3dspa' or '3dspa_nofeat'.")


# Fields of `config.model` that are model hyper-parameters (the rest: `kind`).
MODEL_FIELDS = (
    'num_output_frames', 'num_latent_tokens', 'latent_token_dim', 'num_frequencies',
    'track_token_dim',
    'encoder_latent_dim', 'decoder_num_channels', 'num_heads', 'qkv_size',
    'input_track_layers', 'input_track_mlp', 'tracks_to_latents_layers',
    'tracks_to_latents_mlp', 'decompress_layers', 'decompress_mlp', 'readout_layers',
    'readout_mlp', 'track_scale_factor', 'decoder_scan_chunk_size', 'remat_decoder')


def build_model_from_config(config: Any) -> _TrackAutoEncoderBase:
  """The model described by `config.model` (kind + the MODEL_FIELDS present)."""
  cfg = config.model
  fields = {k: cfg[k] for k in MODEL_FIELDS if k in cfg}
  return build_model(cfg.kind, remat=config.remat, dtype=precision_lib.compute_dtype(config),
                     **fields)


def example_inputs(model: _TrackAutoEncoderBase, batch_size: int = 1,
                   num_tracks: int = 4, num_frames: int = 8,
                   num_queries: int = 2, dino: bool = False,
                   depth: bool = False) -> dict[str, jax.Array]:
  """Zero inputs of the right layout, e.g. for `init` or `jax.eval_shape`.

  `dino` / `depth` add 3DSPA feature inputs, which decides whether
  `dino_projection` / `depth_projection` parameters exist.
  """
  d = model.num_coords
  x = {
      'support_tracks': jnp.zeros((batch_size, num_tracks, num_frames, d)),
      'support_tracks_visible': jnp.ones(
          (batch_size, num_tracks, num_frames, 1)),
      'query_points': jnp.zeros((batch_size, num_queries, 1 + d)),
      'boundary_frame': jnp.full((batch_size,), num_frames, jnp.int32),
  }
  if dino:
    x['dino_features'] = jnp.zeros(
        (batch_size, num_tracks, num_frames,
         getattr(model, 'dino_feature_dim', 768)))
  if depth:
    x['depth_features'] = jnp.zeros(
        (batch_size, num_tracks, num_frames,
         getattr(model, 'depth_feature_dim', 256)))
  return x

