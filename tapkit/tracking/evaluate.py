r"""TAP-Vid 2D metrics of a tracker on clips with exact tracks (e.g. the synthetic clips).

    python -m tapkit.data.synthetic --out runs/synthetic --num_clips 8
    python -m tapkit.tracking.evaluate --clips runs/synthetic/synthetic --tracker lk

Ground truth: the clip's 3D tracks projected with its intrinsics (or its 2D tracks), its
visibility and its frames. Queries follow the TAP-Vid protocol:
  'first'    one query per track, at its first visible frame; frames after it are scored;
  'strided'  a query at every `stride`-th frame (0, 5, 10, ...) where the track is visible;
             every other frame is scored, so trackers must also track backwards
             (they are run with backward=True).
Tracks never visible are not queried. As in TAP-Vid, positions are compared at a
256 x 256 raster: both ground truth and predictions are scaled by (256 / W, 256 / H)
before the thresholds (1, 2, 4, 8, 16 px) apply. Metrics: average Jaccard (AJ), average
fraction of points within the thresholds (delta_avg) and occlusion accuracy (OA), from
`tapkit.metrics.tapvid.compute_tapvid_metrics`, per clip and averaged over clips.

With `--codec mp4` (or webm, gif), the frames go through an encode/decode round trip
with `tapkit.io.video` first, so the tracker sees what it would see reading a video file.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from tapkit import cli
from tapkit.data import geometry
from tapkit.data import tapvid3d
from tapkit.data.clip import Clip
from tapkit.io import video as video_io
from tapkit.metrics import tapvid
from tapkit.tracking import api

EVAL_SIZE = (256, 256)
STRIDE = 5
REPORTED = (('average_jaccard', 'AJ'), ('average_pts_within_thresh', 'delta_avg'),
            ('occlusion_accuracy', 'OA'))


def clip_ground_truth(clip: Clip) -> tuple[np.ndarray, np.ndarray]:
  """(tracks [T, N, 2] float32 pixels of the frames, visible [T, N] bool) of a clip."""
  if clip.tracks_xyz is None:
    return np.asarray(clip.tracks_uv, np.float32), np.asarray(clip.visibility, bool)
  if clip.intrinsics is None:
    raise ValueError(f'{clip.path or "clip"}: 3D tracks without intrinsics cannot be projected')
  # Points at or behind the camera are never visible; they land on the principal point.
  xy = geometry.project(np.asarray(clip.tracks_xyz, np.float32), clip.intrinsics,
                        behind='principal', min_depth=1e-6)
  return np.asarray(xy, np.float32), np.asarray(clip.visibility, bool)


def tapvid_queries(tracks: np.ndarray, visible: np.ndarray, query_mode: str,
                   stride: int = STRIDE) -> tuple[np.ndarray, np.ndarray]:
  """Queries of the TAP-Vid protocol (module docstring).

  Args:
    tracks: [T, N, 2] pixels.
    visible: [T, N] bool.
    query_mode: 'first' or 'strided'.
    stride: frame step of 'strided' queries.

  Returns:
    queries [M, 3] float32 (t, x, y) and track [M] int64, the ground-truth track of each.
  """
  if query_mode == 'first':
    track = np.flatnonzero(visible.any(axis=0))
    frame = np.argmax(visible[:, track], axis=0)
  elif query_mode == 'strided':
    frames = np.arange(0, visible.shape[0], stride)
    frame, track = np.nonzero(visible[frames])
    frame = frames[frame]
    order = np.lexsort((frame, track))  # grouped by track, then time
    frame, track = frame[order], track[order]
  else:
    raise ValueError(f"query_mode must be 'first' or 'strided', got {query_mode!r}")
  xy = tracks[frame, track]
  queries = np.concatenate([frame[:, None].astype(np.float32), xy], -1).astype(np.float32)
  return queries, track.astype(np.int64)


def score(pred: api.TrackResult, gt_tracks: np.ndarray, gt_visible: np.ndarray,
          track: np.ndarray, query_mode: str, frame_size: Sequence[int]) -> dict[str, float]:
  """TAP-Vid metrics of `pred` (one result per query) against ground-truth tracks `track`."""
  height, width = frame_size
  scale = np.array([EVAL_SIZE[1] / width, EVAL_SIZE[0] / height], np.float32)
  gt = (gt_tracks[:, track] * scale).transpose(1, 0, 2)[None]  # [1, M, T, 2]
  predicted = (pred.tracks * scale).transpose(1, 0, 2)[None]
  query_points = pred.queries[:, [0, 2, 1]][None]  # (t, y, x)
  metrics = tapvid.compute_tapvid_metrics(
      query_points, ~gt_visible[:, track].T[None], gt, ~pred.visible.T[None], predicted,
      query_mode)
  return {key: float(metrics[key][0]) for key, _ in REPORTED}


def roundtrip(frames: np.ndarray, codec: str, fps: float = 10.0) -> np.ndarray:
  """Frames [T, H, W, 3] after writing them as a `codec` video and reading them back
  (cropped to the original size: encoders pad odd sides)."""
  with tempfile.TemporaryDirectory() as tmp:
    path = video_io.write_video(os.path.join(tmp, f'clip.{codec}'), frames, fps)
    decoded = video_io.read_video(path).frames
  if decoded.shape[0] != frames.shape[0]:
    raise ValueError(f'{codec} round trip changed the frame count {frames.shape[0]} -> '
                     f'{decoded.shape[0]}')
  return decoded[:, :frames.shape[1], :frames.shape[2]]


def evaluate_clip(tracker: api.Tracker, frames: np.ndarray, gt_tracks: np.ndarray,
                  gt_visible: np.ndarray, query_mode: str = 'first') -> dict[str, float]:
  """Runs `tracker` on the TAP-Vid queries of one clip; returns AJ, delta_avg, OA.

  Args:
    tracker: any `api.Tracker`.
    frames: [T, H, W, 3] uint8.
    gt_tracks: [T, N, 2] pixels; gt_visible: [T, N] bool.
    query_mode: 'first' or 'strided' (module docstring).
  """
  queries, track = tapvid_queries(gt_tracks, gt_visible, query_mode)
  if not len(track):
    raise ValueError('no track is visible in any frame; nothing to evaluate')
  result = tracker.track(frames, queries, backward=query_mode == 'strided')
  return score(result, gt_tracks, gt_visible, track, query_mode, frames.shape[1:3])


def exact_tracker_for(gt_tracks: np.ndarray, gt_visible: np.ndarray,
                      query_mode: str) -> api.Tracker:
  """The 'exact' tracker holding the ground truth laid out per TAP-Vid query."""
  _, track = tapvid_queries(gt_tracks, gt_visible, query_mode)
  return api.make_tracker('exact', tracks=gt_tracks[:, track], visible=gt_visible[:, track])


def evaluate_files(tracker_name: str, paths: Sequence[str], *, checkpoint: str | None = None,
                   query_mode: str = 'first', codec: str | None = None,
                   tracker_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
  """Per-clip metric rows of one tracker on TAPVid-3D clip files (with frames)."""
  tracker = None
  if tracker_name != 'exact':
    tracker = api.make_tracker(tracker_name, checkpoint, **(tracker_options or {}))
  rows = []
  for path in paths:
    clip = tapvid3d.load_clip(path)
    frames = clip.frames
    if codec:
      frames = roundtrip(frames, codec)
    gt_tracks, gt_visible = clip_ground_truth(clip)
    clip_tracker = tracker or exact_tracker_for(gt_tracks, gt_visible, query_mode)
    row = {'clip': os.path.splitext(os.path.basename(path))[0]}
    row.update(evaluate_clip(clip_tracker, frames, gt_tracks, gt_visible, query_mode))
    rows.append(row)
  return rows


def mean_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
  return {'clip': 'mean', **{k: float(np.mean([r[k] for r in rows])) for k, _ in REPORTED}}


def main(argv: Sequence[str] | None = None) -> int:
  from tapkit.viz import tables  # pylint: disable=g-import-not-at-top

  parser = cli.ArgumentParser(prog='python -m tapkit.tracking.evaluate',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--clips', nargs='+', required=True,
                      help='TAPVid-3D clip files with frames, or folders of them')
  parser.add_argument('--tracker', default='lk', choices=api.TRACKERS)
  parser.add_argument('--checkpoint')
  parser.add_argument('--query_mode', default='first', choices=tapvid.QUERY_MODES)
  parser.add_argument('--codec', choices=('mp4', 'webm', 'gif'),
                      help='encode/decode the frames as this video format first')
  parser.add_argument('--num_clips', type=int, help='evaluate at most this many clips')
  parser.add_argument('--csv', help='also write the per-clip table here')
  args = parser.parse_args(argv)
  paths = []
  for item in args.clips:
    paths += ([os.path.join(item, n) for n in sorted(os.listdir(item)) if n.endswith('.npz')]
              if os.path.isdir(item) else [item])
  paths = paths[:args.num_clips] if args.num_clips else paths
  if not paths:
    parser.error('no clip files found')
  rows = evaluate_files(args.tracker, paths, checkpoint=args.checkpoint,
                        query_mode=args.query_mode, codec=args.codec)
  rows.append(mean_row(rows))
  columns = ['clip'] + [k for k, _ in REPORTED]
  renamed = [{'clip': r['clip'], **{name: r[k] for k, name in REPORTED}} for r in rows]
  print(f'tracker {args.tracker}, query mode {args.query_mode}'
        f'{", via " + args.codec if args.codec else ""}, {len(paths)} clips')
  print(tables.markdown_table(renamed, ['clip'] + [name for _, name in REPORTED]))
  if args.csv:
    tables.write_csv(args.csv, rows, columns)
  return 0


if __name__ == '__main__':
  sys.exit(cli.run(main))
