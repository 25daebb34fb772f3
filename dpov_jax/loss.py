"""The 3DPoV patch-ordering loss as pure JAX functions (3DPoV's released trainer).

Pipeline for one device step, backbone kept outside:

  student maps [B, T, Sh, Sw, D], teacher maps of frame 0 [B, Sh, Sw, D]
  -> sample_at_tracks                       f_s [B, T, N, D], f_t [B, N, D]
  -> ProjectionHead + l2_normalize          z_s [B, T, N, K], z_t [B, N, K]
  -> sample_references / crop_references on the student maps
     -> head + l2_normalize                 r [B, R, n, K]
  -> ordering_loss: cosine similarities, hard (student) / soft (teacher)
     diffsort sorters, permutation cross-entropy, visibility weights, means.

`pov3d_loss` chains all of it. Deviations from the released code, all
deliberate and documented where they happen:
* the per-reference losses are summed from 0 (the release references an
  undefined `final_loss`) and divided by |frames| * R.
* feature_upsampling 'off' means latent tracking.
* x is normalised/clamped with the width, y with the height (the release pairs x
  with H and y with W, right only for square inputs), and the token grid may be
  non-square.
* `symmetric=True` (our extension; the release parses `use_symmetric_loss` but
  has no such loss) averages the loss with its mirror
  (student frame 0 hard-sorted vs teacher frame t soft-sorted).
* references and crops come from JAX PRNG keys (the release's Python / torch
  draws are unseeded).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dpov_jax import sorting
from tapkit.ops import numeric
from tapkit.ops import sampling
from tapkit.train import config as config_lib

# The released trainer increments `frames_to_compare` after every step with
# global_step % 1085 == 0 (so already after step 0).
RELEASED_COMPARE_PERIOD = 1085


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Options of the ordering loss (README / paper values as defaults).

  Attributes:
    nmb_ref: R, number of reference frames per clip (R - 1 external + 1
      intra-video).
    crop_ratio: reference crop side as a fraction of the input side.
    hard_steepness: student sorter steepness when `use_hardsoft`.
    soft_steepness: teacher sorter steepness (and student without hardsoft).
    use_hardsoft: student uses the hard sorter; False = both use the soft one.
    network, distribution, art_lambda: diffsort sorter options (3DPoV uses
      diffsort's defaults 'bitonic', 'cauchy', 0.25).
    feature_upsampling: student sampling, 'off' (latent tracking, bilinear on
      the token grid), 'nearest' or 'bilinear' (upsampled maps).
    teacher_feature_upsampling: teacher sampling when the student does not
      use latent tracking; with latent tracking the teacher uses it too.
    symmetric: our extension, see module docstring.
    compare_schedule: 'released' (the release's curriculum: one more
      compared frame every `compare_period` steps) or 'all_frames'.
    compare_period: steps between curriculum increments (the release's 1085).
    teacher_reference_grad: True (as the release) lets the loss's gradient
      reach the student's reference embeddings through the teacher's soft
      sort too; False stops it there (our option), so the references are
      trained only through the student's sort.
    sort_chunk_size: rows per chunk in the sorter (performance only; None: the sorter's
      default, the fastest on CPU; every chunking gives bit-identical results).
  """
  nmb_ref: int = 5
  crop_ratio: float = 0.5
  hard_steepness: float = 20.0
  soft_steepness: float = 3.0
  use_hardsoft: bool = True
  network: str = 'bitonic'
  distribution: str = 'cauchy'
  art_lambda: float = 0.25
  feature_upsampling: str = 'off'
  teacher_feature_upsampling: str = 'bilinear'
  symmetric: bool = False
  compare_schedule: str = 'released'
  compare_period: int = RELEASED_COMPARE_PERIOD
  teacher_reference_grad: bool = True
  sort_chunk_size: int | None = None

  @classmethod
  def from_config(cls, config: Any, prefix: str = 'loss') -> 'LossConfig':
    """Builds from a mapping / ml_collections.ConfigDict; missing keys keep the defaults.

    Raises:
      ValueError: naming the full key (`prefix`.key) of a key that is not a field.
    """
    return config_lib.from_section(cls, config, prefix)


