r"""Times our CoTracker3 offline forward (JAX, jit, float32, CPU) against the official PyTorch model.

Peer: `CoTrackerThreeOffline(stride=4, corr_radius=3, window_len=60)` from a checkout of
facebookresearch/co-tracker (`--official_repo DIR`; the code is not pip-installable). Both get
the same parameters (the golden parameter rule `make_params.py` of
`$TAPKIT_SHARED_DIR/golden/cotracker3` when present, else our random initialisation exported
to the official layout), the same video (B = 1: the official forward rejects B > 1) and
queries, `iters` updates, under `torch.no_grad()` with the same number of threads. The table
reports the best-of-`--repeats` wall-clock seconds per forward (ours after compilation; the
compile time is listed separately), the ratio official / ours, and the largest coordinate
difference between the two (pixels). Without `--official_repo` (or if it cannot be imported) the
peer is skipped with a message and only our timings are printed.

A second table lists our compiled forward's peak temporary memory (XLA's buffer assignment,
no run needed) against the number of queries at the larger size.

Usage (from the repository root):
  python -m benchmarks.cotracker3_forward --official_repo ~/co-tracker \
      [--sizes 8x64x96,16x192x256] [--queries 64] [--iters 4] [--repeats 2] \
      [--memory_queries 16,64,256,1024]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models.cotracker3 import convert
from tapkit.models.cotracker3 import model as model_lib
from tapkit.viz import tables

REPO = pathlib.Path(__file__).resolve().parents[1]


def _shared_dir() -> pathlib.Path:
  env = os.environ.get('TAPKIT_SHARED_DIR')
  return pathlib.Path(env) if env else REPO.parent / 'shared'


def official_state() -> tuple[dict[str, np.ndarray], str]:
  """(official-layout state dict, where it came from)."""
  folder = _shared_dir() / 'golden' / 'cotracker3'
  tree = _shared_dir() / 'data' / 'param_trees' / 'cotracker3_offline.json'
  if (folder / 'make_params.py').exists() and tree.exists():
    spec = importlib.util.spec_from_file_location('ct3_make_params', folder / 'make_params.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return (module.make_params(tree, 0, folder / 'param_overrides.json'),
            'golden make_params (seed 0)')
  params = model_lib.init_params(jax.random.PRNGKey(0))
  return convert.state_dict_from_params(params, 60), 'our random init'


def make_inputs(t: int, h: int, w: int, n: int, seed: int = 0):
  """A smooth moving-pattern video [1, T, 3, H, W] float32 0..255 and queries [1, N, 3]."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  frames = []
  for k in range(t):
    phase = 0.3 * k
    r = 127 + 120 * np.sin(xx / 7.0 + phase) * np.cos(yy / 9.0)
    g = 127 + 120 * np.sin((xx + yy) / 11.0 - phase)
    b = 127 + 120 * np.cos(xx / 5.0 - yy / 13.0 + phase)
    frames.append(np.stack([r, g, b]))
  video = np.stack(frames)[None].astype(np.float32)
  queries = np.stack([rng.integers(0, t, n).astype(np.float32),
                      rng.uniform(0, w - 1, n).astype(np.float32),
                      rng.uniform(0, h - 1, n).astype(np.float32)], axis=-1)[None]
  return video, queries


def load_official(repo: str | None):
  """The official model class, or (None, reason)."""
  if not repo:
    return None, 'no --official_repo given'
  path = pathlib.Path(repo).expanduser()
  if not (path / 'cotracker' / 'models' / 'core' / 'cotracker' / 'cotracker3_offline.py').exists():
    return None, f'{path} is not a facebookresearch/co-tracker checkout'
  if importlib.util.find_spec('torch') is None:
    return None, 'torch is not installed'
  sys.path.insert(0, str(path))
  try:
    from cotracker.models.core.cotracker import cotracker3_offline  # pylint: disable=g-import-not-at-top
  except Exception as e:  # pylint: disable=broad-exception-caught
    return None, f'cannot import the official model from {path} ({e})'
  return cotracker3_offline.CoTrackerThreeOffline, ''


def best_of(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--official_repo', default=None)
  ap.add_argument('--sizes', default='8x64x96,16x192x256', help='TxHxW,...')
  ap.add_argument('--queries', type=int, default=64)
  ap.add_argument('--iters', type=int, default=4)
  ap.add_argument('--repeats', type=int, default=2)
  ap.add_argument('--memory_queries', default='16,64,256,1024')
  args = ap.parse_args(argv)
  sizes = [tuple(int(v) for v in s.split('x')) for s in args.sizes.split(',')]

  state, origin = official_state()
  params = jax.tree_util.tree_map(jnp.asarray, convert.params_from_state_dict(state))
  official_cls, why = load_official(args.official_repo)
  peer = None
  if official_cls is None:
    print(f'[peer skipped] official PyTorch model not available: {why}')
  else:
    import torch  # pylint: disable=g-import-not-at-top
    peer = official_cls(stride=4, corr_radius=3, window_len=60)
    peer.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    peer.eval()
    print(f'peer: official CoTrackerThreeOffline, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads')
  print(f'parameters: {origin}; jax {jax.__version__} on {jax.devices()[0].platform}; '
        f'N = {args.queries}, iters = {args.iters}, best of {args.repeats}')

  rows = []
  for t, h, w in sizes:
    video, queries = make_inputs(t, h, w, args.queries)
    forward = lambda: jax.block_until_ready(model_lib.offline_forward(
        params, video, queries, iters=args.iters))
    start = time.perf_counter()
    ours_out = forward()
    compile_s = time.perf_counter() - start
    ours_s = best_of(forward, args.repeats)
    row = {'video T×H×W': f'{t}×{h}×{w}', 'ours s': ours_s, 'ours compile s': compile_s}
    if peer is not None:
      import torch  # pylint: disable=g-import-not-at-top
      tv, tq = torch.from_numpy(video), torch.from_numpy(queries)
      result = {}

      def run_peer():
        with torch.no_grad():
          result['coords'] = peer(tv, tq, iters=args.iters)[0]

      peer_s = best_of(run_peer, args.repeats)
      diff = float(np.max(np.abs(result['coords'].numpy() - np.asarray(ours_out['coords']))))
      row.update({'official s': peer_s, 'official / ours': peer_s / ours_s,
                  'max |Δcoords| px': diff})
    rows.append(row)
  print(tables.markdown_table(rows))

  t, h, w = sizes[-1]
  mem_rows = []
  for n in (int(v) for v in args.memory_queries.split(',')):
    video, queries = make_inputs(t, h, w, n)
    compiled = model_lib.offline_forward.lower(params, video, queries,
                                               iters=args.iters).compile()
    analysis = compiled.memory_analysis()
    temp = getattr(analysis, 'temp_size_in_bytes', None) if analysis is not None else None
    mem_rows.append({'queries N': n, 'video T×H×W': f'{t}×{h}×{w}',
                     'peak temp MiB': float('nan') if temp is None else temp / 2 ** 20})
  print(tables.markdown_table(mem_rows))


if __name__ == '__main__':
  main()
