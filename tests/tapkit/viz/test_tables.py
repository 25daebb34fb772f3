"""Table text: cells, Markdown and CSV (tapkit.viz.tables)."""

import csv

import numpy as np

from tapkit.viz import tables


def test_format_cell_and_columns():
  assert tables.format_cell(0.612345) == '0.6123'
  assert tables.format_cell(np.float32(2.5), '.2f') == '2.50'
  assert tables.format_cell(float('inf')) == 'nan'
  assert tables.format_cell(np.asarray(0.125), '.1f') == '0.1'
  assert tables.format_cell(3) == '3' and tables.format_cell('a|b') == 'a|b'
  rows = [{'method': 'TRAJAN', 'AJ': 0.612345, 'OA': 0.9}, {'method': 'ours', 'AJ': float('nan')}]
  assert tables.table_columns(rows) == ['method', 'AJ', 'OA']
  assert tables.table_columns(rows, ['AJ']) == ['AJ']
  assert tables.table_cells(rows, ['method', 'OA']) == [['TRAJAN', '0.9'], ['ours', '']]


def test_markdown_table_layouts():
  rows = [{'model': 'a|b', 'acc': 12.345, 'n': 3}, {'model': 'c', 'acc': float('nan')}]
  assert tables.markdown_table(rows, ['model', 'acc', 'n'], '.1f') == '\n'.join([
      '| model | acc | n |',
      '| --- | ---: | ---: |',
      r'| a\|b | 12.3 | 3 |',
      '| c | nan |  |'])
  lines = tables.markdown_lines(['x', 'y'], [['1', 'two\nlines']])
  assert lines == ['| x | y |', '|---|---|', '| 1 | two lines |']


def test_write_csv(tmp_path):
  path = tables.write_csv(tmp_path / 'sub' / 't.csv',
                          [{'name': 'v', 'score': 0.1234567891, 'extra': 1}, {'name': 'w'}],
                          ['name', 'score'])
  assert open(path, newline='').read() == 'name,score\r\nv,0.1234567891\r\nw,\r\n'
  tables.write_csv(tmp_path / 'f.csv', [{'name': 'v', 'score': np.float64(1 / 3), 't': 2}],
                   ['name', 't', 'score'], fmt='.6g')
  assert list(csv.reader(open(tmp_path / 'f.csv'))) == [['name', 't', 'score'],
                                                       ['v', '2', '0.333333']]


def test_column_decimals_one_fixed_format_per_column():
  assert tables.column_decimals([0.612345]) == 4
  assert tables.column_decimals([0.9]) == 1
  assert tables.column_decimals([24222.53, 161.18, 106.7]) == 1
  assert tables.column_decimals([19860.0, 20011.0]) == 0
  assert tables.column_decimals([2.861e-05, 0.5]) == 6  # capped: never 2.861e-05
  assert tables.column_decimals(['a', 3, float('nan'), 0.0]) == 0


def test_formatted_columns_units_and_specs():
  rows = [{'model': 'a', 'ate': 1.0698, 'pixel_error': 24222.53, 'x': 0.5},
          {'model': 'b', 'ate': 0.5, 'pixel_error': 161.18, 'x': 19860.0}]
  headers, cells = tables.formatted_columns(rows, ['model', 'ate', 'pixel_error', 'x'])
  assert headers == ['model', 'ATE (m)', 'reprojection error (px)', 'x']
  assert cells == [['a', '1.070', '24222.5', '0.5'], ['b', '0.500', '161.2', '19860.0']]
  custom = {'x': tables.Column('speed', 'm/s', 2)}
  headers, cells = tables.formatted_columns(rows, ['x'], custom)
  assert headers == ['speed (m/s)'] and cells == [['0.50'], ['19860.00']]
  assert tables.column_spec('rpe_rot').header == 'RPE rotation (deg)'
  assert tables.column_spec('unknown').header == 'unknown'
