"""Tables as text: cell formatting, Markdown tables and CSV files.

The one home of the tables that reports and CLIs write: `html.Report` (HTML and
Markdown), the 3DPoV evaluation tables (`dpov_jax.evaluate`) and the TRAJAN /
3DSPA score CSVs (`trajan3d.score`). A table is a sequence of rows, each a mapping from column
name to value; a missing key is an empty cell.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Row = Mapping[str, Any]


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