# ---------------------------------------------------------------------------
# Sampling features at the tracks.
# ---------------------------------------------------------------------------


def _sample_one(fmap: jax.Array, points: jax.Array, image_size: tuple[int, int],
                mode: str) -> jax.Array:
  """fmap [Sh, Sw, D], points [N, 2] (x, y) input pixels -> [N, D]."""
  h, w = image_size
  sh, sw = fmap.shape[:2]
  dtype = fmap.dtype
  x = jnp.clip(points[:, 0].astype(jnp.float32), 0, w - 1)
  y = jnp.clip(points[:, 1].astype(jnp.float32), 0, h - 1)
  if mode == 'off':
    # Latent tracking: grid_sample(align_corners=True) on the token grid, i.e.
    # pixel 0 -> centre of patch 0, pixel W-1 -> centre of patch Sw-1.
    c = x * ((sw - 1) / max(w - 1, 1))
    r = y * ((sh - 1) / max(h - 1, 1))
    return sampling.bilinear_sample(fmap, c, r, padding='clamp_index').astype(dtype)
  xi = jnp.round(x)  # half to even, like torch.round
  yi = jnp.round(y)
  if mode == 'nearest':
    # torch nearest upsampling: src = floor(dst * in/out) with a float32 scale.
    r = jnp.floor(yi * jnp.float32(sh / h)).astype(jnp.int32)
    c = jnp.floor(xi * jnp.float32(sw / w)).astype(jnp.int32)
    return fmap[jnp.minimum(r, sh - 1), jnp.minimum(c, sw - 1)]
  if mode == 'bilinear':
    # Bilinear upsampling (align_corners=False) read at pixel (yi, xi).
    r = jnp.maximum(0.0, (yi + 0.5) * (sh / h) - 0.5)
    c = jnp.maximum(0.0, (xi + 0.5) * (sw / w) - 0.5)
    return sampling.bilinear_sample(fmap, c, r, padding='clamp_index').astype(dtype)
  raise ValueError(f'unknown feature upsampling {mode!r}')


def sample_at_tracks(maps: jax.Array, tracks: jax.Array,
                     image_size: tuple[int, int], mode: str = 'off') -> jax.Array:
  """Features at tracked points.

  Args:
    maps: [..., Sh, Sw, D] patch-token maps (row-major patch grid).
    tracks: [..., N, 2] (x, y) in input pixels, pixel centres at integers.
    image_size: (H, W) of the backbone input in pixels.
    mode: 'off' (latent tracking), 'nearest' or 'bilinear'.

  Returns:
    [..., N, D] sampled features (no gradient to the tracks).
  """
  tracks = jax.lax.stop_gradient(tracks)
  lead = maps.shape[:-3]
  flat_maps = maps.reshape(-1, *maps.shape[-3:])
  flat_tracks = jnp.broadcast_to(
      tracks, (*lead, *tracks.shape[-2:])).reshape(-1, *tracks.shape[-2:])
  out = jax.vmap(lambda f, p: _sample_one(f, p, image_size, mode))(
      flat_maps, flat_tracks)
  return out.reshape(*lead, *out.shape[-2:])


# ---------------------------------------------------------------------------
# Projection head.
# ---------------------------------------------------------------------------


def _torch_uniform(fan_in: int) -> Callable[..., jax.Array]:
  """PyTorch nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class ProjectionHead(nn.Module):
  """MLP head g: D -> 1024 -> 1024 -> 512 -> 256 with exact GELU between.

  Attributes:
    features: output widths of the linear layers; no activation after the last.
  """
  features: Sequence[int] = (1024, 1024, 512, 256)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [..., D] -> [..., features[-1]] (not normalised)."""
    for i, width in enumerate(self.features):
      fan_in = x.shape[-1]
      x = nn.Dense(width, kernel_init=_torch_uniform(fan_in),
                   bias_init=_torch_uniform(fan_in), name=f'linear_{i}')(x)
      if i + 1 < len(self.features):
        x = nn.gelu(x, approximate=False)
    return x


# ---------------------------------------------------------------------------
# References.
# ---------------------------------------------------------------------------


