"""Tests for tapkit.viz.markdown: the report's Markdown subset rendered to escaped HTML."""

from tapkit.viz import markdown


def test_inline_code_bold_italics_links():
  assert markdown.inline_html('run `python -m x --y` now') == (
      'run <code>python -m x --y</code> now')
  assert markdown.inline_html('**bold**, __also__, *it* and _it_') == (
      '<strong>bold</strong>, <strong>also</strong>, <em>it</em> and <em>it</em>')
  assert markdown.inline_html('[the `x` page](a/b.html)') == (
      '<a href="a/b.html">the <code>x</code> page</a>')
  assert markdown.inline_html('[docs](https://example.org/?a=1&b=2)') == (
      '<a href="https://example.org/?a=1&amp;b=2">docs</a>')


def test_plain_text_stays_text():
  # Identifiers, products and comparisons are not emphasis; markup is escaped.
  assert markdown.inline_html('loss_certainty and a_b_c') == 'loss_certainty and a_b_c'
  assert markdown.inline_html('2 * 3 * 4 < 5 & <b>') == '2 * 3 * 4 &lt; 5 &amp; &lt;b&gt;'
  assert markdown.inline_html('`<script>`') == '<code>&lt;script&gt;</code>'
  assert markdown.inline_html(r'\*not italics\* a \| b') == '*not italics* a | b'
  # Only http(s), mailto and relative links become links.
  assert markdown.inline_html('[x](javascript:alert(1))') == '[x](javascript:alert(1))'
  assert markdown.plain_text('**a** `b` [c](d.html) 1 < 2') == 'a b c 1 < 2'


def test_paragraphs_and_lists():
  html = markdown.blocks_html('Intro with `code`:\n- one\n- two\n  continued\n\n'
                              '1. first\n2. second\n\nLast\nline.')
  assert html.split('\n') == [
      '<p>Intro with <code>code</code>:</p>',
      '<ul><li>one</li><li>two continued</li></ul>',
      '<ol><li>first</li><li>second</li></ol>',
      '<p>Last line.</p>']
