"""Headless Chromium screenshots of the HTML pages we write (reports, 3D views).

Used by the tests to check that a page really renders, and handy for thumbnails:

    from tapkit.viz import browser
    image = browser.screenshot('runs/quickstart/report.html', size=(1000, 1400))
    dom = browser.dump_dom('runs/quickstart/report.html')      # the DOM after scripts ran
    text = browser.visible_text(dom)                             # what a reader sees
"""

from __future__ import annotations

import html.parser
import os
import pathlib
import shutil
import subprocess
import tempfile

import numpy as np


def find_chromium() -> str | None:
  """Path of a Chromium binary, or None (Debian/Ubuntu: apt-get install -y chromium)."""
  if os.path.exists('/usr/bin/chromium'):
    return '/usr/bin/chromium'
  return shutil.which('chromium') or shutil.which('chromium-browser')


def screenshot(page: str | os.PathLike, size: tuple[int, int] = (800, 600), *,
               timeout_s: float = 120.0, wait_ms: int = 0) -> np.ndarray:
  """Renders a local HTML file headless; returns the screenshot [H, W, 3] uint8.

  Args:
    page: the HTML file (opened as a file:// URL, so relative images resolve).
    size: (width, height) of the window in CSS pixels.
    timeout_s: give up after this long.
    wait_ms: extra time for scripts before the capture (Chromium's virtual time budget).

  Raises:
    FileNotFoundError: no Chromium, or no page.
    RuntimeError: Chromium ran but wrote no screenshot (its stderr is included).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  page = _page(page)
  with tempfile.TemporaryDirectory(prefix='tapkit-chromium-') as tmp:
    shot = pathlib.Path(tmp) / 'shot.png'
    result = _run_chromium(page, tmp, [f'--screenshot={shot}',
                                       f'--window-size={size[0]},{size[1]}'],
                           timeout_s, wait_ms)
    if not shot.exists():
      raise RuntimeError(f'{page}: Chromium wrote no screenshot:\n{result.stderr[-2000:]}')
    with Image.open(shot) as image:
      return np.asarray(image.convert('RGB'))


def dump_dom(page: str | os.PathLike, *, timeout_s: float = 120.0, wait_ms: int = 0) -> str:
  """The page's DOM serialised by headless Chromium after loading (and `wait_ms` of scripts).

  Raises:
    FileNotFoundError: no Chromium, or no page.
    RuntimeError: Chromium printed no document (its stderr is included).
  """
  page = _page(page)
  with tempfile.TemporaryDirectory(prefix='tapkit-chromium-') as tmp:
    result = _run_chromium(page, tmp, ['--dump-dom'], timeout_s, wait_ms)
  if '<html' not in result.stdout.lower():
    raise RuntimeError(f'{page}: Chromium printed no DOM:\n{result.stderr[-2000:]}')
  return result.stdout


class _TextCollector(html.parser.HTMLParser):
  """Text nodes outside <head>, <script>, <style>, <template> and <iframe> (whose srcdoc
  page is an attribute, not text of this document)."""

  _HIDDEN = frozenset({'head', 'script', 'style', 'template', 'iframe', 'noscript'})
  # Elements that start a new line or cell: their text is separated from their neighbours'.
  _BLOCKS = frozenset({'p', 'div', 'br', 'li', 'ul', 'ol', 'table', 'tr', 'td', 'th',
                       'caption', 'figure', 'figcaption', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
                       'pre', 'body', 'section', 'label', 'button'})

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.parts: list[str] = []
    self._hidden = 0

  def handle_starttag(self, tag, attrs):
    if tag in self._HIDDEN:
      self._hidden += 1
    elif tag in self._BLOCKS:
      self.parts.append(' ')

  def handle_endtag(self, tag):
    if tag in self._HIDDEN and self._hidden:
      self._hidden -= 1
    elif tag in self._BLOCKS:
      self.parts.append(' ')

  def handle_data(self, data):
    if not self._hidden:
      self.parts.append(data)


def visible_text(dom: str) -> str:
  """The text a reader sees of an HTML document (e.g. from `dump_dom`), whitespace joined."""
  collector = _TextCollector()
  collector.feed(dom)
  collector.close()
  return ' '.join(''.join(collector.parts).split())


def _page(page: str | os.PathLike) -> pathlib.Path:
  if find_chromium() is None:
    raise FileNotFoundError('headless Chromium not found (apt-get install -y chromium)')
  page = pathlib.Path(page)
  if not page.is_file():
    raise FileNotFoundError(f'{page}: no such page')
  return page


def _run_chromium(page: pathlib.Path, tmp: str, extra: list[str], timeout_s: float,
                  wait_ms: int) -> subprocess.CompletedProcess:
  """Runs headless Chromium on `page` with a throw-away profile in `tmp`."""
  cmd = [find_chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
         '--no-first-run', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--hide-scrollbars', f'--user-data-dir={tmp}/profile', *extra]
  if wait_ms > 0:
    cmd.append(f'--virtual-time-budget={int(wait_ms)}')
  return subprocess.run(cmd + [page.resolve().as_uri()], capture_output=True, text=True,
                        timeout=timeout_s, check=False)
