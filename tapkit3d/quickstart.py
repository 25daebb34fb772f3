r"""The default job: all three methods on synthetic data, one report.

    python -m tapkit3d.quickstart --workdir runs/quickstart
    python -m tapkit3d.quickstart --workdir runs/quickstart --stages trajan3d,report --force
    python -m tapkit3d.quickstart --workdir /tmp/qs --fast        # seconds-sized (tests)

Stages (each can run on its own; later stages read earlier stages' outputs):

  data      held-out synthetic TAPVid-3D clips (<workdir>/data/heldout) for 3DSPA.
  trajan3d  trains the 3DSPA `smoke` preset (configs/spa3d.py) in <workdir>/trajan3d,
            evaluates untrained vs trained on the held-out clips with the TAPVid-3D
            metrics (held-out query tracks, `median` scaling) and scores the realism of
            clean vs corrupted (jitter + teleports) copies of the clips.
  tracks4d  trains TracksTo4D `smoke` (configs/tracks4d.py) in <workdir>/tracks4d and
            runs inference on its held-out synthetic scenes: untrained, trained, and
            trained + test-time fine-tuning (ATE, RPE, pixel error, depth AbsRel, δ1).
  dpov      3DPoV `smoke` (configs/dpov.py) in <workdir>/dpov: pre-trains the tiny ViT on the
            synthetic frames (dpov_jax/pretrain.py), fine-tunes it with 3DPoV; frame-to-frame
            matching accuracy of the pre-trained start vs the student and EMA teacher.
  report    <workdir>/report.html and report.md: the numbers, training curves and figures.

The three method stages are the methods' `demo.py` modules (trajan3d/demo.py documents their
common interface); this runner adds the data and report stages, the done records and the
progress log. A finished stage writes <workdir>/<stage>/done.json with its results and is
skipped on the next run (training itself also resumes from its checkpoints); --force redoes the
chosen stages. --fast (or TAPKIT_QUICKSTART_FAST=1) shrinks data and steps to a few of each
(compilation is then most of the time): the numbers are meaningless, the plumbing is what it
checks.

On a machine with 2 or more cores (--jobs 2, the default there) the dpov stage runs in a process
of its own beside data, trajan3d and tracks4d (its output in <workdir>/dpov/quickstart.log;
--jobs 3 runs tracks4d in a third one); each process computes what it computes alone, so the
numbers equal those of --jobs 1. Compiled
programs are kept in JAX's persistent compilation cache under <workdir>/.jax_cache and reused
by later stages and reruns.

The run ends with a table of each stage's wall seconds, process CPU seconds (all threads) and
JAX compilations (seconds, programs, persistent-cache hits), also kept in
<workdir>/timings.json: CPU seconds are what the stage costs when the machine is shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import pathlib
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from tapkit import cli


class _DemoModules(Mapping[str, ModuleType]):
  """{stage: its demo module}, each imported on first use.

  The demo modules import JAX and the models; importing them lazily keeps `--help` and
  argument errors of the command fast.
  """

  def __init__(self, modules: Mapping[str, str]):
    self._names = dict(modules)

  def __getitem__(self, stage: str) -> ModuleType:
    module = importlib.import_module(self._names[stage])
    if module.STAGE != stage:
      raise RuntimeError(f'{module.__name__}.STAGE is {module.STAGE!r}, expected {stage!r}')
    return module

  def __iter__(self) -> Iterator[str]:
    return iter(self._names)

  def __len__(self) -> int:
    return len(self._names)


# The method stages, in the order they run and appear in the report.
DEMOS: Mapping[str, ModuleType] = _DemoModules(
    {'trajan3d': 'trajan3d.demo', 'tracks4d': 'tracks4d.demo', 'dpov': 'dpov_jax.demo'})
STAGES = ('data', *DEMOS, 'report')
_FAST_ENV = 'TAPKIT_QUICKSTART_FAST'
# Report images narrower than this (pixels) are enlarged (tapkit.viz.html.Report).
REPORT_MIN_IMAGE_WIDTH = 600
# JAX's persistent compilation cache of the run, under the workdir
# (`tapkit.train.compile_cache`).
COMPILE_CACHE = '.jax_cache'


@dataclasses.dataclass(frozen=True)
class Sizes:
  """The held-out clips of the data stage (the method stages have their own demo.Sizes)."""
  heldout_clips: int = 10
  heldout_frames: int = 24
  heldout_size: int = 64


FULL = Sizes()
FAST = Sizes(heldout_clips=2, heldout_frames=24, heldout_size=64)


def fast_from_env() -> bool:
  return os.environ.get(_FAST_ENV, '').strip().lower() not in ('', '0', 'false', 'no')


# ----------------------------------------------------------------------- progress


class CompileMeter:
  """Counts JAX's compilations in this process (jax.monitoring events), from `start()` on.

  `programs` counts every backend compilation request (a persistent-cache hit included),
  `seconds` their duration (XLA compile time, or the cache read), `cache_hits` those served
  from the persistent compilation cache; `by_name` holds {function name: [count, seconds]}.
  """

  _BACKEND_COMPILE = '/jax/core/compile/backend_compile_duration'
  _CACHE_HIT = '/jax/compilation_cache/cache_hits'

  def __init__(self):
    self.programs, self.seconds, self.cache_hits = 0, 0.0, 0
    self.by_name: dict[str, list[float]] = {}
    self._started = False

  def start(self) -> None:
    """Registers the listeners (imports JAX); later calls do nothing."""
    if self._started:
      return
    from jax import monitoring  # pylint: disable=g-import-not-at-top
    monitoring.register_event_duration_secs_listener(self._on_duration)
    monitoring.register_event_listener(self._on_event)
    self._started = True

  def _on_duration(self, event: str, seconds: float, fun_name: str = '?', **_) -> None:
    if event == self._BACKEND_COMPILE:
      self.programs += 1
      self.seconds += seconds
      entry = self.by_name.setdefault(str(fun_name), [0, 0.0])
      entry[0] += 1
      entry[1] += seconds

  def _on_event(self, event: str, **_) -> None:
    if event == self._CACHE_HIT:
      self.cache_hits += 1

  def snapshot(self) -> tuple[int, float, int, dict[str, tuple[int, float]]]:
    return (self.programs, self.seconds, self.cache_hits,
            {k: (int(n), s) for k, (n, s) in self.by_name.items()})


@dataclasses.dataclass
class StageTime:
  """Where a stage's time went: wall and process CPU seconds, and its JAX compilations."""
  wall_s: float
  cpu_s: float
  compiles: int = 0
  compile_s: float = 0.0
  cache_hits: int = 0
  # {jitted function: [compilations, seconds]} of the stage, the slowest first.
  compiled: dict[str, list[float]] = dataclasses.field(default_factory=dict)

  def describe(self) -> str:
    text = f'{self.cpu_s:.0f} CPU-s'
    if self.compiles:
      text += (f', compiling {self.compile_s:.0f} s: {self.compiles} programs, '
               f'{self.cache_hits} from the cache')
    return text


