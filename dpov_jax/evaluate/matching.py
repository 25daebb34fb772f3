"""Keypoint / correspondence matching of the Probe3D protocols (SPair, NAVI).

Backbone-agnostic: everything takes feature maps [h, w, D] (channels last) or a
`features_fn(images [B, H, W, 3] float32 normalised) -> [B, h, w, D]` (or a
list of such maps, concatenated on channels, for multi-layer backbones).

SPair: source keypoint features are sampled bilinearly from the patch
map (grid_sample, align_corners=True), the prediction is the argmax of the
dot-product heatmap over target patches, (col, row) / feature width, with no
upsampling. NAVI: feature maps are upsampled bicubically (torch
semantics: a = -0.75, align_corners=False) to the 128x128 XYZ grid, and each
valid source pixel is matched to its nearest valid target pixel by cosine
distance with a ratio-test weight; the `num_corr` most distinctive matches are
kept.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dpov_jax.evaluate import metrics
from tapkit.data import geometry
from tapkit.ops import numeric
from tapkit.ops import sampling

FeaturesFn = Callable[[np.ndarray], Any]


def _as_feature_map(feats: Any) -> jnp.ndarray:
  """Concatenates a multi-layer list on channels; returns [B, h, w, D]."""
  if isinstance(feats, (list, tuple)):
    feats = jnp.concatenate([jnp.asarray(f) for f in feats], axis=-1)
  feats = jnp.asarray(feats, jnp.float32)
  if feats.ndim != 4:
    raise ValueError(f'features_fn must return [B, h, w, D], got {feats.shape}')
  return feats


def downsample_nearest(grid: np.ndarray, factor: float) -> np.ndarray:
  """F.interpolate(scale_factor=factor, mode='nearest') of [H, W, C].

  Output size floor(H * factor); source index floor(dst / factor).
  """
  h, w = grid.shape[:2]
  oh, ow = int(np.floor(h * factor)), int(np.floor(w * factor))
  iy = np.minimum(np.floor(np.arange(oh) / factor).astype(int), h - 1)
  ix = np.minimum(np.floor(np.arange(ow) / factor).astype(int), w - 1)
  return grid[iy][:, ix]


# ----------------------------------------------------------------------------
# SPair-style keypoint transfer.


@jax.jit
def transfer_keypoints(src_feats: jnp.ndarray, trg_feats: jnp.ndarray,
                       src_xy_unit: jnp.ndarray) -> jnp.ndarray:
  """Predicts target keypoints by argmax of the feature heatmap.

  Args:
    src_feats, trg_feats: [h, w, D] L2-normalised feature maps.
    src_xy_unit: [K, 2] source keypoints (x, y) / image side, in [0, 1].

  Returns:
    [K, 2] predicted target (x, y) = (col, row) / w (Probe3D: no +1/2).
  """
  h, w, _ = trg_feats.shape
  # grid_sample(bilinear, align_corners=True, padding zeros): 0 -> centre of the first cell.
  kp_f = sampling.bilinear_sample(
      src_feats, sampling.pixel_coords(src_xy_unit[:, 0], src_feats.shape[1], align_corners=True),
      sampling.pixel_coords(src_xy_unit[:, 1], src_feats.shape[0], align_corners=True),
      padding='zeros')
  heat = jnp.einsum('kd,hwd->khw', kp_f, trg_feats,
                    precision=jax.lax.Precision.HIGHEST).reshape(-1, h * w)
  flat = jnp.argmax(heat, axis=-1)
  return jnp.stack([flat % w, flat // w], -1).astype(jnp.float32) / w


@dataclasses.dataclass(frozen=True)
class KeypointPair:
  """One keypoint-transfer instance, images already preprocessed.

  Attributes:
    src_image, trg_image: [S, S, 3] float32 normalised square images.
    src_kps, trg_kps: [K, 2] keypoints (x, y) in pixels of the S x S image
      (SPair: integers after truncation).
    src_valid, trg_valid: [K] bool annotated flags.
    threshold_scale: tau (max target bbox side / max target image side).
    category: class / scene name (recall is averaged over categories).
    bin: difficulty bin label (SPair viewpoint level, NAVI rotation bin).
  """
  src_image: np.ndarray
  trg_image: np.ndarray
  src_kps: np.ndarray
  trg_kps: np.ndarray
  src_valid: np.ndarray
  trg_valid: np.ndarray
  threshold_scale: float
  category: str = 'all'
  bin: Any = 0


def keypoint_pair_errors(pair: KeypointPair,
                         features_fn: FeaturesFn) -> np.ndarray:
  """Normalised errors of one pair's keypoints annotated in both images.

  Returns:
    [K'] errors ||pred - kp_trg / S|| / tau (Probe3D `compute_errors`).
  """
  side = pair.src_image.shape[1]
  if pair.src_image.shape[:2] != (side, side) or pair.trg_image.shape[:2] != (
      side, side):
    raise ValueError('keypoint protocol assumes square images of equal size, '
                     f'got {pair.src_image.shape} and {pair.trg_image.shape}')
  images = np.stack([pair.src_image, pair.trg_image]).astype(np.float32)
  feats = numeric.l2_normalize(_as_feature_map(features_fn(images)))
  src_xy = np.asarray(pair.src_kps, np.float32).reshape(-1, 2) / side
  k = src_xy.shape[0]
  # Pad K to a multiple of 32 so pairs with different keypoint counts share
  # one compiled program.
  padded = np.zeros((max(32, -(-k // 32) * 32), 2), np.float32)
  padded[:k] = src_xy
  pred = np.asarray(transfer_keypoints(feats[0], feats[1],
                                       jnp.asarray(padded)))[:k]
  trg_xy = np.asarray(pair.trg_kps, np.float64) / side
  return metrics.spair_keypoint_errors(pred, trg_xy, pair.src_valid,
                                       pair.trg_valid, pair.threshold_scale)


def run_keypoint_protocol(
    groups: Mapping[tuple[str, Any], Sequence[KeypointPair]],
    features_fn: FeaturesFn, *, protocol: str = 'probe3d',
    alpha: float = metrics.SPAIR_PCK_ALPHA) -> dict[str, Any]:
  """Keypoint-transfer recall per bin.

  Args:
    groups: (category, bin name) -> pairs evaluated together (Probe3D draws
      each (class, bin) sample separately, 'all' included).
    features_fn: images [B, S, S, 3] -> [B, h, w, D] (or a list of maps).
    protocol: 'probe3d' (recall pooled over the keypoints of a (class, bin),
      then mean over classes per bin) or '3dpov_val' (all categories pooled
      per bin, and 'mean' = mean of the non-'all' bins).
    alpha: PCK threshold.

  Returns:
    {'rows': [{'bin': name, 'recall': %, 'num_pairs': n, 'num_kps': k}],
     'per_category': {cat: {bin: %}}, 'mean': float (3dpov_val only)}.
  """
  if protocol not in ('probe3d', '3dpov_val'):
    raise ValueError(f'unknown keypoint protocol {protocol!r}')
  errors = {}
  for key, pairs in groups.items():
    errs = [keypoint_pair_errors(p, features_fn) for p in pairs]
    errors[key] = (np.concatenate(errs) if errs else np.zeros(0), len(pairs))
  bins = list(dict.fromkeys(b for _, b in groups))
  per_cat = collections.defaultdict(dict)
  for (cat, b), (e, _) in errors.items():
    if e.size:
      per_cat[cat][str(b)] = metrics.recall_percent(e, alpha)
  rows = []
  out = {'per_category': dict(per_cat)}
  for b in bins:
    keys = [k for k in errors if k[1] == b]
    n_pairs = sum(errors[k][1] for k in keys)
    n_kps = sum(errors[k][0].size for k in keys)
    if protocol == 'probe3d':
      rec = metrics.class_averaged_recall(per_cat, [str(b)])[str(b)]
    else:
      pooled = np.concatenate([errors[k][0] for k in keys])
      rec = metrics.recall_percent(pooled, alpha)
    rows.append({'bin': str(b), 'recall': rec, 'num_pairs': n_pairs,
                 'num_kps': n_kps})
  out['rows'] = rows
  if protocol == '3dpov_val':
    vals = [r['recall'] for r in rows if r['bin'] != 'all']
    out['mean'] = float(np.nanmean(vals)) if vals else float('nan')
  return out


# ----------------------------------------------------------------------------
# NAVI-style dense correspondences with the ratio test.


@functools.partial(jax.jit, static_argnames=('chunk',))
def _two_nearest(src: jnp.ndarray, trg: jnp.ndarray, trg_valid: jnp.ndarray,
                 chunk: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Two smallest cosine distances and the nearest index, chunked over src.

  Args:
    src: [Ns, D] unit features, Ns a multiple of chunk.
    trg: [Nt, D] unit features.
    trg_valid: [Nt] bool.
    chunk: rows of src per step (bounds memory to chunk x Nt floats).

  Returns:
    dists [Ns, 2] (1 - cos, ascending), nearest index [Ns].
  """
  def one(block):
    sim = jnp.einsum('nd,md->nm', block, trg,
                     precision=jax.lax.Precision.HIGHEST)
    sim = jnp.where(trg_valid[None], sim, -jnp.inf)
    top, idx = jax.lax.top_k(sim, 2)
    return 1.0 - top, idx[:, 0]
  blocks = src.reshape(-1, chunk, src.shape[-1])
  d, i = jax.lax.map(one, blocks)
  return d.reshape(-1, 2), i.reshape(-1)


def ratio_test_matches(src_feats: np.ndarray, trg_feats: np.ndarray,
                       num_corr: int, *, src_valid: np.ndarray | None = None,
                       trg_valid: np.ndarray | None = None,
                       chunk: int = 1024) -> tuple[np.ndarray, np.ndarray,
                                                   np.ndarray]:
  """Nearest neighbours by cosine distance, the `num_corr` most distinctive.

  Args:
    src_feats: [Ns, D] features (normalised here).
    trg_feats: [Nt, D] features (normalised here).
    num_corr: matches kept (min(num_corr, #valid sources)).
    src_valid, trg_valid: optional [Ns] / [Nt] bool masks.
    chunk: source rows per matmul block.

  Returns:
    src index [M], target index [M], weight [M] = 1 - d1 / d2 (distances
    clamped at 1e-9), sorted by decreasing weight.
  """
  ns, nt = src_feats.shape[0], trg_feats.shape[0]
  src_valid = np.ones(ns, bool) if src_valid is None else np.asarray(src_valid)
  trg_valid = np.ones(nt, bool) if trg_valid is None else np.asarray(trg_valid)
  if trg_valid.sum() < 2:
    raise ValueError('ratio test needs at least two valid target points')
  src = numeric.l2_normalize(jnp.asarray(src_feats, jnp.float32))
  trg = numeric.l2_normalize(jnp.asarray(trg_feats, jnp.float32))
  chunk = max(1, min(chunk, ns))
  pad = (-ns) % chunk
  src = jnp.pad(src, ((0, pad), (0, 0)))
  dists, nn = _two_nearest(src, trg, jnp.asarray(trg_valid), chunk)
  dists = np.asarray(dists[:ns], np.float64)
  nn = np.asarray(nn[:ns])
  d = np.maximum(dists, 1e-9)
  weight = 1.0 - d[:, 0] / np.maximum(d[:, 1], 1e-9)
  weight = np.where(src_valid, weight, -np.inf)
  k = int(min(num_corr, src_valid.sum()))
  # Stable sort so ties keep pixel order (torch.topk leaves them unspecified).
  order = np.argsort(-weight, kind='stable')[:k]
  return order, nn[order], weight[order]


def pixel_grid(h: int, w: int) -> np.ndarray:
  """[h, w, 2] pixel centres (x + 0.5, y + 0.5)."""
  ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing='ij')
  return np.stack([xs, ys], -1)


