"""Sphinx extension: the control plane's routes, from the app itself.

Usage in a page::

    .. control-routes::

Builds the app with :func:`neuro_api.control.create_app` (over an idle random
engine; nothing is served) and renders one row per route: method, path,
whether the bearer token applies (when one is configured), the JSON body
fields with their defaults (from the route's request dataclass), and the
first line of the route's docstring. Routes that the OpenAPI document hides
(the document itself, the Swagger UI, Quart's static files) are left out.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson
from _tables import cell, literal, table, text
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

_HEADERS = ("Method", "Path", "Token", "JSON body", "What it does")
_WIDTHS = (8, 26, 7, 24, 35)
_IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
# Bodies that are not a request dataclass.
_RAW_BODIES = {"games.inject": "a Neuro-to-game message, as sent on the wire"}


def _path(rule: str) -> str:
    """``/games/<game>`` -> ``/games/{game}`` (the OpenAPI spelling)."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def _field(field: dataclasses.Field[Any]) -> str:
    default: Any = field.default
    shown = "null" if default is None else orjson.dumps(default).decode()
    return f"{field.name}: {field.type} = {shown}"


def _needs_token(auth: Any, endpoint: str, view: Any, method: str) -> bool:
    """Whether the route needs the bearer token when one is configured."""
    is_public = getattr(auth, "is_public", None)
    if is_public is not None:
        return not is_public(endpoint, view)
    # Older rule: only mutating methods need it.
    return method in getattr(auth, "_MUTATING", ())


class ControlRoutes(SphinxDirective):
    """Insert a table of every documented route of the control plane."""

    has_content = False

    def _summary(self, doc: str | None) -> list[nodes.Node]:
        first = (doc or "").strip().split("\n\n")[0]
        line = " ".join(first.split())
        parsed, messages = self.state.inline_text(line, self.lineno)
        return [*parsed, *messages]

    def run(self) -> list[nodes.Node]:
        """Build the table node."""
        # Imported here so an import error points at this directive.
        from neuro_api import control  # noqa: PLC0415
        from neuro_api.control import _auth, _games, _status  # noqa: PLC0415
        from neuro_api.server import RandomNeuroServer  # noqa: PLC0415

        for module in (control, _auth, _games, _status):
            self.env.note_dependency(module.__file__)
        app = control.create_app(RandomNeuroServer())
        rows = []
        for rule in app.url_map.iter_rules():
            view = app.view_functions[rule.endpoint]
            if getattr(view, "_quart_schema_hidden", False):
                continue
            schema = getattr(view, "_quart_schema_request_schema", None)
            body: nodes.entry
            if rule.endpoint in _RAW_BODIES:
                body = text(_RAW_BODIES[rule.endpoint])
            elif schema is not None and dataclasses.is_dataclass(schema[0]):
                fields = [_field(f) for f in dataclasses.fields(schema[0])]
                body = cell(
                    *[
                        node
                        for index, value in enumerate(fields)
                        for node in (
                            ([nodes.inline("", ", ")] if index else [])
                            + [nodes.literal(value, value)]
                        )
                    ]
                )
            else:
                body = text("—")
            for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
                token = (
                    "yes" if _needs_token(_auth, rule.endpoint, view, method) else "no"
                )
                rows.append(
                    (
                        text(method),
                        literal(_path(rule.rule)),
                        text(token),
                        body.deepcopy(),
                        cell(*self._summary(view.__doc__)),
                    )
                )
        caption = f"All {len(rows)} routes"
        return [table(caption, _HEADERS, _WIDTHS, rows)]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the ``control-routes`` directive."""
    app.add_directive("control-routes", ControlRoutes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
