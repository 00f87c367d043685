"""Wire shapes of the GA Realtime API and the checks the fake makes (no I/O).

Error messages follow the OpenAI API's style (``Missing required parameter:
'x'.``, ``Invalid value: 'x'. Supported values are: ...``, ``Invalid type
for 'x': expected ..., but got ... instead.``); those known from the real
service are copied, the others are modelled on them.
"""

from __future__ import annotations

import copy
import itertools
import re
import time
from collections.abc import Iterator
from typing import Any, Final

# Client event types the fake knows; anything else is an invalid value.
CLIENT_EVENTS: Final = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
)
TOOL_NAME: Final = re.compile(r"[a-zA-Z0-9_-]+")
TOOL_NAME_MAX: Final = 64
TOOL_CHOICES: Final = ("auto", "none", "required")
MODALITIES: Final = ("text", "audio")
CONTENT_TYPES: Final = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio"),
}
ITEM_TYPES: Final = ("message", "function_call", "function_call_output")


class ClientError(Exception):
    """A client event the real API would answer with an ``error`` event."""

    def __init__(
        self,
        message: str,
        code: str | None,
        param: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.type = type_

    def event(self, client_event_id: str | None) -> dict[str, Any]:
        """The ``error`` event (without its own ``event_id``)."""
        return error_event(
            self.type, self.code, self.message, self.param, client_event_id
        )


def error_event(
    type_: str,
    code: str | None,
    message: str,
    param: str | None,
    client_event_id: str | None,
) -> dict[str, Any]:
    """An ``error`` server event (without its own ``event_id``)."""
    return {
        "type": "error",
        "error": {
            "type": type_,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    }


class Ids:
    """Unique ids shaped like the API's (``resp_…``, ``item_…``, ``event_…``)."""

    def __init__(self) -> None:
        self._counter: Iterator[int] = itertools.count(1)

    def __call__(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._counter):017d}"


def default_session(session_id: str, model: str) -> dict[str, Any]:
    """The session a new connection gets (``session.created``)."""
    audio_format = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "expires_at": int(time.time()) + 3600,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "audio": {
            "input": {
                "format": dict(audio_format),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": dict(audio_format), "voice": "alloy", "speed": 1.0},
        },
    }


# Objects a session update replaces whole (they are unions: an audio format
# or a turn detection of another type must not keep the old one's fields).
REPLACED_WHOLE: Final = frozenset(
    {"format", "turn_detection", "transcription", "noise_reduction"}
)


def merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge ``update`` into ``into``: nested objects key by key (but those
    of :data:`REPLACED_WHOLE`), others replaced."""
    for key, value in update.items():
        if (
            isinstance(value, dict)
            and isinstance(into.get(key), dict)
            and key not in REPLACED_WHOLE
        ):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


# -- checks ---------------------------------------------------------------


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def wrong_type(param: str, expected: str, value: object) -> ClientError:
    """``Invalid type for 'param': expected ..., but got ... instead.``"""
    return ClientError(
        f"Invalid type for '{param}': expected {expected}, "
        f"but got {_json_type(value)} instead.",
        "invalid_type",
        param,
    )


def missing(param: str) -> ClientError:
    """``Missing required parameter: 'param'.``"""
    return ClientError(
        f"Missing required parameter: '{param}'.", "missing_required_parameter", param
    )


def invalid_value(param: str, value: object, supported: tuple[str, ...]) -> ClientError:
    """``Invalid value: 'x'. Supported values are: 'a', 'b', and 'c'.``"""
    quoted = [f"'{choice}'" for choice in supported]
    if len(quoted) > 1:
        listed = ", ".join(quoted[:-1]) + f"{',' if len(quoted) > 2 else ''} and "
        listed += quoted[-1]
    else:
        listed = quoted[0]
    return ClientError(
        f"Invalid value: '{value}'. Supported values are: {listed}.",
        "invalid_value",
        param,
    )


def require_dict(event: dict[str, Any], key: str, param: str) -> dict[str, Any]:
    """``event[key]``, which must be present and an object."""
    if key not in event:
        raise missing(param)
    value = event[key]
    if not isinstance(value, dict):
        raise wrong_type(param, "an object", value)
    return value


def require_str(event: dict[str, Any], key: str, param: str) -> str:
    """``event[key]``, which must be present and a string."""
    if key not in event:
        raise missing(param)
    value = event[key]
    if not isinstance(value, str):
        raise wrong_type(param, "a string", value)
    return value


def require_int(event: dict[str, Any], key: str, param: str) -> int:
    """``event[key]``, which must be present and a non-negative integer."""
    if key not in event:
        raise missing(param)
    value = event[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise wrong_type(param, "an integer", value)
    if value < 0:
        raise ClientError(
            f"Invalid '{param}': integer below minimum value. Expected a value "
            f">= 0, but got {value} instead.",
            "integer_below_min_value",
            param,
        )
    return value


def check_tools(tools: object, param: str) -> None:
    """Function tools in the GA (flat) shape, with names the API accepts."""
    if not isinstance(tools, list):
        raise wrong_type(param, "an array", tools)
    for index, tool in enumerate(tools):
        where = f"{param}[{index}]"
        if not isinstance(tool, dict):
            raise wrong_type(where, "an object", tool)
        if tool.get("type") != "function":
            raise invalid_value(f"{where}.type", tool.get("type"), ("function", "mcp"))
        name = require_str(tool, "name", f"{where}.name")
        if len(name) > TOOL_NAME_MAX:
            raise ClientError(
                f"Invalid '{where}.name': string too long. Expected a string with "
                f"maximum length {TOOL_NAME_MAX}, but got a string with length "
                f"{len(name)} instead.",
                "string_above_max_length",
                f"{where}.name",
            )
        if not TOOL_NAME.fullmatch(name):
            raise ClientError(
                f"Invalid '{where}.name': string does not match pattern. Expected "
                "a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                "invalid_value",
                f"{where}.name",
            )
        if "parameters" in tool and not isinstance(tool["parameters"], dict):
            raise wrong_type(f"{where}.parameters", "an object", tool["parameters"])


def check_tool_choice(choice: object, param: str) -> None:
    """A mode string or ``{"type": "function", "name": ...}``."""
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise invalid_value(param, choice, TOOL_CHOICES)
        return
    if not isinstance(choice, dict):
        raise wrong_type(param, "a string or an object", choice)
    if choice.get("type") != "function":
        raise invalid_value(f"{param}.type", choice.get("type"), ("function", "mcp"))
    require_str(choice, "name", f"{param}.name")


def check_modalities(modalities: object, param: str) -> None:
    """``["text"]`` or ``["audio"]`` (never both, says the API)."""
    if not isinstance(modalities, list):
        raise wrong_type(param, "an array", modalities)
    for index, modality in enumerate(modalities):
        if modality not in MODALITIES:
            raise invalid_value(f"{param}[{index}]", modality, MODALITIES)
    if len(set(modalities)) != 1:
        raise ClientError(
            f"Invalid '{param}': exactly one of 'text' or 'audio' is supported.",
            "invalid_value",
            param,
        )


def check_session(session: dict[str, Any]) -> None:
    """A ``session.update``'s session (GA: ``type`` must be ``realtime``)."""
    if "type" not in session:
        raise missing("session.type")
    if session["type"] != "realtime":
        raise invalid_value("session.type", session["type"], ("realtime",))
    if "tools" in session:
        check_tools(session["tools"], "session.tools")
    if "tool_choice" in session:
        check_tool_choice(session["tool_choice"], "session.tool_choice")
    if "output_modalities" in session:
        check_modalities(session["output_modalities"], "session.output_modalities")
    if "instructions" in session and not isinstance(session["instructions"], str):
        raise wrong_type("session.instructions", "a string", session["instructions"])


def check_item(
    item: object, param: str, known: dict[str, dict[str, Any]] | None = None
) -> None:
    """A conversation item; an ``item_reference`` (to one of ``known``) too if
    ``known`` is given (a response's input may refer to items)."""
    if not isinstance(item, dict):
        raise wrong_type(param, "an object", item)
    kind = item.get("type")
    if kind == "item_reference" and known is not None:
        ref = require_str(item, "id", f"{param}.id")
        if ref not in known:
            raise ClientError(
                f"Invalid '{param}.id': the item with id '{ref}' does not exist.",
                "invalid_value",
                f"{param}.id",
            )
        return
    if kind not in ITEM_TYPES:
        raise invalid_value(f"{param}.type", kind, ITEM_TYPES)
    if "id" in item and not isinstance(item["id"], str):
        raise wrong_type(f"{param}.id", "a string", item["id"])
    if kind == "message":
        _check_message(item, param)
    elif kind == "function_call":
        require_str(item, "name", f"{param}.name")
        require_str(item, "arguments", f"{param}.arguments")
        require_str(item, "call_id", f"{param}.call_id")
    else:
        require_str(item, "call_id", f"{param}.call_id")
        require_str(item, "output", f"{param}.output")


def _check_message(item: dict[str, Any], param: str) -> None:
    role = require_str(item, "role", f"{param}.role")
    if role not in CONTENT_TYPES:
        raise invalid_value(f"{param}.role", role, tuple(CONTENT_TYPES))
    if "content" not in item:
        raise missing(f"{param}.content")
    content = item["content"]
    if not isinstance(content, list):
        raise wrong_type(f"{param}.content", "an array", content)
    for index, part in enumerate(content):
        where = f"{param}.content[{index}]"
        if not isinstance(part, dict):
            raise wrong_type(where, "an object", part)
        if part.get("type") not in CONTENT_TYPES[role]:
            raise invalid_value(f"{where}.type", part.get("type"), CONTENT_TYPES[role])
        if part["type"] in ("input_text", "output_text"):
            require_str(part, "text", f"{where}.text")


def check_response(response: dict[str, Any], known: dict[str, dict[str, Any]]) -> None:
    """A ``response.create``'s ``response`` parameters."""
    conversation = response.get("conversation", "auto")
    if conversation not in ("auto", "none"):
        raise invalid_value("response.conversation", conversation, ("auto", "none"))
    if "input" in response:
        items = response["input"]
        if not isinstance(items, list):
            raise wrong_type("response.input", "an array", items)
        for index, item in enumerate(items):
            check_item(item, f"response.input[{index}]", known)
    if "tools" in response:
        check_tools(response["tools"], "response.tools")
    if "tool_choice" in response:
        check_tool_choice(response["tool_choice"], "response.tool_choice")
    if "output_modalities" in response:
        check_modalities(response["output_modalities"], "response.output_modalities")
    for key in ("instructions",):
        if key in response and not isinstance(response[key], str):
            raise wrong_type(f"response.{key}", "a string", response[key])
    metadata = response.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise wrong_type("response.metadata", "an object", metadata)


def usage(input_chars: int, output_chars: int) -> dict[str, Any]:
    """A plausible ``usage`` (about four characters a token)."""
    input_tokens = max(1, input_chars // 4)
    output_tokens = max(1, output_chars // 4)
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_tokens,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {
                "text_tokens": 0,
                "audio_tokens": 0,
                "image_tokens": 0,
            },
        },
        "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0},
    }