class Progress:
  """One line per stage start / end with elapsed time; stage work logs in between.

  Each stage's wall time, process CPU time (all threads of this process) and JAX
  compilations are kept in `times` ({stage: StageTime}); `table` prints them.
  """

  def __init__(self, stages: Sequence[str], stream=None):
    self._stages = list(stages)
    self._stream = stream
    self._t0 = time.perf_counter()
    self._stage_t0 = self._t0
    self._cpu0 = time.process_time()
    self._compiles0 = (0, 0.0, 0, {})
    self.meter = CompileMeter()
    self.times: dict[str, StageTime] = {}

  def _elapsed(self, since: float) -> str:
    seconds = int(time.perf_counter() - since)
    return f'{seconds // 60}m{seconds % 60:02d}s'

  def stage(self, name: str, what: str) -> None:
    self._stage_t0 = time.perf_counter()
    self._cpu0 = time.process_time()
    self._compiles0 = self.meter.snapshot()
    index = self._stages.index(name) + 1
    self._print(f'[{index}/{len(self._stages)}] {name}: {what}')

  def step(self, text: str) -> None:
    self._print(f'    {text} ({self._elapsed(self._stage_t0)} into the stage)')

  def done(self, name: str, summary: str = '', started: float | None = None,
           measured: StageTime | None = None) -> None:
    """The end of stage `name` (begun at perf_counter() `started`, default: the last one).

    `measured` is the stage's time as another process measured it (its CPU seconds and
    compilations); by default this process's since `stage(name, ...)`.
    """
    since = self._stage_t0 if started is None else started
    wall = time.perf_counter() - since
    if measured is None:
      *now, names = self.meter.snapshot()
      *then, names0 = self._compiles0
      programs, seconds, hits = (a - b for a, b in zip(now, then))
      compiled = {k: [n - names0.get(k, (0, 0.0))[0], round(s - names0.get(k, (0, 0.0))[1], 2)]
                  for k, (n, s) in names.items() if n > names0.get(k, (0, 0.0))[0]}
      compiled = dict(sorted(compiled.items(), key=lambda kv: -kv[1][1]))
      measured = StageTime(wall, time.process_time() - self._cpu0, programs, seconds, hits,
                           compiled)
    else:
      measured = dataclasses.replace(measured, wall_s=wall)
    self.times[name] = measured
    self._print(f'    {name} done in {self._elapsed(since)} ({measured.describe()})'
                f'{"; " + summary if summary else ""} (total {self._elapsed(self._t0)})')

  def table(self) -> dict[str, float]:
    """Prints wall / CPU / compile seconds per stage and the total.

    The total's CPU seconds are those of this process since it started and of its finished
    child processes (imports and start-up included, which no stage counts).

    Returns:
      {'wall_s', 'cpu_s', 'load_average'} of the whole run.
    """
    self._print(f'{"stage":<9} {"wall s":>7} {"CPU s":>7} {"compile s":>9} '
                f'{"programs":>8} {"cached":>6}')
    for name, t in self.times.items():
      self._print(f'{name:<9} {t.wall_s:7.1f} {t.cpu_s:7.1f} {t.compile_s:9.1f} '
                  f'{t.compiles:8d} {t.cache_hits:6d}')
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total_cpu = time.process_time() + children.ru_utime + children.ru_stime
    self._print(f'{"total":<9} {time.perf_counter() - self._t0:7.1f} {total_cpu:7.1f} '
                f'(all processes from their start; load average {os.getloadavg()[0]:.1f})')
    return {'wall_s': time.perf_counter() - self._t0, 'cpu_s': total_cpu,
            'load_average': os.getloadavg()[0]}

  def _print(self, text: str) -> None:
    print(f'quickstart | {text}', file=self._stream or sys.stderr, flush=True)


