"""Probe3D depth / surface-normal probes on a frozen backbone (Probe3D protocols).

The probe trains through the shared engine (`tapkit.train.loop.train`):

  backbone = load_backbone('smoke')                       # or a .safetensors / .pth / .npz
  train, test = load_probe_data(config, 'train'), load_probe_data(config, 'test')
  result = train_and_evaluate(config, workdir, backbone, train, test)
  result['metrics']  # depth: 'sa/rmse', 'si/d1', ...; normals: 'mean', 'd1', ...

Backbone wrapper (Probe3D `evals/models/dino.py`): images are zero-padded to a patch multiple, the
raw outputs (no final LayerNorm) of blocks L/4-1, L/2-1, 3L/4-1, L-1 (`probe_layers`) are taken as
[B, h, w, D] maps, with the CLS token broadcast and concatenated for 'dense-cls' ([B, h, w, 2D]).
The backbone is frozen either way the features are made: 'precompute' runs it once per image before
training (no augmentation is used, so this equals recomputing them every step), 'online' keeps its
parameters in the train state under `backbone/` (frozen by the optimiser group lr_mult 0) and runs
it inside the loss under stop_gradient.

Records (one image): 'image' [S, S', 3] float32 ImageNet-normalised, 'depth'
[S, S'] metres, the depth target (0 = not scored: missing or beyond 10 m, as Probe3D), 'normals'
[S, S', 3] unit vectors in the camera frame, 'valid' [S, S'] bool, ground-truth depth > 0
(where normals are scored); precomputed records add 'feat_<i>' [h, w, C].
Sources: synthetic static clips (`tapkit.data.synthetic`, default), NYUv2
(GeoNet .mat training files + the Probe3D test pickle) or NAVI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import grain.python as grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from tapkit.models import vit as bb
from dpov_jax.evaluate import metrics
from dpov_jax.evaluate import probes
from dpov_jax.evaluate import readers
from tapkit.train import loop

CHECKPOINT_EXTENSIONS = ('.safetensors', '.pth', '.pt', '.npz')


# ----------------------------------------------------------------------------
# Backbones.


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A frozen backbone to evaluate.

  Attributes:
    name: label used in tables and file names.
    module: the Flax ViT.
    params: its parameters.
    origin: where they came from (preset + seed, or a file / workdir).
  """
  name: str
  module: bb.VisionTransformer
  params: Any
  origin: str

  @property
  def config(self) -> bb.BackboneConfig:
    return self.module.config


def _sidecar_config(path: str) -> bb.BackboneConfig | None:
  """The architecture `dpov_jax.export` writes next to a checkpoint as <path>.json."""
  meta_path = path + '.json'
  if not os.path.isfile(meta_path):
    return None
  with open(meta_path) as f:
    meta = json.load(f)
  if not isinstance(meta, Mapping) or not isinstance(meta.get('arch'), Mapping):
    raise ValueError(f"{meta_path}: field 'arch' is missing or not an object")
  try:
    # JSON turns tuples into lists; the config must stay hashable.
    return bb.BackboneConfig(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in meta['arch'].items()})
  except TypeError as e:
    raise ValueError(f"{meta_path}: field 'arch' is not a BackboneConfig ({e})") from None


