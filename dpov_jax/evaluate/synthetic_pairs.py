"""Keypoint / correspondence pairs with exact ground truth, for running the
Probe3D protocols without the real datasets.

* `synthetic_keypoint_pairs`: two views of one procedural scene
  (`tapkit.data.synthetic.render_view_pair`) at several relative rotations
  spanning the NAVI bins; keypoints are a subset of the generator's exact
  correspondences, binned by the rotation angle.
* `synthetic_correspondence_pairs`: the same views as NAVI-style pair dicts
  (XYZ grids, Rt_01, intrinsics) for `matching.run_correspondence_protocol`.
* `stereo_motorcycle_pair`: the real rectified stereo pair that scikit-image
  ships, with correspondences x_b = x_a - disparity, y_b = y_a.

Coordinates: the generator and scikit-image put pixel centres at integer
coordinates; keypoints here are in those pixel units of the (square) image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from dpov_jax.evaluate import matching
from dpov_jax.evaluate import metrics
from dpov_jax.evaluate import readers

# One rotation inside each 3DPoV NAVI bin [0,15), [15,30), [30,60), [60,120).
DEFAULT_ROTATIONS_DEG = (7.5, 22.5, 45.0, 90.0)


def _bin_name(angle_deg: float, edges: Sequence[float]) -> str:
  b = int(metrics.assign_bins(np.array([angle_deg]), edges)[0])
  if b < 0:
    raise ValueError(f'rotation {angle_deg} deg lies outside the bins {edges}')
  return f'{edges[b]:g}-{edges[b + 1]:g}'


def _object_tau(object_id: np.ndarray) -> float:
  """max(bbox h, w) / max(image h, w) of the pixels of objects (id >= 1)."""
  ys, xs = np.nonzero(object_id >= 1)
  if ys.size == 0:
    return 1.0
  side = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
  return float(side) / max(object_id.shape)


def _interior_mask(object_id: np.ndarray, depth: np.ndarray) -> np.ndarray:
  """[H, W] True where the 3x3 neighbourhood is one object, smooth depth."""
  h, w = depth.shape
  ok = np.zeros((h, w), bool)
  ok[1:-1, 1:-1] = True
  for dy in (-1, 0, 1):
    for dx in (-1, 0, 1):
      oid = object_id[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]
      dep = depth[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]
      ok[1:-1, 1:-1] &= (oid == object_id[1:-1, 1:-1]) & (
          np.abs(dep - depth[1:-1, 1:-1]) <= 0.05 * depth[1:-1, 1:-1])
  return ok


def synthetic_keypoint_pairs(
    seeds: Sequence[int] = (0, 1),
    rotations_deg: Sequence[float] = DEFAULT_ROTATIONS_DEG, *,
    size: int = 112, num_kps: int = 20, bbox: str = 'image',
    bin_edges: Sequence[float] = metrics.NAVI_BIN_EDGES_3DPOV,
    interior: bool = True,
    ) -> list[tuple[dict[str, np.ndarray], matching.KeypointPair]]:
  """Renders view pairs and picks keypoints among their exact correspondences.

  Args:
    seeds: scene seeds (each becomes one category, 'scene<seed>').
    rotations_deg: relative rotations; each pair's bin is the half-open
      `bin_edges` bin holding it.
    size: square image side in pixels.
    num_kps: keypoints per pair, drawn (seeded) among correspondences whose
      target lies inside the image.
    bbox: 'image' (tau = 1: PCK relative to the image side) or 'objects'
      (tau from the extent of the target's object pixels, id >= 1).
    bin_edges: rotation bin edges in degrees.
    interior: keep only source keypoints whose 3x3 neighbourhood in view A
      lies on one object with depth within 5 % (no occlusion boundary), so a
      keypoint's feature is not a blend of two surfaces.

  Returns:
    (raw generator output, KeypointPair) per (seed, rotation).
  """
  from tapkit.data import synthetic  # pylint: disable=g-import-not-at-top
  if bbox not in ('image', 'objects'):
    raise ValueError(f"bbox must be 'image' or 'objects', got {bbox!r}")
  out = []
  for seed in seeds:
    for rot in rotations_deg:
      d = synthetic.render_view_pair(seed, rot, size, size, num_pairs=None)
      p = d['pairs']
      inside = ((p[:, 2] >= 0) & (p[:, 2] <= size - 1) & (p[:, 3] >= 0) &
                (p[:, 3] <= size - 1))
      if interior:
        inside &= _interior_mask(d['object_id_a'], d['depth_a'])[
            p[:, 1].astype(int), p[:, 0].astype(int)]
      cand = np.flatnonzero(inside)
      if cand.size < num_kps:
        raise ValueError(f'seed {seed}, rotation {rot}: only {cand.size} '
                         'visible correspondences')
      rng = np.random.default_rng([seed, int(round(rot * 1000))])
      sel = p[np.sort(rng.choice(cand, num_kps, replace=False))]
      tau = 1.0 if bbox == 'image' else _object_tau(d['object_id_b'])
      valid = np.ones(num_kps, bool)
      pair = matching.KeypointPair(
          readers.normalize_image(d['rgb_a']),
          readers.normalize_image(d['rgb_b']),
          sel[:, :2].astype(np.float64), sel[:, 2:].astype(np.float64),
          valid, valid, tau, f'scene{seed}', _bin_name(rot, bin_edges))
      out.append((d, pair))
  return out


def keypoint_groups(
    pairs: Sequence[tuple[dict[str, np.ndarray], matching.KeypointPair]],
    with_all: bool = True) -> dict[tuple[str, str], list[
        matching.KeypointPair]]:
  """(category, bin) -> pairs, plus an 'all' bin per category if asked."""
  groups: dict[tuple[str, str], list[matching.KeypointPair]] = {}
  for _, p in pairs:
    groups.setdefault((p.category, str(p.bin)), []).append(p)
    if with_all:
      groups.setdefault((p.category, 'all'), []).append(p)
  return groups


def xyz_grid(depth: np.ndarray, intrinsics: Sequence[float]) -> np.ndarray:
  """[H, W] z-depth -> [H, W, 3] camera XYZ (generator convention)."""
  fx, fy, cx, cy = (float(v) for v in intrinsics)
  h, w = depth.shape
  ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  return np.stack([(xs - cx) * depth / fx, (ys - cy) * depth / fy, depth],
                  -1).astype(np.float32)


def synthetic_correspondence_pairs(
    seeds: Sequence[int] = (0,),
    rotations_deg: Sequence[float] = DEFAULT_ROTATIONS_DEG, *,
    size: int = 128, covisible_only: bool = False
    ) -> list[dict[str, np.ndarray]]:
  """NAVI-style pair dicts (see `matching.run_correspondence_protocol`).

  K for the 2D error is diag(f, f, 1), as Probe3D's NAVI intrinsics.

  Args:
    seeds, rotations_deg: scenes and relative rotations (degrees).
    size: square image side.
    covisible_only: mark view-0 pixels not visible in view 1 as missing
      (z = 0) so every source point has a true match (a sanity setting; NAVI
      itself keeps occluded points).
  """
  from tapkit.data import synthetic  # pylint: disable=g-import-not-at-top
  out = []
  for seed in seeds:
    for rot in rotations_deg:
      d = synthetic.render_view_pair(seed, rot, size, size,
                                     num_pairs=None if covisible_only else 10)
      f = float(d['intrinsics'][0])
      xyz0 = xyz_grid(d['depth_a'], d['intrinsics'])
      if covisible_only:
        vis = np.zeros((size, size), bool)
        vis[d['pairs'][:, 1].astype(int), d['pairs'][:, 0].astype(int)] = True
        xyz0[~vis] = 0.0
      out.append({
          'image_0': readers.normalize_image(d['rgb_a']),
          'image_1': readers.normalize_image(d['rgb_b']),
          'xyz_grid_0': xyz0,
          'xyz_grid_1': xyz_grid(d['depth_b'], d['intrinsics']),
          'Rt_01': np.asarray(d['relative_pose'], np.float64),
          'intrinsics_1': np.diag([f, f, 1.0]),
      })
  return out


def stereo_motorcycle_pair(size: int = 224, num_kps: int = 50, seed: int = 0,
                           ) -> tuple[dict[str, np.ndarray],
                                      matching.KeypointPair]:
  """scikit-image's Middlebury motorcycle pair as a keypoint pair.

  Both images are padded at the bottom/right with white to a square and
  resized to `size` (PIL bicubic), as the SPair preprocessing; keypoints are
  drawn (seeded) among left pixels with finite disparity whose right match
  x_b = x_a - disparity lies inside the image, then scaled by size / side.
  tau = 1 (bbox = whole image).

  Returns:
    ({'left', 'right' uint8, 'disparity' float32}, KeypointPair).
  """
  import skimage.data  # pylint: disable=g-import-not-at-top
  left, right, disp = skimage.data.stereo_motorcycle()
  h, w = disp.shape
  ys, xs = np.nonzero(np.isfinite(disp))
  xb = xs - disp[ys, xs]
  ok = (xb >= 0) & (xb <= w - 1)
  rng = np.random.default_rng(seed)
  idx = np.sort(rng.choice(np.flatnonzero(ok), num_kps, replace=False))
  side = max(h, w)
  scale = size / side
  src = np.stack([xs[idx], ys[idx]], -1).astype(np.float64) * scale
  trg = np.stack([xb[idx], ys[idx]], -1).astype(np.float64) * scale
  imgs = []
  for im in (left, right):
    sq = readers.pad_square(im, 255)
    imgs.append(readers.normalize_image(np.asarray(
        Image.fromarray(sq).resize((size, size), Image.Resampling.BICUBIC))))
  valid = np.ones(num_kps, bool)
  pair = matching.KeypointPair(imgs[0], imgs[1], src, trg, valid, valid, 1.0,
                               'motorcycle', 'stereo')
  return {'left': left, 'right': right, 'disparity': disp}, pair