# ------------------------------------------------------------------- done records


def _done_path(workdir: pathlib.Path, stage: str) -> pathlib.Path:
  return workdir / stage / 'done.json'


def read_done(workdir: str | os.PathLike, stage: str) -> dict[str, Any]:
  """The results a finished stage recorded; a clear error if it has not run."""
  path = _done_path(pathlib.Path(workdir), stage)
  if not path.is_file():
    raise FileNotFoundError(f'{path}: missing; run `python -m tapkit3d.quickstart --workdir '
                            f'{workdir} --stages {stage}` first')
  with open(path) as f:
    return json.load(f)


def _write_done(workdir: pathlib.Path, stage: str, result: Mapping[str, Any]) -> None:
  _write_json(_done_path(workdir, stage), result)


def _time_path(workdir: pathlib.Path, stage: str) -> pathlib.Path:
  """Where a stage's StageTime of its last run is kept (read by the process that waits)."""
  return workdir / stage / 'time.json'


def _write_json(path: pathlib.Path, result: Mapping[str, Any]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix('.tmp')
  with open(tmp, 'w') as f:
    json.dump(result, f, indent=2, default=_json_default)
  os.replace(tmp, path)  # Atomic: a killed run never leaves a half-written done.json.


def _json_default(value: Any) -> Any:
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f'not JSON serialisable: {type(value)}')


def _inputs(workdir: pathlib.Path, demo: ModuleType) -> dict[str, dict[str, Any]]:
  return {stage: read_done(workdir, stage) for stage in demo.INPUTS}


# ------------------------------------------------------------------------- stages


def stage_data(workdir: pathlib.Path, sizes: Sizes, progress: Progress) -> dict[str, Any]:
  """Renders the held-out synthetic TAPVid-3D clips (seed 777) into <workdir>/data/heldout."""
  from tapkit.data import synthetic  # pylint: disable=g-import-not-at-top
  out = workdir / 'data' / 'heldout'
  progress.step(f'rendering {sizes.heldout_clips} held-out clips into {out}')
  synthetic.main(['--out', str(out), '--num_clips', str(sizes.heldout_clips), '--seed', '777',
                  '--num_frames', str(sizes.heldout_frames), '--height',
                  str(sizes.heldout_size), '--width', str(sizes.heldout_size)])
  files = sorted(str(p.relative_to(out)) for p in out.glob('*/*.npz'))
  if len(files) != sizes.heldout_clips:
    raise RuntimeError(f'{out}: expected {sizes.heldout_clips} clips, found {len(files)}')
  return {'heldout_dir': str(out), 'files': files}


def stage_method(workdir: pathlib.Path, demo: ModuleType, fast: bool,
                 progress: Progress) -> dict[str, Any]:
  """Runs a method's demo stage in <workdir>/<stage> with the FAST or FULL sizes."""
  inputs = _inputs(workdir, demo)
  return demo.run(workdir / demo.STAGE, demo.FAST if fast else demo.FULL, fast=fast,
                  log=progress.step, inputs=inputs)