def load_backbone(spec: str, name: str | None = None, *, arch: str | None = None,
                  seed: int = 0) -> Backbone:
  """A backbone from a preset name, a checkpoint file or a training workdir.

  Args:
    spec: a preset (`smoke`, `dinov2_vitb14_reg`, ...; random init from `seed`,
      for smoke tests), a `.safetensors` / `.pth` / `.npz` checkpoint
      (`tapkit.models.vit.load_checkpoint`; the architecture from `arch`, the
      `<file>.json` that `dpov_jax.export` writes, or inferred from the names),
      or a `dpov_jax.train` workdir (student weights, `dpov_jax.export.read_run`).
    name: table label; default the preset name or the file's stem.
    arch: preset overriding the architecture of a file / workdir.
    seed: init seed of preset backbones.

  Raises:
    FileNotFoundError / ValueError naming the spec when it is none of these.
  """
  if spec in bb.PRESETS:
    cfg = bb.get_config(spec)
    params = bb.init_params(cfg, jax.random.PRNGKey(seed))
    return Backbone(name or spec, bb.VisionTransformer(cfg), params,
                    f'preset {spec} (random init, seed {seed})')
  label = name or os.path.splitext(os.path.basename(os.path.normpath(spec)))[0]
  if os.path.isfile(spec):
    if not spec.lower().endswith(CHECKPOINT_EXTENSIONS):
      raise ValueError(f'backbone {spec!r}: unsupported file type; use one of '
                       f'{CHECKPOINT_EXTENSIONS} or a preset {sorted(bb.PRESETS)}')
    module, params = bb.load_checkpoint(spec, arch or _sidecar_config(spec))
    return Backbone(label, module, params, f'file {spec}')
  if os.path.isdir(spec):
    if not os.path.isdir(os.path.join(spec, 'checkpoints')):
      raise FileNotFoundError(f'backbone {spec!r}: a directory must be a dpov_jax.train '
                              'workdir with checkpoints/')
    from dpov_jax import export  # pylint: disable=g-import-not-at-top
    step, params, _, cfg = export.read_run(spec)
    if arch is not None:
      cfg = bb.get_config(arch)
    return Backbone(label, bb.VisionTransformer(cfg), params, f'workdir {spec} step {step}')
  if os.sep in spec or spec.lower().endswith(CHECKPOINT_EXTENSIONS):  # meant as a path
    raise FileNotFoundError(f'backbone {spec!r}: no such checkpoint file or workdir; give an '
                            f'existing {"/".join(CHECKPOINT_EXTENSIONS)} file, a '
                            'dpov_jax.train workdir or a preset name')
  raise FileNotFoundError(f'backbone {spec!r}: not a preset ({sorted(bb.PRESETS)}), '
                          'nor an existing checkpoint file or workdir')


def probe_layers(num_layers: int, multilayer: bool = True) -> tuple[int, ...]:
  """Probe3D blocks: ceil(kL/4) - 1 for k = 1..4 (2, 5, 8, 11 for 12 blocks).

  Equals L/4-1, L/2-1, 3L/4-1, L-1 when 4 divides L; shallower models (the
  2-block smoke backbone) repeat blocks: (0, 0, 1, 1).
  """
  if not multilayer:
    return (num_layers - 1,)
  return tuple(math.ceil(k * num_layers / 4) - 1 for k in (1, 2, 3, 4))


def backbone_features(module: bb.VisionTransformer, params: Any, images: jax.Array,
                      layers: Sequence[int], output: str = 'dense-cls') -> list[jax.Array]:
  """Probe3D features: raw block outputs as maps, no final LayerNorm.

  Args:
    images: [B, H, W, 3] normalised; zero-padded to a patch multiple here.
    layers: block indices.
    output: 'dense' ([B, h, w, D]) or 'dense-cls' ([B, h, w, 2D], CLS last).

  Returns:
    one map per entry of `layers`.
  """
  if output not in ('dense', 'dense-cls'):
    raise ValueError(f"output must be 'dense' or 'dense-cls', got {output!r}")
  images = bb.pad_to_patch_multiple(images, module.config.patch_size)
  out = module.apply({'params': params}, images, return_layers=tuple(sorted(set(layers))))
  maps = []
  for layer in layers:
    fmap = out.feature_map(layer)
    if output == 'dense-cls':
      cls = jnp.broadcast_to(out.cls(layer)[:, None, None, :], fmap.shape)
      fmap = jnp.concatenate([fmap, cls], axis=-1)
    maps.append(fmap)
  return maps


def dense_features_fn(backbone: Backbone) -> Callable[[np.ndarray], np.ndarray]:
  """Correspondence features (SPair, NAVI): block L-1, 'dense', [B, h, w, D]."""
  layer = backbone.config.num_layers - 1

  @jax.jit
  def fn(images):
    return backbone_features(backbone.module, backbone.params, images, (layer,), 'dense')[0]

  return lambda images: np.asarray(fn(jnp.asarray(images, jnp.float32)))


# ----------------------------------------------------------------------------
# Head, prediction and losses.


