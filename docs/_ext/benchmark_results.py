"""Sphinx extension: the recorded benchmark results, from benchmarks/README.md.

Usage in a page::

    .. benchmark-results::

Reads the ``## Recorded results`` section of ``benchmarks/README.md`` (the
file the benchmark's users fill in) and renders its paragraphs and pipe
tables as docutils nodes, so the docs show the same figures as the README.
Only the Markdown the section uses is understood: paragraphs with
```code```, ``_emphasis_`` and ``**strong**``, ``### headings``, ``- lists``
and pipe tables. A missing
section is an error (the build fails under ``-W``), so a renamed heading is
noticed instead of silently showing nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _tables import cell, table
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

_README = Path(__file__).resolve().parents[2] / "benchmarks" / "README.md"
_HEADING = "## Recorded results"
_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|(?<!\w)_([^_]+)_(?!\w)")
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def _inline(source: str) -> list[nodes.Node]:
    """Turn the little Markdown of one paragraph or cell into nodes."""
    result: list[nodes.Node] = []
    position = 0
    for match in _INLINE.finditer(source):
        if match.start() > position:
            result.append(nodes.Text(source[position : match.start()]))
        code, strong, emphasis = match.groups()
        if code is not None:
            result.append(nodes.literal(code, code))
        elif strong is not None:
            result.append(nodes.strong(strong, strong))
        else:
            result.append(nodes.emphasis(emphasis, emphasis))
        position = match.end()
    if position < len(source):
        result.append(nodes.Text(source[position:]))
    return result


def _cells(line: str) -> list[str]:
    return [part.strip() for part in line.strip().strip("|").split("|")]


def section_lines(text: str) -> list[str] | None:
    """The lines of the recorded-results section, or None if it is missing."""
    lines = text.splitlines()
    try:
        start = lines.index(_HEADING) + 1
    except ValueError:
        return None
    end = next(
        (i for i in range(start, len(lines)) if lines[i].startswith("## ")),
        len(lines),
    )
    return lines[start:end]


def _parse(
    lines: list[str], make_table: Callable[[list[list[str]]], nodes.table]
) -> list[nodes.Node]:
    """Paragraphs, ``###`` rubrics, ``-`` lists and pipe tables of ``lines``."""
    result: list[nodes.Node] = []
    paragraph: list[str] = []
    rows: list[list[str]] = []
    items: list[list[str]] = []

    def flush() -> None:
        if paragraph:
            result.append(nodes.paragraph("", "", *_inline(" ".join(paragraph))))
            paragraph.clear()
        if rows:
            result.append(make_table(rows))
            rows.clear()
        if items:
            bullets = nodes.bullet_list()
            for item in items:
                entry = nodes.list_item()
                entry += nodes.paragraph("", "", *_inline(" ".join(item)))
                bullets += entry
            result.append(bullets)
            items.clear()

    for raw in lines:
        line = raw.strip()
        if line.startswith("### "):
            flush()
            result.append(nodes.rubric("", "", *_inline(line[4:])))
        elif line.startswith("|"):
            if paragraph or items:
                flush()
            if not _SEPARATOR.match(line):
                rows.append(_cells(line))
        elif line.startswith("- "):
            if paragraph or rows:
                flush()
            items.append([line[2:]])
        elif not line:
            flush()
        elif items and raw.startswith("  "):
            items[-1].append(line)  # a list item goes on
        else:
            if rows or items:
                flush()
            paragraph.append(line)
    flush()
    return result


class BenchmarkResults(SphinxDirective):
    """Insert the recorded results of ``benchmarks/README.md``."""

    has_content = False
    _recorded = False

    def _table(self, rows: list[list[str]]) -> nodes.table:
        headers, body = rows[0], rows[1:]
        # A figure counts as recorded once a measured column has a value
        # (the first column names the figure; "target" is fixed text).
        measured = [
            i for i, name in enumerate(headers) if i and name.lower() != "target"
        ]
        if any(i < len(row) and row[i] for row in body for i in measured):
            self._recorded = True
        width = max(len(row) for row in rows)
        widths = [30 if i == 0 else 12 for i in range(width)]
        table_rows = [
            [cell(*_inline(value)) for value in row + [""] * (width - len(row))]
            for row in body
        ]
        return table("The server against the floor", headers, widths, table_rows)

    def run(self) -> list[nodes.Node]:
        """Parse the section into paragraphs and tables."""
        self.env.note_dependency(str(_README))
        try:
            source = _README.read_text(encoding="utf-8")
        except OSError as exc:
            message = f"benchmark-results: cannot read {_README}: {exc}"
            raise self.error(message) from None
        lines = section_lines(source)
        if lines is None:
            raise self.error(f"benchmark-results: no {_HEADING!r} section in {_README}")
        result = _parse(lines, self._table)
        if not any(isinstance(node, nodes.table) for node in result):
            raise self.error(f"benchmark-results: no table under {_HEADING!r}")
        if not self._recorded:
            note = nodes.note()
            note += nodes.paragraph(
                "",
                "No results are recorded yet: the table fills in when "
                "benchmarks/README.md has them.",
            )
            result.append(note)
        return result


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the ``benchmark-results`` directive."""
    app.add_directive("benchmark-results", BenchmarkResults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
