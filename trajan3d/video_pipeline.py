"""3DSPA on raw videos: grid tracks, depth, DINOv2 features and 3D lifting, as a Clip to score.

    models = load_video_models(VideoOptions(recipe='corrected', tracker='cotracker3',
                                            tracker_checkpoint='scaled_offline.pth',
                                            depth_checkpoint='video_depth_anything_vitb.pth',
                                            dino_checkpoint='dinov2-base.safetensors'),
                               dino_dim=768)
    clip = video_clip(models, 'video.mp4', max_frames=150)      # a 3D Clip
    row, per_frame = trajan3d.evaluators.score_clip(recon, clip)

The steps of the released 3DSPA inference, for one video of T frames H x W (uint8 RGB, at most
the model's frames):

1. Tracking: a grid_size x grid_size grid of points at pixel centres
   ((j + 0.5) W / G, (i + 0.5) H / G) on frame 0 (released: G = 64), tracked through the video
   (`tapkit.tracking`): 2D tracks [N, T, 2] pixels and visibility [N, T].
2. Depth: Video Depth Anything's offline procedure (`tapkit.models.depth.video`) on the frames:
   depth maps [T, H, W].
3. DINOv2: each frame resized (PIL bilinear, as torchvision's Resize) to
   (H // 14 * 14, W // 14 * 14), ImageNet-normalised, through the backbone; the final-LayerNorm
   patch tokens [T, H/14, W/14, D] are sampled bilinearly at the tracks: [N, T, D].
4. Lifting (`tapkit.models.depth.lift`): depth z sampled at each track point, camera with focal
   max(H, W) pixels: X = (x - cx) Z / f, Y = (y - cy) Z / f, Z.
5. Depth feature inputs [N, T, 256]: channel 0 the sampled depth, 1 depth / 10, 2 its change from
   the previous frame, the others 0 (the released construction).
Video decoding (`tapkit.io.video`) and the networks are this repository's ports (CoTracker3,
Video Depth Anything and DINOv2 equal the official code numerically in float32).
The result is a `Clip` (3D tracks, visibility, intrinsics, and the per-track DINO / depth
features as `extras['dino_track_features']` / `extras['depth_track_features']` [T, N, D], read by
`trajan3d.input_pipeline.support_features`).

Recipes. 'released' reproduces the released inference, including its mistakes; 'corrected'
(the default of the CLI) fixes them. `RECIPE_DIFFERENCES` lists every difference:

- frames into the depth model: released uint8 / 255, divided by 255 again by the depth
  procedure (contrast / 255); corrected: divided by 255 once.
- depth precision: released half (bfloat16 on CPU, float16 on GPU, the release's autocast);
  corrected float32.
- Z of a point: released takes the relative model's inverse depth d as metres (near and far
  swap); corrected: Z = 1 / d for a relative model (no depth where d <= 0: the point is marked
  not visible), d metres for a metric one.
- principal point: released (W/2, H/2); corrected ((W - 1)/2, (H - 1)/2), the centre of the
  pixel grid.
- DINO sampling: released patch coordinate x w / W (half a patch off); corrected patch
  centres, (x + 0.5) w / W - 0.5.
- depth features: released from d; corrected from Z.

`--random_weights_for_testing` models (`random_*`): small randomly initialised tracker, depth
and DINO networks so the pipeline runs without downloads; their outputs mean nothing.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Callable

import numpy as np
from etils import epy

from tapkit import tracking
from tapkit.data import clip as clip_lib
from tapkit.io import video as video_io
from tapkit.models.depth import lift
from tapkit.ops import sampling
from trajan3d import features as features_lib

# Loaded on first use, so `trajan3d.score --help` (which reads this module's recipe table)
# starts without JAX.
with epy.lazy_imports():
  import jax
  import jax.numpy as jnp
  from tapkit.models import vit
  from trajan3d import input_pipeline

RECIPES = ('released', 'corrected')
RELEASED_GRID_SIZE = 64
DEPTH_FEATURE_DIM = lift.DEPTH_FEATURE_DIM
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Model resolution of the random CoTracker3 (height, width) pixels.
RANDOM_TRACKER_SHAPE = (64, 64)
# Width of the random DINOv2 when the 3DSPA model does not fix it.
RANDOM_DINO_DIM = 32

# (step, released, corrected): the table of the module docstring (printed in reports).
RECIPE_DIFFERENCES = (
    ('frames into the depth model', 'uint8 / 255, divided by 255 again by the depth procedure',
     'uint8, divided by 255 once'),
    ('depth precision', 'half (bfloat16 on CPU, float16 on GPU)', 'float32'),
    ('Z of a point', 'relative inverse depth taken as metres (near and far swap)',
     'relative model: Z = 1/d (d <= 0: not visible); metric model: metres'),
    ('principal point', '(W/2, H/2)', '((W-1)/2, (H-1)/2)'),
    ('DINO sampling', 'patch coordinate x*w/W (half a patch off)',
     'patch centres (x+0.5)*w/W-0.5'),
    ('depth features', 'from the inverse depth d', 'from Z'),
)


def check_recipe(recipe: str) -> str:
  if recipe not in RECIPES:
    raise ValueError(f'recipe must be one of {RECIPES}, got {recipe!r}')
  return recipe


def released_half_dtype() -> Any:
  """The depth compute dtype of the released recipe: the original's autocast runs float16 on
  CUDA and bfloat16 on CPU."""
  return jnp.float16 if jax.default_backend() == 'gpu' else jnp.bfloat16


def random_params(shapes: Any, seed: int, fixed: dict[str, np.ndarray] | None = None) -> Any:
  """TESTING ONLY: random float32 parameters for a tree of shapes, drawn with NumPy (no
  compiled `init`, so a network of any size is ready in milliseconds).

  Rule by leaf name: 'kernel' N(0, 1/fan_in) with fan_in the product of all but the last
  axis; 'bias' N(0, 0.02²); 'scale' (norms) 1 + N(0, 0.1²); 'gamma' (LayerScale) 1;
  'pos_encoder_pe' the motion modules' sinusoid table; anything else (tokens, position
  embeddings) N(0, 0.5²). `fixed` maps '/'-joined paths to values that replace the draw.

  Args:
    shapes: nested dict of arrays or `jax.ShapeDtypeStruct`s (e.g. from `jax.eval_shape`).
    seed: NumPy seed.
    fixed: optional {path: array}.
  """
  from tapkit.models.depth import motion  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  fixed = dict(fixed or {})

  def draw(path, leaf):
    keys = [str(getattr(k, 'key', k)) for k in path]
    name, shape = keys[-1], tuple(leaf.shape)
    joined = '/'.join(keys)
    if joined in fixed:
      return np.broadcast_to(np.asarray(fixed.pop(joined), np.float32), shape).copy()
    if name == 'kernel':
      value = rng.normal(size=shape) / np.sqrt(max(1, int(np.prod(shape[:-1]))))
    elif name == 'bias':
      value = 0.02 * rng.normal(size=shape)
    elif name == 'scale':
      value = 1.0 + 0.1 * rng.normal(size=shape)
    elif name == 'gamma':
      value = np.ones(shape)
    elif name == 'pos_encoder_pe':
      value = motion.sinusoid_table(*shape)
    else:
      value = 0.5 * rng.normal(size=shape)
    return np.asarray(value, np.float32)

  out = jax.tree_util.tree_map_with_path(draw, shapes)
  if fixed:
    raise ValueError(f'random_params: no parameters named {sorted(fixed)}')
  return out


# ----------------------------------------------------------------------------
# Step 1: tracking.


def released_grid_queries(height: int, width: int, grid_size: int) -> np.ndarray:
  """[G², 3] float32 (t, x, y) queries on frame 0 at the centres of a G x G tiling of the frame:
  x_j = (j + 0.5) W / G, y_i = (i + 0.5) H / G, index i G + j (row-major, x fastest)."""
  if int(grid_size) != grid_size or grid_size < 1:
    raise ValueError(f'grid_size must be an integer >= 1, got {grid_size}')
  xs = (np.arange(grid_size) + 0.5) * (width / grid_size)
  ys = (np.arange(grid_size) + 0.5) * (height / grid_size)
  gy, gx = np.meshgrid(ys, xs, indexing='ij')
  t = np.zeros(gx.size)
  return np.stack([t, gx.reshape(-1), gy.reshape(-1)], -1).astype(np.float32)


def random_cotracker(online: bool = False, seed: int = 1) -> tracking.Tracker:
  """TESTING ONLY: a CoTracker3 with random weights at a 64 x 64 model resolution."""
  from tapkit.models import cotracker3  # pylint: disable=g-import-not-at-top
  from tapkit.tracking import cotracker  # pylint: disable=g-import-not-at-top
  params = random_params(cotracker3.param_shapes(), seed)
  return cotracker.CoTrackerTracker(params=params, online=online,
                                    interp_shape=RANDOM_TRACKER_SHAPE)


# ----------------------------------------------------------------------------
# Step 2: depth.


class DepthModel:
  """Video Depth Anything on whole videos, with the recipe's input scaling and precision.

  Attributes:
    metric: the model outputs metres (else relative inverse depth).
    recipe: 'released' (frames / 255 before the procedure, half precision) or 'corrected'.
  """

  def __init__(self, module: Any, params: Any, recipe: str, input_size: int = 518):
    from tapkit.models.depth import video  # pylint: disable=g-import-not-at-top
    self.recipe = check_recipe(recipe)
    self.metric = bool(module.config.metric)
    dtype = released_half_dtype() if recipe == 'released' else jnp.float32
    self._video = video
    self.predictor = video.VideoDepthPredictor(module, params, input_size, dtype)

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    """Depth [T, H, W] float32 of frames [T, H, W, 3] uint8."""
    # float32 holds uint8 values exactly; one input dtype means one compiled network.
    frames = np.asarray(frames).astype(np.float32)
    if self.recipe == 'released':
      frames = frames / 255.0  # The procedure divides by 255 once more.
    return np.stack(list(self._video.iter_video_depth(self.predictor, frames, self.metric)))


def load_depth_model(checkpoint: str | None, recipe: str, *, encoder: str | None = None,
                     metric: bool | None = None, input_size: int = 518,
                     random_weights: bool = False) -> DepthModel:
  """The depth model from an official `[metric_]video_depth_anything_*.pth`, or (testing only)
  the 'tiny' preset with random weights.

  Args:
    checkpoint: the file (unused with `random_weights`).
    recipe: see `DepthModel`.
    encoder: 'vits' / 'vitb' / 'vitl'; None infers it from the file.
    metric: a metric checkpoint; None: True when the file name starts with 'metric_'.
    input_size: the network's short side (518 as released).
    random_weights: random 'tiny' weights instead of the checkpoint.
  """
  from tapkit.models.depth import convert, vda  # pylint: disable=g-import-not-at-top
  if random_weights:
    config = vda.get_vda_config('tiny', metric=bool(metric))
    module = vda.VideoDepthAnything(config)
    x = jax.ShapeDtypeStruct((1, 2, 28, 28, 3), jnp.float32)
    shapes = jax.eval_shape(lambda v: module.init(jax.random.PRNGKey(0), v), x)['params']
    # A positive last bias keeps most of the (ReLU) output depth above 0.
    params = random_params(shapes, 2, {'head/output_conv2_2/bias': 1.0})
    return DepthModel(module, params, recipe, input_size)
  require_file(checkpoint, '--depth_checkpoint')
  if metric is None:
    metric = os.path.basename(checkpoint).startswith('metric_')
  module, params = convert.load_vda_checkpoint(checkpoint, encoder=encoder, metric=metric)
  return DepthModel(module, params, recipe, input_size)


# ----------------------------------------------------------------------------
# Step 3: DINOv2 patch features.


def dino_input_size(height: int, width: int, patch: int) -> tuple[int, int]:
  """(H // p * p, W // p * p): the size frames are resized to before the backbone."""
  size = (height // patch * patch, width // patch * patch)
  if min(size) < patch:
    raise ValueError(f'frames of {height}x{width} pixels are smaller than one {patch}-pixel '
                     'DINO patch')
  return size


def dino_preprocess(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """[T, h, w, 3] float32 backbone input: each frame resized with PIL's bilinear filter (what
  torchvision's Resize does to PIL images), / 255, ImageNet mean / std."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  height, width = size
  out = np.empty((len(frames), height, width, 3), np.float32)
  for t, frame in enumerate(frames):
    image = Image.fromarray(np.asarray(frame, np.uint8), 'RGB')
    out[t] = np.asarray(image.resize((width, height), Image.BILINEAR), np.float32) / 255.0
  return (out - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)


class DinoFeatures:
  """Final-LayerNorm DINOv2 patch tokens of video frames (one compiled call per shape).

  Attributes:
    module, params: the backbone (`tapkit.models.vit`).
    batch_size: frames per backbone call.
  """

  def __init__(self, module: vit.VisionTransformer, params: Any, batch_size: int = 8):
    self.module, self.params, self.batch_size = module, params, int(batch_size)
    self._fn = jax.jit(lambda p, x: vit.extract_feature_map(module, p, x))

  @property
  def dim(self) -> int:
    return int(self.module.config.hidden_size)

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    """Feature maps [T, H // p, W // p, D] float32 of frames [T, H, W, 3] uint8."""
    frames = np.asarray(frames)
    size = dino_input_size(frames.shape[1], frames.shape[2], self.module.config.patch_size)
    maps = []
    for start in range(0, len(frames), self.batch_size):
      x = dino_preprocess(frames[start:start + self.batch_size], size)
      maps.append(np.asarray(self._fn(self.params, jnp.asarray(x)), np.float32))
    return np.concatenate(maps)


def random_dino_config(width: int = RANDOM_DINO_DIM) -> vit.BackboneConfig:
  """TESTING ONLY: a 2-block DINOv2 (patch 14, 37 x 37 position grid, transformers' resize
  rule) of the given width."""
  heads = max(1, width // 64)
  return vit.BackboneConfig(name=f'dinov2_random_{width}', family='dinov2', patch_size=14,
                            hidden_size=width, num_layers=2, num_heads=heads, mlp_dim=4 * width,
                            image_size=518, layerscale=True, use_mask_token=True)


def load_dino(checkpoint: str | None, *, width: int | None = None,
              random_weights: bool = False) -> DinoFeatures:
  """DINOv2 from a checkpoint `tapkit.models.vit.load_checkpoint` reads (transformers
  `.safetensors` / `.npz`, or a torch.hub `.pth`), or (testing only) random weights.

  Args:
    checkpoint: the file (unused with `random_weights`).
    width: the feature width the 3DSPA model expects (its `dino_projection` input); checked.
    random_weights: a `random_dino_config(width)` backbone with random weights.
  """
  if random_weights:
    config = random_dino_config(width or RANDOM_DINO_DIM)
    return DinoFeatures(vit.build(config), random_params(vit.param_shapes(config), 3))
  require_file(checkpoint, '--dino_checkpoint')
  module, params = vit.load_checkpoint(checkpoint)
  dino = DinoFeatures(module, params)
  if width is not None and dino.dim != width:
    raise ValueError(f'--dino_checkpoint {checkpoint}: features are {dino.dim} wide, the 3DSPA '
                     f'model reads {width}-wide DINO features')
  return dino


def sample_patch_features(maps: np.ndarray, tracks_2d: np.ndarray,
                          frame_size: tuple[int, int], recipe: str) -> np.ndarray:
  """Patch features at the tracks.

  Args:
    maps: [T, h, w, D] patch features of frames of `frame_size` (H, W) pixels.
    tracks_2d: [N, T, 2] (x, y) pixels of the frames (pixel centres at integers).
    frame_size: (H, W).
    recipe: 'released': map coordinate (x w / W, y h / H), patch (i, j) at (j, i), border
      clamped; 'corrected': patch centres, map coordinate (x + 0.5) w / W - 0.5.

  Returns:
    [N, T, D] float32.
  """
  maps = np.asarray(maps, np.float32)
  tracks_2d = np.asarray(tracks_2d, np.float64)
  height, width = frame_size
  if check_recipe(recipe) == 'corrected':
    norm = (tracks_2d + 0.5) / np.asarray([width, height], np.float64)
    return features_lib.sample_feature_maps(maps, norm.astype(np.float32))
  h, w = maps.shape[1:3]
  x = (tracks_2d[..., 0] * (w / width)).T  # [T, N]
  y = (tracks_2d[..., 1] * (h / height)).T
  out = sampling.bilinear_sample(maps, x, y, padding='border')  # [T, N, D]
  return np.swapaxes(out, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------
# Steps 4-5: lifting and depth features.


@dataclasses.dataclass
class LiftedTracks:
  """3D tracks and the depth feature inputs of one video.

  Attributes:
    tracks_xyz: [N, T, 3] float32 camera coordinates (0 where the point has no depth).
    visible: [N, T] bool: the tracker's visibility, False where the point has no depth.
    depth_features: [N, T, 256] float32 (the released construction; 0 where undefined).
    intrinsics: [4] float32 (fx, fy, cx, cy) pixels used for the lifting.
  """
  tracks_xyz: np.ndarray
  visible: np.ndarray
  depth_features: np.ndarray
  intrinsics: np.ndarray


def lift_tracks(tracks_2d: np.ndarray, visible: np.ndarray, depth: np.ndarray, recipe: str, *,
                metric: bool = False, focal: float | None = None,
                feature_dim: int = DEPTH_FEATURE_DIM) -> LiftedTracks:
  """Lifts 2D tracks with per-frame depth and builds the depth feature inputs.

  Args:
    tracks_2d: [N, T, 2] (x, y) pixels of the depth maps.
    visible: [N, T] bool.
    depth: [T, H, W] (or [T, H, W, 1]) the depth model's output.
    recipe: 'released': the released helpers exactly (the value d is Z, principal point
      (W/2, H/2)); 'corrected': Z = d metres for a metric model, Z = 1/d for a relative one
      (points with d <= 0 have no depth and become not visible), principal point
      ((W - 1)/2, (H - 1)/2).
    metric: the depth is metric (metres); else relative inverse depth.
    focal: corrected recipe: focal length in pixels (default max(H, W)).
    feature_dim: width of the depth features.
  """
  depth = np.asarray(depth, np.float32)
  depth = depth[..., 0] if depth.ndim == 4 else depth
  _, height, width = depth.shape
  tracks_2d = np.asarray(tracks_2d, np.float32)
  if check_recipe(recipe) == 'released':
    xyz = lift.lift_2d_to_3d(tracks_2d, depth, recipe='released')
    feats = lift.depth_track_features(depth, tracks_2d, feature_dim)
    f = float(max(height, width))
    k = (f, f, width / 2.0, height / 2.0)
  else:
    if metric:
      z_map = depth
    else:
      with np.errstate(divide='ignore'):
        z_map = np.where(depth > 0, 1.0 / np.maximum(depth, np.finfo(np.float32).tiny),
                         np.nan).astype(np.float32)
    xyz = lift.lift_2d_to_3d(tracks_2d, z_map, recipe='corrected', depth_kind='metric',
                             focal=focal)
    feats = lift.depth_track_features(z_map, tracks_2d, feature_dim)
    f = float(max(height, width) if focal is None else focal)
    k = (f, f, (width - 1) / 2.0, (height - 1) / 2.0)
  has_depth = np.all(np.isfinite(xyz), axis=-1)  # [N, T]
  return LiftedTracks(
      tracks_xyz=np.where(has_depth[..., None], xyz, 0.0).astype(np.float32),
      visible=np.asarray(visible, bool) & has_depth,
      depth_features=np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32),
      intrinsics=np.asarray(k, np.float32))


# ----------------------------------------------------------------------------
# The whole video.


@dataclasses.dataclass
class VideoOptions:
  """What `load_video_models` builds (the CLI's flags, or a config's `video` section).

  Attributes:
    recipe: 'corrected' or 'released' (module docstring).
    tracker: 'lk', 'cotracker3' or 'cotracker3_online'.
    tracker_checkpoint: weights of a learned tracker.
    depth_checkpoint: official `[metric_]video_depth_anything_*.pth`.
    depth_encoder: 'vits' / 'vitb' / 'vitl' (None: from the file).
    depth_metric: metric depth checkpoint (None: from the file name).
    depth_input_size: depth network short side in pixels.
    dino_checkpoint: DINOv2 weights (`tapkit.models.vit.load_checkpoint`).
    grid_size: tracks per video = grid_size².
    focal: corrected recipe: focal length in pixels (None: max(H, W)).
    random_weights: TESTING ONLY: random tracker, depth and DINO weights.
  """
  recipe: str = 'corrected'
  tracker: str = 'lk'
  tracker_checkpoint: str | None = None
  depth_checkpoint: str | None = None
  depth_encoder: str | None = None
  depth_metric: bool | None = None
  depth_input_size: int = 518
  dino_checkpoint: str | None = None
  grid_size: int = RELEASED_GRID_SIZE
  focal: float | None = None
  random_weights: bool = False


@dataclasses.dataclass
class VideoModels:
  """The networks of the pipeline. `dino` is None when the 3DSPA model reads no DINO features."""
  options: VideoOptions
  tracker: Any
  depth: DepthModel
  dino: DinoFeatures | None


def require_file(path: str | None, flag: str) -> str:
  """`path`, or a ValueError naming the flag when it is not given or not a file."""
  if not path:
    raise ValueError(f'{flag} is required (or --random_weights_for_testing)')
  if not os.path.isfile(path):
    raise ValueError(f'{flag} {path}: no such file')
  return path


def load_video_models(options: VideoOptions, dino_dim: int | None) -> VideoModels:
  """Builds tracker, depth model and (when `dino_dim`, the DINO width the 3DSPA model reads, is
  not None) the DINOv2 backbone; checkpoint problems raise ValueError naming the flag / file."""
  check_recipe(options.recipe)
  if options.random_weights and options.tracker.startswith('cotracker3'):
    tracker = random_cotracker(online=options.tracker == 'cotracker3_online')
  else:
    if options.tracker.startswith('cotracker3'):
      require_file(options.tracker_checkpoint, '--tracker_checkpoint')
    tracker = tracking.make_tracker(options.tracker, options.tracker_checkpoint)
  depth = load_depth_model(options.depth_checkpoint, options.recipe,
                           encoder=options.depth_encoder, metric=options.depth_metric,
                           input_size=options.depth_input_size,
                           random_weights=options.random_weights)
  dino = None
  if dino_dim is not None:
    dino = load_dino(options.dino_checkpoint, width=dino_dim,
                     random_weights=options.random_weights)
  return VideoModels(options, tracker, depth, dino)


def clip_from_tracks(tracks_2d: np.ndarray, visible: np.ndarray, depth: np.ndarray,
                     recipe: str, *, metric: bool = False, focal: float | None = None,
                     dino_maps: np.ndarray | None = None, name: str | None = None,
                     path: str | None = None) -> clip_lib.Clip:
  """Steps 3-5 for tracks already computed: the 3D Clip the scorer reads.

  Args:
    tracks_2d: [N, T, 2] pixels; visible: [N, T] bool.
    depth: [T, H, W] depth maps at the frames' resolution.
    recipe, metric, focal: as `lift_tracks`.
    dino_maps: [T, h, w, D] patch features, or None (no DINO input).
    name, path: of the video.

  Returns:
    Clip with tracks_xyz [T, N, 3], visibility [T, N] (False where no depth), queries at
    each track's first visible frame, the lifting's intrinsics, image_size (H, W) and the
    per-track features in extras (`input_pipeline.TRACK_FEATURES`) [T, N, D].
  """
  lifted = lift_tracks(tracks_2d, visible, depth, recipe, metric=metric, focal=focal)
  height, width = np.shape(depth)[1:3]
  vis = lifted.visible.T  # [T, N]
  n = vis.shape[1]
  qf = np.where(vis.any(axis=0), np.argmax(vis, axis=0), 0)
  xy = np.asarray(tracks_2d, np.float32)[np.arange(n), qf]  # [N, 2]
  extras = {input_pipeline.TRACK_FEATURES['depth_features']:
            np.swapaxes(lifted.depth_features, 0, 1)}
  if dino_maps is not None:
    dino = sample_patch_features(dino_maps, tracks_2d, (height, width), recipe)
    extras[input_pipeline.TRACK_FEATURES['dino_features']] = np.swapaxes(dino, 0, 1)
  return clip_lib.Clip(
      tracks_xyz=np.swapaxes(lifted.tracks_xyz, 0, 1), visibility=vis,
      queries_xyt=np.concatenate([xy, qf[:, None].astype(np.float32)], -1).astype(np.float32),
      intrinsics=lifted.intrinsics, image_size=(int(height), int(width)), name=name,
      path=path, extras=extras)


def video_clip(models: VideoModels, path: str, max_frames: int | None = None,
               progress: Callable[[str], None] | None = None) -> clip_lib.Clip:
  """Reads a video (file or frame folder, at most `max_frames` frames) and runs steps 1-5.

  Raises:
    BadFileError naming the video when it cannot be read.
  """
  video = video_io.read_video(path, max_frames=max_frames)
  frames = video.frames
  _, height, width = frames.shape[:3]
  note = progress or (lambda _: None)
  opts = models.options
  note('tracking')
  queries = released_grid_queries(height, width, opts.grid_size)
  result = models.tracker.track(frames, queries=queries)
  note('depth')
  depth = models.depth(frames)
  dino_maps = None
  if models.dino is not None:
    note('DINO features')
    dino_maps = models.dino(frames)
  name = pathlib.Path(os.path.normpath(path)).name
  return clip_from_tracks(
      np.swapaxes(result.tracks, 0, 1), result.visible.T, depth, opts.recipe,
      metric=models.depth.metric, focal=opts.focal, dino_maps=dino_maps,
      name=name if os.path.isdir(path) else os.path.splitext(name)[0], path=path)


# ----------------------------------------------------------------------------
# A random 3DSPA (testing only).


def random_spa3d_params(model: Any, num_frames: int, dino_dim: int | None, depth: bool,
                        seed: int = 0) -> dict[str, Any]:
  """TESTING ONLY: random parameters (`random_params`) of the 3DSPA `model` reading DINO
  features of width `dino_dim` (None: no DINO input) and, if `depth`, 256-wide depth
  features."""
  from trajan3d import model as model_lib  # pylint: disable=g-import-not-at-top
  inputs = model_lib.example_inputs(model, num_frames=num_frames, depth=depth)
  if dino_dim is not None:
    inputs['dino_features'] = jnp.zeros(inputs['support_tracks'].shape[:3] + (dino_dim,))
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), inputs)['params']
  return random_params(shapes, seed)