class ProbeHead(nn.Module):
  """DPT or linear head; raw outputs [B, 16h, 16w, K] (DPT) / [B, 4h, 4w, K].

  K = num_bins depth logits or 4 (normal xyz + kappa logit).
  """
  task: str
  head: str = 'dpt'
  hidden_dim: int = 512
  num_bins: int = 256
  linear_kernel: int = 1

  @nn.compact
  def __call__(self, feats: Sequence[jax.Array]) -> jax.Array:
    out_dim = self.num_bins if self.task == 'depth' else 4
    if self.head == 'dpt':
      return probes.DPTHead(out_dim, self.hidden_dim, name='dpt')(feats)
    if self.head == 'linear':
      return probes.LinearHead(out_dim, self.linear_kernel, name='linear')(list(feats))
    raise ValueError(f"probe.head must be 'dpt' or 'linear', got {self.head!r}")


def make_head(config: ml_collections.ConfigDict) -> ProbeHead:
  p = config.probe
  if p.task not in ('depth', 'normals'):
    raise ValueError(f"configs/probe3d.py: probe.task must be 'depth' or 'normals', "
                     f'got {p.task!r}')
  if p.head == 'dpt' and not p.multilayer:
    raise ValueError('configs/probe3d.py: probe.head=dpt needs probe.multilayer=True '
                     '(4 feature maps)')
  return ProbeHead(p.task, p.head, p.hidden_dim, p.num_bins, p.linear_kernel)


def predict(raw: jax.Array, config: ml_collections.ConfigDict,
            target_hw: tuple[int, int]) -> jax.Array:
  """Head output -> prediction at the target size.

  Returns:
    depth [B, H, W] metres (bins, bilinear resize), or normals [B, H, W, 4]
    (xyz not normalised, kappa logit; bicubic resize), align_corners True.
  """
  p = config.probe
  if p.task == 'depth':
    depth = probes.depth_from_bins(raw, p.max_depth, p.min_depth)
    return probes.resize_to(depth[..., None], target_hw, 'bilinear')[..., 0]
  return probes.resize_to(raw, target_hw, 'bicubic')


def probe_loss(pred: jax.Array, batch: Mapping[str, jax.Array],
               config: ml_collections.ConfigDict) -> jax.Array:
  """10 SigLoss + 0.5 GradLoss (depth) or the uncertainty angular loss (normals)."""
  p = config.probe
  if p.task == 'depth':
    # Records hold depth targets in (0, DEPTH_TARGET_MAX], 0 elsewhere; not p.max_depth,
    # which is the probe's output range only.
    return probes.depth_loss(pred, batch['depth'])
  return probes.uncertainty_normal_loss(pred, batch['normals'], batch['valid'])


# ----------------------------------------------------------------------------
# Data.


class ProbeSource(grain.RandomAccessDataSource):
  """Random access over records made by `load(i)` (lazy) or held in memory."""

  def __init__(self, num: int, load: Callable[[int], dict[str, np.ndarray]], name: str):
    self._num, self._load, self._name = num, load, name

  def __len__(self) -> int:
    return self._num

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return self._load(int(index))

  def __repr__(self) -> str:
    # grain checks restored iterator states against repr(source).
    return f'ProbeSource(name={self._name!r}, len={self._num})'


def _record(image: np.ndarray, depth: np.ndarray, normals: np.ndarray
            ) -> dict[str, np.ndarray]:
  """One probe example with Probe3D's validity, the same for every dataset.

  Args:
    image: [H, W, 3] normalised image.
    depth: [H, W] ground-truth depth in metres, 0 = missing.
    normals: [H, W, 3] unit normals.

  Returns:
    'depth' [H, W]: the depth target, 0 outside (0, probes.DEPTH_TARGET_MAX] (the depth loss
    and metrics use depth > 0; the dataset's `probe.max_depth` bounds the prediction only);
    'valid' [H, W]: depth > 0, where the normals are scored.
  """
  depth = np.asarray(depth, np.float32)
  valid = depth > 0
  target = np.where(valid & (depth <= probes.DEPTH_TARGET_MAX), depth, 0.0)
  return {'image': np.asarray(image, np.float32), 'depth': target.astype(np.float32),
          'normals': np.asarray(normals, np.float32), 'valid': valid}


def _stack_source(records: Sequence[dict[str, np.ndarray]], name: str) -> ProbeSource:
  records = list(records)
  return ProbeSource(len(records), lambda i: records[i], name)


