"""Shapes of the control plane's JSON responses, for the OpenAPI document.

Routes return plain dicts typed with these, so mypy checks a route against
what the document promises; the document's schemas come from the same
classes (pydantic, through quart-schema). ``typing_extensions.TypedDict``
because pydantic needs it before Python 3.12.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict

__all__ = [
    "ActionView",
    "ConfigView",
    "Counters",
    "DiagnosticCounts",
    "DiagnosticView",
    "ErrorBody",
    "ErrorDetail",
    "ExecuteResult",
    "ForceView",
    "GameList",
    "GameView",
    "HealthReport",
    "MessageCounts",
    "NeuroMessage",
    "Outcome",
    "SentTo",
    "Stats",
    "StreamStats",
]


class ErrorDetail(TypedDict):
    """A stable machine-readable ``code`` and a one-line ``message``."""

    code: str
    message: str


class ErrorBody(TypedDict):
    """Every error response: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class HealthReport(TypedDict):
    """The supervisor's view: overall status and one entry per service."""

    status: Literal["healthy", "degraded", "unhealthy"]
    services: list[dict[str, Any]]
    capabilities: NotRequired[dict[str, dict[str, Any]]]
    """Each capability's own health section (its ``status`` counts too)."""


class Counters(TypedDict):
    """Connections now and since start."""

    current: int
    total: int


MessageCounts = TypedDict("MessageCounts", {"in": int, "out": int})
"""Frames received from and sent to games."""


class DiagnosticCounts(TypedDict):
    """Diagnostics reported, by severity and by diagnostic id."""

    by_severity: dict[str, int]
    by_id: dict[str, int]


class StreamStats(TypedDict):
    """One open ``/events`` stream: since when, events given and lost."""

    id: int
    since: float
    delivered: int
    dropped: int


class Stats(TypedDict):
    """Counters since the server started."""

    uptime: float
    connections: Counters
    messages: MessageCounts
    forces: int
    retries: int
    timeouts: int
    diagnostics: DiagnosticCounts
    events_dropped: int
    event_streams: list[StreamStats]
    capabilities: NotRequired[dict[str, dict[str, Any]]]
    """Each capability's own counters."""


class ConfigView(TypedDict):
    """The effective settings, secrets shown as ``***``.

    Keys are those of :class:`neuro_api.settings.Settings`.
    """


class ActionView(TypedDict):
    """A registered action, as the game sent it (``schema`` may be absent)."""

    name: str
    description: str
    schema: NotRequired[dict[str, Any]]


class DiagnosticView(TypedDict):
    """Something worth a look about a game's traffic, with what to do."""

    id: str
    severity: Literal["info", "warning", "error"]
    message: str
    hint: str
    game: str | None
    subject: str | None
    frame: str | None
    time: float


class ForceView(TypedDict):
    """The game's pending ``actions/force``."""

    query: str
    state: str | None
    priority: str
    ephemeral_context: bool
    action_names: list[str]
    retries_left: int
    """Retries left after a failing result (``--max-retries`` at first)."""


class PendingView(TypedDict):
    """An action sent to the game and waiting for its result."""

    id: str
    action: str
    seconds_left: float
    """Time left on the result timer (then the action counts as timed out)."""


class GameView(TypedDict):
    """One connected game."""

    game: str | None
    session_id: str
    started: bool
    actions: list[ActionView]
    force: ForceView | None
    pending_ids: list[str]
    pending: list[PendingView]
    frames_in: int
    frames_out: int
    diagnostics: list[DiagnosticView]
    held_by: list[str]
    """The force gates holding the game's forces and actions (``paused``:
    the client-status capability paused it); empty when none does."""


class GameList(TypedDict):
    """Every connected game."""

    games: list[GameView]


class Outcome(TypedDict):
    """How the action ended (``status``: success, failure, timeout, disconnected)."""

    id: str
    action: str
    status: str
    success: bool
    message: str | None


class ExecuteResult(TypedDict):
    """The game's answer to the action."""

    outcome: Outcome


class NeuroMessage(TypedDict):
    """A Neuro-to-game message as on the wire.

    For example ``{"command": "action", "data": {"id": "1", "name": "play",
    "data": "{}"}}``.
    """

    command: str
    data: NotRequired[dict[str, Any]]


class SentTo(TypedDict):
    """The games (title, or session id before startup) the command went to."""

    sent_to: list[str]
    held_for: NotRequired[list[str]]
    """Held games (a capability's force gate): they get it once released."""