def reference_crop_patches(image_size: tuple[int, int], patch_size: int,
                           crop_ratio: float) -> tuple[int, int]:
  """Reference crop in whole patches (c_h, c_w).

  crop_px = p * round(crop_ratio * side / p) (Python round, half to even);
  224 px, ratio 0.5: p = 14 -> 8 patches (n = 64), p = 16 -> 7 (n = 49).
  """
  return tuple(int(round(crop_ratio * side / patch_size)) for side in image_size)


def sample_reference_frames(key: jax.Array, batch: int, frames: int,
                            nmb_ref: int) -> jax.Array:
  """Reference frames for every clip.

  Args:
    key: PRNG key.
    batch: B clips.
    frames: T frames per clip.
    nmb_ref: R references per clip.

  Returns:
    [B, R] int32 indices into the B*T frames (clip-major, b * T + t): R - 1
    frames of other clips, drawn without replacement (with replacement if
    fewer than R - 1 exist), then one own frame from 1..T-2 (0 if T < 3).
  """
  if nmb_ref < 1:
    raise ValueError('nmb_ref must be >= 1')
  others = (batch - 1) * frames
  if nmb_ref > 1 and others == 0:
    raise ValueError('external references need at least two clips in a batch')
  key_ext, key_intra = jax.random.split(key)
  keys = jax.random.split(key_ext, batch)
  num_ext = nmb_ref - 1

  def external(k: jax.Array, b: jax.Array) -> jax.Array:
    # Candidate j in 0..others-1 is frame j of the other clips, in order.
    if num_ext <= others:
      cand = jax.random.permutation(k, others)[:num_ext]
    else:
      cand = jax.random.randint(k, (num_ext,), 0, others)
    # Skip over clip b's own T frames.
    return jnp.where(cand >= b * frames, cand + frames, cand)

  ext = jax.vmap(external)(keys, jnp.arange(batch))
  if frames >= 3:
    intra_t = jax.random.randint(key_intra, (batch,), 1, frames - 1)
  else:
    intra_t = jnp.zeros((batch,), jnp.int32)
  intra = jnp.arange(batch) * frames + intra_t
  return jnp.concatenate([ext, intra[:, None]], axis=1).astype(jnp.int32)


def sample_crop_offsets(key: jax.Array, shape: tuple[int, ...],
                        grid: tuple[int, int],
                        crop: tuple[int, int]) -> jax.Array:
  """Top-left (row, col) of each crop, uniform on {0..Sh-c_h} x {0..Sw-c_w}.

  Returns:
    [*shape, 2] int32.
  """
  kr, kc = jax.random.split(key)
  rows = jax.random.randint(kr, shape, 0, grid[0] - crop[0] + 1)
  cols = jax.random.randint(kc, shape, 0, grid[1] - crop[1] + 1)
  return jnp.stack([rows, cols], axis=-1).astype(jnp.int32)


def crop_references(frame_maps: jax.Array, ref_index: jax.Array,
                    offsets: jax.Array, crop: tuple[int, int]) -> jax.Array:
  """Cuts reference crops on the token grid.

  Args:
    frame_maps: [F, Sh, Sw, D] maps of all F = B*T frames.
    ref_index: [B, R] frame indices.
    offsets: [B, R, 2] top-left (row, col) in patches.
    crop: (c_h, c_w) patches.

  Returns:
    [B, R, c_h*c_w, D] row-major crop tokens.
  """
  d = frame_maps.shape[-1]

  def one(idx, off):
    return jax.lax.dynamic_slice(
        frame_maps[idx], (off[0], off[1], 0), (crop[0], crop[1], d)
    ).reshape(crop[0] * crop[1], d)

  return jax.vmap(jax.vmap(one))(ref_index, offsets)


# ---------------------------------------------------------------------------
# Similarities, sorting, cross-entropy.
# ---------------------------------------------------------------------------