def synthetic_records(config: ml_collections.ConfigDict, split: str
                      ) -> list[dict[str, np.ndarray]]:
  """Frames of static synthetic clips; train and test use disjoint seeds.

  The sky (beyond probes.DEPTH_TARGET_MAX) is no depth target, as in Probe3D.
  """
  from tapkit.data import synthetic  # pylint: disable=g-import-not-at-top
  s = config.data.synthetic
  size = int(config.data.image_size)
  n = int(s.num_train if split == 'train' else s.num_eval)
  offset = 0 if split == 'train' else 1_000_000
  out = []
  for c in tqdm.trange(n, desc=f'synthetic {split} clips', leave=False):
    clip = synthetic.generate_clip((int(s.seed), offset + c), num_frames=int(s.frames_per_clip),
                                   height=size, width=size, num_tracks=1,
                                   dynamic=bool(s.dynamic))
    for t in range(clip.raw_frames.shape[0]):
      out.append(_record(readers.normalize_image(clip.raw_frames[t]), clip.depth[t],
                         clip.normals[t]))
  return out


def load_probe_data(config: ml_collections.ConfigDict, split: str) -> ProbeSource:
  """The train ('train' = the protocol's trainval) or 'test' split as a source.

  Raises:
    ValueError / readers.DatasetFormatError naming the config field or file.
  """
  if split not in ('train', 'test'):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")
  d = config.data
  limit = int(d.max_train if split == 'train' else d.max_test)
  if d.source == 'synthetic':
    records = synthetic_records(config, split)
    source = _stack_source(records[:limit] if limit else records, f'synthetic-{split}')
  elif d.source == 'nyu':
    if split == 'train':
      if not d.nyu_train_dir:
        raise ValueError('configs/probe3d.py: data.nyu_train_dir (GeoNet .mat folder) is '
                         'required for data.source=nyu')
      names = readers.geonet_file_list(d.nyu_train_dir, 'trainval')
      names = names[:limit] if limit else names

      def load(i):
        m = readers.read_geonet_mat(os.path.join(d.nyu_train_dir, names[i]),
                                    probes.DEPTH_TARGET_MAX)
        return _record(readers.normalize_image(m['image']), m['depth'], m['snorm'])
      source = ProbeSource(len(names), load, f'geonet-{len(names)}')
    else:
      if not d.nyu_test:
        raise ValueError('configs/probe3d.py: data.nyu_test (nyuv2_snorm_all .pkl/.npz) '
                         'is required for data.source=nyu')
      items = readers.nyu_test_items(readers.read_nyu_test(d.nyu_test), d.nyu_center_crop)
      items = items[:limit] if limit else items
      source = _stack_source([_record(it['image'], it['depth'],
                                      np.transpose(it['snorm'], (1, 2, 0)))
                              for it in items], 'nyu-test')
  elif d.source == 'navi':
    if not d.navi_dir:
      raise ValueError('configs/probe3d.py: data.navi_dir is required for data.source=navi')
    data = readers.parse_navi(d.navi_dir)
    inst = readers.navi_instances(data, 'trainval' if split == 'train' else 'test')[::4]
    if not inst:
      raise ValueError(f'{d.navi_dir}: no NAVI {split} views (objects need a wild_set and '
                       'a multiview collection)')
    inst = inst[:limit] if limit else inst

    def load(i):
      obj, coll, img = inst[i]
      v = readers.load_navi_view(d.navi_dir, obj, coll, img,
                                 data[obj][coll]['annotations'][img], int(d.image_size))
      return _record(v['image'], v['depth'], v['snorm'])
    source = ProbeSource(len(inst), load, f'navi-{split}-{len(inst)}')
  else:
    raise ValueError(f"configs/probe3d.py: data.source must be 'synthetic', 'nyu' or 'navi', "
                     f'got {d.source!r}')
  if len(source) == 0:
    raise ValueError(f'{d.source} {split} split is empty')
  return source


def _batches(source: ProbeSource, batch_size: int):
  for start in range(0, len(source), batch_size):
    recs = [source[i] for i in range(start, min(start + batch_size, len(source)))]
    yield {k: np.stack([r[k] for r in recs]) for k in recs[0]}


