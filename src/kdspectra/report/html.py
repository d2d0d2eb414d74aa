"""Tables as HTML pages, so that ``snakemake --report`` shows them inside the report.

Snakemake's report displays images, PDFs and HTML in the page; any other file (``.md``,
``.csv``) is only offered as a download. The report rules therefore render each table
once more, as a small self-contained HTML page: from its Markdown when it has one (that
version carries the notes, the decision rules and the provenance footer), else from its
CSV. The Markdown is the project's own (``kdspectra.report.render``,
``kdspectra.paper.claims_markdown``): headings, paragraphs, block quotes, bullet lists, pipe tables,
inline code, bold and italics; that subset is what :func:`markdown_to_html` reads.
Everything is HTML-escaped: a table cell can never inject markup.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterable, Sequence

STYLE = """\
body { font: 14px/1.45 system-ui, sans-serif; margin: 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; white-space: nowrap; }
code { background: #f3f3f3; padding: 0 0.2em; }
.scroll { overflow-x: auto; }
blockquote { margin: 0.8em 0; padding: 0.4em 0.8em; border-left: 4px solid #d9822b; }
"""
_NUMBER = re.compile(r"^[−+-]?[\d,]*\.?\d+(e[−+-]?\d+)?[KMB%]?( ± [\d.,]+[KMB%]?)?$", re.IGNORECASE)
_INLINE = (
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])"), r"<em>\1</em>"),
)


def inline(text: str) -> str:
    """Escape ``text``, then mark up code, bold and italics."""
    out = html.escape(text.strip(), quote=False)
    for pattern, replacement in _INLINE:
        out = pattern.sub(replacement, out)
    return out


def table_html(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """An HTML table; cells that read as numbers are right-aligned."""
    head = "".join(f"<th>{inline(cell)}</th>" for cell in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{inline(c)}</td>'
            if _NUMBER.match(c.strip())
            else f"<td>{inline(c)}</td>"
            for c in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _pipe_cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.replace("\\|", "|") for c in cells]


def _is_rule(line: str) -> bool:
    """The ``|---|:---:|`` line under a pipe table's header."""
    return bool(re.fullmatch(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*", line))


def _blocks(lines: list[str]) -> Iterable[str]:
    """HTML of each Markdown block: heading, pipe table, bullet list or paragraph."""
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif heading := re.match(r"(#{1,6})\s+(.*)", line):
            level = len(heading[1])
            yield f"<h{level}>{inline(heading[2])}</h{level}>"
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            end = i + 2
            while end < len(lines) and lines[end].lstrip().startswith("|"):
                end += 1
            yield table_html(_pipe_cells(line), [_pipe_cells(r) for r in lines[i + 2 : end]])
            i = end
        elif line.startswith(">"):
            quote = []
            while i < len(lines) and lines[i].startswith(">"):
                quote.append(lines[i][1:].strip())
                i += 1
            yield f"<blockquote>{inline(' '.join(quote))}</blockquote>"
        elif re.match(r"\s*[-*] ", line):
            items = []
            while i < len(lines) and re.match(r"\s*[-*] ", lines[i]):
                items.append(f"<li>{inline(lines[i].lstrip()[2:])}</li>")
                i += 1
            yield f"<ul>{''.join(items)}</ul>"
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines, i):
                para.append(lines[i])
                i += 1
            yield f"<p>{inline(' '.join(para))}</p>"


def _starts_block(lines: list[str], i: int) -> bool:
    line = lines[i]
    if re.match(r"#{1,6}\s|\s*[-*] |>", line):
        return True
    return line.lstrip().startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1])


def markdown_to_html(text: str) -> str:
    """The HTML body of one of the project's Markdown tables (see the module docstring)."""
    return "\n".join(_blocks(text.splitlines()))


def csv_to_html(text: str) -> str:
    """The HTML table of a CSV file's text (first row = header)."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return "<p>(empty table)</p>"
    return table_html(rows[0], rows[1:])


def page(title: str, body: str) -> str:
    """A standalone HTML page (inline style, no scripts, no external resources)."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def table_page(title: str, source_name: str, text: str) -> str:
    """The page of one table file: Markdown (``.md``) or CSV (``.csv``) by its name."""
    if source_name.endswith(".md"):
        body = markdown_to_html(text)
    elif source_name.endswith(".csv"):
        body = f"<h1>{inline(title)}</h1>\n{csv_to_html(text)}"
    else:
        raise ValueError(f"{source_name}: expected a .md or .csv table")
    return page(
        title,
        f"{body}\n<p><small>Rendered from <code>{html.escape(source_name)}</code>.</small></p>",
    )
