"""Writes the Colab notebooks of this folder from the cell sources below.

    python colabs/_build.py          # after editing a cell here

The notebooks are stored without outputs; tests/colabs/test_notebooks.py checks that
they equal what this script writes and executes each one headless in fast mode
(TAPKIT_NOTEBOOK_FAST=1).
"""

from __future__ import annotations

import os
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))

INSTALL = r'''# Set-up. On Colab this clones the repository and installs it (a few minutes, CPU is enough);
# in a local checkout installed with `pip install -e ".[dev]"` it does nothing.
import os
import sys

REPO_URL = 'https://github.com/tapkit3d/tapkit3d.git'  # your clone's URL if you use a fork
if 'google.colab' in sys.modules and not os.path.isdir('/content/tapkit3d'):
  import subprocess
  subprocess.run(['git', 'clone', '--depth', '1', REPO_URL, '/content/tapkit3d'], check=True)
  subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '-e', '/content/tapkit3d'],
                 check=True)
  sys.path.insert(0, '/content/tapkit3d')

# TAPKIT_NOTEBOOK_FAST=1 (set by the tests) shrinks every size and step count;
# TAPKIT_NOTEBOOK_WORK sets where outputs go (default /tmp/tapkit_notebooks/<notebook>).
FAST = os.environ.get('TAPKIT_NOTEBOOK_FAST', '') == '1'
print('fast mode' if FAST else 'full mode')'''


def _header(title: str, text: str) -> str:
  return f'# {title}\n\n{text}'