def navi_pair_errors(feat_0: np.ndarray, feat_1: np.ndarray,
                     xyz_grid_0: np.ndarray, xyz_grid_1: np.ndarray,
                     rt_01: np.ndarray, intrinsics_1: np.ndarray, *,
                     num_corr: int = 1000, scale_factor: float = 0.25,
                     chunk: int = 1024) -> dict[str, np.ndarray]:
  """Probe3D `estimate_correspondence_xyz` + error computation for one pair.

  Args:
    feat_0, feat_1: [h, w, D] dense features (not normalised).
    xyz_grid_0, xyz_grid_1: [H, W, 3] camera XYZ (metres) per pixel of the
      512 x 512 image; z = 0 where depth is missing.
    rt_01: [3 or 4, 4] pose mapping camera-0 points to camera 1.
    intrinsics_1: [3, 3] intrinsics of view 1 at full resolution.
    num_corr: matches kept.
    scale_factor: XYZ grids are nearest-downsampled by this factor first.
    chunk: source rows per matmul block.

  Returns:
    'err_3d' [M] metres, 'err_2d' [M] pixels, 'uv_0', 'uv_1' [M, 2] match
    pixel coordinates at full resolution, 'weight' [M].
  """
  g0 = downsample_nearest(np.asarray(xyz_grid_0, np.float64), scale_factor)
  g1 = downsample_nearest(np.asarray(xyz_grid_1, np.float64), scale_factor)
  h, w = g0.shape[:2]
  f0 = np.asarray(sampling.resize(jnp.asarray(feat_0, jnp.float32), (h, w), 'bicubic'))
  f1 = np.asarray(sampling.resize(jnp.asarray(feat_1, jnp.float32),
                                 g1.shape[:2], 'bicubic'))
  v0 = g0[..., 2].reshape(-1) > 0
  v1 = g1[..., 2].reshape(-1) > 0
  x0 = g0.reshape(-1, 3)[v0]
  x1 = g1.reshape(-1, 3)[v1]
  uv0 = pixel_grid(h, w).reshape(-1, 2)[v0]
  uv1 = pixel_grid(*g1.shape[:2]).reshape(-1, 2)[v1]
  i0, i1, wgt = ratio_test_matches(f0.reshape(-1, f0.shape[-1])[v0],
                                   f1.reshape(-1, f1.shape[-1])[v1], num_corr,
                                   chunk=chunk)
  rt = np.asarray(rt_01, np.float64)
  c0in1 = x0[i0] @ rt[:3, :3].T + rt[:3, 3]
  c1 = x1[i1]
  err_3d = np.linalg.norm(c0in1 - c1, axis=-1)
  # uv = (K xyz)[:2] / max(z', 1e-9), as Probe3D projects.
  k_1 = np.asarray(intrinsics_1, np.float64)
  err_2d = np.linalg.norm(
      geometry.project(c0in1, k_1, behind='clamp', min_depth=1e-9) -
      geometry.project(c1, k_1, behind='clamp', min_depth=1e-9), axis=-1)
  return {'err_3d': err_3d, 'err_2d': err_2d, 'uv_0': uv0[i0] / scale_factor,
          'uv_1': uv1[i1] / scale_factor, 'weight': wgt}


