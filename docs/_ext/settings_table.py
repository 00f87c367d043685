"""Sphinx extension: the server's settings and ``--help``, from the code.

Usage in a page::

    .. settings-table::

    .. settings-table:: neuro_api.status.StatusSettings

    .. server-help::

``settings-table`` renders :data:`neuro_api.settings.SPECS` (one row per
setting: TOML key, flag, environment variable, type, default, meaning), or,
given a capability's settings class, the settings of its section (keys of
its ``[section]`` table);
``server-help`` inserts the output of ``python -m neuro_api.server --help``
as the parser formats it at 80 columns. Both are built when the docs are, so
they list exactly the settings and flags the code has.
"""

from __future__ import annotations

import os
import re
from typing import Any

import orjson
from _tables import cell, literal, table, text
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

_HEADERS = ("Setting", "Flag", "Environment", "Type", "Default", "Meaning")
_WIDTHS = (16, 20, 22, 10, 12, 30)
_HELP_COLUMNS = "80"
_FLAG = re.compile(r"(--[a-z][a-z-]*)")


def _meaning(help_text: str, secret: bool) -> nodes.entry:
    """The help text, with ``--flags`` as literals (no smart dashes)."""
    children: list[nodes.Node] = []
    for index, part in enumerate(_FLAG.split(help_text)):
        if index % 2:
            children.append(nodes.literal(part, part))
        elif part:
            children.append(nodes.Text(part))
    if secret:
        children.append(nodes.Text(". Secret: shown as "))
        children.append(nodes.literal("***", "***"))
        children.append(nodes.Text(" and kept out of logs"))
    return cell(*children)


def _default(value: Any) -> str:
    return "unset" if value is None else orjson.dumps(value).decode()


class SettingsTable(SphinxDirective):
    """Insert a table with one row per setting, in ``--help`` order."""

    has_content = False
    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        """Build the table node."""
        # Imported here so an import error points at this directive.
        import importlib  # noqa: PLC0415

        from neuro_api import settings  # noqa: PLC0415

        self.env.note_dependency(settings.__file__)
        specs = settings.SPECS
        caption = f"All {len(specs)} settings"
        if self.arguments:
            module_name, _, class_name = self.arguments[0].rpartition(".")
            module = importlib.import_module(module_name)
            kind = getattr(module, class_name)
            self.env.note_dependency(module.__file__)
            specs = settings.specs_of(kind)
            caption = f"The [{kind.section}] section"
        rows = []
        for spec in specs:
            flag = spec.option
            if spec.kind is bool:
                flag = f"{flag} / --no-{flag[2:]}"
            kind = spec.kind.__name__
            if spec.choices is not None:
                kind = " | ".join(spec.choices)
            rows.append(
                (
                    literal(spec.name),
                    literal(flag),
                    literal(spec.env or ""),
                    text(kind),
                    literal(_default(spec.default)),
                    _meaning(spec.help, spec.secret),
                )
            )
        return [table(caption, _HEADERS, _WIDTHS, rows)]


class ServerHelp(SphinxDirective):
    """Insert ``python -m neuro_api.server --help`` as a literal block."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        """Format the parser's help at a fixed width."""
        from neuro_api import settings  # noqa: PLC0415
        from neuro_api.app import _cli  # noqa: PLC0415

        self.env.note_dependency(_cli.__file__)
        self.env.note_dependency(settings.__file__)
        # argparse wraps to $COLUMNS; pin it so the page does not depend on
        # the terminal the docs were built in.
        saved = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = _HELP_COLUMNS
        try:
            help_text = _cli.build_parser().format_help()
        finally:
            if saved is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = saved
        block = nodes.literal_block(help_text, help_text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the ``settings-table`` and ``server-help`` directives."""
    app.add_directive("settings-table", SettingsTable)
    app.add_directive("server-help", ServerHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
