"""Swagger UI's own files, served by the control plane so ``/docs`` works offline.

quart-schema's ``/docs`` page loads Swagger UI's JavaScript and CSS from a
CDN by default, so without internet it is a blank page. The files come from
the ``swagger-ui-bundle`` distribution (Swagger UI, Apache-2.0, as a Python
package) and are served under :data:`ASSETS`, with the Swagger UI version in
the path: a new version gets new URLs, so browsers may cache them for a year.
Like ``/docs``, they need no token.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path
from typing import Final

import trio
from quart import Blueprint, Quart, Response, current_app, request
from quart_schema import hide

from neuro_api.control._auth import public
from neuro_api.control._errors import ApiError

__all__ = ["ASSETS", "docs_assets", "serve_swagger_ui"]

ASSETS: Final = "/docs/assets"
"""Where Swagger UI's files are served: ``ASSETS/<version>/<file>``."""
_FILES: Final = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
}
_A_YEAR: Final = 365 * 24 * 3600
_DIRECTORY: Final = "NEURO_SWAGGER_UI_DIRECTORY"
_contents: dict[Path, bytes] = {}

docs_assets = Blueprint("docs_assets", __name__)


def _swagger_ui_directory() -> Path:
    """The installed Swagger UI's folder (``.../vendor/swagger-ui-4.15.5``)."""
    vendor = Path(str(importlib.resources.files("swagger_ui_bundle") / "vendor"))
    found = sorted(vendor.glob("swagger-ui-*"))
    if not found:  # pragma: no cover - the distribution ships one
        raise RuntimeError(f"no Swagger UI in {vendor}")
    return found[-1]


def serve_swagger_ui(app: Quart) -> None:
    """Serve Swagger UI's files from ``app`` and point quart-schema at them.

    Call after ``QuartSchema(app)`` (it sets the CDN URLs as defaults).
    """
    directory = _swagger_ui_directory()
    version = directory.name.removeprefix("swagger-ui-")
    app.config[_DIRECTORY] = directory
    app.config["QUART_SCHEMA_SWAGGER_JS_URL"] = (
        f"{ASSETS}/{version}/swagger-ui-bundle.js"
    )
    app.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = f"{ASSETS}/{version}/swagger-ui.css"
    app.register_blueprint(docs_assets)


@docs_assets.get(f"{ASSETS}/<version>/<name>")
@public
@hide
async def swagger_ui_file(version: str, name: str) -> Response:
    """One of Swagger UI's files, cacheable for a year (404 for any other).

    Its ETag is its hash: a browser asking again with ``If-None-Match``
    gets 304.
    """
    directory: Path = current_app.config[_DIRECTORY]
    if version != directory.name.removeprefix("swagger-ui-") or name not in _FILES:
        raise ApiError(404, "not_found", f"no documentation file {version}/{name}")
    path = directory / name
    data = _contents.get(path)
    if data is None:
        # Kept in memory once asked for (1.2 MB for both): they never change.
        data = _contents[path] = await trio.Path(path).read_bytes()
    response: Response = current_app.response_class(data, mimetype=_FILES[name])
    response.set_etag(hashlib.sha256(data).hexdigest())
    response.cache_control.public = True
    response.cache_control.max_age = _A_YEAR
    response.cache_control.immutable = True
    await response.make_conditional(request)
    return response