def run_correspondence_protocol(
    pairs: Sequence[Mapping[str, np.ndarray]], features_fn: FeaturesFn, *,
    bin_edges: Sequence[float] = metrics.NAVI_BIN_EDGES_3DPOV,
    num_corr: int = 1000, scale_factor: float = 0.25) -> dict[str, Any]:
  """NAVI correspondence protocol over a list of pairs.

  Args:
    pairs: each with 'image_0', 'image_1' [H, W, 3] normalised float32,
      'xyz_grid_0', 'xyz_grid_1' [H, W, 3], 'Rt_01' [4, 4], 'intrinsics_1'
      [3, 3]; the relative rotation angle is taken from Rt_01.
    features_fn: images [B, H, W, 3] -> [B, h, w, D] (or list of maps).
    bin_edges: relative-rotation bin edges in degrees ([lo, hi) bins).
    num_corr, scale_factor: as in `navi_pair_errors`.

  Returns:
    {'summary': metrics.navi_correspondence_metrics(...), 'rows': [{'bin',
     'recall_2cm' (%), 'num_pairs'}], 'rel_angle_deg': [P]}.
  """
  e3, e2, ang = [], [], []
  for p in pairs:
    images = np.stack([p['image_0'], p['image_1']]).astype(np.float32)
    feats = np.asarray(_as_feature_map(features_fn(images)))
    res = navi_pair_errors(feats[0], feats[1], p['xyz_grid_0'],
                           p['xyz_grid_1'], p['Rt_01'], p['intrinsics_1'],
                           num_corr=num_corr, scale_factor=scale_factor)
    e3.append(res['err_3d'])
    e2.append(res['err_2d'])
    ang.append(float(geometry.rotation_angle_deg(np.asarray(p['Rt_01'])[:3, :3],
                                                 'trace')))
  ang = np.asarray(ang)
  summary = metrics.navi_correspondence_metrics(e3, e2, ang, bin_edges)
  idx = metrics.assign_bins(ang, bin_edges)
  rows = []
  for b in range(len(bin_edges) - 1):
    name = f'{bin_edges[b]:g}-{bin_edges[b + 1]:g}'
    rows.append({'bin': name, 'recall_2cm': summary[f'bin_{name}'],
                 'num_pairs': int((idx == b).sum())})
  return {'summary': summary, 'rows': rows, 'rel_angle_deg': ang}