def stage_report(workdir: pathlib.Path, progress: Progress) -> dict[str, Any]:
  """<workdir>/report.html and report.md with a section per finished method stage."""
  from tapkit.viz import html  # pylint: disable=g-import-not-at-top

  report = html.Report('tapkit quickstart', min_image_width=REPORT_MIN_IMAGE_WIDTH)
  report.add_text(f'Workdir `{workdir}`. Everything runs on synthetic data generated here; '
                  'the presets are the `smoke` ones (tiny models, minutes on a CPU).')
  filled = []
  for stage, demo in DEMOS.items():
    if _done_path(workdir, stage).is_file():
      progress.step(f'section {stage}')
      demo.add_section(report, read_done(workdir, stage), _inputs(workdir, demo))
      filled.append(stage)
    else:
      report.add_section(stage)
      report.add_text(f'Not run: `python -m tapkit3d.quickstart --workdir {workdir} '
                      f'--stages {stage}`.')
  html_path, md_path = report.write(workdir, 'report')
  return {'html': html_path, 'markdown': md_path, 'sections': filled}


# ----------------------------------------------------------------- processes of their own

# The stages that run in processes of their own while the others run in this one: with
# --jobs N the first N - 1 of them. Neither reads another stage's output. On 2 cores the
# default is 2 processes: dpov alone takes about as long as data + trajan3d + tracks4d, and a
# third process measured no faster (--fast on the idle 2-core machine: 99-102 s with 3,
# 90-109 s with 2, the same CPU seconds).
PARALLEL_STAGES = ('dpov', 'tracks4d')
_REPO_ROOT = str(pathlib.Path(__file__).resolve().parents[1])


class StageProcess:
  """One stage run by `python -m tapkit3d.quickstart --stages STAGE` in a child process.

  Its output goes to <workdir>/<stage>/quickstart.log; `join` waits for it, repeats its
  progress lines and returns its done record.
  """

  def __init__(self, workdir: pathlib.Path, stage: str, *, fast: bool, force: bool):
    self.stage, self.workdir = stage, workdir
    self.log_path = workdir / stage / 'quickstart.log'
    self.log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, '-m', 'tapkit3d.quickstart', '--workdir', str(workdir),
               '--stages', stage, '--jobs', '1', *(['--fast'] if fast else []),
               *(['--force'] if force else [])]
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([_REPO_ROOT, *filter(None, [env.get('PYTHONPATH')])])
    self.started = time.perf_counter()
    with open(self.log_path, 'w') as log:
      self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL)

  def join(self, progress: Progress) -> dict[str, Any]:
    """Waits for the stage; its record (RuntimeError with the log's end if it failed)."""
    code = self._proc.wait()
    lines = self.log_path.read_text(errors='replace').splitlines()
    if code != 0:
      tail = '\n'.join(lines[-30:])
      raise RuntimeError(f'stage {self.stage} (a process of its own) failed with exit code {code}; '
                         f'its output is in {self.log_path}, which ends with:\n{tail}')
    for line in lines:
      if line.startswith('quickstart |     ') and ' done in ' not in line:
        progress.step(f'{self.stage}: {line[len("quickstart |     "):]}')
    result = read_done(self.workdir, self.stage)
    with open(_time_path(self.workdir, self.stage)) as f:
      measured = StageTime(**json.load(f))
    progress.done(self.stage, _summary(self.stage, result), started=self.started,
                  measured=measured)
    return result

  def stop(self) -> None:
    """Ends the child (when this process fails first)."""
    if self._proc.poll() is None:
      self._proc.terminate()
      try:
        self._proc.wait(timeout=10)
      except subprocess.TimeoutExpired:  # A library may hold SIGTERM (checkpoint saving).
        self._proc.kill()
        self._proc.wait()


def _needs_run(workdir: pathlib.Path, stage: str, force: bool) -> bool:
  return stage != 'report' and (force or not _done_path(workdir, stage).is_file())


def default_jobs() -> int:
  """2 (this process and one for dpov) with at least 2 CPU cores, else 1."""
  return 2 if (os.cpu_count() or 1) >= 2 else 1


# --------------------------------------------------------------------------- main


