"""Server behaviour settings: the production profile is the default."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Final

from neuro_api.settings import Settings

__all__ = ["CHARACTERS", "ForcePolicy", "ServerConfig"]

CHARACTERS: Final = {"neuro": "Neuro-sama", "evil": "Evil Neuro"}
"""Production character ids and their display names."""
_MAX_GAME_MEMORY: Final = 16 << 20


def _default(name: str) -> Any:
    """The default of setting ``name``: declared once, in :class:`Settings`."""
    return Settings.__dataclass_fields__[name].default


class ForcePolicy(enum.StrEnum):
    """What a new ``actions/force`` does while another force is active."""

    REPLACE = "replace"
    """Cancel the active force and run the new one (production)."""
    QUEUE = "queue"
    """Run the new force after the active one ends."""


_DEFAULT_POLICY: Final = ForcePolicy(_default("force_policy"))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """How the server treats games. Every default follows production Neuro.

    Raises :class:`ValueError` on construction for out-of-range values, naming
    the setting.
    """

    character_id: str = _default("character")
    """Sent to games in the startup acknowledgement; action names are
    scoped to it (collisions between games of one character are reported)."""
    display_name: str | None = None
    """Shown to games in the startup acknowledgement; ``None`` picks the
    production name of ``character_id`` (or the id itself)."""
    result_timeout: float = _default("result_timeout")
    """Seconds to wait for an ``action/result`` before counting it failed."""
    max_retries: int = _default("max_retries")
    """Times a force is retried after a failing result (0 disables)."""
    force_policy: ForcePolicy = _DEFAULT_POLICY
    """What a new force does while another is active (production: replace)."""
    max_queued_forces: int = 8
    """With the queue policy, older queued forces are dropped beyond this."""
    max_pending_actions: int = 64
    """Actions waiting for their result per connection; beyond it the
    oldest is given up (counted as failed, ``result.given-up``), so a game
    that never answers cannot make the server keep them without bound."""
    max_message_size: int = 1 << 20
    """Largest frame accepted, in bytes; a larger one closes with 1009. Frames
    the server would send are held to it too (an engine's answer, an
    injected message)."""
    allowed_origins: tuple[str, ...] = ()
    """Web pages (``Origin`` values, such as ``https://example.com``) whose
    WebSocket connections are accepted besides this machine's; ``*`` accepts
    every page. Games send no ``Origin``; a page the user visits does, and
    is refused with HTTP 403 unless listed."""
    max_connections: int = _default("max_connections")
    """Game connections open at once (handshakes included); beyond it a
    connection gets an HTTP 503 or, in a flood, is closed at once. Also kept
    below the open file limit, minus descriptors kept for the rest of the
    process. Each connection may hold one frame in progress (up to
    ``max_message_size``), so the two together bound that memory: about
    1 GiB at the defaults."""
    send_timeout: float = 10.0
    """A game that does not read for this long is disconnected."""
    max_held_context: int = 1000
    """Context messages held while a result is pending; the oldest is
    dropped beyond this (``context.dropped``)."""
    max_held_context_chars: int = 4 << 20
    """Total characters of held context; the oldest is dropped beyond this."""
    max_actions: int = 1000
    """Actions one game may have registered at once; more are refused
    (``action.limit``)."""
    max_game_memory: int = _MAX_GAME_MEMORY
    """Bytes of actions (names, descriptions, schemas as JSON) and held
    context one game may make the server keep; beyond it, registrations are
    refused (``action.memory-limit``) and held context is dropped."""
    memory_budget: int = _default("memory_budget")
    """The same, for all games together."""
    context_spam_count: int = 20
    """See :attr:`context_spam_window`."""
    context_spam_window: float = 1.0
    """More than ``context_spam_count`` context messages within this many
    seconds earns one ``behaviour.context-spam`` diagnostic per window."""
    diagnostics_kept: int = 200
    """Diagnostics kept per game for later display."""
    max_generated_size: int = _default("max_generated_size")
    """Bytes of JSON one generated answer may take (random engine, console
    examples, control-plane defaults); a schema whose valid data cannot be
    that small is reported at registration (``action.schema-unanswerable``)."""
    generate_timeout: float = _default("generate_timeout")
    """Seconds the generation of one answer may take."""
    log_burst: int = 5
    """Diagnostics of one id from one game shown (logged, printed) per
    :attr:`log_window`; the rest are kept and counted, and one summary line
    says how many were held back."""
    log_window: float = 10.0
    """See :attr:`log_burst`."""

    def __post_init__(self) -> None:
        checks = (
            ("result_timeout", self.result_timeout > 0),
            ("max_retries", self.max_retries >= 0),
            ("max_queued_forces", self.max_queued_forces >= 1),
            ("max_pending_actions", self.max_pending_actions >= 1),
            ("max_message_size", self.max_message_size >= 1024),
            ("max_connections", self.max_connections >= 1),
            ("send_timeout", self.send_timeout > 0),
            ("max_held_context", self.max_held_context >= 1),
            ("max_held_context_chars", self.max_held_context_chars >= 1),
            ("max_actions", self.max_actions >= 1),
            ("max_game_memory", self.max_game_memory >= 1024),
            ("memory_budget", self.memory_budget >= self.max_game_memory),
            ("context_spam_count", self.context_spam_count >= 1),
            ("context_spam_window", self.context_spam_window > 0),
            ("diagnostics_kept", self.diagnostics_kept >= 1),
            ("max_generated_size", self.max_generated_size >= 64),
            ("generate_timeout", self.generate_timeout > 0),
            ("log_burst", self.log_burst >= 1),
            ("log_window", self.log_window > 0),
        )
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name}: invalid value {getattr(self, name)!r}")
        if not self.character_id:
            raise ValueError("character_id: must not be empty")
        object.__setattr__(self, "force_policy", ForcePolicy(self.force_policy))
        object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerConfig:
        """The behaviour settings of a process (``--result-timeout`` ...).

        What ``python -m neuro_api.server`` gives its engine; use it for an
        engine of your own run by :class:`~neuro_api.server.NeuroProcess`,
        so the same flags, variables and config file apply to it.
        """
        return cls(
            character_id=settings.character,
            display_name=settings.display_name,
            result_timeout=settings.result_timeout,
            max_retries=settings.max_retries,
            force_policy=ForcePolicy(settings.force_policy),
            max_generated_size=settings.max_generated_size,
            max_connections=settings.max_connections,
            memory_budget=settings.memory_budget,
            max_game_memory=min(settings.memory_budget, _MAX_GAME_MEMORY),
            allowed_origins=tuple(
                origin.strip()
                for origin in (settings.allowed_origins or "").split(",")
                if origin.strip()
            ),
            generate_timeout=settings.generate_timeout,
        )

    @property
    def character_name(self) -> str:
        """The display name sent to games."""
        if self.display_name is not None:
            return self.display_name
        return CHARACTERS.get(self.character_id, self.character_id)