def precompute_features(source: ProbeSource, backbone: Backbone,
                        config: ml_collections.ConfigDict) -> ProbeSource:
  """Adds 'feat_<i>' [h, w, C] (float32) to every record of `source` (in memory)."""
  layers = probe_layers(backbone.config.num_layers, config.probe.multilayer)
  fn = jax.jit(lambda x: backbone_features(backbone.module, backbone.params, x, layers,
                                           config.probe.output))
  records = []
  bs = int(config.probe.eval_batch_size)
  for batch in tqdm.tqdm(_batches(source, bs), total=-(-len(source) // bs),
                         desc=f'{backbone.name} features', leave=False):
    feats = [np.asarray(f) for f in fn(jnp.asarray(batch['image']))]
    for j in range(batch['image'].shape[0]):
      rec = {k: v[j] for k, v in batch.items()}
      rec.update({f'feat_{i}': f[j] for i, f in enumerate(feats)})
      records.append(rec)
  return _stack_source(records, f'{source!r}+features({backbone.name})')


# ----------------------------------------------------------------------------
# Engine method, training and evaluation.


def resolve_schedule(config: ml_collections.ConfigDict, num_train: int
                     ) -> ml_collections.ConfigDict:
  """A copy with total_steps / warmup_steps derived from epochs when <= 0 / < 0."""
  config = config.copy_and_resolve_references()
  steps_per_epoch = max(1, num_train // int(config.batch_size))
  if int(config.total_steps) <= 0:
    config.total_steps = max(1, int(round(config.probe.epochs * steps_per_epoch)))
  if int(config.optimizer.warmup_steps) < 0:
    config.optimizer.warmup_steps = int(round(config.probe.warmup_epochs * steps_per_epoch))
  config.optimizer.warmup_steps = min(int(config.optimizer.warmup_steps),
                                      int(config.total_steps) - 1)
  return config


def build_method(config: ml_collections.ConfigDict, backbone: Backbone,
                 train_source: ProbeSource) -> loop.Method:
  """The probe as an engine Method.

  Params: {'head': ...} (precomputed features in the records) or
  {'backbone': ..., 'head': ...} ('online'; the backbone is frozen by the
  optimiser group `^backbone/` with lr_mult 0 and by stop_gradient).
  """
  head = make_head(config)
  layers = probe_layers(backbone.config.num_layers, config.probe.multilayer)
  online = config.probe.features == 'online'
  if config.probe.features not in ('online', 'precompute'):
    raise ValueError("configs/probe3d.py: probe.features must be 'online' or 'precompute', "
                     f'got {config.probe.features!r}')
  if online and not any(rx == r'^backbone/' and m == 0.0
                        for rx, m in config.optimizer.groups):
    raise ValueError("configs/probe3d.py: probe.features='online' needs optimizer.groups "
                     "to freeze r'^backbone/' (lr_mult 0)")

  def features(params, batch):
    if online:
      maps = backbone_features(backbone.module, params['backbone'], batch['image'], layers,
                               config.probe.output)
      return [jax.lax.stop_gradient(m) for m in maps]
    return [batch[f'feat_{i}'] for i in range(len(layers))]

  def init_fn(rng, batch):
    batch = jax.tree.map(lambda x: jnp.asarray(x[:1]), batch)
    params = {'backbone': backbone.params} if online else {}
    params['head'] = head.init(rng, features(params, batch))['params']
    return params

  def loss_fn(params, batch, rng, state):
    del rng, state
    raw = head.apply({'params': params['head']}, features(params, batch))
    pred = predict(raw, config, batch['depth'].shape[1:3])
    loss = probe_loss(pred, batch, config)
    # The engine logs `loss` itself; report the fraction of pixels the loss scores.
    scored = batch['depth'] > 0 if config.probe.task == 'depth' else batch['valid']
    return loss, {'valid_fraction': jnp.mean(scored.astype(jnp.float32))}

  keep = ('image', 'depth', 'normals', 'valid') if online else (
      'depth', 'normals', 'valid') + tuple(f'feat_{i}' for i in range(len(layers)))
  class _Select(grain.MapTransform):
    """Drops the fields the loss does not read (less to batch and transfer)."""

    def map(self, element):
      return {k: element[k] for k in keep}

  return loop.Method(init_fn=init_fn, loss_fn=loss_fn, train_source=train_source,
                     train_transforms=[_Select()], eval_hooks=_progress_hooks(config))


def _progress_hooks(config: ml_collections.ConfigDict) -> list[loop.EvalHook]:
  """A tqdm bar over the training steps, advanced ~50 times per run."""
  total = int(config.total_steps)
  every = max(1, total // 50)
  bar = {}

  def advance(state, step, writer=None):
    del state, writer
    if 'bar' not in bar:
      bar['bar'] = tqdm.tqdm(total=total, initial=max(0, step - every),
                             desc=f'probe {config.probe.task}', leave=False)
    bar['bar'].update(step - bar['bar'].n)
    if step >= total:
      bar['bar'].close()
    return {}

  return [loop.EvalHook(every_steps=every, fn=advance, name='progress')]


def evaluate_probe(config: ml_collections.ConfigDict, backbone: Backbone, head_params: Any,
                   test_source: ProbeSource) -> dict[str, Any]:
  """Protocol metrics on the test split, plus the first predictions for figures.

  Returns:
    {'metrics': {name: float}, 'examples': {'image', 'depth', 'normals',
     'valid', 'pred'} for the first config.viz.num_images test images}.
    Depth metrics: 'sa/<m>' (scale-aware, raw prediction) and 'si/<m>'
    (per-image least-squares scale and shift) for m in rmse (m), abs_rel, d1..d3
    (fractions), per image then averaged. Normals: per-image 'rmse' (deg),
    'd1'..'d3' (fractions < 11.25/22.5/30 deg) averaged over images, and pooled
    over all valid pixels 'mean', 'median' (deg), 'pooled_d1..3'.
  """
  head = make_head(config)
  layers = probe_layers(backbone.config.num_layers, config.probe.multilayer)

  @jax.jit
  def run(head_params, images):
    maps = backbone_features(backbone.module, backbone.params, images, layers,
                             config.probe.output)
    return predict(head.apply({'params': head_params}, maps), config, images.shape[1:3])

  preds, gts, valids, examples = [], [], [], None
  nviz = int(config.viz.num_images)
  bs = int(config.probe.eval_batch_size)
  key = 'depth' if config.probe.task == 'depth' else 'normals'
  for batch in tqdm.tqdm(_batches(test_source, bs), total=-(-len(test_source) // bs),
                         desc=f'{backbone.name} {config.probe.task} eval', leave=False):
    pred = np.asarray(run(head_params, jnp.asarray(batch['image'])))
    preds.append(pred)
    gts.append(batch[key])
    valids.append(batch['valid'])
    if examples is None:
      examples = {k: batch[k][:nviz] for k in ('image', 'depth', 'normals', 'valid')}
      examples['pred'] = pred[:nviz]
  pred, gt, valid = (np.concatenate(x) for x in (preds, gts, valids))
  out = {}
  if config.probe.task == 'depth':  # targets are > 0 exactly where depth is scored
    for tag, si in (('sa', False), ('si', True)):
      for k, v in metrics.depth_metrics(pred, gt, scale_invariant=si).items():
        out[f'{tag}/{k}'] = float(v)
  else:
    out = {k: float(v) for k, v in metrics.normal_metrics(
        np.transpose(pred, (0, 3, 1, 2)), np.transpose(gt, (0, 3, 1, 2)), valid).items()}
  out['num_images'] = float(pred.shape[0])
  return {'metrics': out, 'examples': examples}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, backbone: Backbone,
                       train_source: ProbeSource, test_source: ProbeSource) -> dict[str, Any]:
  """Trains the probe through the engine (resuming from `workdir`) and evaluates it.

  Returns:
    evaluate_probe's dict plus 'config' (resolved), 'loss_curve' (steps [M],
    losses [M]) read back from <workdir>/metrics.jsonl, 'workdir'.
  """
  config = resolve_schedule(config, len(train_source))
  if config.probe.features == 'precompute':
    train_source = precompute_features(train_source, backbone, config)
  method = build_method(config, backbone, train_source)
  state = loop.train(config, workdir, method)
  head_params = jax.device_get(state.params['head'])
  result = evaluate_probe(config, backbone, head_params, test_source)
  result['config'] = config
  result['workdir'] = workdir
  result['loss_curve'] = read_loss_curve(workdir)
  return result


def read_loss_curve(workdir: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps [M], train/loss [M]) from the engine's <workdir>/metrics.jsonl."""
  path = os.path.join(workdir, 'metrics.jsonl')
  steps, values = [], []
  if os.path.isfile(path):
    with open(path) as f:
      for line in f:
        row = json.loads(line) if line.strip() else {}
        if 'train/loss' in row:
          steps.append(int(row['step']))
          values.append(float(row['train/loss']))
  return np.asarray(steps, np.int64), np.asarray(values, np.float64)
