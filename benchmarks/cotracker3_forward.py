r"""Times our CoTracker3 offline forward (JAX, jit, float32, CPU) against the official PyTorch model.

Peer: `CoTrackerThreeOffline(stride=4, corr_radius=3, window_len=60)` from a checkout of
facebookresearch/co-tracker (`--official_repo DIR`; the code is not pip-installable). Both get
the same parameters (the golden parameter rule `make_params.py` of
`$TAPKIT_SHARED_DIR/golden/cotracker3` when present, else our random initialisation exported
to the official layout), the same video (B = 1: the official forward rejects B > 1) and
queries, `iters` updates, under `torch.no_grad()` with torch set to as many threads as XLA's
CPU client uses (the CPUs this process may run on). Ours and the official forward are timed
INTERLEAVED (after one untimed warm-up call of each: ours, official, ours, official, ...), so
load from other processes hits both alike; the table reports the best and the median of
`--repeats` wall-clock seconds per forward (ours after compilation; the compile time is listed
separately), the ratios official / ours of the best and of the median times and of the best
process-CPU seconds (all threads; the figure least moved by other jobs' load), and the largest
coordinate difference between the two (pixels). A second table splits the time into the feature CNN
(ours: `encode_frames` incl. the pyramid; official: `fnet`) and the rest (correlation,
transformer: (forward − CNN) / iters per update). Without `--official_repo` (or if it cannot be
imported) the peer is skipped with a message and only our timings are printed. No XLA flags are
set.

The memory table follows the path users run: `predictor.predict_offline` with N explicit
queries at the larger size (the 6×6 support grid is appended, 6 iterations) in calls of at most
`BOUNDED_QUERY_CHUNK` queries (what `tapkit.track` uses); every network call it makes is
compiled (not run) and XLA's buffer assignment gives the call's peak temporary memory; the
table lists the calls and the largest peak, and the peak of the predictor's default single
call (all N queries at once, as the official predictor runs them).

Usage (from the repository root):
  python -m benchmarks.cotracker3_forward --official_repo ~/co-tracker \
      [--sizes 8x64x96,16x192x256] [--queries 64] [--iters 4] [--repeats 2] \
      [--memory_queries 16,64,256,1024,4096] [--memory_iters 6]
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
from tapkit.models.cotracker3 import predictor as pred
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


def xla_threads() -> int:
  """CPUs XLA's CPU client runs on (its thread pool covers the CPUs this process may use)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def interleaved(fns: dict, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
  """Wall-clock and process-CPU seconds of each function, called in turn `repeats` times (after
  a warm-up)."""
  times = {name: [] for name in fns}
  cpu = {name: [] for name in fns}
  for fn in fns.values():
    fn()
  for _ in range(repeats):
    for name, fn in fns.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      fn()
      times[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)
  return times, cpu


