"""CoTracker3 network (Flax) and its offline forward pass.

`CoTrackerThree` holds the three trained parts under the official module names:

  fnet/          the feature CNN (`BasicEncoder`): conv1, layer{1..4}_{0,1}/{conv1, conv2,
                 downsample}, conv2, conv3 — kernels [kh, kw, in, out]
  updateformer/  virual_tracks [1, 64, 1, 384] (sic), input_transform, flow_head, vis_conf_head,
                 time_blocks_{i}, space_virtual_blocks_{i}, space_point2virtual_blocks_{i},
                 space_virtual2point_blocks_{i} (i = 0..2; attn or cross_attn / mlp / norm_context)
  corr_mlp/      fc1 [2401, 384], fc2 [384, 256]

(`convert.py` maps the official PyTorch state_dict onto this tree.) The offline and online
models share these parameters; they differ in how the video is cut into windows
(`offline_forward` here, `online.py`). The fixed sine/cosine time embedding is not a parameter:
it is recomputed for the `window_len` the checkpoint was trained with (60 offline, 16 online).

Conventions of `offline_forward`: video [B, T, 3, H, W] float32 RGB in 0..255 (H, W multiples of
4, at least 32), queries [B, N, 3] rows (t, x, y): frame index (truncated toward zero) and pixel
coordinates with pixel centres at integers. Outputs: coords [B, T, N, 2] pixels, vis / conf
[B, T, N] probabilities. Batch elements are processed independently. All queries of one call
share the transformer's space attention (through the virtual tracks), so splitting a query set
into chunks changes the estimates slightly (like the official dense mode, which tracks in
passes).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models import jitted
from tapkit.models.cotracker3 import blocks

Array = jax.Array
Params = Any

# Frames per CNN call: bounds the feature CNN's working memory on long videos (the official
# code uses chunks of 200 frames at 384×512; the result does not depend on the chunk size).
FMAPS_CHUNK_SIZE = 32
# On CPUs the CNN runs over at most this many pixels (frames × H × W) per call, however large
# the chunk (at least one frame): passes of one 192×256 frame keep their activations in cache
# and measured faster than passes of 4 or 16 such frames; at 64×96, passes of 4 frames took
# 0.125 CPU s for 8 frames against 0.142 s for one pass of 8 (results do not depend on it).
CPU_CNN_PIXELS_PER_CALL = 4 * 64 * 96
# Queries per correlation block inside an update: bounds the sampled neighbourhoods' memory
# (about 1.4 MB per query at 16 frames; the result does not depend on it).
CORR_QUERY_CHUNK = 64


class CoTrackerThree(nn.Module):
  """The trained parts of CoTracker3 (see the module docstring for the parameter tree)."""

  def setup(self):
    self.fnet = blocks.BasicEncoder()
    self.updateformer = blocks.EfficientUpdateFormer()
    self.corr_mlp = blocks.Mlp(blocks.HIDDEN, 256, approximate_gelu=False)

  def __call__(self, frames: Array, tokens: Array, corr: Array):
    """Runs every part once (used to initialise the parameter tree)."""
    return self.features(frames), self.update(tokens), self.embed_corr(corr)

  def features(self, frames: Array, return_stages: bool = False):
    """[M, H, W, 3] frames normalised to [−1, 1] -> [M, H/4, W/4, 128] (before L2 norm)."""
    return self.fnet(frames, return_stages)

  def update(self, tokens: Array, add_space_attn: bool = True, frame_mask: Array | None = None,
             point_mask: Array | None = None) -> Array:
    """[B, N, T, 1110] tokens -> [B, N, T, 4] (Δx, Δy in feature cells, Δvis, Δconf logits).

    frame_mask [B, T] / point_mask [B, N]: True at real (not padded) frames / points.
    """
    return self.updateformer(tokens, add_space_attn, frame_mask, point_mask)

  def embed_corr(self, corr: Array) -> Array:
    """[..., 2401] flattened correlation volumes -> [..., 256]."""
    return self.corr_mlp(corr)


MODEL = CoTrackerThree()


def param_shapes() -> Params:
  """The parameter tree as `jax.ShapeDtypeStruct`s (no computation)."""
  frames = jnp.zeros((1, 32, 32, 3), jnp.float32)
  tokens = jnp.zeros((1, 1, 1, blocks.TOKEN_DIM), jnp.float32)
  corr = jnp.zeros((1, 49 * 49), jnp.float32)
  return jax.eval_shape(lambda: MODEL.init(jax.random.PRNGKey(0), frames, tokens, corr))['params']


def init_params(rng: Array) -> Params:
  """Randomly initialised parameters (Flax default initialisers), for tests and training."""
  frames = jnp.zeros((1, 32, 32, 3), jnp.float32)
  tokens = jnp.zeros((1, 1, 1, blocks.TOKEN_DIM), jnp.float32)
  corr = jnp.zeros((1, 49 * 49), jnp.float32)
  # One compiled program (bit-identical to op-by-op initialisation, several times cheaper),
  # compiled once per process.
  return jitted.jitted_init(MODEL)(rng, frames, tokens, corr)['params']


def check_video(video: Array, queries: Array, iters: int = 1) -> None:
  """Raises ValueError unless video is [B, T, 3, H, W] (H, W multiples of 4, ≥ 32), queries
  [B, N, 3] and iters ≥ 1."""
  if iters < 1:
    raise ValueError(f'iters must be at least 1, got {iters}')
  if video.ndim != 5 or video.shape[2] != 3:
    raise ValueError(f'video must be [B, T, 3, H, W], got shape {video.shape}')
  h, w = video.shape[3:]
  if h % blocks.STRIDE or w % blocks.STRIDE or h < 32 or w < 32:
    raise ValueError(f'video height and width must be multiples of {blocks.STRIDE} and at least '
                     f'32, got {h}×{w}')
  if queries.ndim != 3 or queries.shape[-1] != 3 or queries.shape[0] != video.shape[0]:
    raise ValueError(f'queries must be [B, N, 3] with B = {video.shape[0]}, got shape '
                     f'{queries.shape}')


def encode_frames(params: Params, video: Array, chunk_size: int = FMAPS_CHUNK_SIZE,
                  return_raw: bool = False):
  """Feature pyramid of a video.

  Args:
    params: the parameter tree.
    video: [B, T, 3, H, W] float32, 0..255.
    chunk_size: frames per CNN call (memory bound; results do not depend on it). On CPUs
      calls hold at most `CPU_CNN_PIXELS_PER_CALL` pixels (at least one frame).
    return_raw: also return the CNN output before the L2 normalisation.

  Returns:
    List of 4 levels [B, T, H/4/2^l, W/4/2^l, 128] (level 0 L2-normalised per cell; each next
    level a 2×2 average pool, odd edges dropped); with `return_raw` also [B, T, H/4, W/4, 128].
  """
  b, t, _, h, w = video.shape
  frames = jnp.transpose(2 * (video.astype(jnp.float32) / 255.0) - 1.0, (0, 1, 3, 4, 2))
  frames = frames.reshape(b * t, h, w, 3)
  apply = lambda f: MODEL.apply({'params': params}, f, method=CoTrackerThree.features)
  if jax.default_backend() == 'cpu':
    chunk_size = max(1, min(chunk_size, CPU_CNN_PIXELS_PER_CALL // (h * w)))
  m = b * t
  if m <= chunk_size:
    fmaps = apply(frames)
  else:
    n_chunks = -(-m // chunk_size)
    chunk_size = -(-m // n_chunks)  # Equal chunks: the least padding for this many calls.
    pad = n_chunks * chunk_size - m
    frames = jnp.concatenate([frames, jnp.repeat(frames[-1:], pad, axis=0)], axis=0)
    fmaps = jax.lax.map(apply, frames.reshape((n_chunks, chunk_size) + frames.shape[1:]))
    fmaps = fmaps.reshape((n_chunks * chunk_size,) + fmaps.shape[2:])[:m]
  raw = fmaps.reshape((b, t) + fmaps.shape[1:])
  level = blocks.l2_normalize_features(raw)
  pyramid = [level]
  for _ in range(blocks.CORR_LEVELS - 1):
    level = blocks.avg_pool2(level)
    pyramid.append(level)
  return (pyramid, raw) if return_raw else pyramid


def query_frames(queries: Array) -> Array:
  """[B, N, 3] -> [B, N] int32 frame indices, truncated toward zero (not clamped)."""
  return jnp.trunc(queries[..., 0]).astype(jnp.int32)


def support_features(pyramid: Sequence[Array], frames: Array, coords: Array,
                     num_frames: Array | None = None) -> list[Array]:
  """The 7×7 query neighbourhood features of every level.

  Args:
    pyramid: levels [B, T, h_l, w_l, C].
    frames: [B, N] frame index of each query (clamped to the video here).
    coords: [B, N, 2] query positions in level-0 feature cells (pixels / 4).
    num_frames: [B] or [] int, the real frames of a padded video (frames are clamped to
      num_frames − 1); None = all T.

  Returns:
    Per level [B, N, 7, 7, C], axes (x-offset, y-offset).
  """
  out = []
  last = pyramid[0].shape[1] - 1 if num_frames is None else (
      jnp.reshape(jnp.asarray(num_frames, jnp.int32), (-1, 1)) - 1)
  for l, fmaps in enumerate(pyramid):
    f = jnp.clip(frames, 0, last)
    c = coords / (2 ** l)
    out.append(blocks.sample_neighbourhoods(fmaps, f, c[..., 0], c[..., 1]))
  return out


def window_iterations(params: Params, pyramid: Sequence[Array], support: Sequence[Array],
                      coords: Array, vis: Array, conf: Array, *, iters: int, time_emb: np.ndarray,
                      model_resolution: tuple[int, int], add_space_attn: bool = True,
                      intermediates: bool = False, frame_mask: Array | None = None,
                      point_mask: Array | None = None) -> dict[str, Array]:
  """The iterative update on one window of S frames.

  Args:
    params: the parameter tree.
    pyramid: levels [B, S, h_l, w_l, C] of the window's frames.
    support: per level [B, N, 7, 7, C] query neighbourhood features.
    coords: [B, S, N, 2] initial positions in feature cells (pixels / 4).
    vis, conf: [B, S, N] initial visibility / confidence logits.
    iters: number of updates.
    time_emb: [S, 1110] (or per batch element [B, S, 1110]) time embedding added to every
      track's tokens.
    model_resolution: (H, W) of the model's training resolution; relative motions are divided by
      (W / 4, H / 4).
    add_space_attn: use the transformer's space attention (the released models do).
    intermediates: also return the correlation volumes / embeddings of every iteration and the
      transformer's inputs and outputs.
    frame_mask: [B, S] bool, True at real frames of a padded window (None = all real). Padded
      frames are excluded from the time attention and from the last real frame's motion
      feature; the estimates at real frames then equal those of the unpadded window.
    point_mask: [B, N] bool, True at real queries (None = all real); padded queries are not
      seen by the real ones (their own estimates are meaningless).

  Returns:
    dict of per-iteration results: 'coords' [iters, B, S, N, 2] pixels, 'vis', 'conf'
    [iters, B, S, N] logits; with `intermediates` also 'corr_volume' [iters, L, B, S, N, 7, 7, 7,
    7], 'corr_emb' [iters, L, B, S, N, 256], 'updateformer_in' [iters, B, N, S, 1110],
    'updateformer_out' [iters, B, N, S, 4].
  """
  b, s, n, _ = coords.shape
  scale = jnp.asarray([model_resolution[1] / blocks.STRIDE, model_resolution[0] / blocks.STRIDE],
                      jnp.float32)
  time_emb = jnp.asarray(time_emb, jnp.float32)
  if time_emb.ndim == 3:
    time_emb = time_emb[:, None]  # [B, 1, S, 1110]
  if frame_mask is not None:  # [B, S, 1, 1]: frame t + 1 is real (the forward motion exists).
    next_real = jnp.pad(frame_mask[:, 1:], ((0, 0), (0, 1)))[:, :, None, None]
  apply = functools.partial(MODEL.apply, {'params': params})
  support = [f.reshape(b, n, 49, f.shape[-1]) for f in support]  # [B, N, 7·7, C] per level

  def correlate(coords_q, support):
    """coords_q [B, n, S, 2] cells, support per level [B, n, 49, C] -> embeddings [B, n, S,
    L·256] and the volumes [B, n, S, 2401] per level."""
    nq = coords_q.shape[1]
    # Points are sampled query-major, so each query's S·49 neighbourhood vectors form one
    # contiguous [S·49, C] block and its correlation with the query's 49 support vectors is a
    # batched matrix product with the batch axes leading (no transposes).
    frame_idx = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, nq, s)).reshape(b, nq * s)
    volumes, embs = [], []
    for l, fmaps in enumerate(pyramid):
      c = (coords_q / (2 ** l)).reshape(b, nq * s, 2)
      feats = blocks.sample_neighbourhoods(fmaps, frame_idx, c[..., 0], c[..., 1])
      feats = feats.reshape(b, nq, s * 49, feats.shape[-1])  # [B, n, S·7·7, C]
      volume = jax.lax.dot_general(feats, support[l], (((3,), (3,)), ((0, 1), (0, 1))),
                                   precision=jax.lax.Precision.HIGHEST)  # [B, n, S·49, 49]
      volume = volume.reshape(b, nq, s, 49 * 49)
      embs.append(apply(volume, method=CoTrackerThree.embed_corr))  # [B, n, S, 256]
      volumes.append(volume)
    return jnp.concatenate(embs, axis=-1), volumes

  chunk = CORR_QUERY_CHUNK
  if intermediates or n <= chunk:
    correlate_all = correlate
  else:
    # The correlation's working set (a (2r + 2)² × C patch per point and level) grows with N:
    # it is computed for CORR_QUERY_CHUNK queries at a time (queries are independent here).
    k = -(-n // chunk)
    pad_support = [jnp.pad(f, ((0, 0), (0, k * chunk - n), (0, 0), (0, 0))) for f in support]
    split = lambda a: jnp.moveaxis(a.reshape((b, k, chunk) + a.shape[2:]), 1, 0)
    sup_chunks = [split(f) for f in pad_support]  # [k, B, chunk, 49, C]

    def correlate_all(coords_q, _):
      coords_q = split(jnp.pad(coords_q, ((0, 0), (0, k * chunk - n), (0, 0), (0, 0))))
      emb = jax.lax.map(lambda xs: correlate(xs[0], xs[1])[0], (coords_q, sup_chunks))
      emb = jnp.moveaxis(emb, 0, 1).reshape((b, k * chunk) + emb.shape[3:])
      return emb[:, :n], None

  def step(state, _):
    coords, vis, conf = state
    emb, volumes = correlate_all(jnp.swapaxes(coords, 1, 2), support)  # [B, N, S, L·256]
    forward = jnp.pad(coords[:, :-1] - coords[:, 1:], ((0, 0), (0, 1), (0, 0), (0, 0)))
    if frame_mask is not None:
      forward = jnp.where(next_real, forward, 0.0)
    backward = jnp.pad(coords[:, 1:] - coords[:, :-1], ((0, 0), (1, 0), (0, 0), (0, 0)))
    motion = blocks.posenc(jnp.concatenate([forward / scale, backward / scale], axis=-1), 0, 10)
    head = jnp.stack([vis, conf], axis=-1)  # [B, S, N, 2]
    tokens = jnp.concatenate([jnp.swapaxes(head, 1, 2), emb, jnp.swapaxes(motion, 1, 2)],
                             axis=-1) + time_emb  # [B, N, S, 1110]
    delta = apply(tokens, add_space_attn, frame_mask, point_mask,
                  method=CoTrackerThree.update)  # [B, N, S, 4]
    delta = jnp.swapaxes(delta, 1, 2)
    coords = coords + delta[..., :2]
    vis = vis + delta[..., 2]
    conf = conf + delta[..., 3]
    out = {'coords': coords * float(blocks.STRIDE), 'vis': vis, 'conf': conf}
    if intermediates:
      volumes = jnp.stack(volumes)  # [L, B, N, S, 2401]
      embs = jnp.moveaxis(emb.reshape(b, n, s, len(pyramid), -1), 3, 0)  # [L, B, N, S, 256]
      out.update(corr_volume=jnp.swapaxes(volumes, 2, 3).reshape(volumes.shape[:2] + (s, n)
                                                                 + (7,) * 4),
                 corr_emb=jnp.swapaxes(embs, 2, 3),
                 updateformer_in=tokens, updateformer_out=jnp.swapaxes(delta, 1, 2))
    return (coords, vis, conf), out

  _, ys = jax.lax.scan(step, (coords, vis, conf), None, length=iters)
  return ys


@functools.partial(jax.jit, static_argnames=(
    'iters', 'window_len', 'model_resolution', 'fmaps_chunk_size', 'add_space_attn',
    'return_iters', 'return_intermediates'))
def offline_forward(params: Params, video: Array, queries: Array, *, iters: int = 4,
                    window_len: int = 60, model_resolution: tuple[int, int] = (384, 512),
                    fmaps_chunk_size: int = FMAPS_CHUNK_SIZE, add_space_attn: bool = True,
                    return_iters: bool = False, return_intermediates: bool = False,
                    num_frames: Array | None = None,
                    num_queries: Array | None = None) -> dict[str, Array]:
  """CoTracker3 offline: all T frames form one window.

  Padded inputs (shape bucketing): with `num_frames` / `num_queries` the video and queries may
  carry padding after the real frames / queries (any finite content); the estimates of real
  queries at real frames then equal the unpadded call's (up to float32 summation order), and
  one compilation serves every true size of a padded shape (the sizes are traced values).

  Args:
    params: the parameter tree (`convert.load_checkpoint`).
    video: [B, T, 3, H, W] float32 RGB 0..255 at the working resolution (H, W multiples of 4).
    queries: [B, N, 3] rows (t, x, y): frame index (truncated; out-of-range frames sample the
      nearest frame) and pixel position in the video.
    iters: number of updates (the official predictor uses 6).
    window_len: length of the time embedding the model was trained with (60); it is resampled
      to T.
    model_resolution: (H, W) the model was trained at; normalises relative motions only.
    fmaps_chunk_size: frames per feature-CNN call.
    add_space_attn: the transformer's space attention (on for the released models).
    return_iters: also return 'coords_iters' [iters, B, T, N, 2], 'vis_iters', 'conf_iters'
      [iters, B, T, N] (probabilities).
    return_intermediates: also return 'fnet_out' [B, T, H/4, W/4, 128] (CNN output before the
      L2 norm) and the per-iteration tensors of `window_iterations` (names prefixed as there).
    num_frames: int [] or [B]: real frames of each video (the first ones); None = T. The time
      embedding is resampled to this length; padded frames are masked out of the time attention.
    num_queries: int [] or [B]: real queries of each batch element (the first ones); None = N.
      Padded queries are masked out of the space attention.

  Returns:
    dict: 'coords' [B, T, N, 2] pixels, 'vis' [B, T, N], 'conf' [B, T, N] probabilities
    (meaningless at padded frames and queries).
  """
  video = jnp.asarray(video, jnp.float32)
  queries = jnp.asarray(queries, jnp.float32)
  check_video(video, queries, iters)
  b, t = video.shape[:2]
  n = queries.shape[1]
  pyramid, raw = encode_frames(params, video, fmaps_chunk_size, return_raw=True)
  frames = query_frames(queries)
  qcoords = queries[..., 1:] / float(blocks.STRIDE)
  support = support_features(pyramid, frames, qcoords, num_frames)
  coords0 = jnp.broadcast_to(qcoords[:, None], (b, t, n, 2))
  zeros = jnp.zeros((b, t, n), jnp.float32)
  table = blocks.time_embedding_table(window_len)
  frame_mask = point_mask = None
  if num_frames is None:
    time_emb = blocks.interpolate_time_embedding(table, t)
  else:
    num_frames = jnp.broadcast_to(jnp.asarray(num_frames, jnp.int32), (b,))
    frame_mask = jnp.arange(t)[None, :] < num_frames[:, None]  # [B, T]
    time_emb = blocks.interpolate_time_embedding_traced(table, num_frames, t)  # [B, T, 1110]
  if num_queries is not None:
    num_queries = jnp.broadcast_to(jnp.asarray(num_queries, jnp.int32), (b,))
    point_mask = jnp.arange(n)[None, :] < num_queries[:, None]  # [B, N]
  ys = window_iterations(params, pyramid, support, coords0, zeros, zeros, iters=iters,
                         time_emb=time_emb, model_resolution=model_resolution,
                         add_space_attn=add_space_attn, intermediates=return_intermediates,
                         frame_mask=frame_mask, point_mask=point_mask)
  out = {'coords': ys['coords'][-1], 'vis': jax.nn.sigmoid(ys['vis'][-1]),
         'conf': jax.nn.sigmoid(ys['conf'][-1])}
  if return_iters or return_intermediates:
    out.update(coords_iters=ys['coords'], vis_iters=jax.nn.sigmoid(ys['vis']),
               conf_iters=jax.nn.sigmoid(ys['conf']))
  if return_intermediates:
    out['fnet_out'] = raw
    for key in ('corr_volume', 'corr_emb', 'updateformer_in', 'updateformer_out'):
      out[key] = ys[key]
  return out