TAPVID3D_EVAL = [
    ('md', _header('TAPVid-3D: load clips, look at 3D tracks, evaluate predictions', '''
This notebook reads TAPVid-3D clip files (`tapkit.data.tapvid3d`), shows their tracks in 2D
and 3D (`tapkit.viz`) and scores predictions with the official TAPVid-3D metrics
(`tapkit.metrics.tapvid3d`, equal to tapnet's on the golden cases).

By default it renders a few synthetic clips in the TAPVid-3D layout. To use the real
benchmark, set `TAPVID3D_DIR` to the folder holding `adt/`, `pstudio/` and `drivetrack/`
(as written by tapnet's TAPVid-3D download scripts) and `SPLIT` to `minival` or `full_eval`.''')),
    ('code', INSTALL),
    ('code', r'''TAPVID3D_DIR = ''   # e.g. '/data/tapvid3d'; '' = synthetic clips
SPLIT = 'minival'
WORK = os.path.join(os.environ.get('TAPKIT_NOTEBOOK_WORK', '/tmp/tapkit_notebooks'), 'tapvid3d_eval')

import glob
import numpy as np
from tapkit.data import synthetic, tapvid3d

if not TAPVID3D_DIR:
  TAPVID3D_DIR = os.path.join(WORK, 'gt')
  synthetic.main(['--out', TAPVID3D_DIR, '--num_clips', '2' if FAST else '4', '--seed', '0',
                  '--num_frames', '12' if FAST else '24', '--height', '64' if FAST else '128',
                  '--width', '64' if FAST else '128', '--num_tracks', '64' if FAST else '256'])
  pattern = '*/*.npz'
else:
  pattern = None
files = sorted(glob.glob(os.path.join(TAPVID3D_DIR, pattern or '*/*.npz')))
print(len(files), 'clip files, e.g.', files[0])
clip = tapvid3d.load_clip(files[0])
print('tracks_xyz', clip.tracks_xyz.shape, 'visibility', clip.visibility.shape,
      'frames', clip.frames.shape, 'intrinsics (fx, fy, cx, cy)', clip.intrinsics)'''),
    ('md', '## Tracks painted on the video and in 3D'),
    ('code', r'''from tapkit.viz import notebook, tracks2d, tracks3d

painted = tracks2d.paint_clip(clip, color_by='rainbow')
t = len(painted)
notebook.show(np.concatenate([painted[0], painted[t // 2], painted[-1]], axis=1))
notebook.show(tracks3d.plot_clip(clip, color_by='track'))
view = tracks3d.clip_html(os.path.join(WORK, 'clip_view.html'), clip, title=os.path.basename(files[0]))
notebook.show_html(view)  # drag to rotate, slider for time'''),
    ('md', '''## Evaluate predictions

Predictions are `.npz` files with `tracks_XYZ` [T, N, 3] and `visibility` [T, N] under the same
relative paths as the ground truth. Here the "predictions" are the ground truth plus noise
that grows with depth, with a few visibility flags flipped.'''),
    ('code', r'''from tapkit import evaluate_tapvid3d

pred_dir = os.path.join(WORK, 'pred')
rng = np.random.default_rng(0)
for path in files:
  gt = tapvid3d.load_clip(path)
  noise = rng.normal(size=gt.tracks_xyz.shape) * 0.02 * gt.tracks_xyz[..., 2:3]
  visible = gt.visibility ^ (rng.random(gt.visibility.shape) < 0.05)
  rel = os.path.relpath(path, TAPVID3D_DIR)
  os.makedirs(os.path.dirname(os.path.join(pred_dir, rel)), exist_ok=True)
  tapvid3d.save_predictions(os.path.join(pred_dir, rel), gt.tracks_xyz + noise, visible)

results = evaluate_tapvid3d.evaluate_directory(
    TAPVID3D_DIR, pred_dir, split=SPLIT, glob=pattern, depth_scalings=('median', 'none'),
    progress=False)
print(evaluate_tapvid3d.format_table(results))
AJ = results['overall']['median']['average_jaccard']
print(f'average Jaccard (median scaling): {AJ:.4f}')'''),
    ('md', '''The same metric on arrays, for one clip (`compute_tapvid3d_metrics` has the official
signature; here ground truth against itself, so every number is 1):'''),
    ('code', r'''from tapkit.metrics import tapvid3d as metrics3d

m = metrics3d.compute_tapvid3d_metrics(
    gt_occluded=~clip.visibility, gt_tracks=clip.tracks_xyz, pred_occluded=~clip.visibility,
    pred_tracks=clip.tracks_xyz, intrinsics_params=clip.intrinsics, scaling='median',
    order='t n')
print({k: round(float(np.mean(v)), 4) for k, v in m.items() if k in ('average_jaccard', 'occlusion_accuracy')})'''),
]


