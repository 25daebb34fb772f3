"""Displaying our figures, images and HTML views in Jupyter / Colab.

    from tapkit.viz import notebook
    notebook.show(fig)                      # a matplotlib Figure (Agg, no pyplot state)
    notebook.show(frames[0])                # an [H, W, 3] image
    notebook.show_html('view.html', 480)    # an offline page (3D viewer, report) inline
"""

from __future__ import annotations

import html as html_lib
import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tapkit.viz import _common


def show(item: Any, width: int | None = None) -> None:
  """Displays a Figure or an image array as PNG in the notebook output."""
  from IPython import display  # pylint: disable=g-import-not-at-top
  if isinstance(item, Figure):
    png = _common.figure_to_png(item)
  else:
    png = _common.image_to_png(_common.to_uint8(np.asarray(item)))
  display.display(display.Image(data=png, width=width))


def show_html(path: str | os.PathLike, height: int = 520) -> None:
  """Displays a self-contained HTML file inline (iframe `srcdoc`, works offline and on Colab)."""
  from IPython import display  # pylint: disable=g-import-not-at-top
  with open(path, encoding='utf-8') as f:
    page = f.read()
  display.display(display.HTML(
      f'<iframe srcdoc="{html_lib.escape(page, quote=True)}" width="100%" '
      f'height="{int(height)}" style="border:0"></iframe>'))
