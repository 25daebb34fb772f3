"""The default job (tapkit3d/quickstart.py) end to end in --fast mode: stages, done.json, resume,
report, browser."""

import json
import math
import pathlib
import re

import numpy as np
import pytest

from tapkit.viz import browser
from tapkit3d import quickstart

# Every test here reads the one --fast quickstart run (conftest.py): keep them on one xdist
# worker (`--dist loadgroup`) so that the run is made once, not once per worker.
pytestmark = pytest.mark.xdist_group('quickstart')

REPO = pathlib.Path(__file__).resolve().parents[2]
# Library lines a user must not see in the default output (each was seen once): orbax's
# checkpoint chatter, JAX's TPU probe, TensorFlow's banners, absl's pre-init warning, optax's
# schedule note, Python warnings.
NOISE = (r'Given directory is read only', r'Metadata file does not exist',
         r'Unable to initialize backend', r'TPU', r'[Tt]ensor[Ff]low', r'oneDNN',
         r'cuda', r'absl::InitializeLog', r'INFO:absl', r'CheckpointManager',
         r'polynomial schedule', r'Warning:', r'Traceback')


def test_output_shows_progress_and_no_library_noise(cli_run):
  workdir, output, _ = cli_run
  for stage in quickstart.STAGES:
    assert re.search(rf'quickstart \| +{stage} done in ', output), stage
  assert f'report: {workdir / "report.html"}' in output
  for line in output.splitlines():
    for pattern in NOISE:
      assert not re.search(pattern, line), f'library noise ({pattern}): {line}'
  assert (workdir / quickstart.COMPILE_CACHE).is_dir()  # programs reused across stages


def test_timing_table_and_timings_json(cli_run):
  workdir, output, _ = cli_run
  with open(workdir / 'timings.json') as f:
    timings = json.load(f)
  assert set(timings) == {*quickstart.STAGES, 'total'}
  for stage in quickstart.STAGES:
    t = timings[stage]
    assert t['wall_s'] > 0 and t['cpu_s'] > 0, (stage, t)
    assert sum(n for n, _ in t['compiled'].values()) == t['compiles'], stage
    assert re.search(rf'quickstart \| +{stage} done in \S+ \(\d+ CPU-s', output), stage
    assert re.search(rf'quickstart \| {stage} +[\d.]+ +[\d.]+ +[\d.]+ +\d+ +\d+$', output,
                     re.M), stage
  # The method stages compile their models; the dpov stage's record comes from its process.
  assert all(timings[s]['compiles'] > 0 for s in ('trajan3d', 'tracks4d', 'dpov'))
  total = timings['total']
  assert total['cpu_s'] >= sum(timings[s]['cpu_s'] for s in quickstart.STAGES) - 1e-6
  assert 'quickstart | total ' in output


def _finite_numbers(tree) -> list[float]:
  if isinstance(tree, dict):
    return [x for v in tree.values() for x in _finite_numbers(v)]
  if isinstance(tree, (int, float)) and not isinstance(tree, bool):
    return [float(tree)]
  return []


def test_every_stage_records_finite_results(finished):
  workdir, results = finished
  assert list(results) == list(quickstart.STAGES)
  for stage in quickstart.STAGES:
    with open(workdir / stage / 'done.json') as f:
      assert json.load(f)['fast'] is True
  t3 = results['trajan3d']['metrics']
  assert set(t3) == {'untrained', 'trained'}
  for row in t3.values():
    assert 0.0 <= row['average_jaccard'] <= 1.0
    assert 0.0 <= row['occlusion_accuracy'] <= 1.0
  assert len(results['trajan3d']['scores']) == quickstart.FAST.heldout_clips
  t4 = results['tracks4d']['metrics']
  assert list(t4) == ['untrained', 'trained', 'fine-tuned', 'trained (LK tracks)',
                      'fine-tuned (LK tracks)']
  for row in t4.values():
    assert all(math.isfinite(row[k]) for k in ('ate', 'rpe_rot', 'pixel_error', 'abs_rel'))
  lk = results['tracks4d']['lk_tapvid']
  assert set(lk) == {'average_jaccard', 'average_pts_within_thresh', 'occlusion_accuracy'}
  assert all(0.0 <= v <= 1.0 for v in lk.values())
  lk_files = sorted(p.name for p in (workdir / 'tracks4d' / 'lk_tracks').glob('*.npz'))
  assert lk_files == ['clip_0000.npz'] and (workdir / 'tracks4d' / 'pred_lk').is_dir()
  rows = results['dpov']['matching']
  assert any(k.startswith('student') for k in rows) and 'start backbone' in rows
  assert all(0.0 <= r['acc'] <= 1.0 for r in rows.values())


def test_report_has_every_section_filled(finished):
  workdir, results = finished
  assert results['report']['sections'] == ['trajan3d', 'tracks4d', 'dpov']
  md = (workdir / 'report.md').read_text()
  for heading in ('## 3DSPA', '## TracksTo4D', '## 3DPoV'):
    assert heading in md
  assert 'Not run' not in md
  assert md.count('![') >= 8  # curves, tracks, 3D view, PCA, correspondences
  assert 'tracks4d/pred/' in md  # link to the interactive 3D view
  assert '| fine-tuned (LK tracks) |' in md and 'LK tracks against the exact tracks' in md
  for line in md.splitlines():  # every table cell is a number or a name
    if line.startswith('| untrained') or line.startswith('| trained'):
      cells = [c.strip() for c in line.strip('|').split('|')[1:]]
      assert all(math.isfinite(float(c)) for c in cells), line
  html = (workdir / 'report.html').read_text()
  assert html.count('<img') >= 8 and '<table' in html


def test_rerun_skips_finished_stages(finished, capsys):
  workdir, results = finished
  again = quickstart.run(workdir, ['data', 'trajan3d', 'tracks4d', 'dpov'], fast=True)
  assert 'already finished' in capsys.readouterr().err
  assert again['tracks4d']['metrics'] == results['tracks4d']['metrics']


def test_stage_without_its_inputs_says_what_to_run(tmp_path):
  with pytest.raises(FileNotFoundError, match='--stages data'):
    quickstart.run(tmp_path, ['trajan3d'], fast=True)
  with pytest.raises(ValueError, match='unknown'):
    quickstart.run(tmp_path, ['train'], fast=True)


@pytest.mark.skipif(browser.find_chromium() is None,
                    reason='headless Chromium not installed (apt-get install -y chromium)')
def test_report_renders_in_chromium(finished):
  workdir, _ = finished
  shot = browser.screenshot(workdir / 'report.html', (1000, 2400), wait_ms=2000)
  assert shot.shape == (2400, 1000, 3)
  assert shot.std() > 20  # not a blank page
  assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 100  # text, tables and figures
  rows_drawn = np.any(shot.reshape(2400, -1) < 200, axis=1)
  assert rows_drawn[1200:].mean() > 0.2  # content well below the first screen (figures)


@pytest.mark.skipif(browser.find_chromium() is None,
                    reason='headless Chromium not installed (apt-get install -y chromium)')
def test_tracks4d_view_renders_in_chromium(finished):
  workdir, results = finished
  page = workdir / 'tracks4d' / results['tracks4d']['views'][0]
  shot = browser.screenshot(page, (800, 600), wait_ms=1000)
  canvas = shot[40:550].reshape(-1, 3)
  background = np.array([0x15, 0x17, 0x1c])
  drawn = np.any(np.abs(canvas.astype(int) - background) > 30, axis=-1)
  assert drawn.sum() > 50  # points and frusta painted by the script
