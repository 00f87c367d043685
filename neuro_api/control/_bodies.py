"""Request bodies: a JSON object loaded into a dataclass; an empty body is ``{}``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from pydantic import TypeAdapter, ValidationError
from quart import request
from quart_schema import document_request

from neuro_api.control._errors import ApiError, describe_validation_error
from neuro_api.control._openapi import optional_body

__all__ = ["json_body"]

T = TypeVar("T")
Route = Callable[..., Awaitable[Any]]


def _parse(raw: str | bytes) -> Any:
    if not request.is_json:
        raise ApiError(
            400, "invalid_json", "a request body needs 'Content-Type: application/json'"
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"request body is not valid JSON: {exc}"
        ) from None


def json_body(model: type[T]) -> Callable[[Route], Route]:
    """Pass the request body to the route as ``data``, an instance of ``model``.

    No body (or only whitespace) means ``{}``, so a model whose fields all
    have defaults needs none. A body must come with ``Content-Type:
    application/json`` (a browser cannot send that cross-site without asking
    first) and be JSON: else 400 ``invalid_json``. Not a valid ``model``: 400
    ``invalid_request`` with one line naming each bad field. The model is
    documented as the (optional) request body in the OpenAPI document.
    """
    adapter = TypeAdapter(model)

    def decorator(route: Route) -> Route:
        @functools.wraps(route)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            raw = await request.get_data(as_text=False)
            loaded = _parse(raw) if raw.strip() else {}
            try:
                data = adapter.validate_python(loaded)
            except ValidationError as exc:
                raise ApiError(
                    400, "invalid_request", describe_validation_error(exc)
                ) from None
            return await route(*args, data=data, **kwargs)

        documented: Route = document_request(model)(wrapper)
        return optional_body(documented)

    return decorator