class MemoryProbe:
  """A `model_fn` for `predict_offline` that compiles (does not run) the offline network for
  every call and records XLA's peak temporary bytes; returns zero tracks."""

  def __init__(self, model_fn: pred.OfflineModel):
    self.model = model_fn
    self.model_resolution = model_fn.model_resolution
    self.calls = []  # (queries per call, temp bytes)
    self._temp_bytes = {}  # (video shape, queries shape) -> temp bytes: one compile per shape

  def __call__(self, video, queries, num_frames=None, num_queries=None):
    m = self.model
    key = (video.shape, queries.shape)
    if key not in self._temp_bytes:
      compiled = model_lib.offline_forward.lower(
          m.params, video, queries, iters=m.iters, window_len=m.window_len,
          model_resolution=tuple(m.model_resolution)).compile()
      analysis = compiled.memory_analysis()
      temp = getattr(analysis, 'temp_size_in_bytes', None) if analysis is not None else None
      self._temp_bytes[key] = float('nan') if temp is None else temp
    self.calls.append((queries.shape[1], self._temp_bytes[key]))
    b, t, n = video.shape[0], video.shape[1], queries.shape[1]
    return np.zeros((b, t, n, 2), np.float32), np.zeros((b, t, n), np.float32), np.zeros(
        (b, t, n), np.float32)


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--official_repo', default=None)
  ap.add_argument('--sizes', default='8x64x96,16x192x256', help='TxHxW,...')
  ap.add_argument('--queries', type=int, default=64)
  ap.add_argument('--iters', type=int, default=4)
  ap.add_argument('--repeats', type=int, default=3)
  ap.add_argument('--memory_queries', default='16,64,256,1024,4096')
  ap.add_argument('--memory_iters', type=int, default=6)
  args = ap.parse_args(argv)
  sizes = [tuple(int(v) for v in s.split('x')) for s in args.sizes.split(',')]

  state, origin = official_state()
  params = jax.tree_util.tree_map(jnp.asarray, convert.params_from_state_dict(state))
  official_cls, why = load_official(args.official_repo)
  peer = None
  threads = xla_threads()
  if official_cls is None:
    print(f'[peer skipped] official PyTorch model not available: {why}')
  else:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(threads)
    peer = official_cls(stride=4, corr_radius=3, window_len=60)
    peer.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    peer.eval()
    print(f'peer: official CoTrackerThreeOffline, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads')
  print(f'parameters: {origin}; jax {jax.__version__} on {jax.devices()[0].platform} '
        f'({threads} CPUs); N = {args.queries}, iters = {args.iters}, {args.repeats} interleaved '
        f'repeats; load average before: {os.getloadavg()[0]:.1f}')

  rows, stage_rows = [], []
  encode = jax.jit(model_lib.encode_frames)
  for t, h, w in sizes:
    video, queries = make_inputs(t, h, w, args.queries)
    result = {}

    def ours():
      result['ours'] = jax.block_until_ready(model_lib.offline_forward(
          params, video, queries, iters=args.iters))

    fns = {'ours': ours, 'ours cnn': lambda: jax.block_until_ready(encode(params, video))}
    start = time.perf_counter()
    ours()
    compile_s = time.perf_counter() - start
    if peer is not None:
      import torch  # pylint: disable=g-import-not-at-top
      tv, tq = torch.from_numpy(video), torch.from_numpy(queries)
      frames = (2 * (tv / 255.0) - 1.0).reshape(-1, 3, h, w)

      def official():
        with torch.no_grad():
          result['official'] = peer(tv, tq, iters=args.iters)[0]

      def official_cnn():
        with torch.no_grad():
          peer.fnet(frames)

      fns.update({'official': official, 'official cnn': official_cnn})
    times, cpu = interleaved(fns, args.repeats)
    best = {k: min(v) for k, v in times.items()}
    row = {'video T×H×W': f'{t}×{h}×{w}', 'ours s': best['ours'],
           'ours median s': float(np.median(times['ours'])), 'ours compile s': compile_s}
    stage = {'video T×H×W': f'{t}×{h}×{w}', 'ours CNN s': best['ours cnn'],
             'ours per update s': (best['ours'] - best['ours cnn']) / args.iters}
    if peer is not None:
      diff = float(np.max(np.abs(result['official'].numpy() - np.asarray(result['ours']['coords']))))
      median = {k: float(np.median(times[k])) for k in ('ours', 'official')}
      row.update({'official s': best['official'], 'official median s': median['official'],
                  'official / ours': best['official'] / best['ours'],
                  'official / ours (median)': median['official'] / median['ours'],
                  'official / ours (CPU s)': min(cpu['official']) / min(cpu['ours']),
                  'max |Δcoords| px': diff})
      stage.update({'official CNN s': best['official cnn'],
                    'official per update s': (best['official'] - best['official cnn'])
                                             / args.iters})
    rows.append(row)
    stage_rows.append(stage)
  print(tables.markdown_table(rows), flush=True)
  print(tables.markdown_table(stage_rows), flush=True)
  print(f'load average after: {os.getloadavg()[0]:.1f}', flush=True)

  t, h, w = sizes[-1]
  mem_rows = []
  model_fn = pred.make_model_fn(params, iters=args.memory_iters)
  probe = MemoryProbe(model_fn)  # shared: calls of one shape are compiled once
  for n in (int(v) for v in args.memory_queries.split(',')):
    video, queries = make_inputs(t, h, w, n)
    frames = np.transpose(video[0], (0, 2, 3, 1))  # [T, H, W, 3] float 0..255
    probe.calls = []
    pred.predict_offline(probe, frames, queries=queries[0], interp_shape=(h, w),
                         query_chunk=pred.BOUNDED_QUERY_CHUNK)
    sizes_per_call = [c[0] for c in probe.calls]
    calls = ', '.join(f'{sizes_per_call.count(q)} × {q}' for q in dict.fromkeys(sizes_per_call))
    bounded_peak = max(c[1] for c in probe.calls)
    probe.calls = []
    pred.predict_offline(probe, frames, queries=queries[0], interp_shape=(h, w))
    mem_rows.append({'queries N': n, 'video T×H×W': f'{t}×{h}×{w}',
                     'network calls × queries each': calls,
                     'peak temp MiB': bounded_peak / 2 ** 20,
                     'one call (default) peak MiB': probe.calls[0][1] / 2 ** 20})
  print(tables.markdown_table(mem_rows))


if __name__ == '__main__':
  main()