def compared_frames(frames_to_compare: int, num_frames: int,
                    schedule: str = 'released') -> tuple[int, ...]:
  """Frames t compared with teacher frame 0: {1 + ftc, ..., T-1}.

  'released': ftc = `frames_to_compare` clamped to [0, T - 2] (the release's curriculum
  raises it by one after step 0 and every `compare_period` steps, see
  `released_frames_to_compare`); 'all_frames': every frame 1..T-1.
  """
  if schedule == 'all_frames':
    return tuple(range(1, num_frames))
  if schedule != 'released':
    raise ValueError(f'unknown compare schedule {schedule!r}')
  ftc = min(max(frames_to_compare, 0), max(num_frames - 2, 0))
  return tuple(range(1 + ftc, num_frames))


def released_frames_to_compare(step: int) -> int:
  """`frames_to_compare` used at (0-based) step `step` by the released trainer.

  It is incremented after every step with step % 1085 == 0, i.e. already after
  step 0: 0 at step 0, 1 for steps 1..1085, 2 for 1086..2170, ...
  """
  return 0 if step <= 0 else (step - 1) // RELEASED_COMPARE_PERIOD + 1


def permutation_cross_entropy(p_student: jax.Array,
                              p_teacher: jax.Array) -> jax.Array:
  """CE = mean_m ( -sum_rho P_s[m, rho] * log(P_t[m, rho] + 1e-6) ).

  Args:
    p_student: [..., n, n] diffsort matrices (rows = reference patches m,
      columns = ranks rho); the weights.
    p_teacher: [..., n, n]; inside the log.

  Returns:
    [...] cross-entropies.
  """
  return jnp.mean(-jnp.sum(p_student * jnp.log(p_teacher + 1e-6), axis=-1),
                  axis=-1)


def _sort_perm(sims: jax.Array, steepness: float, config: LossConfig) -> jax.Array:
  return sorting.diff_sort(
      sims, network=config.network, steepness=steepness,
      art_lambda=config.art_lambda, distribution=config.distribution,
      chunk_size=config.sort_chunk_size)[1]


def _visible_mean(ce: jax.Array, weight: jax.Array) -> jax.Array:
  """sum_q w * CE / (sum_q w + 1e-6) over the last axis (0 if none visible)."""
  return jnp.sum(weight * ce, axis=-1) / (jnp.sum(weight, axis=-1) + 1e-6)


def ordering_loss(z_student: jax.Array, z_teacher: jax.Array,
                  refs: jax.Array, visibility: jax.Array,
                  frames: Sequence[int],
                  config: LossConfig = LossConfig()) -> jax.Array:
  """3DPoV ordering loss from normalised embeddings (as the released trainer).

  Args:
    z_student: [B, T, N, K] student query embeddings (unit norm).
    z_teacher: [B, N, K] teacher frame-0 embeddings, or [B, T, N, K] (frame 0
      is used; the other frames only by `config.symmetric`). No gradient.
    refs: [B, R, n, K] student reference embeddings (unit norm).
    visibility: [B, T, N] bool/0-1 track visibility.
    frames: compared frames (static, each in 1..T-1).
    config: LossConfig.

  Returns:
    Scalar loss: mean_b sum_{t, k} l[b, t, k] / (|frames| * R).
  """
  frames = tuple(frames)
  if not frames:
    raise ValueError('no frames to compare')
  z_teacher = jax.lax.stop_gradient(z_teacher)
  teacher_all = z_teacher if z_teacher.ndim == 4 else None
  z_t0 = z_teacher[:, 0] if z_teacher.ndim == 4 else z_teacher
  vis = visibility.astype(z_student.dtype)
  num_refs = refs.shape[1]
  student_steep = (config.hard_steepness if config.use_hardsoft
                   else config.soft_steepness)

  # Similarities [B, R, N, n]; the teacher side is shared by all frames t.
  # The references keep their gradient on the teacher side too (as the release), unless
  # config.teacher_reference_grad is off.
  refs_t = refs if config.teacher_reference_grad else jax.lax.stop_gradient(refs)
  sims_t0 = jnp.einsum('bqc,bkmc->bkqm', z_t0, refs_t)
  p_teacher0 = _sort_perm(sims_t0, config.soft_steepness, config)
  total = 0.0
  for t in frames:
    weight = (vis[:, 0] * vis[:, t])[:, None, :]  # [B, 1, N]
    sims_s = jnp.einsum('bqc,bkmc->bkqm', z_student[:, t], refs)
    p_student = _sort_perm(sims_s, student_steep, config)
    loss_t = _visible_mean(permutation_cross_entropy(p_student, p_teacher0),
                           weight)  # [B, R]
    if config.symmetric:
      # Our extension: student frame 0 (hard) vs teacher frame t (soft).
      if teacher_all is None:
        raise ValueError('symmetric loss needs teacher embeddings of all frames')
      sims_s0 = jnp.einsum('bqc,bkmc->bkqm', z_student[:, 0], refs)
      sims_tt = jnp.einsum('bqc,bkmc->bkqm', teacher_all[:, t], refs_t)
      mirror = _visible_mean(
          permutation_cross_entropy(_sort_perm(sims_s0, student_steep, config),
                                    _sort_perm(sims_tt, config.soft_steepness,
                                               config)), weight)
      loss_t = 0.5 * (loss_t + mirror)
    total = total + jnp.sum(loss_t, axis=1)
  return jnp.mean(total / (len(frames) * num_refs))


