"""Headless Chromium screenshots of the HTML pages we write (reports, 3D views).

Used by the tests to check that a page really renders, and handy for thumbnails:

    from tapkit.viz import browser
    image = browser.screenshot('runs/quickstart/report.html', size=(1000, 1400))
"""

from __future__ import annotations

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

  chromium = find_chromium()
  if chromium is None:
    raise FileNotFoundError('headless Chromium not found (apt-get install -y chromium)')
  page = pathlib.Path(page)
  if not page.is_file():
    raise FileNotFoundError(f'{page}: no such page')
  with tempfile.TemporaryDirectory(prefix='tapkit-chromium-') as tmp:
    shot = pathlib.Path(tmp) / 'shot.png'
    cmd = [chromium, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
           '--no-first-run', '--disable-background-networking', '--disable-component-update',
           '--disable-sync', '--hide-scrollbars', f'--user-data-dir={tmp}/profile',
           f'--screenshot={shot}', f'--window-size={size[0]},{size[1]}']
    if wait_ms > 0:
      cmd.append(f'--virtual-time-budget={int(wait_ms)}')
    result = subprocess.run(cmd + [page.resolve().as_uri()], capture_output=True, text=True,
                            timeout=timeout_s, check=False)
    if not shot.exists():
      raise RuntimeError(f'{page}: Chromium wrote no screenshot:\n{result.stderr[-2000:]}')
    with Image.open(shot) as image:
      return np.asarray(image.convert('RGB'))
