"""The small subset of Markdown that report text uses, rendered to safe HTML.

Report paragraphs, captions and headings are written in Markdown (report.md keeps them as
they are); report.html shows them rendered:

  inline   `code`, **bold** / __bold__, *italics* / _italics_, [text](url),
           backslash escapes (\\*, \\`, \\_, \\[, \\|, \\\\)
  blocks   paragraphs split by blank lines; lists of lines starting with '- ', '* ' or
           '+ ' (bulleted) or '1. ' (numbered); an indented line continues the item above

Everything else is text: it is HTML-escaped, so no markup in the input reaches the page.
Underscores inside words (`loss_certainty` written without backticks) stay underscores, and
links may only point to http(s), mailto or relative targets.

  inline_html('see `report.md` and **this**')   # 'see <code>report.md</code> and <strong>...'
  blocks_html('Intro:\\n- one\\n- two')          # '<p>Intro:</p>\\n<ul><li>one</li>...'
"""

from __future__ import annotations

import html
import re

_CODE = re.compile(r'(`+)(.+?)\1', re.S)
_LINK = re.compile(r'\[([^\]\n]+)\]\(([^()\s]+)\)')
_ESCAPED = re.compile(r'\\([\\`*_\[\]|#()!+-])')
_BOLD = re.compile(r'(\*\*|__)(?=\S)(.+?)(?<=\S)\1', re.S)
_ITALIC_STAR = re.compile(r'(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])', re.S)
_ITALIC_UNDERSCORE = re.compile(r'(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])', re.S)
_SAFE_URL = re.compile(r'^(https?://|mailto:|[^:]*$)', re.I)
_BULLET = re.compile(r'^\s{0,3}[-*+]\s+(.*)$')
_NUMBER = re.compile(r'^\s{0,3}\d{1,9}[.)]\s+(.*)$')


def inline_html(text: str) -> str:
  """HTML of one run of Markdown text: code spans, bold, italics, links; the rest escaped."""
  held: list[str] = []

  def hold(fragment: str) -> str:
    held.append(fragment)
    return f'\x00{len(held) - 1}\x00'

  text = text.replace('\x00', '')
  text = _ESCAPED.sub(lambda m: hold(html.escape(m.group(1))), text)
  text = _CODE.sub(lambda m: hold(f'<code>{html.escape(m.group(2).strip())}</code>'), text)

  def link(m: re.Match) -> str:
    label, url = m.group(1), m.group(2)
    if not _SAFE_URL.match(url):
      return hold(html.escape(m.group(0)))
    return hold(f'<a href="{html.escape(url, quote=True)}">{_emphasis(label)}</a>')

  text = _LINK.sub(link, text)
  out = _emphasis(text)
  # Held fragments may hold others (a code span inside a link's text): restore until stable.
  while '\x00' in out:
    out = re.sub(r'\x00(\d+)\x00', lambda m: held[int(m.group(1))], out)
  return out


def _emphasis(text: str) -> str:
  """Escapes `text` (placeholders pass through) and renders bold and italics."""
  out = html.escape(text, quote=False)
  out = _BOLD.sub(r'<strong>\2</strong>', out)
  out = _ITALIC_STAR.sub(r'<em>\1</em>', out)
  return _ITALIC_UNDERSCORE.sub(r'<em>\1</em>', out)


def blocks_html(text: str) -> str:
  """HTML of Markdown text: `<p>` paragraphs and `<ul>` / `<ol>` lists of inline Markdown."""
  parts = []
  for block in re.split(r'\n\s*\n', text.strip()):
    para: list[str] = []
    items: list[list[str]] = []
    kind = ''

    def flush_para() -> None:
      if para:
        parts.append(f'<p>{inline_html(" ".join(para))}</p>')
        para.clear()

    def flush_list() -> None:
      nonlocal kind
      if items:
        body = ''.join(f'<li>{inline_html(" ".join(item))}</li>' for item in items)
        parts.append(f'<{kind}>{body}</{kind}>')
        items.clear()
      kind = ''

    for line in block.split('\n'):
      bullet, number = _BULLET.match(line), _NUMBER.match(line)
      if bullet or number:
        new_kind = 'ul' if bullet else 'ol'
        flush_para()
        if kind and kind != new_kind:
          flush_list()
        kind = new_kind
        items.append([(bullet or number).group(1).strip()])
      elif items and line[:1].isspace() and line.strip():
        items[-1].append(line.strip())
      else:
        flush_list()
        if line.strip():
          para.append(line.strip())
    flush_para()
    flush_list()
  return '\n'.join(parts)


def plain_text(text: str) -> str:
  """The text a reader sees of inline Markdown: marks dropped, links as their text."""
  return html.unescape(re.sub(r'<[^>]+>', '', inline_html(text)))
