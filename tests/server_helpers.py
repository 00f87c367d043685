"""Shared helpers of the server tests: a scripted engine and test games.

Rules of the server test modules (after trio-websocket's own tests): the
server listens on 127.0.0.1 port 0 and is started with
``info = await nursery.start(server.run, "127.0.0.1", 0)``; every wait has a
deadline (the helpers wrap each one in :func:`trio.fail_after`); the game side
closes first (its ``async with`` ends before the test's nursery cancels the
server). Ordering is never left to real-time sleeps: tests wait for frames,
diagnostics, engine calls or handled-frame counts. Timer tests take the
``autojump_clock`` fixture so 20 s timeouts pass in virtual time.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, TypeAlias

import orjson
import trio
import wsproto
import wsproto.events
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    WebSocketConnection,
    open_websocket_url,
)

from neuro_api import command
from neuro_api.command import (
    Action,
    ActionMessage,
    ActionResult,
    ForcePriority,
    NeuroMessage,
    StartupAcknowledgement,
)
from neuro_api.diagnostics import Diagnostic
from neuro_api.server import (
    AbstractTrioNeuroServer,
    ActionOutcome,
    ServerConfig,
    ServerInfo,
    TrioNeuroServerClient,
)

WAIT: Final = 10.0
"""Default deadline of one wait, in seconds (virtual under autojump)."""

PLAY: Final = Action(
    "play",
    "Play a cell of the board",
    {
        "type": "object",
        "properties": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["cell"],
    },
)
PASS: Final = Action("pass", "Skip this turn")
WAVE: Final = Action("wave", "Wave at chat")


# ---------------------------------------------------------------------------
# The scripted engine
# ---------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class ForceCall:
    """One call of ``choose_force_action``, as the engine saw it."""

    game: str
    state: str | None
    query: str
    ephemeral_context: bool
    actions: tuple[Action, ...]
    priority: ForcePriority
    context_seen: int
    """How many ``add_context`` calls had happened when this call began."""
    cancelled: bool = False
    finished: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the actions offered."""
        return tuple(action.name for action in self.actions)


@dataclasses.dataclass(frozen=True)
class ContextCall:
    """One call of ``add_context``."""

    game: str
    message: str
    reply_if_not_busy: bool


class Block:
    """Answer that waits until the engine call is cancelled."""


BLOCK: Final = Block()


@dataclasses.dataclass(frozen=True)
class Gate:
    """Answer that waits for ``event`` and then answers ``answer``."""

    event: trio.Event
    answer: tuple[str, str | None]


Answer: TypeAlias = (
    tuple[str, str | None]
    | Exception
    | Block
    | Gate
    | Callable[[ForceCall], tuple[str, str | None]]
)


def default_answer(call: ForceCall) -> tuple[str, str | None]:
    """Pick the first action offered, with ``{}`` data if it has a schema."""
    action = call.actions[0]
    return action.name, None if action.schema is None else "{}"


class RecordingClient(TrioNeuroServerClient):
    """A connection that counts the frames it finished handling."""

    def __init__(
        self,
        websocket: WebSocketConnection,
        server: AbstractTrioNeuroServer,
        websocket_session_id: str | None = None,
    ) -> None:
        assert isinstance(server, RecordingServer)
        super().__init__(websocket, server, websocket_session_id)
        self.recording_server = server
        self.handled = 0

    async def handle_frame(self, frame: str | bytes) -> None:
        """Handle the frame, then count it and wake waiting tests."""
        try:
            await super().handle_frame(frame)
        finally:
            self.handled += 1
            self.recording_server.notify()


