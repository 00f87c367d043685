"""One accepted Realtime WebSocket: its session, conversation and responses."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from valve import Valve

from . import _wire
from ._audio import check_session_audio
from ._listening import Listener, Turn
from ._responses import Responses
from ._wire import ClientError

if TYPE_CHECKING:
    from ._server import FakeRealtime

LOGGER = logging.getLogger(__name__)
CLOSE_TIMEOUT: Final = 2.0
"""Seconds the server waits for the client's answer to its close frame."""


@dataclass(frozen=True)
class _CloseOrder:
    code: int
    reason: str | None


@dataclass(frozen=True)
class _DropOrder:
    pass


_Outgoing: TypeAlias = dict[str, Any] | _CloseOrder | _DropOrder


class FakeConnection:
    """The server side of one accepted connection; see the package docstring."""

    def __init__(
        self,
        fake: FakeRealtime,
        connection_id: int,
        websocket: WebSocketConnection,
        valve: Valve,
        *,
        model: str,
        path: str,
        headers: dict[str, str],
    ) -> None:
        self.id = connection_id
        self.model = model
        self.path = path
        self.headers = headers
        self.received: list[dict[str, Any]] = []
        self.bad_frames: list[str | bytes] = []
        self.sent: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.session = _wire.default_session(fake.ids("sess"), model)
        self.conversation_id = fake.ids("conv")
        self.items: dict[str, dict[str, Any]] = {}
        self.audio_ms: dict[str, int] = {}
        self.output_audio: dict[str, bytearray] = {}
        self.closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.dropped = False
        self.fake = fake
        self._ws = websocket
        self._valve = valve
        self._outbox, self._outbox_receive = trio.open_memory_channel[_Outgoing](
            math.inf
        )
        self._responses = Responses(self)
        self._listener = Listener(self)
        self._scope = trio.CancelScope()
        self._going_away = False
        self._closing = False
        self._closed_cleanly = trio.Event()
        self._finished = trio.Event()
        self._changed = trio.Event()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._listener.append,
            "input_audio_buffer.commit": self._listener.commit,
            "input_audio_buffer.clear": self._listener.clear,
            "conversation.item.create": self._item_create,
            "conversation.item.retrieve": self._item_retrieve,
            "conversation.item.truncate": self._item_truncate,
            "conversation.item.delete": self._item_delete,
            "response.create": self._responses.create,
            "response.cancel": self._responses.cancel,
        }
        assert set(self._handlers) == set(_wire.CLIENT_EVENTS)

    def __repr__(self) -> str:
        return f"<FakeConnection {self.id} model={self.model!r} closed={self.closed}>"

    # -- the test's controls ------------------------------------------------

    @property
    def frozen(self) -> bool:
        """Whether the connection is frozen (see :meth:`freeze`)."""
        return self._valve.frozen

    @property
    def audio_buffer(self) -> int:
        """Bytes in the input audio buffer (since the last commit or clear)."""
        return len(self._listener.input.buffer)

    @property
    def input_audio(self) -> bytes:
        """Every byte of input audio appended in the session, in order."""
        return bytes(self._listener.audio)

    @property
    def turns(self) -> list[Turn]:
        """The user audio items made of the input buffer, in order."""
        return self._listener.turns

    @property
    def speaking(self) -> bool:
        """Whether the VAD hears speech now (started, not stopped)."""
        return self._listener.input.speaking

    @property
    def active_response(self) -> str | None:
        """The id of the response in progress, if any."""
        active = self._responses.active
        return None if active is None else active.id

    def freeze(self) -> None:
        """Stall the network: no pong, no event read or answered, until :meth:`thaw`."""
        self._valve.freeze()

    def thaw(self) -> None:
        """Undo :meth:`freeze`: what waited goes through, in order."""
        self._valve.thaw()

    async def send_event(self, event: dict[str, Any]) -> None:
        """Queue any server event (``event_id`` added if missing).

        Events go out in order with the server's own, once the connection
        is not frozen. Raises :class:`trio.ClosedResourceError` if closed.
        """
        if self.closed:
            raise trio.ClosedResourceError(f"fake connection {self.id} is closed")
        self.send(copy.deepcopy(event))
        await trio.lowlevel.checkpoint()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the WebSocket (after the events already queued).

        Returns once the connection ended (the client answered the close
        frame, or after a short timeout). While frozen, waits for the thaw.
        """
        if not self.closed:
            self.queue_close(code, reason)
        await self._finished.wait()

    async def drop(self) -> None:
        """End the TCP connection now, without a close frame; returns when done."""
        self._drop_now()
        await self._finished.wait()

    async def wait_event(self, type_: str, count: int = 1) -> dict[str, Any]:
        """Wait until ``count`` client events of ``type_`` arrived; return the
        ``count``-th. Raises :class:`RuntimeError` if the connection ends first.
        """
        return await self._wait(self.received, type_, count, "client")

    async def wait_sent(self, type_: str, count: int = 1) -> dict[str, Any]:
        """Like :meth:`wait_event`, for server events written to the socket."""
        return await self._wait(self.sent, type_, count, "server")

    async def wait_closed(self) -> None:
        """Wait until the connection ended, however it did."""
        await self._finished.wait()

    def events(self, type_: str) -> list[dict[str, Any]]:
        """The client events of ``type_`` received so far."""
        return [event for event in self.received if event.get("type") == type_]

    def sent_events(self, type_: str) -> list[dict[str, Any]]:
        """The server events of ``type_`` written so far."""
        return [event for event in self.sent if event.get("type") == type_]

    # -- life cycle (driven by the server) ----------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; then :meth:`finish` the socket."""
        with self._scope:
            async with trio.open_nursery() as nursery:
                self._responses.nursery = nursery
                nursery.start_soon(self._write_loop)
                self.send({"type": "session.created", "session": self.session})
                await self._read_loop()
                nursery.cancel_scope.cancel()

    async def finish(self) -> None:
        """After :meth:`run`: the graceful close of the fake's shutdown."""
        if not self._going_away or self.dropped or self._ws.closed is not None:
            return
        self._record_close(1001, "server shutting down")
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._ws.aclose(1001, "server shutting down")

    def ended(self) -> None:
        """The socket is closed: wake everyone waiting."""
        self.closed = True
        if self.close_code is None:
            self._record_close(1006, None)
        self._finished.set()
        self._notify()

    def shutdown(self) -> None:
        """The fake is closing: a frozen connection is dropped, others closed."""
        if self.frozen:
            self._drop_now()
        else:
            self._going_away = True
            self._scope.cancel()

    # -- plumbing -----------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait(
        self, events: list[dict[str, Any]], type_: str, count: int, side: str
    ) -> dict[str, Any]:
        while True:
            matching = [event for event in events if event.get("type") == type_]
            if len(matching) >= count:
                return matching[count - 1]
            if self.closed:
                raise RuntimeError(
                    f"fake connection {self.id} ended after {len(matching)} "
                    f"{side} event(s) {type_!r}, not {count}"
                )
            await self._changed.wait()

    def _record_close(self, code: int, reason: str | None) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason

    def _drop_now(self) -> None:
        if self.closed or self.dropped:
            return
        self.dropped = True
        self._record_close(1006, None)
        self._scope.cancel()

    def send(self, event: dict[str, Any]) -> None:
        """Queue a server event (an ``event_id`` is added if missing)."""
        event.setdefault("event_id", self.fake.ids("event"))
        self._outbox.send_nowait(event)

    def queue_close(self, code: int, reason: str | None) -> None:
        """Close the WebSocket after the events already queued."""
        self._outbox.send_nowait(_CloseOrder(code, reason))

    def queue_drop(self) -> None:
        """Drop the TCP connection after the events already queued."""
        self._outbox.send_nowait(_DropOrder())

    def _error(self, error: ClientError, client_event_id: str | None) -> None:
        self.send(error.event(client_event_id))

    async def _write_loop(self) -> None:
        # One writer: a cancelled response never leaves half a frame, and
        # server events keep their order.
        async for item in self._outbox_receive:
            if isinstance(item, _DropOrder):
                self._drop_now()
                return
            if isinstance(item, _CloseOrder):
                self._record_close(item.code, item.reason)
                self._closing = True
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self._ws.aclose(item.code, item.reason)
                self._closed_cleanly.set()
                return
            try:
                await self._ws.send_message(orjson.dumps(item).decode())
            except ConnectionClosed:
                return
            self.sent.append(item)
            self._notify()

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self._ws.get_message()
            except ConnectionClosed as closed:
                if closed.reason is None:  # pragma: no cover (always set)
                    self._record_close(1006, None)
                else:
                    self._record_close(closed.reason.code, closed.reason.reason)
                if self._closing:
                    # Our close frame is out: let the writer see the client's
                    # answer (a drop or the shutdown still cuts this short).
                    await self._closed_cleanly.wait()
                return
            self._dispatch(message)

    def _dispatch(self, message: str | bytes) -> None:
        event = self._parse(message)
        if event is None:
            return
        self.received.append(event)
        self._notify()
        client_event_id = event.get("event_id")
        if not isinstance(client_event_id, str):
            client_event_id = None
        try:
            kind = event.get("type")
            if kind is None:
                raise _wire.missing("type")
            if not isinstance(kind, str):
                raise _wire.wrong_type("type", "a string", kind)
            handler = self._handlers.get(kind)
            if handler is None:
                raise _wire.invalid_value("type", kind, _wire.CLIENT_EVENTS)
            handler(event)
        except ClientError as error:
            LOGGER.debug("fake realtime %s: %s", self.id, error.message)
            self._error(error, client_event_id)

    def _parse(self, message: str | bytes) -> dict[str, Any] | None:
        if isinstance(message, bytes):
            self.bad_frames.append(message)
            self._error(
                ClientError(
                    "Binary frames are not supported: send each event as a JSON "
                    "text frame.",
                    "invalid_json",
                ),
                None,
            )
            return None
        try:
            event = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            self.bad_frames.append(message)
            self._error(
                ClientError(f"Invalid JSON in the event: {exc}.", "invalid_json"), None
            )
            return None
        if not isinstance(event, dict):
            self.bad_frames.append(message)
            self._error(_wire.wrong_type("event", "an object", event), None)
            return None
        return event

    # -- session and conversation ------------------------------------------

    def _session_update(self, event: dict[str, Any]) -> None:
        update = copy.deepcopy(_wire.require_dict(event, "session", "session"))
        _wire.check_session(update)
        check_session_audio(update)
        _wire.merge(self.session, update)
        self.send({"type": "session.updated", "session": copy.deepcopy(self.session)})

    def last_item_id(self) -> str | None:
        """The id of the conversation's last item, if any."""
        return next(reversed(self.items), None)

    def interrupt(self) -> None:
        """Speech started: cancel the response running in the conversation."""
        self._responses.interrupt()

    def respond(self) -> None:
        """Speech stopped: the automatic response (none if one runs)."""
        self._responses.create_automatic()

    def add_item(self, item: dict[str, Any]) -> str | None:
        """Append ``item``; send ``conversation.item.added``; return the previous id."""
        previous = self.last_item_id()
        self.items[item["id"]] = item
        self.send(
            {
                "type": "conversation.item.added",
                "previous_item_id": previous,
                "item": copy.deepcopy(item),
            }
        )
        return previous

    def item_done(self, item: dict[str, Any], previous: str | None) -> None:
        self.items[item["id"]] = item
        self.send(
            {
                "type": "conversation.item.done",
                "previous_item_id": previous,
                "item": copy.deepcopy(item),
            }
        )

    def _item_create(self, event: dict[str, Any]) -> None:
        item = _wire.require_dict(event, "item", "item")
        _wire.check_item(item, "item")
        previous_item_id = event.get("previous_item_id")
        if previous_item_id is not None and not isinstance(previous_item_id, str):
            raise _wire.wrong_type("previous_item_id", "a string", previous_item_id)
        item = copy.deepcopy(item)
        item_id = item.setdefault("id", self.fake.ids("item"))
        if item_id in self.items:
            raise ClientError(
                f"Invalid 'item.id': an item with id '{item_id}' already exists.",
                "invalid_value",
                "item.id",
            )
        item.setdefault("object", "realtime.item")
        item.setdefault("status", "completed")
        # previous_item_id is respected loosely: the item is appended.
        previous = self.add_item(item)
        self.item_done(item, previous)

    def _known_item(self, event: dict[str, Any], verb: str, code: str) -> str:
        item_id = _wire.require_str(event, "item_id", "item_id")
        if item_id not in self.items:
            raise ClientError(
                f"Error {verb} item: the item with id '{item_id}' does not exist.",
                code,
            )
        return item_id

    def _item_retrieve(self, event: dict[str, Any]) -> None:
        item_id = self._known_item(event, "retrieving", "item_retrieve_invalid_item_id")
        self.send(
            {
                "type": "conversation.item.retrieved",
                "item": copy.deepcopy(self.items[item_id]),
            }
        )

    def _item_delete(self, event: dict[str, Any]) -> None:
        item_id = self._known_item(event, "deleting", "item_delete_invalid_item_id")
        del self.items[item_id]
        self.audio_ms.pop(item_id, None)
        self.send({"type": "conversation.item.deleted", "item_id": item_id})

    def _item_truncate(self, event: dict[str, Any]) -> None:
        item_id = self._known_item(event, "truncating", "item_truncate_invalid_item_id")
        content_index = _wire.require_int(event, "content_index", "content_index")
        audio_end_ms = _wire.require_int(event, "audio_end_ms", "audio_end_ms")
        length = self.audio_ms.get(item_id)
        if length is not None and audio_end_ms > length:
            raise ClientError(
                f"Audio content of {length}ms is already shorter than {audio_end_ms}ms",
                "invalid_value",
                "audio_end_ms",
            )
        if length is not None:
            self.audio_ms[item_id] = audio_end_ms
        self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": audio_end_ms,
            }
        )
