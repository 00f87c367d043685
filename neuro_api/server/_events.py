"""Live events (frames in/out, diagnostics) for dashboards and log tailing."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import time
from collections.abc import Iterator
from typing import Any, Final

import orjson
import trio

__all__ = ["EventBus", "ServerStats", "Subscriber", "TooManySubscribers"]

MAX_EVENT_FRAME: Final = 16 << 10
"""Characters of a frame an event carries (the rest is cut, and said so)."""

Event = tuple[str, bytes]
"""What a subscriber receives: the event's type and its JSON text."""


class TooManySubscribers(Exception):
    """:meth:`EventBus.subscribe` while ``max_subscribers`` are subscribed."""


class Subscriber:
    """One reader of the events, with its own buffer and its own losses.

    Iterate it (``async for kind, data in subscriber``) to receive events as
    ``(type, json_bytes)``. When the reader falls behind, its buffer fills
    and events meant for it are dropped and counted here: no other reader,
    and no game, waits for it.
    """

    def __init__(self, number: int, buffer: int) -> None:
        self.id = number
        self.since = time.time()
        self.delivered = 0
        """Events handed to this reader."""
        self.dropped = 0
        """Events lost because this reader's buffer was full."""
        self.unreported = 0
        """Drops the reader was not told about yet (see :meth:`take_drops`)."""
        self._send, self._receive = trio.open_memory_channel[Event](buffer)

    def offer(self, event: Event) -> None:
        """Buffer ``event`` for this reader, or count it as dropped."""
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
            self.unreported += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def take_drops(self) -> int:
        """Drops since the last call (a stream tells its reader about them)."""
        count, self.unreported = self.unreported, 0
        return count

    def end(self) -> None:
        """End the stream: the reader's iteration stops after what it has."""
        self._send.close()

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Event:
        try:
            event = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        self.delivered += 1
        return event

    def close(self) -> None:
        """Release both ends of the buffer."""
        self._send.close()
        self._receive.close()

    def to_json(self) -> dict[str, Any]:
        """What ``/stats`` shows of this reader."""
        return {
            "id": self.id,
            "since": self.since,
            "delivered": self.delivered,
            "dropped": self.dropped,
        }


class EventBus:
    """Fan-out of events to a bounded number of readers, never blocking.

    Each reader (:class:`Subscriber`) has a buffer of ``buffer`` events; a
    reader that falls behind loses events (counted on it) instead of slowing
    the server or another reader. Each event is encoded once, whatever the
    number of readers, and the frames it quotes are cut to 16 KiB, so what
    the buffers hold stays bounded. At most ``max_subscribers`` read at
    once. Publishing with no readers costs one length check.
    """

    def __init__(self, buffer: int = 256, max_subscribers: int = 32) -> None:
        self._buffer = buffer
        self.max_subscribers = max_subscribers
        self._subscribers: dict[int, Subscriber] = {}
        self._numbers = itertools.count(1)
        self._dropped_by_gone = 0

    @property
    def active(self) -> bool:
        """Whether anyone listens (publishers may skip building events)."""
        return bool(self._subscribers)

    @property
    def full(self) -> bool:
        """Whether :meth:`subscribe` would raise :class:`TooManySubscribers`."""
        return len(self._subscribers) >= self.max_subscribers

    @property
    def dropped(self) -> int:
        """Events dropped for every reader so far, gone ones included."""
        return self._dropped_by_gone + sum(
            s.dropped for s in self._subscribers.values()
        )

    def subscribers(self) -> list[Subscriber]:
        """The current readers, oldest first."""
        return list(self._subscribers.values())

    def publish(self, event: dict[str, Any]) -> None:
        """Offer ``event`` to every reader (never blocks).

        A ``frame`` longer than 16 KiB is cut, with ``frame_size`` saying how
        long it was.
        """
        if not self._subscribers:
            return
        frame = event.get("frame")
        if isinstance(frame, str) and len(frame) > MAX_EVENT_FRAME:
            event = {
                **event,
                "frame": frame[:MAX_EVENT_FRAME],
                "frame_size": len(frame),
                "truncated": True,
            }
        encoded: Event = (str(event["type"]), orjson.dumps(event))
        for subscriber in self._subscribers.values():
            subscriber.offer(encoded)

    def end_subscriptions(self) -> None:
        """End every current subscription (their readers see the end).

        Used on shutdown so that open event streams finish instead of
        holding the HTTP server's drain open; new subscriptions still work.
        """
        for subscriber in self._subscribers.values():
            subscriber.end()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscriber]:
        """Receive events published while the block runs.

        Raises :class:`TooManySubscribers` when ``max_subscribers`` already
        read.
        """
        if self.full:
            raise TooManySubscribers(
                f"{self.max_subscribers} event streams are open already"
            )
        subscriber = Subscriber(next(self._numbers), self._buffer)
        self._subscribers[subscriber.id] = subscriber
        try:
            yield subscriber
        finally:
            del self._subscribers[subscriber.id]
            self._dropped_by_gone += subscriber.dropped
            subscriber.close()


@dataclasses.dataclass(slots=True)
class ServerStats:
    """Counters of one server since it was created."""

    started_at: float = dataclasses.field(default_factory=time.time)
    connections_total: int = 0
    disconnections: int = 0
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
