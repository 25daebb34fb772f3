"""Headless-browser checks: the 3D viewer and a report really render (needs Chromium)."""

import os

import numpy as np
import pytest

from tapkit.data.synthetic import generate_clip
from tapkit.viz import browser
from tapkit.viz import html as viz_html
from tapkit.viz import plots
from tapkit.viz import tracks3d


pytestmark = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason='headless Chromium not installed (Debian: apt-get install -y chromium)')


def _screenshot(page, tmp_path) -> np.ndarray:
  del tmp_path
  return browser.screenshot(page, (800, 600))


def test_viewer_renders_points_and_cameras(tmp_path):
  clip = generate_clip(0, num_frames=6, height=48, width=64, num_tracks=64)
  c2w = np.linalg.inv(clip.extrinsics_w2c.astype(np.float64))
  world = np.einsum('tij,tnj->tni', c2w[:, :3, :3], clip.tracks_xyz) + c2w[:, None, :3, 3]
  page = tmp_path / 'viewer.html'
  tracks3d.interactive_html(page, world, None, clip.extrinsics_w2c, clip.intrinsics,
                            'synthetic', visible=clip.visibility)
  shot = _screenshot(page, tmp_path)
  assert shot.shape == (600, 800, 3)
  canvas = shot[40:550].reshape(-1, 3)  # below the caption, above the control bar
  background = np.array([0x15, 0x17, 0x1c])
  drawn = np.any(np.abs(canvas.astype(int) - background) > 30, axis=-1)
  assert drawn.sum() > 50  # points and the frustum were painted by the script
  assert len(np.unique(canvas[drawn], axis=0)) > 8  # in many per-point colours
  assert np.any(np.all(canvas > 240, axis=-1))  # the current camera's white frustum


def test_report_renders(tmp_path):
  rep = viz_html.Report('Report check')
  rep.add_text('Some text.')
  rep.add_image(plots.plot_score_curves({'a': [0.1, 0.5, 0.3], 'b': [0.4, 0.2, 0.6]}),
                caption='curves')
  html_path, _ = rep.write(tmp_path / 'out')
  shot = _screenshot(tmp_path / 'out' / os.path.basename(html_path), tmp_path)
  assert shot.std() > 20
  assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 30  # text and the coloured plot


def test_dom_text_of_a_rendered_report(tmp_path):
  rep = viz_html.Report('Report check')
  rep.add_text('Run `make` with **care**.')
  rep.add_link(tracks3d.interactive_html(tmp_path / 'viewer.html', np.zeros((2, 3, 3)),
                                         title='viewer `x`'), 'view', embed=True)
  html_path, _ = rep.write(tmp_path / 'out')
  dom = browser.dump_dom(html_path)
  assert '<code>make</code>' in dom and '<strong>care</strong>' in dom
  text = browser.visible_text(dom)
  assert text == 'Report check Run make with care. view'  # no iframe page, style or script
  assert browser.visible_text('<p>a <script>b</script><style>c</style>d</p>') == 'a d'
