"""The quickstart report as a reader sees it: rendered Markdown, large figures, units, links.

Runs on the quickstart's --fast run (the session fixture `finished` in conftest.py); the
rendered checks read the DOM and a screenshot from headless Chromium.
"""

import base64
import html.parser
import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from dpov_jax import demo as dpov_demo
from tapkit.data import tapvid3d
from tapkit.train import compile_cache
from tapkit.viz import browser
from tracks4d import demo as tracks4d_demo
from trajan3d import demo as trajan3d_demo
from trajan3d import score

# Every test here reads the one --fast quickstart run (conftest.py): keep them on one xdist
# worker (`--dist loadgroup`) so that the run is made once, not once per worker.
pytestmark = pytest.mark.xdist_group('quickstart')

needs_chromium = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason='headless Chromium not installed (apt-get install -y chromium)')


class _Page(html.parser.HTMLParser):
  """Images, table rows (header and data cells), figure captions and links of a page."""

  def __init__(self):
    super().__init__()
    self.images, self.links, self.captions = [], [], []
    self.tables: list[list[list[tuple[str, str]]]] = []
    self._cell: list[str] | None = None
    self._caption: list[str] | None = None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'img':
      self.images.append(attrs['src'])
    elif tag == 'a':
      self.links.append(attrs.get('href', ''))
    elif tag == 'table':
      self.tables.append([])
    elif tag == 'tr':
      self.tables[-1].append([])
    elif tag in ('th', 'td'):
      self._cell = [tag]
    elif tag == 'figcaption':
      self._caption = []

  def handle_endtag(self, tag):
    if tag in ('th', 'td') and self._cell is not None:
      self.tables[-1][-1].append((self._cell[0], ''.join(self._cell[1:]).strip()))
      self._cell = None
    elif tag == 'figcaption' and self._caption is not None:
      self.captions.append(''.join(self._caption))
      self._caption = None

  def handle_data(self, data):
    if self._cell is not None:
      self._cell.append(data)
    if self._caption is not None:
      self._caption.append(data)


@pytest.fixture
def quickstart_programs(finished, compile_caches):
  """The quickstart's compilation cache, in use in this process while a test runs.

  The tests that evaluate the quickstart's models again (the score CLI, the dpov figures) get
  the programs its stages compiled, bit-identical executables, instead of compiling them
  again. The folder itself, not a copy: JAX puts the folder's path into its cache keys (as
  XLA's autotuning cache path in the compile options), so a copy elsewhere never hits.
  """
  del finished  # The run has recorded compile_caches['quickstart'].
  with compile_cache.compilation_cache(compile_caches['quickstart']):
    yield


@pytest.fixture(scope='module')
def rendered(finished):
  """(report workdir, DOM after Chromium rendered report.html, parsed page)."""
  if browser.find_chromium() is None:
    pytest.skip('headless Chromium not installed (apt-get install -y chromium)')
  workdir, _ = finished
  dom = browser.dump_dom(workdir / 'report.html')
  page = _Page()
  page.feed(dom)
  return workdir, dom, page


@needs_chromium
def test_rendered_text_has_no_literal_markdown(rendered):
  workdir, dom, _ = rendered
  text = browser.visible_text(dom)
  assert 'loss_certainty stays at ln 2' in text  # rendered code span, without its backticks
  for mark in ('`', '**', '](', '|'):
    assert mark not in text, mark
  assert not re.search(r'(^|\s)\*\S', text)  # no *italics* markers either
  assert '<code>smoke</code>' in dom and '<code>median</code>' in dom
  md = (workdir / 'report.md').read_text()
  assert '`smoke`' in md and '`loss_certainty`' in md  # report.md keeps the Markdown


@needs_chromium
def test_every_figure_is_at_least_600_px_wide(rendered):
  workdir, _, page = rendered
  assert len(page.images) >= 10
  for src in page.images:
    assert src.startswith('data:image/png;base64,')
    with Image.open(io.BytesIO(base64.b64decode(src.split(',', 1)[1]))) as image:
      assert image.width >= 600, image.size
  files = sorted(workdir.glob('report_*.png'))
  assert len(files) == len(page.images)
  for file in files:
    with Image.open(file) as image:
      assert image.width >= 600, (file.name, image.size)


@needs_chromium
def test_table_headers_carry_units_and_columns_one_format(rendered):
  _, _, page = rendered
  headers = [h for table in page.tables for h in table[0]]
  assert ('th', 'ATE (m)') in headers and ('th', 'RPE rotation (deg)') in headers
  assert ('th', 'matching accuracy (fraction)') in headers
  for table in page.tables:
    header, rows = table[0], table[1:]
    assert all(kind == 'th' for kind, _ in header)
    for _, text in header[1:]:  # the first column names the rows
      assert re.fullmatch(r'.+ \([^()]+\)', text), text
    for j in range(1, len(header)):
      cells = [row[j][1] for row in rows]
      assert all(re.fullmatch(r'-?\d+(\.\d+)?|nan', c) for c in cells), cells  # no 1e+04
      decimals = {len(c.split('.')[1]) if '.' in c else 0 for c in cells if c != 'nan'}
      assert len(decimals) == 1, (header[j], cells)


@needs_chromium
def test_captions_relative_and_every_view_linked(rendered, finished):
  workdir, _, page = rendered
  _, results = finished
  assert not any(str(workdir) in caption for caption in page.captions)
  curves = [c for c in page.captions if 'training curves' in c]
  assert [c.split('(')[-1].rstrip(')') for c in curves] == [
      'trajan3d/metrics.jsonl', 'tracks4d/metrics.jsonl', 'dpov/metrics.jsonl']
  views = results['tracks4d']['views']
  assert views and all(f'tracks4d/{view}' in page.links for view in views)
  for href in page.links:
    assert not os.path.isabs(href) and (workdir / href).is_file(), href


