"""Live events (frames in/out, diagnostics) for dashboards and log tailing."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import trio

__all__ = ["EventBus", "ServerStats"]


class EventBus:
    """Fan-out of events to any number of subscribers, never blocking.

    Each subscriber has a bounded buffer; a subscriber that falls behind
    loses events (counted in :attr:`dropped`) instead of slowing the server.
    Publishing with no subscribers costs one length check.
    """

    def __init__(self, buffer: int = 256) -> None:
        self._buffer = buffer
        self._subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()
        self.dropped = 0

    @property
    def active(self) -> bool:
        """Whether anyone listens (publishers may skip building events)."""
        return bool(self._subscribers)

    def publish(self, event: dict[str, Any]) -> None:
        """Offer ``event`` to every subscriber (never blocks)."""
        for channel in self._subscribers:
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self.dropped += 1
            except trio.BrokenResourceError:
                pass

    def end_subscriptions(self) -> None:
        """End every current subscription (their receivers see the end).

        Used on shutdown so that open event streams finish instead of
        holding the HTTP server's drain open; new subscriptions still work.
        """
        for channel in self._subscribers:
            channel.close()
        self._subscribers.clear()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        """Receive events published while the block runs."""
        send, receive = trio.open_memory_channel[dict[str, Any]](self._buffer)
        self._subscribers.add(send)
        try:
            with send, receive:
                yield receive
        finally:
            self._subscribers.discard(send)


@dataclasses.dataclass(slots=True)
class ServerStats:
    """Counters of one server since it was created."""

    started_at: float = dataclasses.field(default_factory=time.time)
    connections_total: int = 0
    frames_in: int = 0
    frames_out: int = 0
    forces: int = 0
    actions_sent: int = 0
    diagnostics: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    """Diagnostics by id."""
    severities: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    """Diagnostics by severity."""
