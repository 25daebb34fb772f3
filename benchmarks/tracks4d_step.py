"""TracksTo4D cost on this machine: forward, train step, per-video inference; vs the original.

Full-size network (released checkpoints: width 256, 3 rounds, 16 heads, K = 12, 12.8 M params),
batch 1, F = 50 frames, N = 100 and 256 points, float32 (HIGHEST matmul precision,
as the official). Measured after compilation and one warm-up run; the median and best
of --repeats runs are reported:
  forward       jitted `TracksTo4D.apply`
  train step    jitted forward + backward of the total loss (tracks4d.losses) + Adam(1e-4) update
  infer video   `tracks4d.infer.infer_video` on a synthetic TracksTo4D file (read,
                sample 50 frames / up to --infer_points tracks, forward, official
                metrics, write the npz; no HTML), after a first warm-up video

With `--official_repo DIR` (a checkout of the official TracksTo4D code: inference.py,
simple_vit_1d.py) the official `TracksTo4DNet` is built with the released hyper-parameters,
loaded with the same weights as ours (outputs compared), and timed INTERLEAVED with ours in
the same run on the same tracks: forward (torch.no_grad) and train step (forward, the
official `get_losses` total, backward, torch Adam(1e-4) step), alternating which side goes
first. Wall and process-CPU seconds are reported with the ratio official / ours; the official
side is timed at each of --torch_threads (default: the number of CPUs, which is XLA's CPU
thread count, and 1, often torch's best on a loaded machine).

With `--profile N` it instead profiles our step at N points: XLA's flop count of the forward
and of the gradient, process-CPU seconds of each, and the time of every compiled operation of
the step (a `jax.profiler` trace joined with the compiled HLO), grouped by kind: each matrix
product by its shapes and contracted dimensions (GFLOP and GFLOP/s), the other fusions by kind.

    python benchmarks/tracks4d_step.py [--points 100 256] [--frames 50] [--repeats 5]
        [--official_repo /path/to/tracks-to-4d [--torch_threads 2 1] [--skip_infer]]
    python benchmarks/tracks4d_step.py --profile 100 [--frames 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import optax

from tracks4d import losses
from tracks4d import model as model_lib


def _timed(fn, repeats: int) -> tuple[float, float]:
  """(median, min) seconds of `repeats` calls of fn() after one warm-up call."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times), min(times)


