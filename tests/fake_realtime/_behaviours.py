"""What the fake model does with one ``response.create``: the Behaviours."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from ._connection import FakeConnection


@dataclass(frozen=True)
class FunctionCall:
    """The model calls ``name`` with ``arguments`` (a JSON string, sent as is).

    ``delay`` seconds (``trio.sleep``: virtual under ``autojump_clock``) pass
    between ``response.created`` and the call's first event.
    """

    name: str
    arguments: str = "{}"
    delay: float = 0.0


@dataclass(frozen=True)
class Text:
    """The model answers ``text`` (``output_text`` events), after ``delay``."""

    text: str
    delay: float = 0.0


@dataclass(frozen=True)
class Audio:
    """The model speaks: an assistant message with audio and its transcript.

    The audio is ``audio`` (bytes in the session's output format) if given,
    else ``ms`` milliseconds of a 440 Hz tone (default: 60 ms a character
    of ``transcript``, at least 200). It goes out in
    ``response.output_audio.delta`` events of ``chunk_ms`` each, every one
    followed by a ``response.output_audio_transcript.delta`` with its share
    of the words; the model makes ``pace`` ms of audio a millisecond, and
    each delta goes out once its audio is made (``trio.sleep``; ``None``:
    all at once). A cancel or a
    barge-in between deltas ends the item ``incomplete`` with the audio
    and transcript sent so far.
    """

    transcript: str = "OK."
    ms: int | None = None
    audio: bytes | None = None
    chunk_ms: int = 100
    pace: float | None = 2.0
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be positive, not {self.chunk_ms}")
        if self.pace is not None and self.pace <= 0:
            raise ValueError(f"pace must be positive or None, not {self.pace}")


@dataclass(frozen=True)
class Error:
    """An ``error`` event with these fields.

    First in a play (after any :class:`RateLimits`): sent *instead of* a
    response (no ``response.created``), its ``error.event_id`` the
    ``response.create``'s. Later in a play (a response exists): sent, and the
    play goes on.
    """

    code: str | None
    message: str
    type: str = "invalid_request_error"
    param: str | None = None


@dataclass(frozen=True)
class Failed:
    """``response.done`` with status ``failed`` and this error in its details."""

    code: str | None = "server_error"
    message: str = (
        "The server had an error while processing your request. Sorry about that!"
    )
    type: str = "server_error"


@dataclass(frozen=True)
class Stall:
    """The response never finishes (until ``response.cancel`` or the end)."""


@dataclass(frozen=True)
class Drop:
    """The TCP connection ends abruptly: no close frame (client sees 1006)."""


@dataclass(frozen=True)
class Close:
    """The server closes the WebSocket with ``code`` and ``reason``."""

    code: int = 1011
    reason: str = ""


@dataclass(frozen=True)
class RateLimits:
    """A ``rate_limits.updated`` event (requests and tokens)."""

    requests_limit: int = 5000
    requests_remaining: int = 4999
    requests_reset_seconds: float = 0.012
    tokens_limit: int = 40000
    tokens_remaining: int = 39000
    tokens_reset_seconds: float = 1.5

    def event(self) -> dict[str, Any]:
        """The event (without ``event_id``)."""
        return {
            "type": "rate_limits.updated",
            "rate_limits": [
                {
                    "name": "requests",
                    "limit": self.requests_limit,
                    "remaining": self.requests_remaining,
                    "reset_seconds": self.requests_reset_seconds,
                },
                {
                    "name": "tokens",
                    "limit": self.tokens_limit,
                    "remaining": self.tokens_remaining,
                    "reset_seconds": self.tokens_reset_seconds,
                },
            ],
        }


Behaviour: TypeAlias = (
    FunctionCall | Text | Audio | Error | Failed | Stall | Drop | Close | RateLimits
)
Play: TypeAlias = Behaviour | Sequence[Behaviour]
Responder: TypeAlias = "Callable[[FakeConnection, dict[str, Any]], Play]"
"""Called with the connection and the ``response`` object of a valid
``response.create`` (``{}`` when the event had none); returns what to play."""


def plays(play: Play) -> list[Behaviour]:
    """One behaviour or a sequence of them, as a list."""
    if isinstance(
        play,
        FunctionCall
        | Text
        | Audio
        | Error
        | Failed
        | Stall
        | Drop
        | Close
        | RateLimits,
    ):
        return [play]
    return list(play)


def default_responder(connection: FakeConnection, response: dict[str, Any]) -> Play:
    """Call a tool with arguments ``"{}"``, or answer a short text.

    The tools are the response's own (``response.tools``, even ``[]``), else the
    session's. The tool is the one ``tool_choice`` names (response's, else the
    session's), else the first function tool. ``tool_choice: "none"`` or no
    function tool: :class:`Text` ``"OK."``.

    A phone session (output format ``audio/pcmu`` or ``audio/pcma``, audio
    output) speaks instead: :class:`Audio` ``"OK."``; it calls a tool only
    when ``tool_choice`` names one or is ``"required"`` (calling one at
    every turn would loop: each call's output asks for a response again).
    """
    tools = response["tools"] if "tools" in response else connection.session["tools"]
    choice = response.get("tool_choice", connection.session.get("tool_choice"))
    names = [
        tool["name"]
        for tool in tools
        if isinstance(tool, dict) and tool.get("type") == "function"
    ]
    if _phone(connection, response):
        if isinstance(choice, dict) and isinstance(choice.get("name"), str):
            return FunctionCall(choice["name"])
        if choice == "required" and names:
            return FunctionCall(names[0])
        return Audio("OK.")
    if choice == "none" or not names:
        return Text("OK.")
    if isinstance(choice, dict) and isinstance(choice.get("name"), str):
        return FunctionCall(choice["name"])
    return FunctionCall(names[0])


def _phone(connection: FakeConnection, response: dict[str, Any]) -> bool:
    """Whether the response speaks in a telephone format."""
    modalities = response.get(
        "output_modalities", connection.session["output_modalities"]
    )
    fmt = connection.session["audio"].get("output", {}).get("format") or {}
    return modalities == ["audio"] and fmt.get("type") in ("audio/pcmu", "audio/pcma")