class RecordingServer(AbstractTrioNeuroServer):
    """A test engine: scripted force answers, recorded context and diagnostics.

    ``answers`` (or ``answers_by_game[title]``, looked at first) holds what
    the next ``choose_force_action`` calls do: return a ``(name, data)``
    tuple, raise an exception, :data:`BLOCK` until cancelled, wait for a
    :class:`Gate`, or call a function of the :class:`ForceCall`. When empty,
    ``default`` answers. ``context_errors[title]`` makes ``add_context`` raise
    for that game; ``force_errors`` makes every force of a game raise.
    """

    client_class = RecordingClient

    def __init__(self, config: ServerConfig | None = None, **settings: Any) -> None:
        super().__init__(config or ServerConfig(**settings))
        self.answers: collections.deque[Answer] = collections.deque()
        self.answers_by_game: dict[str, collections.deque[Answer]] = {}
        self.default: Callable[[ForceCall], tuple[str, str | None]] = default_answer
        self.force_calls: list[ForceCall] = []
        self.context: list[ContextCall] = []
        self.seen: list[Diagnostic] = []
        self.outcomes: list[tuple[str, ActionOutcome]] = []
        self.context_errors: dict[str, Exception] = {}
        self.force_errors: dict[str, Exception] = {}
        self.disconnected: list[TrioNeuroServerClient] = []
        self._changed = trio.Event()

    # --- waking tests ------------------------------------------------------

    def notify(self) -> None:
        """Wake every :meth:`wait_until` to check its condition again."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(
        self, predicate: Callable[[], object], within: float = WAIT
    ) -> None:
        """Wait (with a deadline) until ``predicate()`` is true."""
        with trio.fail_after(within):
            while not predicate():
                await self._changed.wait()

    # --- the two decisions -------------------------------------------------

    def add_context(
        self, game_title: str, message: str, reply_if_not_busy: bool
    ) -> None:
        """Record the call (then raise if told to for this game)."""
        self.context.append(ContextCall(game_title, message, reply_if_not_busy))
        self.notify()
        error = self.context_errors.get(game_title)
        if error is not None:
            raise error

    async def choose_force_action(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None]:
        """Record the call and answer from the script."""
        call = ForceCall(
            game_title,
            state,
            query,
            ephemeral_context,
            actions,
            priority,
            context_seen=len(self.context),
        )
        self.force_calls.append(call)
        self.notify()
        try:
            error = self.force_errors.get(game_title)
            if error is not None:
                raise error
            queue = self.answers_by_game.get(game_title)
            if not queue:
                queue = self.answers
            answer: Answer = queue.popleft() if queue else self.default
            result = await self._apply(answer, call)
            call.finished = True
            return result
        except trio.Cancelled:
            call.cancelled = True
            raise
        finally:
            self.notify()

    async def _apply(self, answer: Answer, call: ForceCall) -> tuple[str, str | None]:
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, Block):
            await trio.sleep_forever()
        if isinstance(answer, Gate):
            await answer.event.wait()
            return answer.answer
        if isinstance(answer, tuple):
            return answer
        return answer(call)

    # --- hooks ---------------------------------------------------------------

    def record_diagnostic(self, diagnostic: Diagnostic) -> None:
        """Keep every diagnostic (unbounded, in order) and wake tests."""
        super().record_diagnostic(diagnostic)
        self.seen.append(diagnostic)
        self.notify()

    def on_action_outcome(self, game_title: str, outcome: ActionOutcome) -> None:
        """Record the outcome."""
        self.outcomes.append((game_title, outcome))
        self.notify()

    def on_client_disconnected(self, client: TrioNeuroServerClient) -> None:
        """Record the client and wake tests."""
        super().on_client_disconnected(client)
        self.disconnected.append(client)
        self.notify()

    # --- lookups for tests -------------------------------------------------

    def diags(
        self, id_: str | None = None, game: str | None = None
    ) -> list[Diagnostic]:
        """Diagnostics seen so far, optionally of one id and one game."""
        return [
            d
            for d in self.seen
            if (id_ is None or d.id == id_) and (game is None or d.game == game)
        ]

    def ids(self, game: str | None = None) -> list[str]:
        """Ids of the diagnostics seen so far (of one game if given)."""
        return [d.id for d in self.diags(game=game)]

    async def wait_diag(
        self,
        id_: str,
        *,
        game: str | None = None,
        count: int = 1,
        within: float = WAIT,
    ) -> Diagnostic:
        """Wait for the ``count``-th diagnostic ``id_`` (of ``game``)."""
        await self.wait_until(lambda: len(self.diags(id_, game)) >= count, within)
        return self.diags(id_, game)[count - 1]

    async def wait_force_calls(self, count: int, within: float = WAIT) -> ForceCall:
        """Wait until the engine was asked ``count`` times; return the last."""
        await self.wait_until(lambda: len(self.force_calls) >= count, within)
        return self.force_calls[count - 1]

    def messages(self, game: str | None = None) -> list[str]:
        """Context messages delivered so far (of one game if given)."""
        return [c.message for c in self.context if game is None or c.game == game]

    def client_of(self, game: Game) -> RecordingClient:
        """The server side of ``game``'s connection."""
        for client in self.clients.values():
            if game.session_id is not None and client.session_id == game.session_id:
                assert isinstance(client, RecordingClient)
                return client
        for client in self.clients.values():
            if game.session_id is None and client.game_title == game.title:
                assert isinstance(client, RecordingClient)
                return client
        raise LookupError(f"{game.title!r} is not connected")

    async def settle(self, game: Game, within: float = WAIT) -> None:
        """Wait until the server handled every frame ``game`` sent."""

        def handled() -> bool:
            try:
                return self.client_of(game).handled >= game.sent
            except LookupError:
                return False

        await self.wait_until(handled, within)