def random_tracks(num_points: int, num_frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Smooth random normalised tracks [1, N, 3, F] and visibility [1, F, N] (~85% visible)."""
  rng = np.random.default_rng(seed)
  start = rng.uniform(-0.6, 0.6, size=(num_points, 2, 1))
  drift = np.cumsum(rng.normal(0.0, 0.01, size=(num_points, 2, num_frames)), axis=-1)
  vis = rng.uniform(size=(num_points, 1, num_frames)) < 0.85
  tracks = np.concatenate([start + drift, vis.astype(np.float64)], axis=1)
  return tracks[None].astype(np.float32), np.transpose(vis[:, 0], (1, 0))[None]


def _setup(num_points: int, num_frames: int):
  """Network, inputs, params, Adam state and the jitted forward and train step.

  Returns (net, tracks_np [1, N, 3, F], vis_np [1, F, N], params, opt_state, fwd, step):
  fwd(params, tracks) -> outputs; step(params, opt_state) -> (params, opt_state, loss) is
  forward + backward of the total loss (tracks4d.losses) + the Adam(1e-4) update.
  """
  net = model_lib.TracksTo4D()
  tracks_np, vis_np = random_tracks(num_points, num_frames)
  tracks, vis = jnp.asarray(tracks_np), jnp.asarray(vis_np)
  params = jax.jit(net.init)(jax.random.PRNGKey(0), tracks)['params']
  opt = optax.adam(1e-4)
  opt_state = opt.init(params)
  fwd = jax.jit(lambda p, t: net.apply({'params': p}, t))

  def loss(p):
    return losses.loss_terms(net.apply({'params': p}, tracks), tracks, vis)['loss_total']

  @jax.jit
  def step(p, s):
    value, grads = jax.value_and_grad(loss)(p)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, value

  return net, tracks_np, vis_np, params, opt_state, fwd, step


def bench_model(num_points: int, num_frames: int, repeats: int) -> dict[str, float]:
  _, tracks_np, _, params, opt_state, fwd, step = _setup(num_points, num_frames)
  tracks = jnp.asarray(tracks_np)
  t0 = time.perf_counter()
  jax.block_until_ready(fwd(params, tracks))
  compile_fwd = time.perf_counter() - t0
  t0 = time.perf_counter()
  jax.block_until_ready(step(params, opt_state))
  compile_step = time.perf_counter() - t0
  fwd_med, fwd_min = _timed(lambda: fwd(params, tracks), repeats)
  # The step is timed on fixed inputs (no state carried): same work per call.
  step_med, step_min = _timed(lambda: step(params, opt_state), repeats)
  return {'forward': fwd_med, 'forward_min': fwd_min, 'step': step_med, 'step_min': step_min,
          'compile_forward': compile_fwd, 'compile_step': compile_step}


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
  """Times the callables alternately (the first side swaps every repeat) after one warm-up each.

  Returns per name: best and median wall seconds, median process-CPU seconds (all threads).
  """
  for fn in fns.values():
    fn()
  wall = {k: [] for k in fns}
  cpu = {k: [] for k in fns}
  names = list(fns)
  for r in range(repeats):
    for name in (names if r % 2 == 0 else names[::-1]):
      c0, t0 = time.process_time(), time.perf_counter()
      fns[name]()
      wall[name].append(time.perf_counter() - t0)
      cpu[name].append(time.process_time() - c0)
  return {k: {'best': min(wall[k]), 'median': statistics.median(wall[k]),
              'cpu': statistics.median(cpu[k])} for k in fns}


def _import_official(repo: str):
  """(torch, official inference module) from a checkout of the official TracksTo4D code.

  The official transformer head moves a constant with `.cuda()` inside its forward; on a
  CPU-only torch that call is made a no-op so the unmodified code runs on the CPU.
  """
  if not os.path.isfile(os.path.join(repo, 'inference.py')):
    raise ValueError(f'--official_repo: no inference.py in {repo!r}')
  import torch  # pylint: disable=g-import-not-at-top
  if not torch.cuda.is_available():
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
  sys.path.insert(0, os.path.abspath(repo))
  import inference as official  # pylint: disable=g-import-not-at-top
  return torch, official


def bench_vs_official(repo: str, num_points: int, num_frames: int, repeats: int,
                      torch_threads: list[int]) -> dict[str, dict[str, dict[str, float]]]:
  """Ours vs the official TracksTo4DNet, same weights and tracks, timed interleaved.

  The official side is timed once per torch thread count in `torch_threads` (the count is
  set before each of its calls), all sides alternating in one loop.
  """
  from tracks4d import checkpoint as t4d_checkpoint  # pylint: disable=g-import-not-at-top
  torch, official = _import_official(repo)
  torch.set_num_threads(torch_threads[0])
  net, tracks_np, vis_np, params, opt_state, fwd, step = _setup(num_points, num_frames)
  tracks = jnp.asarray(tracks_np)  # [1, N, 3, F]; vis_np [1, F, N]

  # The released configuration: visibility as a third input channel, width 256, 12
  # frequencies, K = 12 (3 rounds and 16 heads are fixed in the official head).
  tnet = official.TracksTo4DNet(inputdim=3, width1=net.width, positional_dim=net.positional_dim,
                                K=net.num_bases)
  state = t4d_checkpoint.flax_params_to_torch_state_dict(jax.device_get(params))
  tnet.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
  t_tracks = torch.from_numpy(tracks_np)
  t_vis = torch.from_numpy(vis_np)  # bool [1, F, N], as the official dataset returns.
  camera_num = torch.tensor([num_frames])  # The dataset's per-batch frame count.
  coeffs = losses.DEFAULT_LOSS_COEFFS
  t_opt = torch.optim.Adam(tnet.parameters(), lr=1e-4)

  def official_loss():
    o = tnet(t_tracks)  # (focal, projections, projections_static, ..., depths @8, ..., NR @15)
    return official.get_losses(o[1], t_tracks[:, :, :2, :], t_vis, o[2], o[15], camera_num, o[8],
                               coeffs['reprojection_dynamic_coeff'], o[5],
                               coeffs['sparsity_dynamic_coeff'])[0], o

  def official_forward():
    with torch.no_grad():
      return tnet(t_tracks)

  def official_step():
    t_opt.zero_grad()
    value, _ = official_loss()
    value.backward()
    t_opt.step()
    return value

  # Same weights, same tracks: the outputs and the loss must agree before any step.
  with torch.no_grad():
    t_value, t_out = official_loss()
  ours_out = fwd(params, tracks)
  ours_value = step(params, opt_state)[2]
  t_proj = t_out[1].numpy()  # [1, F, 2, N]
  check = {'projections_reldiff': float(np.max(np.abs(np.asarray(ours_out.projections) - t_proj))
                                        / np.max(np.abs(t_proj))),
           'loss_ours': float(ours_value), 'loss_official': float(t_value)}
  def with_threads(fn, threads):
    def call():
      torch.set_num_threads(threads)
      return fn()
    return call

  fwd_fns = {'ours': lambda: jax.block_until_ready(fwd(params, tracks))}
  # Ours is timed on fixed inputs (no state carried; same work per call), the official
  # step updates its parameters in place as in its training loop.
  step_fns = {'ours': lambda: jax.block_until_ready(step(params, opt_state))}
  for threads in torch_threads:
    fwd_fns[f'official, {threads} thr'] = with_threads(official_forward, threads)
    step_fns[f'official, {threads} thr'] = with_threads(official_step, threads)
  fwd_times = _interleaved(fwd_fns, repeats)
  step_times = _interleaved(step_fns, repeats)
  return {'forward': fwd_times, 'step': step_times, 'check': check}


def _print_official_table(rows, frames: int, repeats: int) -> None:
  print(f'\nInterleaved vs official (torch {_torch_version()}; XLA {os.cpu_count()} CPU '
        f'thread(s)); {repeats} alternating repeats; loadavg {_loadavg()}')
  head = (f'{"N, F":>8} | {"part":>14} | {"official side":>17} | {"ours best/med s":>16} | '
          f'{"official best/med s":>19} | {"ratio best":>10} | {"ratio med":>9} | '
          f'{"ours/off CPU s":>15} | {"CPU ratio":>9}')
  print(head)
  print('-' * len(head))
  for n, r in rows:
    for part, label in (('forward', 'forward'), ('step', 'fwd+bwd+Adam')):
      o = r[part]['ours']
      for side, t in r[part].items():
        if side == 'ours':
          continue
        print(f'{f"{n}, {frames}":>8} | {label:>14} | {side:>17} | '
              f'{o["best"]:7.3f} / {o["median"]:6.3f} | '
              f'{t["best"]:9.3f} / {t["median"]:7.3f} | {t["best"] / o["best"]:9.2f}x | '
              f'{t["median"] / o["median"]:8.2f}x | {o["cpu"]:6.2f} / {t["cpu"]:6.2f} | '
              f'{t["cpu"] / o["cpu"]:8.2f}x')
  for n, r in rows:
    c = r['check']
    print(f'N={n}: same weights, max |projections ours - official| / max |official| '
          f'{c["projections_reldiff"]:.1e}; '
          f'loss ours {c["loss_ours"]:.6f} official {c["loss_official"]:.6f}')


def _torch_version() -> str:
  import torch  # pylint: disable=g-import-not-at-top
  return torch.__version__


def _loadavg() -> str:
  try:
    with open('/proc/loadavg') as f:
      return ' '.join(f.read().split()[:3])
  except OSError:
    return 'n/a'


def _flops(compiled) -> float:
  """XLA's flop count of one call of a compiled function."""
  cost = compiled.cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost)['flops'])