TRAJAN3D_DEMO = [
    ('md', _header('TRAJAN / 3DSPA: reconstruct point tracks and score motion realism', '''
3DSPA encodes a set of 3D point tracks into a small latent and decodes held-out tracks from
it. How well held-out tracks are reconstructed is a realism score: implausible motion (here:
jitter and teleports) is harder to reconstruct.

`CHECKPOINT` takes the official `3dspa_ckpt.npz` / `track_autoencoder_ckpt.npz` (set `CONFIG`
to `configs/spa3d.py:default` / `configs/trajan.py:default`) or one of our training workdirs.
Left empty, the notebook trains the small `smoke` model for a few steps first (a few minutes
on a CPU; seconds in fast mode). `CLIPS_DIR` takes TAPVid-3D clips; empty = synthetic ones.''')),
    ('code', INSTALL),
    ('code', r'''CHECKPOINT = ''   # official .npz or a trajan3d.train workdir; '' = train the smoke model
CONFIG = None     # 'configs/spa3d.py:default' for the official 3dspa_ckpt.npz
CLIPS_DIR = ''    # TAPVid-3D clips ('*/*.npz'); '' = synthetic
WORK = os.path.join(os.environ.get('TAPKIT_NOTEBOOK_WORK', '/tmp/tapkit_notebooks'), 'trajan3d_demo')

from tapkit.train import config as config_lib, launch, loop
from trajan3d import task

if not CHECKPOINT:
  CHECKPOINT = os.path.join(WORK, 'spa3d')
  config = config_lib.load_config('configs/spa3d.py:smoke')
  config.total_steps = 3 if FAST else 300
  if FAST:
    config.data.synthetic.num_train = 4
    config.evals.eval.every_steps = 0
    config.optimizer.warmup_steps = 1
  launch.save_config(config, CHECKPOINT)
  loop.train(config, CHECKPOINT, task.build_method(config, workdir=CHECKPOINT))'''),
    ('code', r'''import glob
import numpy as np
from tapkit.data import synthetic, tapvid3d
from trajan3d import score

if not CLIPS_DIR:
  CLIPS_DIR = os.path.join(WORK, 'clips')
  synthetic.main(['--out', CLIPS_DIR, '--num_clips', '2' if FAST else '6', '--seed', '777',
                  '--num_frames', '24', '--height', '64', '--width', '64'])
files = sorted(glob.glob(os.path.join(CLIPS_DIR, '*/*.npz')))
config, recon = score.reconstructor_from_checkpoint(CHECKPOINT, CONFIG)
num_support, num_query = int(config.evals.eval.num_support), int(config.evals.eval.num_query)
print(f'model {config.model.kind}, {len(files)} clips, support {num_support} / query {num_query}')'''),
    ('md', '''## Realism score: clean vs corrupted

Each video's tracks are split into folds; every fold is decoded from the other tracks and
scored with the TAPVid-3D average Jaccard. The corrupted copy adds jitter and teleports.'''),
    ('code', r'''rows, per_frame = [], {}
for i, path in enumerate(files):
  clean = score.track_set_from_clip(tapvid3d.load_clip(path))
  corrupted = score.corrupt_track_set(clean, seed=i)
  row_c, pf_c = score.score_track_set(recon, clean, num_support, num_query, seed=i)
  row_x, pf_x = score.score_track_set(recon, corrupted, num_support, num_query, seed=i)
  rows.append((clean.name, row_c['score'], row_x['score']))
  if i == 0:
    per_frame = {'clean': pf_c['jaccard'], 'corrupted': pf_x['jaccard']}
print(f'{"clip":<12} {"clean":>8} {"corrupted":>10}')
for name, c, x in rows:
  print(f'{name:<12} {c:8.4f} {x:10.4f}')
SCORES = np.array([[c, x] for _, c, x in rows])
assert np.isfinite(SCORES).all()'''),
    ('code', r'''from tapkit.viz import notebook, plots

notebook.show(plots.plot_score_curves(per_frame, title='per-frame realism score, first clip',
                                      ylabel='Jaccard', ylim=(0, 1)))'''),
    ('md', '## Reconstructed tracks next to the ground truth'),
    ('code', r'''from tapkit.viz import tracks2d, tracks3d
from trajan3d import evaluators, input_pipeline

clip = tapvid3d.load_clip(files[0])
ts = score.track_set_from_clip(clip)
n = ts.tracks.shape[1]
query = np.arange(min(num_query, n // 2))
support = np.arange(len(query), n)[:num_support]
tracks_model = input_pipeline.model_tracks(ts, recon.coords)
pred, pred_visible = evaluators.reconstruct(recon, ts, tracks_model, support, query,
                                            ts.query_frames)
gt_px = tracks2d.project_points(clip.tracks_xyz[:, query], clip.intrinsics)
if recon.coords == 'xyz':  # 3DSPA: metres in the camera frame
  pred_px = tracks2d.project_points(pred, clip.intrinsics)
else:  # TRAJAN: normalised image coordinates
  pred_px = tracks2d.to_pixels(pred, *clip.frames.shape[1:3], tracks_first=False)
colors = tracks2d.track_colors(gt_px, clip.visibility[:, query])
last = len(clip.frames) - 1
gt_img = tracks2d.paint_tracks(clip.frames, gt_px, clip.visibility[:, query], colors)[last]
pred_img = tracks2d.paint_tracks(clip.frames, pred_px, pred_visible, colors)[last]
notebook.show(np.concatenate([gt_img, pred_img], axis=1))  # left: ground truth, right: 3DSPA
if recon.coords == 'xyz':
  notebook.show(tracks3d.plot_tracks_3d(pred, visible=pred_visible, color_by='track', colors=colors))'''),
]