# ---------------------------------------------------------------------------
# The whole objective from backbone outputs.
# ---------------------------------------------------------------------------


def pov3d_loss(student_head_params: Any, teacher_head_params: Any,
               student_maps: jax.Array, teacher_maps: jax.Array,
               tracks: jax.Array, visibility: jax.Array, key: jax.Array,
               *, image_size: tuple[int, int], patch_size: int,
               frames: Sequence[int], config: LossConfig = LossConfig(),
               head: nn.Module = ProjectionHead()) -> tuple[jax.Array, dict]:
  """The 3DPoV loss of one device step from backbone feature maps.

  Args:
    student_head_params: params of `head` (student).
    teacher_head_params: params of `head` (EMA teacher); no gradient.
    student_maps: [B, T, Sh, Sw, D] student final-norm patch tokens.
    teacher_maps: [B, Sh, Sw, D] teacher maps of frame 0, or [B, T, Sh, Sw, D]
      (all frames; needed by `config.symmetric`). No gradient.
    tracks: [B, T, N, 2] (x, y) input pixels.
    visibility: [B, T, N] bool.
    key: PRNG key for references and crops.
    image_size: (H, W) input pixels.
    patch_size: p.
    frames: compared frames (see `compared_frames`).
    config: LossConfig.
    head: the projection head module.

  Returns:
    (loss scalar, aux dict with 'ref_index' [B, R], 'crop_offsets' [B, R, 2]).
  """
  b, t, sh, sw, d = student_maps.shape
  teacher_maps = jax.lax.stop_gradient(teacher_maps)
  teacher_head_params = jax.lax.stop_gradient(teacher_head_params)
  latent = config.feature_upsampling == 'off'
  teacher_mode = 'off' if latent else config.teacher_feature_upsampling
  f_s = sample_at_tracks(student_maps, tracks, image_size,
                         config.feature_upsampling)
  teacher_tracks = tracks if teacher_maps.ndim == 5 else tracks[:, 0]
  f_t = sample_at_tracks(teacher_maps, teacher_tracks, image_size, teacher_mode)
  z_s = numeric.l2_normalize(head.apply(student_head_params, f_s))
  z_t = numeric.l2_normalize(head.apply(teacher_head_params, f_t))

  crop = reference_crop_patches(image_size, patch_size, config.crop_ratio)
  crop = (min(crop[0], sh), min(crop[1], sw))
  key_ref, key_crop = jax.random.split(key)
  ref_index = sample_reference_frames(key_ref, b, t, config.nmb_ref)
  offsets = sample_crop_offsets(key_crop, ref_index.shape, (sh, sw), crop)
  ref_tokens = crop_references(student_maps.reshape(b * t, sh, sw, d),
                               ref_index, offsets, crop)
  refs = numeric.l2_normalize(head.apply(student_head_params, ref_tokens))
  loss = ordering_loss(z_s, z_t, refs, visibility, frames, config)
  return loss, {'ref_index': ref_index, 'crop_offsets': offsets}
