"""Request bodies: a JSON object loaded into a dataclass; an empty body is ``{}``.

Bodies are read strictly (:data:`STRICT`): a field of the wrong JSON type
is an error, never converted (``"validate": "no"`` is not ``false``), and
a field the model does not have is an error, never ignored
(``{"cell": 5}`` where ``{"data": {"cell": 5}}`` was meant).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import orjson
from pydantic import ConfigDict, TypeAdapter, ValidationError
from quart import request
from quart_schema import document_request

from neuro_api.control._errors import ApiError, describe_validation_error
from neuro_api.control._openapi import optional_body

__all__ = ["STRICT", "json_body"]

T = TypeVar("T")
Route = Callable[..., Awaitable[Any]]

STRICT: Final = ConfigDict(strict=True, extra="forbid")
"""Set it as ``__pydantic_config__`` of every request body dataclass."""


def _check_json(raw: str | bytes) -> None:
    if not request.is_json:
        raise ApiError(
            400, "invalid_json", "a request body needs 'Content-Type: application/json'"
        )
    try:
        orjson.loads(raw)  # the JSON errors every other part of the server gives
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"request body is not valid JSON: {exc}"
        ) from None


def json_body(
    model: type[T], *, unknown_field: str | None = None
) -> Callable[[Route], Route]:
    """Pass the request body to the route as ``data``, an instance of ``model``.

    No body (or only whitespace) means ``{}``, so a model whose fields all
    have defaults needs none. A body must come with ``Content-Type:
    application/json`` (a browser cannot send that cross-site without asking
    first) and be JSON: else 400 ``invalid_json``. Not a valid ``model``
    (read with the model's ``__pydantic_config__``, :data:`STRICT` for every
    body here): 400 ``invalid_request`` with one line naming each bad field;
    a field the model does not have reads ``NAME: unknown field; `` and then
    ``unknown_field`` (default: the list of the model's fields). The model is
    documented as the (optional) request body in the OpenAPI document.
    """
    if getattr(model, "__pydantic_config__", None) != STRICT:
        raise TypeError(f"{model.__name__} needs __pydantic_config__ = STRICT")
    adapter = TypeAdapter(model)
    if unknown_field is None:
        names = ", ".join(
            f'"{name}"' for name in getattr(model, "__dataclass_fields__", {})
        )
        unknown_field = f"the fields are {names}"

    def decorator(route: Route) -> Route:
        @functools.wraps(route)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            raw = await request.get_data(as_text=False)
            if raw.strip():
                _check_json(raw)
            else:
                raw = b"{}"
            try:
                # From JSON, not from Python objects: strict dataclasses
                # take only instances of themselves from Python.
                data = adapter.validate_json(raw)
            except ValidationError as exc:
                message = describe_validation_error(exc, unknown_field)
                raise ApiError(400, "invalid_request", message) from None
            return await route(*args, data=data, **kwargs)

        documented: Route = document_request(model)(wrapper)
        return optional_body(documented)

    return decorator
