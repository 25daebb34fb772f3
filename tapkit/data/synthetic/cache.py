"""Synthetic clips rendered once into a directory and reused: the on-demand data cache.

Training runs without a configured data set render synthetic clips into their workdir
the first time they need them. Every method does it the same way:

    paths = ensure_clips(root / 'train', num_clips, seed, writer=write_my_format,
                         record_format='my_format_v1', num_frames=16, height=64, width=64)

Clip i of a directory is `generate_clip((seed, i), ...)` with the generator parameters
given here; `writer(clip, staging_dir, name)` writes it in the caller's own record
format (any number of files, in any sub-folders, under `staging_dir`). Only after the
writer has finished are its files moved into `directory` (each move is an atomic
rename), and only then is the clip recorded in `directory/manifest.json`. The manifest
names the generator, its version and parameters, the seed and the record format, and
lists the files of each finished clip:

  * manifest matches: the listed clips are reused, missing ones are rendered (a run
    interrupted while rendering resumes where it stopped);
  * manifest differs (another seed, size, format, generator version): the files it
    lists are deleted and every clip is rendered again;
  * no manifest (a directory from an older run, or a new one): every clip is rendered,
    overwriting files of the same names; other files are left alone.

Clips beyond `num_clips` that a previous call rendered with the same parameters stay
(clip i does not depend on how many clips were asked for).

`cached_clip(directory, i)` renders clip i of a cache directory again from its manifest
(same seed and generator parameters, so the same clip with its frames, depth, ...), for
callers whose record format keeps only part of the clip (e.g. tracks without frames).

Held-out clips use the seed `heldout_seed(seed)` of the training seed, so that
evaluation scenes differ from training scenes in every method.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
from typing import Any, Callable

from tapkit.data.clip import Clip
from tapkit.data.synthetic.render import generate_clip

MANIFEST = 'manifest.json'
# Bumped whenever `generate_clip` renders different clips for the same arguments,
# so that caches written by an older generator are rendered again.
GENERATOR_VERSION = 1
# Offset between the training seed and the held-out seed (a prime, far from the
# small seeds people pick by hand, so that nearby training seeds never reach it).
HELDOUT_SEED_OFFSET = 1_000_003
_STAGING = '.staging'

# writer(clip, staging_dir, name): writes `clip` under `staging_dir`; `name` is
# 'clip_<i:04d>', to be used in the file or folder names.
ClipWriter = Callable[[Clip, pathlib.Path, str], None]


def heldout_seed(seed: int) -> int:
  """Seed of the held-out (evaluation) clips of a synthetic set trained with `seed`.

  Training clip i uses the seed sequence (seed, i), held-out clip i uses
  (seed + 1_000_003, i): the two sets share no scene as long as training seeds stay
  below 1_000_003 apart, and moving the training seed by a few keeps the held-out
  scenes away from the training ones too (a `+ 1` rule would reuse the training
  scenes of the run with the next seed).
  """
  return int(seed) + HELDOUT_SEED_OFFSET


def _key(seed: int, record_format: str, params: dict[str, Any]) -> dict[str, Any]:
  return {'generator': 'tapkit.data.synthetic.generate_clip', 'version': GENERATOR_VERSION,
          'seed': int(seed), 'params': params, 'record_format': record_format}


def _read_manifest(path: pathlib.Path) -> dict[str, Any] | None:
  """The manifest at `path`, or None when there is none or it is unreadable."""
  if not path.is_file():
    return None
  try:
    manifest = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    logging.warning('%s: unreadable synthetic-data manifest (%s); rendering again.', path, e)
    return None
  if not isinstance(manifest, dict) or not isinstance(manifest.get('clips'), dict):
    logging.warning('%s: malformed synthetic-data manifest; rendering again.', path)
    return None
  return manifest


def _write_manifest(path: pathlib.Path, manifest: dict[str, Any]) -> None:
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
  os.replace(tmp, path)


def _delete_clip_files(directory: pathlib.Path, clips: dict[str, Any]) -> None:
  """Deletes the listed files of `clips` and the folders they leave empty."""
  root = directory.resolve()
  folders = set()
  for files in clips.values():
    for rel in files:
      path = directory / rel
      if path.is_file() and root in path.resolve().parents:  # never outside `directory`
        path.unlink()
        folders.update(p for p in path.parents if directory in p.parents)
  for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
    if folder.is_dir() and not any(folder.iterdir()):
      folder.rmdir()


def ensure_clips(directory: str | os.PathLike, num_clips: int, seed: int, *,
                 writer: ClipWriter, record_format: str,
                 description: str = 'synthetic clips', num_frames: int = 24,
                 height: int = 256, width: int = 256, num_tracks: int = 256,
                 query_mode: str = 'random', grid_size: int = 16, dynamic: bool = True,
                 dynamic_fraction: float = 0.5) -> pathlib.Path:
  """Makes `directory` hold synthetic clips 0 .. num_clips - 1 (see the module docstring).

  Args:
    directory: the cache folder (created if missing).
    num_clips: number of clips wanted; clip i is rendered from the seed (seed, i).
    seed: base seed (use `heldout_seed(train_seed)` for held-out clips).
    writer: writes one clip in the caller's record format under a staging folder.
    record_format: name (and version) of the writer's format; a change renders again.
    description: progress-bar label.
    num_frames, height, width, num_tracks, query_mode, grid_size, dynamic,
      dynamic_fraction: arguments of `generate_clip`.

  Returns:
    `directory` as a path; the files of clip i are named by the writer, relative to it.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  if num_clips < 0:
    raise ValueError(f'num_clips must be >= 0, got {num_clips}')
  directory = pathlib.Path(directory).absolute()
  directory.mkdir(parents=True, exist_ok=True)
  params = {'num_frames': int(num_frames), 'height': int(height), 'width': int(width),
            'num_tracks': int(num_tracks), 'query_mode': str(query_mode),
            'grid_size': int(grid_size), 'dynamic': bool(dynamic),
            'dynamic_fraction': float(dynamic_fraction)}
  key = _key(seed, record_format, params)
  manifest_path = directory / MANIFEST
  old = _read_manifest(manifest_path)
  matches = old is not None and {k: v for k, v in old.items() if k != 'clips'} == key
  clips: dict[str, list[str]] = {}
  if matches:
    clips = {k: list(v) for k, v in old['clips'].items()}
  else:
    if old is not None:
      logging.info('%s: synthetic clips were rendered with other parameters; rendering '
                   'them again.', directory)
      _delete_clip_files(directory, old['clips'])
    _write_manifest(manifest_path, {**key, 'clips': clips})
  todo = [i for i in range(num_clips)
          if not clips.get(str(i)) or not all((directory / f).is_file() for f in clips[str(i)])]
  staging = directory / _STAGING
  for i in tqdm(todo, desc=description, unit='clip', disable=not todo):
    clip = generate_clip((seed, i), num_frames, height, width, num_tracks,
                         query_mode=query_mode, grid_size=grid_size, dynamic=dynamic,
                         dynamic_fraction=dynamic_fraction)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    writer(clip, staging, f'clip_{i:04d}')
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob('*') if p.is_file())
    if not files:
      raise RuntimeError(f'{directory}: the {record_format} writer wrote no file for clip {i}')
    for rel in files:
      target = directory / rel
      target.parent.mkdir(parents=True, exist_ok=True)
      os.replace(staging / rel, target)
    shutil.rmtree(staging)
    clips[str(i)] = files
    _write_manifest(manifest_path, {**key, 'clips': clips})
  return directory