def run(workdir: str | os.PathLike, stages: Sequence[str] = STAGES, *, fast: bool = False,
        force: bool = False, jobs: int = 1) -> dict[str, dict[str, Any]]:
  """Runs `stages` in order (skipping finished ones unless `force`); returns their results.

  With `jobs` >= 2 the first `jobs` - 1 of PARALLEL_STAGES run in processes of their own
  (`StageProcess`) while the other stages run here; the report waits for all of them. Each
  process computes exactly what it computes alone, so the results are those of a sequential
  run.
  """
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise ValueError(f'--stages: unknown {unknown}; choose from {",".join(STAGES)}')
  if jobs < 1:
    raise ValueError(f'--jobs must be >= 1, got {jobs}')
  workdir = pathlib.Path(workdir).resolve()  # orbax wants absolute checkpoint paths
  workdir.mkdir(parents=True, exist_ok=True)
  ordered = [s for s in STAGES if s in stages]
  progress = Progress(ordered)
  describe = {'data': 'held-out synthetic TAPVid-3D clips',
              **{stage: demo.DESCRIPTION for stage, demo in DEMOS.items()},
              'report': 'report.html / report.md'}
  to_run = [s for s in ordered if _needs_run(workdir, s, force)]
  results, background = {}, {}
  from tapkit.train import compile_cache  # pylint: disable=g-import-not-at-top
  with compile_cache.compilation_cache(workdir / COMPILE_CACHE):
    progress.meter.start()
    try:
      parallel = [s for s in PARALLEL_STAGES if s in to_run][:max(0, jobs - 1)]
      if parallel and len(parallel) == len(to_run):
        parallel.pop()  # This process would only wait: the last one runs here.
      for stage in parallel:
        progress.stage(stage, describe[stage])
        background[stage] = StageProcess(workdir, stage, fast=fast, force=force)
        progress.step(f'running in a process of its own (output: '
                      f'{background[stage].log_path})')
      for stage in ordered:
        if stage in background:
          continue
        if stage == 'report':
          for name in list(background):
            results[name] = background.pop(name).join(progress)
        progress.stage(stage, describe[stage])
        if stage not in to_run and stage != 'report':
          results[stage] = read_done(workdir, stage)
          progress.done(stage, 'already finished (done.json; --force to redo)')
          continue
        if stage == 'data':
          result = stage_data(workdir, FAST if fast else FULL, progress)
        elif stage == 'report':
          result = stage_report(workdir, progress)
        else:
          result = stage_method(workdir, DEMOS[stage], fast, progress)
        result['fast'] = fast
        _write_done(workdir, stage, result)
        results[stage] = result
        progress.done(stage, _summary(stage, result))
        _write_json(_time_path(workdir, stage), dataclasses.asdict(progress.times[stage]))
      for name in list(background):
        results[name] = background.pop(name).join(progress)
    finally:
      for process in background.values():
        process.stop()
  total = progress.table()
  _write_json(workdir / 'timings.json', {
      **{stage: dataclasses.asdict(t) for stage, t in progress.times.items()}, 'total': total})
  return {stage: results[stage] for stage in ordered}


def _summary(stage: str, result: Mapping[str, Any]) -> str:
  if stage in DEMOS:
    return DEMOS[stage].summary(result)
  if stage == 'report':
    return f'wrote {result["html"]} and {result["markdown"]}'
  return ''


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = cli.ArgumentParser(
      prog='python -m tapkit3d.quickstart', description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument('--workdir', default='runs/quickstart')
  parser.add_argument('--stages', default=','.join(STAGES),
                      help=f'comma-separated subset of {",".join(STAGES)}')
  parser.add_argument('--fast', action='store_true',
                      help=f'tiny sizes (also env {_FAST_ENV}=1)')
  parser.add_argument('--force', action='store_true', help='redo finished stages')
  parser.add_argument('--jobs', type=int, default=default_jobs(),
                      help='processes: N runs the first N-1 of the stages '
                      f'{", ".join(PARALLEL_STAGES)} in processes of their own beside the '
                      'others (default: 2 on a machine with 2 or more cores, else 1); the '
                      'results are the same')
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
  args = _parse(argv)
  from tapkit.train import launch  # pylint: disable=g-import-not-at-top
  # absl logging stays at WARNING: at INFO it shows orbax's, grain's and optax's per-call
  # notes (checkpoint managers, schedules), which the filter below cannot all attribute.
  launch.quiet_library_info()
  stages = [s.strip() for s in args.stages.split(',') if s.strip()]
  results = run(args.workdir, stages, fast=args.fast or fast_from_env(), force=args.force,
                jobs=args.jobs)
  if 'report' in results:
    print(f'report: {results["report"]["html"]}')
  return results


if __name__ == '__main__':
  cli.run(main)
