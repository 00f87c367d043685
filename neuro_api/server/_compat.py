"""Helpers the upstream SDK's server module offered, with the same meaning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from neuro_api.command import Action, ProtocolError, RegisterActions, parse_game_frame
from neuro_api.diagnostics import Severity
from neuro_api.schema import check_action

__all__ = ["check_action_names_type", "deserialize_actions"]


def deserialize_actions(data: Mapping[str, Any]) -> list[Action]:
    """Turn ``actions/register`` data into checked :class:`Action` objects.

    Raises :class:`ValueError` naming the field for a malformed entry, and for
    an action with an error-severity diagnostic (see
    :func:`neuro_api.schema.check_action`).
    """
    # One parser serves the wire and this helper: wrap the data in a frame.
    try:
        frame = orjson.dumps({"command": "actions/register", "game": "-", "data": data})
        message = parse_game_frame(frame)
    except (TypeError, ProtocolError) as exc:
        raise ValueError(str(exc)) from None
    assert isinstance(message, RegisterActions)
    if message.rejected:
        raise ValueError(str(message.rejected[0]))
    for action in message.actions:
        errors = [d for d in check_action(action) if d.severity is Severity.ERROR]
        if errors:
            raise ValueError(errors[0].message)
    return list(message.actions)


def check_action_names_type(action_names: object) -> None:
    """Raise :class:`ValueError` unless ``action_names`` is a list of strings."""
    if not isinstance(action_names, list):
        raise ValueError(f"{action_names!r} is not a list")
    for item in action_names:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a string object")
