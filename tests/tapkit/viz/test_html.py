"""Tests for tapkit.viz.html: the self-contained HTML report and its Markdown twin."""

import base64
import html.parser
import io
import re

import numpy as np
import pytest
from PIL import Image

from tapkit.viz import html as viz_html
from tapkit.viz import plots
from tapkit.viz import tracks3d


class _Collector(html.parser.HTMLParser):
  """Collects tags, table cells and the attributes of img / a / iframe elements."""

  def __init__(self):
    super().__init__()
    self.tags, self.cells, self.attrs = [], [], []
    self._in_cell = False

  def handle_starttag(self, tag, attrs):
    self.tags.append(tag)
    self._in_cell = tag in ('td', 'th')
    if tag in ('img', 'a', 'iframe'):
      self.attrs.append((tag, dict(attrs)))

  def handle_endtag(self, tag):
    self._in_cell = False

  def handle_data(self, data):
    if self._in_cell:
      self.cells.append(data)


@pytest.fixture()
def report(tmp_path):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, size=(12, 16, 3)).astype(np.uint8)
  viewer = tracks3d.interactive_html(tmp_path / 'elsewhere' / 'viewer.html',
                                     rng.normal(size=(3, 20, 3)), title='tracks')
  rep = viz_html.Report('Quickstart <demo>')
  rep.add_section('Results').add_text('First paragraph with <script>alert(1)</script>.\n\n'
                                      'Second paragraph.')
  rep.add_table([{'method': 'TRAJAN', 'AJ': 0.612345}, {'method': 'a|b', 'OA': 0.9}],
                caption='TAPVid-3D')
  rep.add_image(image, caption='Random pixels')
  rep.add_image(plots.plot_bars({'a': 1.0, 'b': 2.0}), caption='Bars')
  rep.add_link(viewer, 'Interactive 3D view', embed=True)
  rep.add_link('https://example.org/paper', 'Paper')
  return rep, image


def test_html_is_self_contained(tmp_path, report):
  rep, image = report
  html_path, md_path = rep.write(tmp_path / 'out')
  page = open(html_path, encoding='utf-8').read()
  parser = _Collector()
  parser.feed(page)
  # Text is escaped, never interpreted as markup.
  assert 'script' not in parser.tags
  assert '&lt;script&gt;alert(1)&lt;/script&gt;' in page
  assert parser.tags.count('p') >= 3 and parser.tags.count('h2') == 1
  assert {'method', 'AJ', 'OA', 'TRAJAN', '0.6123', 'a|b', '0.9'} <= set(parser.cells)
  imgs = [a for tag, a in parser.attrs if tag == 'img']
  assert len(imgs) == 2 and all(a['src'].startswith('data:image/png;base64,') for a in imgs)
  decoded = base64.b64decode(imgs[0]['src'].split(',', 1)[1])
  with Image.open(io.BytesIO(decoded)) as png:
    np.testing.assert_array_equal(np.asarray(png.convert('RGB')), image)
  links = {a['href'] for tag, a in parser.attrs if tag == 'a'}
  assert links == {'viewer.html', 'https://example.org/paper'}
  assert (tmp_path / 'out' / 'viewer.html').is_file()  # copied beside the report
  iframe = [a for tag, a in parser.attrs if tag == 'iframe'][0]
  data = tracks3d.read_viewer_data(iframe['srcdoc'])  # the whole viewer, inlined
  assert data['num_points'] == 20 and data['title'] == 'tracks'


def test_markdown_with_image_files(tmp_path, report):
  rep, image = report
  _, md_path = rep.write(tmp_path / 'out')
  md = open(md_path, encoding='utf-8').read()
  assert md.startswith('# Quickstart <demo>\n')
  assert '## Results' in md
  assert '| method | AJ | OA |' in md and '| a\\|b |  | 0.9 |' in md
  files = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', md)
  assert files == ['report_00_random_pixels.png', 'report_01_bars.png']
  with Image.open(tmp_path / 'out' / files[0]) as png:
    np.testing.assert_array_equal(np.asarray(png.convert('RGB')), image)
  assert (tmp_path / 'out' / files[1]).read_bytes().startswith(b'\x89PNG')
  assert '[Interactive 3D view](viewer.html)' in md


def test_gif_images_and_errors(tmp_path):
  frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 255)]
  gif = tmp_path / 'a.gif'
  frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
  rep = viz_html.Report('r').add_image(gif, caption='clip')
  assert 'data:image/gif;base64,' in rep.to_html()
  _, md_path = rep.write(tmp_path / 'o')
  assert (tmp_path / 'o' / 'report_00_clip.gif').read_bytes()[:6] == b'GIF89a'
  with pytest.raises(FileNotFoundError):
    rep.add_link(tmp_path / 'missing.html')
  with pytest.raises(ValueError):
    rep.add_image(b'not an image')
  with pytest.raises(ValueError):
    rep.add_section('x', level=1)


def test_markdown_rendered_in_html_kept_in_markdown(tmp_path):
  rep = viz_html.Report('r')
  rep.add_section('The `smoke` preset')
  rep.add_text('Run `python -m x` with **care**:\n- one\n- two <b>')
  rep.add_table([{'model': 'a', 'ate': 0.1234}], caption='see *below*')
  html_path, md_path = rep.write(tmp_path / 'out')
  page = open(html_path, encoding='utf-8').read()
  assert '<h2>The <code>smoke</code> preset</h2>' in page
  assert ('<p>Run <code>python -m x</code> with <strong>care</strong>:</p>\n'
          '<ul><li>one</li><li>two &lt;b&gt;</li></ul>') in page
  assert '<caption>see <em>below</em></caption>' in page
  assert '<th>ATE (m)</th>' in page and '<td>0.123</td>' in page
  md = open(md_path, encoding='utf-8').read()
  assert 'Run `python -m x` with **care**:\n- one\n- two <b>' in md
  assert '| model | ATE (m) |' in md and '| a | 0.123 |' in md


def test_small_images_enlarged_and_sources_relative(tmp_path):
  image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
  metrics = tmp_path / 'run' / 'metrics.jsonl'
  metrics.parent.mkdir()
  metrics.write_text('{"step": 1, "eval/aj": 0.5}\n{"step": 2, "eval/aj": 0.7}\n')
  rep = viz_html.Report('r', min_image_width=600)
  rep.add_image(image, caption='tiny')
  rep.add_image(plots.plot_bars({'a': 1.0}, figsize=(2.0, 2.0)), caption='small figure')
  rep.add_training_curves(metrics, 'run')
  html_path, md_path = rep.write(tmp_path)
  parser = _Collector()
  parser.feed(open(html_path, encoding='utf-8').read())
  pngs = [base64.b64decode(a['src'].split(',', 1)[1]) for tag, a in parser.attrs
          if tag == 'img']
  with Image.open(io.BytesIO(pngs[0])) as png:
    enlarged = np.asarray(png.convert('RGB'))
  assert enlarged.shape == (400, 600, 3)  # 200 x nearest neighbour
  np.testing.assert_array_equal(enlarged[::200, ::200], image)
  for data in pngs[1:]:
    with Image.open(io.BytesIO(data)) as png:
      assert png.width >= 600
  md = open(md_path, encoding='utf-8').read()
  assert '*run: training curves (`run/metrics.jsonl`)*' in md
  assert str(tmp_path) not in md
  assert 'run: training curves (<code>run/metrics.jsonl</code>)' in open(html_path).read()
