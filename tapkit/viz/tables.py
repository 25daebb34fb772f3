"""Tables as text: cell formatting, Markdown tables and CSV files.

The one home of the tables that reports and CLIs write: `html.Report` (HTML and
Markdown), the 3DPoV evaluation tables (`dpov_jax.evaluate`) and the TRAJAN /
3DSPA score CSVs (`trajan3d.score`). A table is a sequence of rows, each a mapping from column
name to value; a missing key is an empty cell.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Row = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Column:
  """How a table column is shown: a readable name, its unit and its decimals.

  Attributes:
    label: readable name, e.g. 'ATE'.
    unit: unit shown in the header, e.g. 'm', 'px', 'deg', 'fraction'; '' for none.
    decimals: fixed decimals of every number in the column; None = chosen from the values
      (`column_decimals`).
  """
  label: str
  unit: str = ''
  decimals: int | None = None

  @property
  def header(self) -> str:
    return f'{self.label} ({self.unit})' if self.unit else self.label


# The metric keys the methods report, with their units. Reports look columns up here (a
# report may pass its own specs for other keys); keys not listed keep their name as header.
COLUMNS: dict[str, Column] = {
    # Camera trajectories after Sim(3) alignment (tapkit.metrics.pose), ground-truth units.
    'ate': Column('ATE', 'm', 3),
    'rpe_trans': Column('RPE translation', 'm', 3),
    'rpe_rot': Column('RPE rotation', 'deg', 2),
    # Reprojection and depth (tapkit.metrics.depth, median-scaled depth).
    'pixel_error': Column('reprojection error', 'px', 1),
    'abs_rel': Column('depth AbsRel', 'ratio', 3),
    'delta_1': Column('depth δ<1.25', 'fraction', 3),
    'abs_rel_dynamic': Column('depth AbsRel, moving points', 'ratio', 3),
    'delta_1_dynamic': Column('depth δ<1.25, moving points', 'fraction', 3),
    # TAP-Vid / TAPVid-3D (tapkit.metrics.tapvid3d) and the realism score.
    'average_jaccard': Column('average Jaccard', 'fraction', 4),
    'average_pts_within_thresh': Column('points within threshold', 'fraction', 4),
    'occlusion_accuracy': Column('occlusion accuracy', 'fraction', 4),
    'score': Column('realism score (average Jaccard)', 'fraction', 4),
    # Frame-to-frame matching (dpov_jax.match_eval).
    'acc': Column('matching accuracy', 'fraction', 3),
    'err_px': Column('mean error', 'px', 2),
    'median_err_px': Column('median error', 'px', 2),
}

_MAX_DECIMALS = 6


def column_spec(key: str, specs: Mapping[str, Column] | None = None) -> Column:
  """The `Column` of `key`: from `specs`, else `COLUMNS`, else the key itself as label."""
  if specs and key in specs:
    return specs[key]
  return COLUMNS.get(key, Column(str(key)))


def column_decimals(values: Sequence[Any], significant: int = 4) -> int:
  """Decimals that show every finite float of a column with `significant` digits, in [0, 6].

  Each value needs the decimals of its `significant`-digit rounding written in fixed
  notation (trailing zeros dropped): 0.612345 needs 4, 24222.5 needs 0, 0.9 needs 1. The
  column takes the most any value needs, so one fixed format serves the whole column.
  """
  need = 0
  for value in values:
    if not isinstance(value, (float, np.floating)) or not np.isfinite(value) or value == 0:
      continue
    exponent = math.floor(math.log10(abs(float(value))))
    text = f'{float(value):.{max(0, significant - 1 - exponent)}f}'.rstrip('0')
    need = max(need, len(text.split('.')[1]) if '.' in text else 0)
  return min(need, _MAX_DECIMALS)


def formatted_columns(rows: Sequence[Row], columns: Sequence[str],
                      specs: Mapping[str, Column] | None = None
                      ) -> tuple[list[str], list[list[str]]]:
  """(headers, cells) of a table whose numbers share one fixed format per column.

  Headers are the columns' `Column.header` (readable name and unit); floats get the column's
  fixed decimals (its spec's, else `column_decimals` of its values), so a column never mixes
  `1.986e+04` with `0.5`; non-finite floats are 'nan', other values str().
  """
  headers, cells = [], [[''] * len(columns) for _ in rows]
  for j, key in enumerate(columns):
    spec = column_spec(key, specs)
    headers.append(spec.header)
    values = [row[key] for row in rows if key in row]
    decimals = spec.decimals if spec.decimals is not None else column_decimals(values)
    for i, row in enumerate(rows):
      if key in row:
        cells[i][j] = format_cell(row[key], f'.{decimals}f')
  return headers, cells


def format_cell(value: Any, fmt: str = '.4g') -> str:
  """Table cell text: floats with `fmt` ('nan' for non-finite), everything else with str()."""
  if isinstance(value, (float, np.floating)):
    return 'nan' if not np.isfinite(value) else format(float(value), fmt)
  if isinstance(value, np.ndarray) and value.ndim == 0:
    return format_cell(value.item(), fmt)
  return str(value)


def table_columns(rows: Sequence[Row], columns: Sequence[str] | None = None) -> list[str]:
  """Column order: `columns` if given, else keys in first-seen order across rows."""
  if columns is not None:
    return list(columns)
  return list(dict.fromkeys(k for row in rows for k in row))


def table_cells(rows: Sequence[Row], columns: Sequence[str], fmt: str = '.4g'
                ) -> list[list[str]]:
  """[len(rows)][len(columns)] cell texts (`format_cell`); missing keys give ''."""
  return [[format_cell(row[c], fmt) if c in row else '' for c in columns] for row in rows]


def markdown_cell(text: str) -> str:
  """Markdown table cell: pipes escaped, newlines flattened."""
  return text.replace('|', r'\|').replace('\n', ' ')


def markdown_lines(columns: Sequence[str], cells: Sequence[Sequence[str]], *,
                   align_numbers: bool = False) -> list[str]:
  """Lines of a GitHub Markdown table from formatted cells (escaped here).

  Args:
    columns: header texts.
    cells: one list of cell texts per row.
    align_numbers: first column left-aligned, the others right-aligned (tables
      of numbers per named row); otherwise the default alignment.
  """
  if align_numbers:
    rule = '|' + '|'.join([' --- '] + [' ---: '] * (len(columns) - 1)) + '|'
  else:
    rule = '|' + '|'.join(['---'] * len(columns)) + '|'
  lines = ['| ' + ' | '.join(markdown_cell(str(c)) for c in columns) + ' |', rule]
  for row in cells:
    lines.append('| ' + ' | '.join(markdown_cell(c) for c in row) + ' |')
  return lines


def markdown_table(rows: Sequence[Row], columns: Sequence[str] | None = None,
                   fmt: str = '.4g', *, align_numbers: bool = True) -> str:
  """A GitHub Markdown table of `rows` (no trailing newline); floats with `fmt`.

  By default the first column is left-aligned and the others right-aligned.
  """
  cols = table_columns(rows, columns)
  return '\n'.join(markdown_lines(cols, table_cells(rows, cols, fmt),
                                  align_numbers=align_numbers))


def write_csv(path: str | os.PathLike, rows: Sequence[Row], columns: Sequence[str],
              fmt: str | None = None) -> str:
  """Writes `rows` as CSV with a header row; returns the path.

  Keys outside `columns` are ignored, missing ones are empty. Floats are written
  at full precision (str()), or with `fmt` (e.g. '.6g') when given. The parent
  directory is created.
  """
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction='ignore')
    writer.writeheader()
    for row in rows:
      writer.writerow({c: _csv_value(row[c], fmt) if c in row else '' for c in columns})
  return path


def _csv_value(value: Any, fmt: str | None) -> Any:
  if fmt is not None and isinstance(value, (float, np.floating)):
    return format(float(value), fmt)
  return value