TRACKS4D_DEMO = [
    ('md', _header('TracksTo4D: 3D points, cameras and motion from 2D tracks', '''
One forward pass of TracksTo4D turns the 2D point tracks of a casual video into per-frame 3D
points, camera poses and a per-point motion level; a few steps of test-time fine-tuning on
the video's own tracks refine them.

`CHECKPOINT` takes an official TracksTo4D `.pt` (or flat `.npz`) or one of our
`tracks4d.train` workdirs; empty = train the `smoke` model here first. `INPUT` takes a
TracksTo4D `.npz` (`pred_tracks`, `pred_visibility`, ...) or a TAPVid-3D clip; empty = a
synthetic dynamic scene with ground-truth depth and poses.''')),
    ('code', INSTALL),
    ('code', r'''CHECKPOINT = ''   # official .pt / .npz, or a tracks4d.train workdir; '' = train the smoke model
INPUT = ''        # a TracksTo4D .npz or TAPVid-3D clip; '' = synthetic
FINETUNE_STEPS = 2 if FAST else 100
WORK = os.path.join(os.environ.get('TAPKIT_NOTEBOOK_WORK', '/tmp/tapkit_notebooks'), 'tracks4d_demo')

from tapkit.train import config as config_lib, launch, loop
from tracks4d import task

if not CHECKPOINT:
  CHECKPOINT = os.path.join(WORK, 'tracks4d')
  config = config_lib.load_config('configs/tracks4d.py:smoke')
  config.total_steps = 3 if FAST else 300
  if FAST:
    config.data.synthetic.num_train = 2
    config.data.synthetic.num_eval = 1
    config.evals.eval.every_steps = 0
    config.optimizer.warmup_steps = 1
  launch.save_config(config, CHECKPOINT)
  loop.train(config, CHECKPOINT, task.build_method(config, workdir=CHECKPOINT))
if not INPUT:
  INPUT = task.ensure_synthetic_data(os.path.join(WORK, 'scenes'), 1, seed=12345,
                                     num_frames=24, height=72, width=96, num_tracks=200)[0]'''),
    ('code', r'''from tracks4d import infer

model = infer.load_model(CHECKPOINT)
row = infer.infer_video(model, INPUT, os.path.join(WORK, 'pred'), finetune_steps=FINETUNE_STEPS)
print(f'{row["num_frames"]} frames, {row["num_points"]} points')
cols = ['ate', 'rpe_trans', 'rpe_rot', 'pixel_error', 'abs_rel', 'delta_1']
print(f'{"":<22}' + ''.join(f'{c:>12}' for c in cols))
if 'before_finetune' in row:
  print(f'{"before fine-tuning":<22}' + ''.join(f'{row["before_finetune"][c]:12.4g}' for c in cols))
print(f'{"after fine-tuning":<22}' + ''.join(f'{row[c]:12.4g}' for c in cols))
PIXEL_ERROR = row['pixel_error']'''),
    ('md', '''## The reconstruction

`points_world` [F, N, 3], world-to-camera poses `w2c` [F, 4, 4], `motion_level` [N] (how far
each point's motion is from the static part) and more are in the written `.npz`. The static
figure colours points by motion level; the interactive view (drag to rotate, time slider)
shows the cameras' frusta.'''),
    ('code', r'''import numpy as np
from tapkit.viz import notebook, tracks3d

name = os.path.splitext(os.path.basename(INPUT))[0]
pred = np.load(os.path.join(WORK, 'pred', name + '.npz'))
print({k: pred[k].shape for k in ('points_world', 'w2c', 'intrinsics', 'motion_level')})
notebook.show(tracks3d.plot_tracks_3d(pred['points_world'], visible=pred['visible'],
                                      color_by='motion', motion=pred['motion_level'],
                                      w2c=pred['w2c']))
notebook.show_html(os.path.join(WORK, 'pred', name + '.html'))'''),
]


