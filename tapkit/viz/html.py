"""A tiny report builder: one self-contained report.html plus the same as report.md.

  report = Report('Quickstart')
  report.add_section('Tracks')
  report.add_text('Predicted tracks on a synthetic clip.')
  report.add_image(fig, caption='3D view')                 # Figure, array, PNG/GIF bytes or file
  report.add_table([{'method': 'TRAJAN', 'AJ': 0.61}])
  report.add_link('viewer.html', 'Interactive 3D view', embed=True)
  html_path, md_path = report.write('out/')

Text, captions and headings are Markdown (`code`, **bold**, *italics*, [links](url),
lists; see `tapkit.viz.markdown`): report.md keeps it, report.html renders it, escaped.
Tables show readable headers with units and one fixed number format per column
(`tapkit.viz.tables.COLUMNS`). Images narrower than `min_image_width` are enlarged
(figures re-rendered at a higher resolution, arrays scaled by an integer factor with
nearest-neighbour sampling). Paths in captions (`source=`) and links are written relative
to the report.

In report.html, images are base64 data URIs and embedded interactive pages are
inlined into `<iframe srcdoc>`, so the file opens anywhere offline; linked files
are also referenced by relative links. report.md references image files written
beside it (`<name>_NN_<slug>.png`) and links the interactive pages. Linked local
files outside the output folder are copied into it, so the folder can be moved.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tapkit.viz import _common
from tapkit.viz import markdown
from tapkit.viz import plots
from tapkit.viz import tables

_CSS = """
body { font: 15px/1.5 -apple-system, 'Segoe UI', Roboto, sans-serif; max-width: 1000px;
       margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: .3em .7em; text-align: right; }
