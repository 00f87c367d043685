"""Neuro actions as Realtime function tools, and the model's calls back as actions.

The API accepts function names of ``[A-Za-z0-9_-]``, 64 at most, and
parameters that are a JSON schema of an object. A Neuro action's name may
be anything and its schema may be absent or not an object, so each action
gets a tool name the API accepts (the same for the same action name, and
unique in one request) and, when its schema is not an object's, a wrapper
object with one required property ``value``; :meth:`ToolSet.answer` maps
a call back to the action's name and data.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any, Final

import orjson

from neuro_api._generate import encode_data
from neuro_api.command import Action

__all__ = ["MAX_DESCRIPTION", "MAX_TOOLS", "MAX_TOOLS_BYTES", "ToolSet", "tool_name"]

MAX_TOOLS: Final = 128
"""Tools offered in one request (the API's limit); the rest are left out."""
MAX_DESCRIPTION: Final = 1024
"""Characters of an action's description passed on."""
MAX_TOOLS_BYTES: Final = 65536
"""Bytes of tool definitions (JSON) offered in one request: a Realtime
model's context holds some 32,000 tokens in all, and a game's schemas may
take megabytes; tools beyond it are left out."""
_NAME_MAX: Final = 64
_BAD: Final = re.compile(r"[^A-Za-z0-9_-]")
_WRAPPED: Final = "value"
_NO_DATA: Final = {"type": "object", "properties": {}, "additionalProperties": False}


def tool_name(action_name: str) -> str:
    """The tool name of ``action_name``: itself when the API accepts it.

    Otherwise its accepted characters (others become ``_``), cut to leave
    room for ``_`` and 8 hex digits of the name's hash, so two names that
    clean up alike still differ.
    """
    if action_name and len(action_name) <= _NAME_MAX and not _BAD.search(action_name):
        return action_name
    digest = hashlib.sha256(action_name.encode("utf-8", "surrogatepass")).hexdigest()
    clean = _BAD.sub("_", action_name)[: _NAME_MAX - 9]
    return f"{clean}_{digest[:8]}"


def _is_object_schema(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "object":
        return True
    return kind is None and "properties" in schema and not _has_combinator(schema)


def _has_combinator(schema: dict[str, Any]) -> bool:
    return any(key in schema for key in ("anyOf", "oneOf", "allOf", "not", "$ref"))


class ToolSet:
    """The tools of one request, and the way back from the model's calls.

    Built from the offered actions, in order: at most :data:`MAX_TOOLS`
    within :data:`MAX_TOOLS_BYTES` of JSON; those left out (beyond, or too
    large for what is left) are counted in :attr:`left_out`.
    """

    def __init__(self, actions: Iterable[Action]) -> None:
        self.tools: list[dict[str, Any]] = []
        """The ``tools`` of a ``response.create`` (the GA flat shape)."""
        self.left_out = 0
        self._actions: dict[str, tuple[Action, bool]] = {}
        room = MAX_TOOLS_BYTES
        for action in actions:
            if len(self.tools) >= MAX_TOOLS:
                self.left_out += 1
                continue
            name = tool_name(action.name)
            if name in self._actions:
                continue  # the same action twice
            parameters, wrapped = _parameters(action.schema)
            tool = {
                "type": "function",
                "name": name,
                "description": action.description[:MAX_DESCRIPTION],
                "parameters": parameters,
            }
            # Encoded to be measured: a schema is at most a frame (1 MiB by
            # default), and a game's all together its memory budget.
            size = len(orjson.dumps(tool)) + 1
            if size > room:
                self.left_out += 1
                continue
            room -= size
            self._actions[name] = (action, wrapped)
            self.tools.append(tool)

    def __len__(self) -> int:
        return len(self.tools)

    def action(self, tool: str) -> Action | None:
        """The action behind ``tool`` (None: not one of this set's)."""
        found = self._actions.get(tool)
        return None if found is None else found[0]

    def answer(self, tool: str, arguments: str) -> tuple[Action, str | None]:
        """The action of a call and its data (JSON text, or None for none).

        The arguments are passed on as the model wrote them (so the
        action's own validation judges them), unwrapped from ``value``
        for an action whose schema is not an object's; an action without a
        schema gets no data. Raises :class:`KeyError` for a tool not in
        this set and :class:`ValueError` for wrapped arguments that are
        not an object with ``value``.
        """
        action, wrapped = self._actions[tool]
        if action.schema is None:
            return action, None
        if not wrapped:
            return action, arguments
        try:
            value = orjson.loads(arguments)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the arguments are not JSON: {exc}") from None
        if not isinstance(value, dict) or _WRAPPED not in value:
            raise ValueError(f'the arguments must be an object with "{_WRAPPED}"')
        return action, encode_data(value[_WRAPPED])


def _parameters(schema: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """The tool's parameters, and whether they wrap the schema in ``value``."""
    if schema is None or schema == {}:
        return dict(_NO_DATA), False
    if _is_object_schema(schema):
        return schema, False
    wrapper = {
        "type": "object",
        "properties": {_WRAPPED: schema},
        "required": [_WRAPPED],
        "additionalProperties": False,
    }
    return wrapper, True