DPOV_DEMO = [
    ('md', _header('3DPoV: ViT features, differentiable sorting, correspondences', '''
3DPoV fine-tunes a DINO-family ViT on videos: for points tracked through a clip, the order of
their similarities to a bank of reference patches must stay the same across frames. The
order is made differentiable with a sorting network.

`BACKBONE_CHECKPOINT` takes an official DINO / DINOv2 / DINOv3 `.pth`, a `.safetensors` or a
converted `.npz` (`tapkit.models.vit.load_checkpoint`); empty = the tiny `smoke` ViT from
its seeded random init. The fine-tuning part uses the `smoke` preset on synthetic videos.''')),
    ('code', INSTALL),
    ('code', r'''BACKBONE_CHECKPOINT = ''   # e.g. '/ckpt/dinov2_vits14_reg4_pretrain.pth'; '' = smoke ViT
WORK = os.path.join(os.environ.get('TAPKIT_NOTEBOOK_WORK', '/tmp/tapkit_notebooks'), 'dpov_demo')

import numpy as np
import jax
from tapkit.models import vit as backbones
from dpov_jax import data as dpov_data
from tapkit.data import synthetic

if BACKBONE_CHECKPOINT:
  module, params = backbones.load_checkpoint(BACKBONE_CHECKPOINT)
  size = 224
else:
  size = 112
  module = backbones.build(backbones.get_config('smoke'))
  params = backbones.init_params(module.config, jax.random.PRNGKey(0), size)
cfg = module.config
clip = synthetic.generate_clip(3, num_frames=8, height=size, width=size, num_tracks=64)
frames = clip.frames[[0, -1]]
tokens = module.apply({'params': params}, dpov_data.normalize_frames(frames))
grid = cfg.grid_size(size, size)
maps = np.asarray(backbones.tokens_to_feature_map(tokens, grid, cfg.num_prefix_tokens))
print('tokens', tokens.shape, '-> patch maps', maps.shape)'''),
    ('code', r'''from tapkit.viz import features, notebook

notebook.show(features.pca_figure(list(frames), maps, titles=['frame 0', 'last frame']))'''),
    ('md', '''## Differentiable sorting networks

`diff_sort(x)` returns the relaxed sorted values and the soft permutation matrix `P`
(`sorted = x @ P`-style, the PyTorch `diffsort` convention). Higher steepness gives a harder
permutation.'''),
    ('code', r'''from dpov_jax import sorting
from tapkit.viz import _common

x = np.array([0.3, -1.2, 2.0, 0.1, 0.15, -0.4, 1.1, 0.9], np.float32)
fig = _common.new_figure(10, 3)
for i, steepness in enumerate((1.0, 5.0, 50.0)):
  sorted_x, perm = sorting.diff_sort(x[None], network='bitonic', steepness=steepness,
                                     distribution='cauchy')
  ax = fig.add_subplot(1, 3, i + 1)
  ax.imshow(np.asarray(perm[0]), vmin=0, vmax=1, cmap='magma')
  ax.set_title(f'steepness {steepness:g}')
  print(f'steepness {steepness:>4g}: sorted {np.round(np.asarray(sorted_x[0]), 3)}')
print('hard sort            ', np.sort(x))
notebook.show(fig)
grad = jax.grad(lambda v: sorting.diff_sort(v[None], steepness=5.0)[0][0, -1])(x)
print('d max / d x =', np.round(np.asarray(grad), 3))  # the gradient flows to the largest values'''),
    ('md', '''## Correspondences before and after 3DPoV fine-tuning

A short `smoke` run on synthetic grid-tracked videos: the `tiny` ViT is first pre-trained with
our dense crop-contrastive objective (`dpov_jax/pretrain.py`, the stand-in for DINOv2's
pre-training), then fine-tuned teacher–student (EMA teacher) with 3DPoV; nearest-neighbour
matching of tracked points between the first and a distant frame of held-out clips compares
the pre-trained start with the fine-tuned backbone.'''),
    ('code', r'''from dpov_jax import match_eval, matcher, pretrain, task
from tapkit.train import checkpoint as engine_ckpt
from tapkit.train import config as config_lib, launch

wd = os.path.join(WORK, 'dpov')
config = config_lib.load_config('configs/dpov.py:smoke')
config.total_steps = 2 if FAST else 300
if FAST:
  config.batch_size = 2
  config.data.synthetic.num_train = 4
  config.data.synthetic.num_eval = 2
  config.evals.eval.num_clips = 2
  config.evals.eval.every_steps = 0
  config.pretrain.steps = 2
  config.pretrain.batch_size = 2
# Two explicit steps, as on the command line (python -m dpov_jax.pretrain, then dpov_jax.train):
pretrain.ensure_pretrained(config, wd)    # the starting backbone: <wd>/pretrain/backbone.safetensors
launch.train(config, wd, task.build_method)
result = match_eval.main(['--workdir', wd])
ACCURACY = {k: v['acc'] for k, v in result['rows'].items()}'''),
    ('code', r'''from tapkit.viz import correspondences

smoke = task.build_backbone(config)
clips = task.eval_clips(config, wd, 1)
pair = clips['frames'][0]
h, w = pair.shape[1:3]
g = smoke.config.grid_size(h, w)
_, state = engine_ckpt.load_state_numpy(wd)
thr = float(config.evals.eval.threshold_px)
valid = clips['valid'][0]
for name, p in (('start', task.initial_backbone_params(config, wd)),
                ('fine-tuned', state['params']['backbone'])):
  fmap = backbones.tokens_to_feature_map(
      smoke.apply({'params': p}, dpov_data.normalize_frames(pair)), g,
      smoke.config.num_prefix_tokens)
  pred = np.asarray(matcher.match_points(fmap[0], fmap[1], clips['queries'][0], (h, w)))
  ok = np.linalg.norm(pred - clips['targets'][0], axis=-1) <= thr
  print(f'{name}: {ok[valid].mean():.3f} of points within {thr:g} px')
  notebook.show(correspondences.draw_correspondences(
      pair[0], pair[1], clips['queries'][0][valid], pred[valid], ok[valid], max_matches=64))'''),
]


NOTEBOOKS = {
    'tapvid3d_eval.ipynb': TAPVID3D_EVAL,
    'trajan3d_demo.ipynb': TRAJAN3D_DEMO,
    'tracks4d_demo.ipynb': TRACKS4D_DEMO,
    'dpov_demo.ipynb': DPOV_DEMO,
}


def build(cells) -> nbformat.NotebookNode:
  nb = nbformat.v4.new_notebook()
  nb.metadata = {
      'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'},
      'language_info': {'name': 'python'},
      'colab': {'provenance': []},
  }
  for i, (kind, source) in enumerate(cells):
    source = source.strip('\n')
    cell = (nbformat.v4.new_markdown_cell(source) if kind == 'md'
            else nbformat.v4.new_code_cell(source))
    cell['id'] = f'cell-{i:02d}'  # Stable ids: rebuilding gives identical files.
    nb.cells.append(cell)
  return nb


def main() -> None:
  for name, cells in NOTEBOOKS.items():
    path = os.path.join(HERE, name)
    nbformat.write(build(cells), path)
    print('wrote', path, file=sys.stderr)


if __name__ == '__main__':
  main()