def _op_groups(hlo: str, op_ms: dict[str, float]) -> list[tuple[str, float, int, float]]:
  """(group, ms, count, flops) over the entry operations of compiled HLO text, slowest first.

  A fusion holding a dot is grouped by the dot's result and operand shapes and its
  dimension numbers; any other operation by its name without the numeric suffix.
  """
  bodies = {m.group(1): m.group(2) for m in
            re.finditer(r'\n(?:ENTRY )?%?([\w.\-]+) \([^\n]*\{\n(.*?)\n\}', hlo, re.S)}
  entry = re.search(r'\nENTRY %?([\w.\-]+)', hlo).group(1)
  # Shapes of the entry's own values, for products that are not fused.
  shapes = dict(re.findall(r'%?([\w.\-]+) = (\S+) ', bodies[entry]))
  groups = collections.defaultdict(lambda: [0.0, 0, 0.0])
  for line in bodies[entry].split('\n'):
    m = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = (\S+) [\w\-]+\(', line)
    if not m:
      continue
    name, shape = m.groups()
    called = re.search(r'calls=%?([\w.\-]+)', line)
    body = bodies.get(called.group(1), '') if called else line
    dot = re.search(r'= (\S+) dot\(%?([\w.\-]+), %?([\w.\-]+)\), (.*)', body)
    flops = 0.0
    if dot:
      params = {**shapes, **dict(re.findall(r'%?([\w.\-]+) = (\S+) parameter', body))}
      out, lhs, rhs, attrs = dot.groups()
      lhs, rhs = params.get(lhs, lhs), params.get(rhs, rhs)
      attrs = re.sub(r', (operand_precision|metadata)=.*', '', attrs)
      dims = lambda s: [int(d) for d in re.search(r'\[([\d,]*)\]', s).group(1).split(',') if d]
      contracted = re.search(r'lhs_contracting_dims=\{([\d,]*)\}', attrs)
      if contracted and '[' in lhs:
        k = np.prod([dims(lhs)[int(i)] for i in contracted.group(1).split(',')])
        flops = 2.0 * np.prod(dims(out)) * k
      key = f'dot {out.split("{")[0]} = {lhs.split("{")[0]} x {rhs.split("{")[0]} {attrs}'
    else:
      key = f'{name.rsplit(".", 1)[0]} {shape.split("{")[0]}'
    g = groups[key]
    g[0] += op_ms.get(name, 0.0)
    g[1] += 1
    g[2] += flops
  return sorted(((k, *v) for k, v in groups.items()), key=lambda r: -r[1])


def profile_step(num_points: int, num_frames: int, repeats: int, top: int = 30) -> None:
  """Prints the flop counts, CPU seconds and per-operation times of our step (see above)."""
  net, tracks_np, vis_np, params, opt_state, _, step = _setup(num_points, num_frames)
  tracks, vis = jnp.asarray(tracks_np), jnp.asarray(vis_np)
  loss = lambda p: losses.loss_terms(net.apply({'params': p}, tracks), tracks, vis)['loss_total']
  parts = {'loss forward': jax.jit(loss), 'loss gradient': jax.jit(jax.grad(loss))}
  print(f'Our step at N={num_points}, F={num_frames}; process-CPU seconds best of {repeats}; '
        f'loadavg {_loadavg()}')
  parts['step (grad + Adam)'] = step
  compiled = None
  for label, fn in parts.items():
    # One compiled program alive at a time (peak memory); the step's is kept for the trace.
    args = (params, opt_state) if fn is step else (params,)
    del compiled  # Frees the previous program before the next one is compiled.
    compiled = fn.lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
      c0 = time.process_time()
      jax.block_until_ready(compiled(*args))
      times.append(time.process_time() - c0)
    flops = _flops(compiled)
    print(f'  {label:>20}: {flops / 1e9:7.1f} GFLOP  {min(times):6.2f} CPU s  '
          f'{flops / 1e9 / min(times):5.1f} GFLOP/CPU-s', flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    calls = 2
    jax.block_until_ready(compiled(params, opt_state))
    jax.profiler.start_trace(tmp)
    for _ in range(calls):
      jax.block_until_ready(compiled(params, opt_state))
    jax.profiler.stop_trace()
    traces = glob.glob(os.path.join(tmp, 'plugins', 'profile', '*', '*.trace.json.gz'))
    if not traces:
      raise RuntimeError(f'jax.profiler wrote no *.trace.json.gz under {tmp}')
    with gzip.open(traces[0]) as f:
      events = json.load(f)['traceEvents']
  op_ms = collections.defaultdict(float)
  for e in events:
    if e.get('ph') == 'X':
      op_ms[e['name']] += e['dur'] / 1e3 / calls  # microseconds -> ms per call
  rows = _op_groups(compiled.as_text(), op_ms)
  total = sum(r[1] for r in rows)
  dot_ms = sum(r[1] for r in rows if r[0].startswith('dot '))
  print(f'\nPer-operation time of one step (wall ms summed over operations, which may overlap '
        f'on XLA\'s threads): {total:.0f} ms, of which matrix products {dot_ms:.0f} ms '
        f'({100 * dot_ms / max(total, 1e-9):.0f}%); slowest {top} groups:')
  print(f'{"ms":>8} | {"ops":>3} | {"GFLOP":>6} | {"GFLOP/s":>7} | group')
  for key, ms, count, flops in rows[:top]:
    rate = f'{flops / 1e6 / ms:7.1f}' if flops and ms else f'{"":>7}'
    print(f'{ms:8.1f} | {count:3d} | {flops / 1e9:6.2f} | {rate} | {key}')


def bench_infer(num_points: int, repeats: int) -> float:
  """Median seconds per video of tracks4d.infer on a 50-frame synthetic file."""
  from tapkit.data import synthetic, tracks4d_format  # pylint: disable=g-import-not-at-top
  from tracks4d import checkpoint as t4d_checkpoint  # pylint: disable=g-import-not-at-top
  from tracks4d import infer  # pylint: disable=g-import-not-at-top
  net = model_lib.TracksTo4D()
  with tempfile.TemporaryDirectory() as tmp:
    clip = synthetic.generate_clip((7, 0), 51, 96, 128, int(1.6 * num_points))
    path = os.path.join(tmp, 'input', 'video.npz')
    out_dir = os.path.join(tmp, 'out')
    tracks4d_format.save_tracks4d_npz(path, tracks4d_format.clip_to_tracks4d(clip))
    params = jax.jit(net.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8, 3, 50)))['params']
    flat = os.path.join(tmp, 'params.npz')
    np.savez(flat, **t4d_checkpoint.flax_params_to_torch_state_dict(jax.device_get(params)))
    model = infer.load_model(flat)
    run = lambda: infer.infer_video(model, path, out_dir, max_points=num_points, html=False)
    row = run()  # Warm-up (compiles for this N).
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      run()
      times.append(time.perf_counter() - t0)
    return statistics.median(times), row['num_points']


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--points', type=int, nargs='*', default=[100, 256],
                      help='N values of the model timings (none: skip them)')
  parser.add_argument('--frames', type=int, default=50)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--infer_points', type=int, default=256,
                      help='max tracks per video in the inference timing (official 1000)')
  parser.add_argument('--skip_infer', action='store_true')
  parser.add_argument('--official_repo', default=None,
                      help='checkout of the official TracksTo4D code: time it interleaved with ours')
  parser.add_argument('--torch_threads', type=int, nargs='+', default=[os.cpu_count(), 1],
                      help='torch intra-op thread counts of the official side, each timed '
                      '(default: XLA\'s count, then 1)')
  parser.add_argument('--profile', type=int, default=None, metavar='N',
                      help='profile our step at N points (flops, CPU s, per-operation times) '
                      'and exit')
  args = parser.parse_args()
  if args.profile is not None:
    profile_step(args.profile, args.frames, min(args.repeats, 3))
    return
  if args.official_repo:
    rows = []
    for n in args.points:
      rows.append((n, bench_vs_official(args.official_repo, n, args.frames, args.repeats,
                                        args.torch_threads)))
      print(f'  N={n} done (loadavg {_loadavg()})', flush=True)
      if n != args.points[-1]:
        _print_official_table(rows[-1:], args.frames, args.repeats)  # Partial results first.
    _print_official_table(rows, args.frames, args.repeats)
    if args.skip_infer:
      return

  print(f'jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} cpu(s); '
        f'full TracksTo4D, batch 1, F={args.frames}, median (min) of {args.repeats} runs')
  rows = []
  for n in args.points:
    r = bench_model(n, args.frames, args.repeats)
    rows.append((n, r))
    print(f'  N={n}: forward {r["forward"]:.3f}s step {r["step"]:.3f}s '
          f'(compile {r["compile_forward"]:.1f}s / {r["compile_step"]:.1f}s)', flush=True)
  print()
  if rows:
    print(f'{"N, F":>10} | {"forward s":>16} | {"fwd+bwd+Adam s":>16}')
    print('-' * 50)
  for n, r in rows:
    print(f'{f"{n}, {args.frames}":>10} | {r["forward"]:7.3f} ({r["forward_min"]:.3f}) | '
          f'{r["step"]:7.3f} ({r["step_min"]:.3f})')
  if not args.skip_infer:
    seconds, n_real = bench_infer(args.infer_points, max(1, args.repeats // 2))
    print(f'\ninference per video (50 frames, {n_real} tracks, read + sample + forward + '
          f'metrics + npz): {seconds:.3f}s')


if __name__ == '__main__':
  main()
