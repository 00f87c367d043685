"""Helpers shared by the table directives in ``docs/_ext``.

Tables are built from docutils nodes, not reST source, so text taken from
the code (help strings, docstrings, defaults) needs no escaping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from docutils import nodes


def cell(*children: nodes.Node) -> nodes.entry:
    """Return a table cell holding one paragraph of ``children``."""
    paragraph = nodes.paragraph()
    paragraph.extend(children)
    return nodes.entry("", paragraph)


def text(value: str) -> nodes.entry:
    """Return a cell of plain text."""
    return cell(nodes.Text(value))


def literal(value: str) -> nodes.entry:
    """Return a cell of one literal (``code``) span, or a dash if empty."""
    if not value:
        return text("—")
    return cell(nodes.literal(value, value))


def table(
    caption: str,
    headers: Sequence[str],
    widths: Sequence[int],
    rows: Iterable[Sequence[nodes.entry]],
) -> nodes.table:
    """Return a table node with a caption, a header row and ``rows``."""
    result = nodes.table(classes=["longtable"])
    group = nodes.tgroup(cols=len(headers))
    result += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += _row([text(header) for header in headers])
    group += head
    body = nodes.tbody()
    for cells in rows:
        body += _row(cells)
    group += body
    result.insert(0, nodes.title(caption, caption))
    return result


def _row(cells: Sequence[nodes.entry]) -> nodes.row:
    row = nodes.row()
    row.extend(cells)
    return row
