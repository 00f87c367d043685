"""The control plane's OpenAPI document: quart-schema's, completed.

quart-schema documents only what a route declares and inlines each model's
schema. This provider also names every model in ``components.schemas``
(operations refer to them), documents the 401 and the bearer scheme on each
route that needs the token (see :mod:`neuro_api.control._auth`) and the
413 on each route that takes a body (see :mod:`neuro_api.control._limits`),
gives each documented error its own description, and never leaves an
operation without a response.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

from quart_schema import OpenAPIProvider, document_response
from quart_schema.typing import Model
from quart_schema.validation import DataSource
from werkzeug.routing.rules import Rule

from neuro_api.control._auth import is_public
from neuro_api.control._models import ErrorBody

__all__ = ["ControlOpenAPI", "errors", "event_stream", "optional_body"]

F = TypeVar("F", bound=Callable[..., object])

BEARER: Final = "bearer"
"""Name of the security scheme in ``components.securitySchemes``."""

_VARIABLE: Final = re.compile(r"<(?:[^:<>]*:)?([^<>]+)>")
"""A path variable, its converter aside: ``<name:action>`` is ``{action}``.

quart-schema's own pattern lets a converter's prefix run across an earlier
variable (``/games/<game>/actions/<name:action>`` became ``/games/{action}``).
"""
_STREAM_ATTRIBUTE: Final = "_neuro_api_event_stream"
_OPTIONAL_BODY_ATTRIBUTE: Final = "_neuro_api_optional_body"
_ERRORS: Final = {
    400: "The body is not JSON (``invalid_json``), a field is wrong "
    "(``invalid_request``, ``invalid_action_data``), no valid data could be "
    "generated (``cannot_generate_data``), or the route takes one game, not "
    "``*`` (``one_game_only``).",
    401: "A token is configured and the request did not carry it (``unauthorized``).",
    404: "No such connected game (``unknown_game``) or registered action "
    "(``unknown_action``).",
    409: "The message reuses the id of an action still pending (``duplicate_id``).",
    413: "The body is over the server's max_message_size + 4096 bytes, or the "
    "frame it makes would be over max_message_size (``payload_too_large``).",
    429: "The game is held (a capability's force gate) and as many actions as "
    "it may have pending wait already (``too_many_held_actions``).",
    503: "Too many event streams are open (``too_many_streams``).",
}
_BEARER_SCHEME: Final = {
    "type": "http",
    "scheme": "bearer",
    "description": "`Authorization: Bearer <token>`. Needed by every route but "
    "/health and the documentation, only when the server was given a token "
    "(it is reachable from elsewhere); otherwise everything is open.",
}


def errors(*statuses: int) -> Callable[[F], F]:
    """Document the JSON error body for ``statuses`` (400, 404, 409) on a route.

    401 is added by the provider to every route that needs the token.
    """

    def decorator(route: F) -> F:
        for status in statuses:
            route = document_response(ErrorBody, status)(route)
        return route

    return decorator


def event_stream(description: str) -> Callable[[F], F]:
    """Document a route's 200 as a ``text/event-stream`` (not JSON)."""

    def decorator(route: F) -> F:
        setattr(route, _STREAM_ATTRIBUTE, description)
        return route

    return decorator


def optional_body(route: F) -> F:
    """Document a route's request body as one that may be left out."""
    setattr(route, _OPTIONAL_BODY_ATTRIBUTE, True)
    return route


def _named(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Move a titled object schema to ``definitions``; return a ``$ref`` to it."""
    title = schema.get("title")
    if not isinstance(title, str) or schema.get("type") != "object":
        return schema
    definitions[title] = schema
    return {"$ref": f"#/components/schemas/{title}"}


class ControlOpenAPI(OpenAPIProvider):
    """quart-schema's provider with the completions listed in the module doc."""

    def schema(self) -> dict[str, Any]:
        """The whole document, with the bearer security scheme."""
        document = super().schema()
        document["components"]["securitySchemes"] = {BEARER: dict(_BEARER_SCHEME)}
        return document

    def build_response_object(
        self, model: type[Model], headers_model: type[Model] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """quart-schema's response object, its schema named in components."""
        response, definitions = super().build_response_object(model, headers_model)
        media = response["content"]["application/json"]
        media["schema"] = _named(media["schema"], definitions)
        return response, definitions

    def build_request_body(
        self, model: type[Model], source: DataSource
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """quart-schema's request body, its schema named in components."""
        body, definitions = super().build_request_body(model, source)
        for media in body["content"].values():
            media["schema"] = _named(media["schema"], definitions)
        return body, definitions

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        """quart-schema's operations for ``rule``, completed."""
        paths, components = super().build_paths(rule)
        paths = {_VARIABLE.sub(r"{\1}", rule.rule): item for item in paths.values()}
        route = self._app.view_functions[rule.endpoint]
        protected = not is_public(rule.endpoint, route)
        error, definitions = self.build_response_object(ErrorBody, None)
        components.update(definitions)
        for item in paths.values():
            for operation in item.values():
                responses: dict[str, Any] = {
                    str(status): response
                    for status, response in operation["responses"].items()
                }
                stream = getattr(route, _STREAM_ATTRIBUTE, None)
                if stream is not None:
                    responses["200"] = {
                        "description": stream,
                        "content": {
                            "text/event-stream": {"schema": {"type": "string"}}
                        },
                    }
                if protected:
                    responses["401"] = dict(error)
                    operation["security"] = self._security()
                if "requestBody" in operation:
                    responses["413"] = dict(error)
                for status, description in _ERRORS.items():
                    if str(status) in responses:
                        responses[str(status)]["description"] = description
                if "requestBody" in operation:
                    operation["requestBody"] = self._request_body(
                        operation["requestBody"], route
                    )
                if not responses:  # pragma: no cover - every route documents one
                    responses["default"] = {"description": "undocumented"}
                operation["responses"] = dict(sorted(responses.items()))
                description = operation.get("description", "").strip()
                if description:
                    operation["description"] = description
                else:
                    operation.pop("description", None)
        return paths, components

    @staticmethod
    def _request_body(body: dict[str, Any], route: object) -> dict[str, Any]:
        body = dict(body)
        if getattr(route, _OPTIONAL_BODY_ATTRIBUTE, False):
            body["required"] = False
            body["description"] = "May be left out: no body is the same as `{}`."
        else:
            body["required"] = True
        return body

    def _security(self) -> list[dict[str, list[str]]]:
        if self._app.config.get("NEURO_TOKEN_REQUIRED", True):
            return [{BEARER: []}]
        return [{BEARER: []}, {}]  # no token configured: it is optional