th { background: #f0f2f5; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, caption { color: #555; font-size: 13px; }
code { background: #f3f4f6; padding: 0 .25em; border-radius: 3px; font-size: 90%; }
iframe { width: 100%; border: 1px solid #ccc; }
"""


@dataclasses.dataclass
class _Item:
  kind: str  # 'heading' | 'text' | 'table' | 'image' | 'link'
  data: dict[str, Any]


def _slug(text: str, fallback: str) -> str:
  slug = re.sub(r'[^a-z0-9]+', '_', text.lower()).strip('_')[:40]
  return slug or fallback


def _figure_png(fig: Figure, min_width: int) -> bytes:
  """PNG of `fig` (cropped to its content), re-rendered at a higher dpi if narrower than
  `min_width` pixels."""
  data = _common.figure_to_png(fig)
  width = _png_width(data)
  if min_width and width < min_width:
    dpi = fig.dpi * min_width / width * 1.02  # cropping rounds; keep clear of the bound
    data = _common.figure_to_png(fig, dpi=dpi)
  return data


def _png_width(data: bytes) -> int:
  """Width in pixels from a PNG's IHDR chunk."""
  return int.from_bytes(data[16:20], 'big')


def _image_bytes(image: Any, min_width: int = 0) -> tuple[bytes, str]:
  """(bytes, mime type) of a Figure, an [H, W, 3] array, PNG/GIF bytes or a file path.

  Figures and arrays narrower than `min_width` pixels are enlarged (see `Report`).
  """
  if isinstance(image, Figure):
    return _figure_png(image, min_width), 'image/png'
  if isinstance(image, (str, os.PathLike)):
    with open(image, 'rb') as f:
      image = f.read()
  if isinstance(image, (bytes, bytearray)):
    data = bytes(image)
    if data.startswith(b'\x89PNG\r\n\x1a\n'):
      return data, 'image/png'
    if data[:6] in (b'GIF87a', b'GIF89a'):
      return data, 'image/gif'
    if data.startswith(b'\xff\xd8'):
      return data, 'image/jpeg'
    raise ValueError('image bytes are neither PNG, GIF nor JPEG')
  array = np.asarray(image)
  if array.ndim not in (2, 3):
    raise ValueError(f'image array must be [H, W] or [H, W, 3], got {array.shape}')
  if min_width and array.shape[1] < min_width:
    array = _common.upscale_nearest(array, -(-min_width // array.shape[1]))
  return _common.image_to_png(array), 'image/png'


_SUFFIX = {'image/png': '.png', 'image/gif': '.gif', 'image/jpeg': '.jpg'}


class Report:
  """Collects headings, paragraphs, tables, images and links; writes HTML and Markdown."""

  def __init__(self, title: str, *, min_image_width: int = 0):
    """A report titled `title`; images narrower than `min_image_width` px are enlarged."""
    self.title = title
    self.min_image_width = int(min_image_width)
    self.items: list[_Item] = []

  def add_section(self, title: str, level: int = 2) -> 'Report':
    """A heading; level 2 for sections, 3 for subsections."""
    if not 2 <= level <= 6:
      raise ValueError(f'section level must lie in [2, 6] (1 is the title), got {level}')
    self.items.append(_Item('heading', {'text': title, 'level': level}))
    return self

  def add_text(self, text: str) -> 'Report':
    """Markdown text: paragraphs split by blank lines, lists, inline code / bold / links.

    report.md keeps the Markdown; report.html renders it (`tapkit.viz.markdown`), with
    everything else HTML-escaped.
    """
    self.items.append(_Item('text', {'text': text}))
    return self

  def add_table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                *, caption: str = '', fmt: str | None = None,
                specs: Mapping[str, tables.Column] | None = None) -> 'Report':
    """A table from a list of dicts (one per row).

    Args:
      rows: one mapping column key -> value per row.
      columns: the keys shown, in order (default: every key, first-seen order).
      caption: Markdown caption.
      fmt: one format for every float (e.g. '.4g'); by default each column gets one fixed
        number of decimals and a header with its unit (`tables.formatted_columns`).
      specs: `tables.Column` of keys that `tables.COLUMNS` lacks or that this table shows
        differently (e.g. {'clean': Column('clean clip', 'fraction', 4)}).
    """
    cols = tables.table_columns(rows, columns)
    if fmt is None:
      headers, cells = tables.formatted_columns(rows, cols, specs)
    else:
      headers = [tables.column_spec(c, specs).header for c in cols]
      cells = tables.table_cells(rows, cols, fmt)
    self.items.append(_Item('table', {'columns': headers, 'cells': cells,
                                      'caption': caption}))
    return self

  def add_image(self, image: Any, caption: str = '', name: str | None = None, *,
                source: str | os.PathLike | None = None) -> 'Report':
    """An image: a matplotlib Figure, [H, W, 3] array, PNG/GIF/JPEG bytes or file path.

    It is encoded immediately, so later changes to a Figure do not alter the report.
    `caption` is Markdown. `name` (default from the caption) names the file written beside
    report.md. `source`: a local file the image shows (e.g. a metrics.jsonl), named in the
    caption by its path relative to the report.
    """
    data, mime = _image_bytes(image, self.min_image_width)
    index = sum(item.kind == 'image' for item in self.items)
    stem = f'{index:02d}_{_slug(name or caption, "image")}'
    self.items.append(_Item('image', {'bytes': data, 'mime': mime, 'caption': caption,
                                      'stem': stem,
                                      'source': None if source is None else os.fspath(source)}))
    return self

  def add_link(self, target: str | os.PathLike, text: str = '', *, embed: bool = False,
               height: int = 520) -> 'Report':
    """A link to a URL or a local file (e.g. an `interactive_html` viewer).

    Args:
      target: URL or path of a local file.
      text: link text (default: the file name).
      embed: also inline a local HTML file into the report as an iframe
        (`srcdoc`), so report.html shows it without the separate file.
      height: iframe height in pixels.
    """
    target = os.fspath(target)
    is_url = bool(re.match(r'^[a-z][a-z0-9+.-]*://', target))
    if embed and is_url:
      raise ValueError('only local HTML files can be embedded')
    if not is_url and not os.path.isfile(target):
      raise FileNotFoundError(f'linked file not found: {target}')
    self.items.append(_Item('link', {'target': target, 'is_url': is_url,
                                     'text': text or os.path.basename(target),
                                     'embed': embed, 'height': int(height)}))
    return self

  # ------------------------------------------------------------------------------
  # Rendering.

  def add_training_curves(self, metrics_path: str | os.PathLike, name: str) -> 'Report':
    """Training curves of an engine run from its metrics.jsonl.

    Plots up to three `train/` scalars about the objective (loss, ate, abs_rel, jaccard) and up
    to three `eval/` scalars (EMA-smoothed, weight 0.6, except series too short to smooth,
    which are drawn as logged with markers); without such keys, the first six scalars. The
    caption names the file relative to the report. A missing file adds a note instead.
    """
    path = os.fspath(metrics_path)
    if not os.path.isfile(path):
      return self.add_text(f'(no `{os.path.basename(path)}` in `{os.path.dirname(path)}`)')
    scalars = plots.load_jsonl_scalars(path)
    train = {k: v for k, v in scalars.items() if k.startswith('train/') and
             any(t in k for t in ('loss', 'ate', 'abs_rel', 'jaccard'))}
    evals = {k: v for k, v in scalars.items() if k.startswith('eval/')}
    chosen = dict(list(train.items())[:3] + list(evals.items())[:3]) or dict(
        list(scalars.items())[:6])
    fig = plots.plot_training_curves(chosen, smoothing=0.6, title=f'{name} training')
    return self.add_image(fig, caption=f'{name}: training curves', name=f'{name}_curves',
                          source=path)

  def _href(self, item: _Item, out_dir: str | None) -> str:
    """Where a link points from the report: URL, or a path relative to `out_dir`."""
    target = item.data['target']
    if item.data['is_url'] or out_dir is None:
      return target
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(out_dir))
    if rel.startswith('..'):
      rel = os.path.basename(target)  # copied into out_dir by `write`
    return rel.replace(os.sep, '/')

  @staticmethod
  def _caption(data: Mapping[str, Any], out_dir: str | None) -> str:
    """An image's Markdown caption, with its source file relative to `out_dir`."""
    caption, source = data['caption'], data.get('source')
    if source is None:
      return caption
    if out_dir is not None:
      source = os.path.relpath(os.path.abspath(source), os.path.abspath(out_dir))
    source = source.replace(os.sep, '/')
    return f'{caption} (`{source}`)' if caption else f'`{source}`'

  def to_html(self, out_dir: str | None = None) -> str:
    """The report as one HTML page; links are made relative to `out_dir` if given."""
    esc = html.escape
    parts = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
             f'<title>{esc(self.title)}</title><style>{_CSS}</style></head><body>',
             f'<h1>{esc(self.title)}</h1>']
    for item in self.items:
      d = item.data
      if item.kind == 'heading':
        parts.append(f'<h{d["level"]}>{markdown.inline_html(d["text"])}</h{d["level"]}>')
      elif item.kind == 'text':
        parts.append(markdown.blocks_html(d['text']))
      elif item.kind == 'table':
        rows = ['<table>']
        if d['caption']:
          rows.append(f'<caption>{markdown.inline_html(d["caption"])}</caption>')
        rows.append('<tr>' + ''.join(f'<th>{esc(c)}</th>' for c in d['columns']) + '</tr>')
        for cells in d['cells']:
          rows.append('<tr>' + ''.join(f'<td>{esc(c)}</td>' for c in cells) + '</tr>')
        rows.append('</table>')
        parts.append('\n'.join(rows))
      elif item.kind == 'image':
        uri = f'data:{d["mime"]};base64,' + base64.b64encode(d['bytes']).decode('ascii')
        text = self._caption(d, out_dir)
        caption = f'<figcaption>{markdown.inline_html(text)}</figcaption>' if text else ''
        alt = markdown.plain_text(d['caption']) or d['stem']
        parts.append(f'<figure><img src="{uri}" alt="{esc(alt)}">{caption}</figure>')
      elif item.kind == 'link':
        href = self._href(item, out_dir)
        parts.append(f'<p><a href="{esc(href)}">{markdown.inline_html(d["text"])}</a></p>')
        if d['embed']:
          with open(d['target'], encoding='utf-8') as f:
            page = f.read()
          parts.append(f'<iframe title="{esc(d["text"])}" height="{d["height"]}" '
                       f'srcdoc="{esc(page, quote=True)}"></iframe>')
    parts.append('</body></html>')
    return '\n'.join(parts) + '\n'

  def to_markdown(self, image_prefix: str = 'report', out_dir: str | None = None) -> str:
    """The report as Markdown; image i is referenced as `<image_prefix>_<stem>.<ext>`."""
    lines = [f'# {self.title}', '']
    for item in self.items:
      d = item.data
      if item.kind == 'heading':
        lines += ['#' * d['level'] + ' ' + d['text'], '']
      elif item.kind == 'text':
        lines += [d['text'].strip(), '']
      elif item.kind == 'table':
        if d['caption']:
          lines += [f'*{d["caption"]}*', '']
        lines += tables.markdown_lines(d['columns'], d['cells']) + ['']
      elif item.kind == 'image':
        file = f'{image_prefix}_{d["stem"]}{_SUFFIX[d["mime"]]}'
        lines += [f'![{markdown.plain_text(d["caption"]) or d["stem"]}]({file})', '']
        text = self._caption(d, out_dir)
        if text:
          lines += [f'*{text}*', '']
      elif item.kind == 'link':
        lines += [f'[{d["text"]}]({self._href(item, out_dir)})', '']
    return '\n'.join(lines).rstrip() + '\n'

  def write(self, out_dir: str | os.PathLike, name: str = 'report') -> tuple[str, str]:
    """Writes `<name>.html`, `<name>.md` and the Markdown's image files into `out_dir`.

    Returns:
      (html path, markdown path).
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    for item in self.items:
      if item.kind == 'image':
        file = f'{name}_{item.data["stem"]}{_SUFFIX[item.data["mime"]]}'
        with open(os.path.join(out_dir, file), 'wb') as f:
          f.write(item.data['bytes'])
      elif item.kind == 'link' and not item.data['is_url']:
        rel = os.path.relpath(os.path.abspath(item.data['target']), os.path.abspath(out_dir))
        if rel.startswith('..'):
          shutil.copyfile(item.data['target'],
                          os.path.join(out_dir, os.path.basename(item.data['target'])))
    html_path = os.path.join(out_dir, name + '.html')
    md_path = os.path.join(out_dir, name + '.md')
    with open(html_path, 'w', encoding='utf-8') as f:
      f.write(self.to_html(out_dir))
    with open(md_path, 'w', encoding='utf-8') as f:
      f.write(self.to_markdown(name, out_dir))
    return html_path, md_path