@needs_chromium
def test_screenshot_is_not_blank(finished):
  workdir, _ = finished
  shot = browser.screenshot(workdir / 'report.html', (1000, 1600))
  assert shot.std() > 20
  assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 100


def test_notes_follow_the_measured_numbers(finished):
  workdir, results = finished
  md = (workdir / 'report.md').read_text()
  matching = results['dpov']['matching']
  static = matching['static (no motion)']['acc']
  best = max(v['acc'] for k, v in matching.items() if k != 'static (no motion)')
  assert ('below the "nothing moved" guess' in md) == (best < static)
  t4 = results['tracks4d']['metrics']
  assert ('RPE translation worsens with training' in md) == (
      t4['trained']['rpe_trans'] > t4['untrained']['rpe_trans'])
  assert 'ln 2 = 0.6931' in md  # 3DSPA logs a constant certainty loss


@pytest.mark.usefixtures('quickstart_programs')
def test_report_and_score_cli_print_the_same_score(finished, tmp_path):
  workdir, results = finished
  heldout = results['data']
  path = os.path.join(heldout['heldout_dir'], heldout['files'][0])
  rows = score.main(['--tracks', path, '--checkpoint', str(workdir / 'trajan3d'),
                     '--out', str(tmp_path / 'scores.csv')])
  recorded = results['trajan3d']['scores'][0]
  assert rows[0]['name'] == recorded['clip']
  assert rows[0]['score'] == recorded['clean']  # the same folds, so the same number
  md = (workdir / 'report.md').read_text()
  assert f'| {recorded["clip"]} | {rows[0]["score"]:.4f} |' in md  # and the same rounding
  # A clip with fewer tracks than --max_tracks is scored whole, with the same folds as None.
  _, recon = score.reconstructor_from_checkpoint(str(workdir / 'trajan3d'))
  clip = score.track_set_from_clip(tapvid3d.load_clip(path))
  config = json.loads((workdir / 'trajan3d' / 'config.json').read_text())
  support, query = config['evals']['eval']['num_support'], config['evals']['eval']['num_query']
  whole, _ = score.score_track_set(recon, clip, support, query, seed=0)
  capped, _ = score.score_track_set(recon, clip, support, query, seed=0,
                                    max_tracks=clip.num_tracks + 1)
  assert whole['mean_error'] == capped['mean_error'] and whole['score'] == capped['score']


def test_note_sentences_are_conditional_on_the_numbers(tmp_path):
  pose = {'untrained': {'ate': 0.5, 'rpe_trans': 0.197, 'rpe_rot': 9.0},
          'trained': {'ate': 0.4, 'rpe_trans': 0.247, 'rpe_rot': 3.0}}
  note = tracks4d_demo.rpe_note(pose, 0.2)
  assert note.startswith('RPE translation worsens with training (0.197 → 0.247 m)')
  assert 'never move would score 0.200 m' in note and 'rotations improve' in note
  pose['trained']['rpe_trans'] = 0.15
  assert tracks4d_demo.rpe_note(pose, 0.2) == ''
  rows = {'static (no motion)': {'acc': 0.727, 'err_px': 10.69, 'median_err_px': 9.23},
          'start backbone': {'acc': 0.632, 'err_px': 13.67, 'median_err_px': 10.74},
          'student @ 300': {'acc': 0.640, 'err_px': 13.52, 'median_err_px': 10.46}}
  note = dpov_demo.static_note(rows, 14.0, 14)
  assert note.startswith('Matching is below the "nothing moved" guess on these clips (0.727 vs '
                         '0.640 for the best features, student @ 300)')
  assert '73% of the points move less than 14 px' in note and 'one token per 14 px' in note
  rows['student @ 300']['acc'] = 0.8
  assert dpov_demo.static_note(rows, 14.0, 14) == ''
  metrics = tmp_path / 'metrics.jsonl'
  metrics.write_text('\n'.join(json.dumps({'step': s, 'train/loss_certainty': float(np.log(2))})
                               for s in (1, 2, 3)))
  assert 'stays at ln 2 = 0.6931 over all 3 logged steps' in trajan3d_demo.certainty_note(metrics)
  metrics.write_text('{"step": 1, "train/loss_certainty": 0.5}\n')
  assert trajan3d_demo.certainty_note(metrics) == ''


@pytest.mark.usefixtures('quickstart_programs')
def test_dpov_figures_come_from_the_stage_and_match_a_recomputation(finished):
  """The dpov stage saves what its figures show; the report only draws it."""
  workdir, _ = finished
  with np.load(workdir / 'dpov' / dpov_demo.FIGURE_DATA) as f:
    saved = dict(f)
  assert set(saved) == {'frames', 'queries', 'targets', 'valid', 'threshold_px', 'start',
                        'fine-tuned', 'pred_start', 'pred_fine-tuned'}
  frames = saved['frames']
  assert frames.shape[0] == 2 and frames.shape[-1] == 3
  assert saved['start'].shape == saved['fine-tuned'].shape
  assert saved['start'].shape[0] == 2 and saved['start'].ndim == 4
  points = saved['queries'].shape[0]
  assert points > 0 and saved['pred_start'].shape == (points, 2)
  fresh = dpov_demo.figure_data(workdir / 'dpov')
  for key, value in saved.items():
    np.testing.assert_allclose(fresh[key], value, rtol=1e-5, atol=1e-5, err_msg=key)
