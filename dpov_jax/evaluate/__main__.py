"""One-command Probe3D evaluation of one or more backbones.

    python -m dpov_jax.evaluate --task all --backbones smoke,/tmp/ft.safetensors \
        --names base,finetuned --out /tmp/eval --preset smoke

Tasks:
  keypoints  keypoint transfer (PCK@0.1 of the bbox, per bin + 'all'; SPair with
             --spair_dir, else synthetic view pairs binned by relative rotation)
             and NAVI-style dense correspondences (recall@2cm per rotation bin;
             NAVI with --navi_dir, else synthetic pairs). Writes keypoints.md,
             keypoints.csv, correspondence.csv and PNGs (matches, feature PCA).
  depth      DPT depth probe trained on frozen features per backbone (engine,
             configs/probe3d.py), scale-aware and scale-invariant RMSE / AbsRel /
             delta1-3. Writes depth.md, depth.csv, PNGs (depth maps, errors).
  normals    surface-normal probe; mean / median angular error (pooled), per-
             image RMSE and % within 11.25 / 22.5 / 30 deg. normals.md/.csv, PNGs.
  all        the three, then report.md gathering every table and figure.

Backbones: a preset name (random init: smoke tests), a .safetensors / .pth /
.npz checkpoint, or a 3DPoV training workdir. A malformed SPair / NAVI file
(annotation JSON, image, depth PNG) is skipped and listed with its reason at the
end; errors that leave nothing to evaluate (missing folders, no readable pair, a
bad checkpoint) end the command with exit status 2 and one `error:` line naming
the file and field.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import tqdm
from etils import epy

from dpov_jax.evaluate import metrics
from tapkit import cli
from tapkit.io import batch as batch_lib
from tapkit.ops import numeric
from tapkit.train import config as train_config
from tapkit.viz import tables

# Loaded on first use, so `--help` and argument mistakes answer without importing JAX.
with epy.lazy_imports():
  from dpov_jax.evaluate import matching
  from dpov_jax.evaluate import probe_task
  from dpov_jax.evaluate import readers
  from dpov_jax.evaluate import report
  from dpov_jax.evaluate import synthetic_pairs

TASKS = ('keypoints', 'depth', 'normals', 'all')


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = cli.ArgumentParser(prog='python -m dpov_jax.evaluate', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--task', choices=TASKS, required=True)
  p.add_argument('--backbones', required=True,
                 help='comma-separated presets / checkpoint files / workdirs')
  p.add_argument('--names', default='', help='comma-separated table labels')
  p.add_argument('--arch', default=None, help='preset of checkpoints that need one')
  p.add_argument('--out', required=True, help='output folder')
  p.add_argument('--seed', type=int, default=0, help='init seed of preset backbones')
  # Keypoints / correspondences.
  p.add_argument('--spair_dir', default='', help='SPair-71k root')
  p.add_argument('--spair_image_size', type=int, default=800)
  p.add_argument('--num_instances', type=int, default=200, help='pairs per class and bin')
  p.add_argument('--protocol', choices=('probe3d', '3dpov_val'), default='probe3d')
  p.add_argument('--navi_dir', default='', help='NAVI root (resize_navi.py layout)')
  p.add_argument('--navi_max_pairs', type=int, default=0, help='0 = all test pairs')
  p.add_argument('--bin_edges', default='0,15,30,60,120', help='rotation bin edges (deg)')
  p.add_argument('--synthetic_seeds', default='0,1,2', help='scenes of synthetic pairs')
  p.add_argument('--synthetic_size', type=int, default=112, help='side of synthetic pairs')
  p.add_argument('--num_kps', type=int, default=20, help='keypoints per synthetic pair')
  p.add_argument('--num_corr', type=int, default=1000)
  # Probes.
  p.add_argument('--preset', choices=('smoke', 'default'), default='smoke',
                 help='configs/probe3d.py preset')
  p.add_argument('--steps', type=int, default=0, help='override total_steps (0 = preset)')
  p.add_argument('--head', choices=('dpt', 'linear'), default=None)
  p.add_argument('--features', choices=('precompute', 'online'), default=None)
  p.add_argument('--nyu_train_dir', default='', help='GeoNet .mat folder')
  p.add_argument('--nyu_test', default='', help='nyuv2_snorm_all .pkl / .npz')
  p.add_argument('--max_train', type=int, default=None)
  p.add_argument('--max_test', type=int, default=None)
  return p.parse_args(argv)


# ----------------------------------------------------------------------------
# Keypoints and correspondences.


def _keypoint_groups(args: argparse.Namespace, edges: Sequence[float],
                     batch: batch_lib.BatchRun | None = None):
  """(groups, column names, description) of the keypoint-transfer data; bad files are
  recorded in `batch` and skipped."""
  if args.spair_dir:
    ds = readers.SPairDataset(args.spair_dir, 'test', batch=batch)
    if args.protocol == 'probe3d':
      groups = ds.probe3d_groups(args.spair_image_size, args.num_instances)
    else:
      groups = ds.dpov_val_groups(args.spair_image_size)
    if not groups:
      raise ValueError(f'{args.spair_dir}: no SPair test pairs selected')
    bins = ['0', '1', '2'] + (['all'] if args.protocol == 'probe3d' else [])
    return groups, bins, (f'SPair-71k test, {args.protocol}, {args.spair_image_size} px, '
                          f'PCK@0.1 of the target bbox (%), bins = viewpoint variation')
  seeds = [int(s) for s in args.synthetic_seeds.split(',') if s]
  rots = [0.5 * (lo + hi) for lo, hi in zip(edges[:-1], edges[1:])]
  pairs = synthetic_pairs.synthetic_keypoint_pairs(seeds, rots, size=args.synthetic_size,
                                                   num_kps=args.num_kps, bin_edges=edges)
  groups = synthetic_pairs.keypoint_groups(pairs)
  bins = [f'{lo:g}-{hi:g}' for lo, hi in zip(edges[:-1], edges[1:])] + ['all']
  return groups, bins, (f'synthetic view pairs ({len(seeds)} scenes x {len(rots)} rotations, '
                        f'{args.synthetic_size} px, {args.num_kps} keypoints), PCK@0.1 of the '
                        'image side (%), bins = relative rotation (deg), mean over scenes')


def _correspondence_pairs(args: argparse.Namespace, batch: batch_lib.BatchRun | None = None
                          ) -> tuple[list[dict[str, Any]], str]:
  if args.navi_dir:
    data = readers.parse_navi(args.navi_dir, batch)
    inst = readers.navi_instances(data, 'test')
    if not inst:
      raise ValueError(f'{args.navi_dir}: no NAVI wild_set test views')
    plist = readers.navi_pairs(data, inst)
    if args.navi_max_pairs:
      plist = plist[:args.navi_max_pairs]
    pairs = []
    for p in tqdm.tqdm(plist, desc='NAVI pairs', leave=False):
      load = lambda p=p: readers.load_navi_pair(args.navi_dir, data, p)
      pair = load() if batch is None else batch.run(f'{args.navi_dir} pair {p[:4]}', load)
      if pair is not None:
        pairs.append(pair)
    if not pairs:
      raise ValueError(f'{args.navi_dir}: no NAVI pair could be read')
    return pairs, f'NAVI wild_set, {len(pairs)} pairs'
  seeds = [int(s) for s in args.synthetic_seeds.split(',') if s]
  pairs = synthetic_pairs.synthetic_correspondence_pairs(seeds, size=args.synthetic_size)
  return pairs, f'synthetic view pairs ({len(pairs)}, {args.synthetic_size} px)'


def run_keypoints(backbones: Sequence[probe_task.Backbone], args: argparse.Namespace,
                  out: str, batch: batch_lib.BatchRun | None = None
                  ) -> list[tuple[str, str]]:
  """Both matching protocols for every backbone; returns Markdown sections. Malformed
  dataset files are recorded in `batch` (and skipped) when one is given."""
  edges = [float(x) for x in args.bin_edges.split(',')]
  sections = []
  kp_rows, corr_rows, bars = [], [], {}
  figs = []
  groups, bins, kp_desc = _keypoint_groups(args, edges, batch)
  do_corr = bool(args.navi_dir) or not args.spair_dir
  corr_pairs, corr_desc = _correspondence_pairs(args, batch) if do_corr else ([], '')
  corr_bins = [f'{lo:g}-{hi:g}' for lo, hi in zip(edges[:-1], edges[1:])]
  # One pair per bin for the match drawings (the first category's).
  viz_pairs = {}
  for (_, b), plist in groups.items():
    if str(b) != 'all' and str(b) not in viz_pairs and plist:
      viz_pairs[str(b)] = plist[0]
  for bk in backbones:
    fn = probe_task.dense_features_fn(bk)
    t0 = time.time()
    res = matching.run_keypoint_protocol(groups, fn, protocol=args.protocol)
    row = {'model': bk.name}
    row.update({r['bin']: r['recall'] for r in res['rows']})
    if 'mean' in res:
      row['mean'] = res['mean']
    row['pairs'] = sum(len(v) for (_, b), v in groups.items() if str(b) != 'all')
    kp_rows.append(row)
    for b in bins:
      bars.setdefault(b, {})[bk.name] = row.get(b, float('nan'))
    if corr_pairs:
      cres = matching.run_correspondence_protocol(corr_pairs, fn, bin_edges=edges,
                                                  num_corr=args.num_corr)
      crow = {'model': bk.name}
      crow.update({r['bin']: r['recall_2cm'] for r in cres['rows']})
      crow.update({k: v for k, v in cres['summary'].items() if k.startswith('recall_')})
      corr_rows.append(crow)
    print(f'[keypoints] {bk.name}: {time.time() - t0:.1f}s', flush=True)
    # Qualitative: matches per bin and a PCA map of the first pair.
    for b, pair in viz_pairs.items():
      side = pair.src_image.shape[1]
      feats = np.asarray(numeric.l2_normalize(fn(np.stack([pair.src_image,
                                                            pair.trg_image]))))
      pred = np.asarray(matching.transfer_keypoints(
          feats[0], feats[1], np.asarray(pair.src_kps, np.float32) / side)) * side
      err = np.linalg.norm(pred / side - np.asarray(pair.trg_kps) / side, axis=-1)
      correct = (err / pair.threshold_scale) < metrics.SPAIR_PCK_ALPHA
      ok = np.asarray(pair.src_valid) & np.asarray(pair.trg_valid)
      path = os.path.join(out, 'figures', f'matches_{bk.name}_bin{b}.png')
      figs.append((f'{bk.name}, bin {b}: green = correct', report.keypoint_figure(
          pair.src_image, pair.trg_image, np.asarray(pair.src_kps)[ok], pred[ok],
          correct[ok], path)))
    first = next(iter(viz_pairs.values()))
    images = np.stack([first.src_image, first.trg_image])
    figs.append((f'{bk.name}: feature PCA (block L-1)', report.pca_figure(
        images, fn(images), ['source', 'target'],
        os.path.join(out, 'figures', f'pca_{bk.name}.png'))))

  kp_cols = ['model'] + bins + (['mean'] if args.protocol == '3dpov_val' else []) + ['pairs']
  tables.write_csv(os.path.join(out, 'keypoints.csv'), kp_rows, kp_cols)
  body = kp_desc + '\n\n' + tables.markdown_table(kp_rows, kp_cols, '.1f')
  sections.append(('Keypoint transfer', body))
  if corr_rows:
    rec_cols = ['recall_1cm', 'recall_2cm', 'recall_5cm', 'recall_5px', 'recall_25px',
                'recall_50px']
    corr_cols = ['model'] + corr_bins + rec_cols
    tables.write_csv(os.path.join(out, 'correspondence.csv'), corr_rows, corr_cols)
    sections.append(('Dense correspondence', (
        f'{corr_desc}; per rotation bin: mean over pairs of recall@2cm (%); recall_*: '
        f'over all {args.num_corr}-best ratio-test matches (%)\n\n' +
        tables.markdown_table(corr_rows, corr_cols, '.1f'))))
  bar = report.bar_figure(bars, 'Keypoint transfer PCK@0.1', 'recall (%)',
                          os.path.join(out, 'figures', 'keypoints_bars.png'))
  sections.append(('Figures', _figure_md([('recall per bin', bar)] + figs, out)))
  report.write_markdown(sections, 'Keypoints', os.path.join(out, 'keypoints.md'))
  return sections


def _figure_md(figs: Sequence[tuple[str, str]], out: str) -> str:
  return '\n\n'.join(f'![{cap}]({os.path.relpath(path, out)})' for cap, path in figs)


# ----------------------------------------------------------------------------
# Probes.


def probe_config(args: argparse.Namespace, task: str):
  config = train_config.load_config(f'configs/probe3d.py:{args.preset}')
  config.probe.task = task
  if args.steps:
    config.total_steps = args.steps
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, args.steps // 10)
  if args.head:
    config.probe.head = args.head
  if args.features:
    config.probe.features = args.features
  if args.nyu_train_dir or args.nyu_test:
    config.data.source = 'nyu'
    config.data.nyu_train_dir = args.nyu_train_dir
    config.data.nyu_test = args.nyu_test
    config.probe.max_depth = 10.0
  elif args.navi_dir:
    config.data.source = 'navi'
    config.data.navi_dir = args.navi_dir
    config.data.image_size = 512
    config.probe.max_depth = 1.0
  if args.max_train is not None:
    config.data.max_train = args.max_train
  if args.max_test is not None:
    config.data.max_test = args.max_test
  return config


DEPTH_COLUMNS = ('model', 'SA RMSE', 'SA AbsRel', 'SA d1', 'SA d2', 'SA d3', 'SI RMSE',
                 'SI AbsRel', 'SI d1', 'SI d2', 'SI d3')
NORMAL_COLUMNS = ('model', 'mean', 'median', 'RMSE', '11.25', '22.5', '30')


def _table_row(task: str, name: str, m: dict[str, float]) -> dict[str, Any]:
  if task == 'depth':
    row = {'model': name}
    for tag in ('sa', 'si'):
      t = tag.upper()
      row[f'{t} RMSE'] = m[f'{tag}/rmse']
      row[f'{t} AbsRel'] = m[f'{tag}/abs_rel']
      for k in (1, 2, 3):
        row[f'{t} d{k}'] = 100.0 * m[f'{tag}/d{k}']
    return row
  return {'model': name, 'mean': m['mean'], 'median': m['median'], 'RMSE': m['rmse'],
          '11.25': 100.0 * m['d1'], '22.5': 100.0 * m['d2'], '30': 100.0 * m['d3']}


def run_probe(task: str, backbones: Sequence[probe_task.Backbone], args: argparse.Namespace,
              out: str) -> list[tuple[str, str]]:
  """Trains and evaluates the `task` probe per backbone; returns Markdown sections."""
  config = probe_config(args, task)
  train = probe_task.load_probe_data(config, 'train')
  test = probe_task.load_probe_data(config, 'test')
  rows, figs, curves, bars = [], [], {}, {}
  for bk in backbones:
    t0 = time.time()
    res = probe_task.train_and_evaluate(config, os.path.join(out, 'probes', f'{task}_{bk.name}'),
                                        bk, train, test)
    m = res['metrics']
    row = _table_row(task, bk.name, m)
    row['train s'] = time.time() - t0
    rows.append(row)
    curves[bk.name] = res['loss_curve']
    key = ('SI d1', 'SA d1') if task == 'depth' else ('11.25', '30')
    for k in key:
      bars.setdefault(k, {})[bk.name] = row[k]
    path = os.path.join(out, 'figures', f'{task}_{bk.name}.png')
    if task == 'depth':
      report.depth_figure(res['examples'], float(config.probe.max_depth), path)
      cap = f'{bk.name}: image | gt depth | predicted | abs error (m)'
    else:
      report.normals_figure(res['examples'], path)
      cap = f'{bk.name}: image | gt normals | predicted | angular error (0-60 deg)'
    figs.append((cap, path))
    print(f'[{task}] {bk.name}: {row["train s"]:.1f}s ' + ', '.join(
        f'{k}={v:.3f}' for k, v in m.items()), flush=True)
  cols = list(DEPTH_COLUMNS if task == 'depth' else NORMAL_COLUMNS)
  tables.write_csv(os.path.join(out, f'{task}.csv'), rows, cols + ['train s'])
  rc = res['config']
  if task == 'depth':
    desc = ('RMSE in metres, AbsRel, d_k = % of pixels with max(gt/pred, pred/gt) < 1.25^k; '
            'per image over valid pixels, mean over images; SA = raw prediction, SI = '
            'per-image least-squares scale and shift')
  else:
    desc = ('angular error in degrees: mean / median pooled over all valid pixels, RMSE and '
            '% within 11.25 / 22.5 / 30 deg per image then averaged')
  desc += (f'. Data: {config.data.source} ({len(train)} train / {len(test)} test images); '
           f'probe {rc.probe.head} (hidden {rc.probe.hidden_dim}), {rc.probe.output}, '
           f'{rc.total_steps} steps of batch {rc.batch_size}, preset {args.preset}.')
  loss = report.loss_figure(curves, f'{task} probe', os.path.join(out, 'figures',
                                                                    f'{task}_loss.png'))
  bar = report.bar_figure(bars, f'{task} probe', '%', os.path.join(out, 'figures',
                                                                    f'{task}_bars.png'))
  table = tables.markdown_table(rows, cols, '.2f')
  sections = [(f'{task.capitalize()} probe', desc + '\n\n' + table),
              (f'{task.capitalize()} figures', _figure_md(
                  [('training loss', loss), ('summary', bar)] + figs, out))]
  report.write_markdown(sections, f'{task.capitalize()} probe', os.path.join(out, f'{task}.md'))
  return sections


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  specs = [s for s in args.backbones.split(',') if s]
  names = [s for s in args.names.split(',') if s] if args.names else [None] * len(specs)
  if len(names) != len(specs):
    print(f'error: --names has {len(names)} entries for {len(specs)} backbones',
          file=sys.stderr)
    return 2
  batch = batch_lib.BatchRun('dataset file')
  try:
    backbones = [probe_task.load_backbone(s, n, arch=args.arch, seed=args.seed)
                 for s, n in zip(specs, names)]
    labels = [b.name for b in backbones]
    if len(set(labels)) != len(labels):
      raise ValueError(f'backbone labels {labels} repeat; pass --names')
    os.makedirs(args.out, exist_ok=True)
    tasks = ('keypoints', 'depth', 'normals') if args.task == 'all' else (args.task,)
    sections = [('Backbones', '\n'.join(f'- {b.name}: {b.origin}' for b in backbones))]
    t0 = time.time()
    for task in tasks:
      if task == 'keypoints':
        sections += run_keypoints(backbones, args, args.out, batch)
      else:
        sections += run_probe(task, backbones, args, args.out)
    if args.task == 'all':
      report.write_markdown(sections, 'Probe3D evaluation', os.path.join(args.out, 'report.md'))
    print(f'done in {time.time() - t0:.0f}s; tables in {args.out}', flush=True)
    if batch.failures:
      print(f'skipped {len(batch.failures)} malformed dataset file(s) or pair(s):')
      for key, reason in batch.failures:
        print(f'  {key}: {reason}')
  except (readers.DatasetFormatError, FileNotFoundError, ValueError, KeyError) as e:
    print(f'error: {e}', file=sys.stderr)
    for key, reason in batch.failures:  # Why nothing was left to evaluate.
      print(f'  skipped {key}: {reason}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(cli.run(main))
