"""Sphinx extension: render ``neuro_api.diagnostics.CATALOGUE`` as a table.

Usage in a page::

    .. diagnostics-catalogue::

The table is built from the live catalogue at build time, so the docs list
exactly the ids the code can emit. Cells are docutils nodes, not reST source,
so braces, asterisks and backticks in templates and hints need no escaping.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

_HEADERS = ("Id", "Severity", "Title", "Message template", "Hint")
_WIDTHS = (22, 8, 18, 30, 30)


def _cell(*children: nodes.Node) -> nodes.entry:
    paragraph = nodes.paragraph()
    paragraph.extend(children)
    return nodes.entry("", paragraph)


def _row(*cells: nodes.entry) -> nodes.row:
    row = nodes.row()
    row.extend(cells)
    return row


class DiagnosticsCatalogue(SphinxDirective):
    """Insert a table with one row per catalogue entry, in catalogue order."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        """Build the table node."""
        # Imported here, not at module level, so that loading the extension
        # never fails on its own and the error points at this directive.
        from neuro_api import diagnostics  # noqa: PLC0415

        # Rebuild this page whenever the catalogue's source changes.
        self.env.note_dependency(diagnostics.__file__)
        catalogue = diagnostics.CATALOGUE
        table = nodes.table(classes=["longtable"])
        group = nodes.tgroup(cols=len(_HEADERS))
        table += group
        for width in _WIDTHS:
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += _row(*(_cell(nodes.Text(text)) for text in _HEADERS))
        group += head
        body = nodes.tbody()
        for kind in catalogue.values():
            body += _row(
                _cell(nodes.literal(kind.id, kind.id)),
                _cell(nodes.Text(kind.severity.value)),
                _cell(nodes.Text(kind.title)),
                _cell(nodes.literal(kind.template, kind.template)),
                _cell(nodes.Text(kind.hint)),
            )
        group += body
        caption = f"All {len(catalogue)} diagnostic kinds"
        table.insert(0, nodes.title(caption, caption))
        return [table]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the ``diagnostics-catalogue`` directive."""
    app.add_directive("diagnostics-catalogue", DiagnosticsCatalogue)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