def cached_clip(directory: str | os.PathLike, index: int) -> Clip:
  """Clip `index` of a directory filled by `ensure_clips`, rendered again from its manifest.

  `generate_clip` is deterministic in its seed and parameters, so the result is the clip the
  writer was given (frames included), whatever the record format kept of it.

  Raises:
    ValueError: when `directory` has no readable manifest, its manifest comes from another
      generator or generator version, or clip `index` is not listed in it.
  """
  directory = pathlib.Path(directory)
  manifest = _read_manifest(directory / MANIFEST)
  if manifest is None:
    raise ValueError(f'{directory}: no synthetic-data manifest ({MANIFEST}) to render from')
  key = _key(0, '', {})
  if (manifest.get('generator'), manifest.get('version')) != (key['generator'], key['version']):
    raise ValueError(f'{directory}: clips were rendered by {manifest.get("generator")} '
                     f'version {manifest.get("version")}, not {key["generator"]} version '
                     f'{key["version"]}; render them again with ensure_clips')
  if str(int(index)) not in manifest['clips']:
    raise ValueError(f'index {index}: {directory} lists clips '
                     f'{sorted(int(k) for k in manifest["clips"])}')
  params = dict(manifest['params'])
  return generate_clip((int(manifest['seed']), int(index)), params.pop('num_frames'),
                       params.pop('height'), params.pop('width'), params.pop('num_tracks'),
                       **params)