async def start_server(
    nursery: trio.Nursery, server: AbstractTrioNeuroServer, *args: Any
) -> ServerInfo:
    """Start ``server.run`` on 127.0.0.1 port 0; return what it reports."""
    info = await nursery.start(server.run, "127.0.0.1", 0, *args)
    assert isinstance(info, ServerInfo)
    return info


# ---------------------------------------------------------------------------
# Test games
# ---------------------------------------------------------------------------


class Game:
    """A game over a real trio-websocket client connection."""

    def __init__(self, ws: WebSocketConnection, title: str) -> None:
        self.ws = ws
        self.title = title
        self.sent = 0
        self.session_id: str | None = None

    # --- sending -------------------------------------------------------------

    async def send(self, frame: str | bytes) -> None:
        """Send one frame as is."""
        with trio.fail_after(WAIT):
            await self.ws.send_message(frame)
        self.sent += 1

    async def send_obj(self, obj: Any) -> None:
        """Send ``obj`` as a JSON text frame."""
        await self.send(orjson.dumps(obj).decode())

    async def startup(self) -> StartupAcknowledgement:
        """Send ``startup`` and return Neuro's acknowledgement."""
        await self.send(command.startup_command(self.title).decode())
        ack = await self.receive()
        assert isinstance(ack, StartupAcknowledgement), ack
        self.session_id = ack.session_id
        return ack

    async def register(self, *actions: Action) -> None:
        """Send ``actions/register``."""
        await self.send(command.actions_register_command(self.title, actions).decode())

    async def unregister(self, *names: str) -> None:
        """Send ``actions/unregister``."""
        await self.send(command.actions_unregister_command(self.title, names).decode())

    async def force(
        self,
        *names: str,
        query: str = "Your turn",
        state: str | None = None,
        ephemeral_context: bool = False,
        priority: ForcePriority = ForcePriority.LOW,
    ) -> None:
        """Send ``actions/force``."""
        await self.send(
            command.actions_force_command(
                self.title, state, query, names, ephemeral_context, priority
            ).decode()
        )

    async def context(self, message: str, silent: bool = True) -> None:
        """Send ``context``."""
        await self.send(command.context_command(self.title, message, silent).decode())

    async def result(
        self, id_: str, success: bool = True, message: str | None = "done"
    ) -> None:
        """Send ``action/result`` (a failure without message is allowed here)."""
        frame = ActionResult(game=self.title, id=id_, success=success, message=message)
        await self.send(frame.to_frame())

    # --- receiving -----------------------------------------------------------

    async def receive(self, within: float = WAIT) -> NeuroMessage:
        """Return the next frame from Neuro, parsed (it must parse)."""
        with trio.fail_after(within):
            frame = await self.ws.get_message()
        return command.parse_neuro_frame(frame)

    async def expect_action(self, within: float = WAIT) -> ActionMessage:
        """Return the next frame, which must be an ``action``."""
        message = await self.receive(within)
        assert isinstance(message, ActionMessage), message
        return message

    async def expect_silence(self, seconds: float) -> None:
        """Fail if any frame arrives within ``seconds`` (use with autojump)."""
        with trio.move_on_after(seconds):
            frame = await self.ws.get_message()
            raise AssertionError(f"unexpected frame: {frame!r}")

    async def expect_closed(self, within: float = WAIT) -> CloseReason:
        """Read until the connection closes; return why it closed."""
        reason: CloseReason | None = None
        with trio.fail_after(within):
            while reason is None:
                try:
                    await self.ws.get_message()
                except ConnectionClosed as exc:
                    reason = exc.reason or CloseReason(1005, None)
        return reason

    async def drop(self) -> None:
        """Close the TCP connection at once, with no closing handshake."""
        await trio.aclose_forcefully(self.ws._stream)


