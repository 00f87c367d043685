"""Realtime events checked against OpenAI's own types (``openai.types.realtime``).

The ``openai`` package's pydantic models are generated from the API's
OpenAPI spec: they tell whether an event the fake Realtime server sends
(or a bridge sends to it) has the real shape. Used by the fake's own tests,
and open to any test that wants the events it saw checked::

    for event in connection.sent:
        check_server_event(event)
    for event in connection.received:
        check_client_event(event)

:func:`check_server_event` / :func:`check_client_event` raise
:class:`AssertionError` naming the event when its ``type`` is no event of
that side, a field is missing or has the wrong type, or there is a
top-level field the model does not have (the models allow extra fields:
this is checked here). Nested objects are checked by the models, extra
fields in them are not.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, Final

import pydantic
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent


def _by_type(union: object) -> dict[str, type[pydantic.BaseModel]]:
    models: dict[str, type[pydantic.BaseModel]] = {}
    members = typing.get_args(typing.get_args(union)[0])  # Annotated[Union[...]]
    for model in members:
        literal = model.model_fields["type"].annotation
        for name in typing.get_args(literal):
            models[name] = model
    return models


SERVER_EVENTS: Final = _by_type(RealtimeServerEvent)
CLIENT_EVENTS: Final = _by_type(RealtimeClientEvent)


def _check(
    event: Mapping[str, Any], models: dict[str, type[pydantic.BaseModel]], side: str
) -> None:
    kind = event.get("type")
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise AssertionError(f"no {side} event has the type {kind!r}: {event}")
    try:
        model.model_validate(dict(event))
    except pydantic.ValidationError as exc:
        raise AssertionError(
            f"{side} event {kind!r} has a wrong shape: {exc}"
        ) from None
    extra = set(event) - set(model.model_fields)
    if extra:
        raise AssertionError(
            f"{side} event {kind!r} has fields the API does not: {sorted(extra)}"
        )


def check_server_event(event: Mapping[str, Any]) -> None:
    """Raise :class:`AssertionError` unless ``event`` is a server event."""
    _check(event, SERVER_EVENTS, "server")


def check_client_event(event: Mapping[str, Any]) -> None:
    """Raise :class:`AssertionError` unless ``event`` is a client event."""
    _check(event, CLIENT_EVENTS, "client")