@contextlib.asynccontextmanager
async def connect(url: str, title: str, **options: Any) -> AsyncIterator[Game]:
    """Connect a :class:`Game` to ``url``; it closes first when the block ends."""
    options.setdefault("connect_timeout", WAIT)
    options.setdefault("disconnect_timeout", WAIT)
    stream: trio.abc.Stream | None = None
    try:
        async with open_websocket_url(url, **options) as ws:
            stream = ws._stream
            yield Game(ws, title)
    finally:
        # trio-websocket's client never closes its TCP stream when the server
        # closed the WebSocket first (it returns early from aclose): do it
        # here, also when the test failed.
        if stream is not None:
            await trio.aclose_forcefully(stream)


async def handshake(port: int, *headers: str) -> bytes:
    """Send a WebSocket opening handshake by hand; return the server's answer.

    ``headers`` are extra ``Name: value`` lines. Reads until a 101 response
    or the end of the stream (a refusal). trio-websocket's own client leaks
    its socket when a handshake is refused, which warnings turn into errors.
    """
    lines = [
        "GET / HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    answer = b""
    with trio.fail_after(WAIT):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(request)
            while chunk := await stream.receive_some():
                answer += chunk
                if answer.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in answer:
                    break
    return answer


class RawGame:
    """A game speaking WebSocket by hand (wsproto): it reads only when asked.

    Nothing reads its socket in the background, so the server's writes pile
    up in the kernel buffers (``rcvbuf`` makes its receive buffer small).
    """

    def __init__(self, stream: trio.SocketStream, title: str) -> None:
        self.stream = stream
        self.title = title
        self.protocol = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self._events: collections.deque[wsproto.events.Event] = collections.deque()
        self._parts: list[str] = []

    @classmethod
    async def connect(cls, port: int, title: str, rcvbuf: int | None = None) -> RawGame:
        """Open the TCP connection and do the opening handshake."""
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            with trio.fail_after(WAIT):
                await sock.connect(("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        game = cls(trio.SocketStream(sock), title)
        request = wsproto.events.Request(host=f"127.0.0.1:{port}", target="/")
        try:
            with trio.fail_after(WAIT):
                await game.stream.send_all(game.protocol.send(request))
                event = await game._next_event()
            assert isinstance(event, wsproto.events.AcceptConnection), event
        except BaseException:
            await trio.aclose_forcefully(game.stream)
            raise
        return game

    async def _next_event(self) -> wsproto.events.Event:
        while not self._events:
            data = await self.stream.receive_some(1 << 16)
            if not data:
                self.protocol.receive_data(None)
            else:
                self.protocol.receive_data(data)
            self._events.extend(self.protocol.events())
            if not data and not self._events:
                raise EOFError("the server closed the TCP connection")
        return self._events.popleft()

    async def send(self, frame: str) -> None:
        """Send one text frame."""
        with trio.fail_after(WAIT):
            await self.stream.send_all(
                self.protocol.send(wsproto.events.TextMessage(data=frame))
            )

    async def receive(self, within: float = WAIT) -> NeuroMessage:
        """Read until one whole text message arrived; return it parsed."""
        with trio.fail_after(within):
            while True:
                event = await self._next_event()
                if isinstance(event, wsproto.events.TextMessage):
                    self._parts.append(event.data)
                    if event.message_finished:
                        text = "".join(self._parts)
                        self._parts.clear()
                        return command.parse_neuro_frame(text)
                elif isinstance(event, wsproto.events.CloseConnection):
                    raise ConnectionError(f"closed: {event.code} {event.reason}")

    async def aclose(self) -> None:
        """Close the TCP connection (no closing handshake)."""
        await trio.aclose_forcefully(self.stream)


class Output(io.StringIO):
    """Console output that wakes :meth:`wait_for` on every write."""

    def __init__(self) -> None:
        super().__init__()
        self._written = trio.Event()

    def write(self, text: str) -> int:
        self._written.set()
        self._written = trio.Event()
        return super().write(text)

    async def wait_for(self, text: str) -> str:
        """Wait until ``text`` was written; return everything written."""
        with trio.fail_after(WAIT):
            while text not in self.getvalue():
                await self._written.wait()
        return self.getvalue()


async def start_stoppable(
    nursery: trio.Nursery, server: AbstractTrioNeuroServer
) -> tuple[ServerInfo, trio.Event]:
    """Run ``server`` in ``nursery``; the event is set once run() returned."""
    stopped = trio.Event()

    async def run(*, task_status: trio.TaskStatus[object]) -> None:
        await server.run("127.0.0.1", 0, task_status=task_status)
        stopped.set()

    return await nursery.start(run), stopped
