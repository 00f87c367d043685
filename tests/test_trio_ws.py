"""The Trio WebSocket client (neuro_api.trio_ws).

Rules of this module (as in trio-websocket's own tests): real sockets only on
127.0.0.1 with port 0; every test that waits on the network has a deadline;
one side always closes first. Backoff timing runs in virtual time
(``autojump_clock``) through the ``_open_connection`` seam, because real
socket waits and an auto-jumping clock do not mix.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import orjson
import pytest
import trio
import trio.testing
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from neuro_api.api import ActionFailed, NotConnected
from neuro_api.command import (
    Action,
    action_command,
    reregister_all_command,
    startup_acknowledgement_command,
)
from neuro_api.trio_ws import Backoff, NeuroGameClient, TrioNeuroAPI, _parse_url

if TYPE_CHECKING:
    from conftest import FakeNeuro

PLAY = Action(
    "play",
    "Play a cell",
    {
        "type": "object",
        "properties": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["cell"],
    },
)
PASS = Action("pass", "Do nothing this turn")
FAST = Backoff(initial=0.01, factor=2, maximum=0.05, jitter=0)


def make_client(**kwargs: Any) -> NeuroGameClient:
    kwargs.setdefault("backoff", FAST)
    return NeuroGameClient("Test Game", **kwargs)


async def expect_startup(
    neuro: FakeNeuro, websocket: WebSocketConnection, *registered: str
) -> None:
    """The first frames of every connection: startup, then the registry."""
    assert await neuro.receive(websocket) == {"command": "startup", "game": "Test Game"}
    if registered:
        frame = await neuro.receive(websocket)
        assert frame["command"] == "actions/register"
        assert [a["name"] for a in frame["data"]["actions"]] == list(registered)


# --- Backoff ----------------------------------------------------------------


def test_backoff_is_exponential_and_capped() -> None:
    backoff = Backoff(initial=0.5, factor=2, maximum=5, jitter=0)
    assert [backoff.delay(n) for n in range(6)] == [0.5, 1, 2, 4, 5, 5]
    assert backoff.delay(10_000) == 5


def test_backoff_jitter_stays_in_range_and_follows_the_rng() -> None:
    backoff = Backoff(initial=1, factor=3, maximum=50, jitter=0.25)
    reference = random.Random(7)
    delays = [backoff.delay(n, random.Random(7)) for n in range(5)]
    for n, delay in enumerate(delays):
        base = min(3**n, 50)
        assert base * 0.75 < delay <= base
        assert delay == base * (1 - 0.25 * random.Random(7).random())
    assert reference.random() == random.Random(7).random()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": 2, "maximum": 1},
        {"factor": 0.5},
        {"jitter": 1},
        {"jitter": -0.1},
    ],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**kwargs)


# --- connecting -------------------------------------------------------------


async def test_connect_sends_startup_and_registration(fake_neuro: FakeNeuro) -> None:
    client = make_client()
    await client.register_actions([PLAY, PASS])  # offline: recorded, no error
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            # started() means ready: connected, and the frames are on the wire.
            assert client.connected
            websocket = await fake_neuro.accept()
            await expect_startup(fake_neuro, websocket, "play", "pass")
            await client.register_actions([Action("jump", "Jump")])
            await client.unregister_actions(["pass"])
            assert (await fake_neuro.receive(websocket))["command"] == (
                "actions/register"
            )
            assert (await fake_neuro.receive(websocket))["data"] == {
                "action_names": ["pass"]
            }
            client.stop()
    assert not client.connected


async def test_startup_ack_and_actions_over_the_wire(fake_neuro: FakeNeuro) -> None:
    client = make_client()
    played: list[Any] = []

    @client.action(PLAY)
    async def play(data: Any) -> str:
        if data["cell"] == 5:
            raise ActionFailed("Cell 5 is taken")
        played.append(data)
        return "ok"

    await client.register_actions([PLAY])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            websocket = await fake_neuro.accept()
            await expect_startup(fake_neuro, websocket, "play")
            await websocket.send_message(
                startup_acknowledgement_command("s-1", "neuro", "Neuro-sama").decode()
            )
            answers = {}
            for id_, name, data in [
                ("1", "play", '{"cell": 10}'),
                ("2", "play", "{not json"),
                ("3", "dance", "{}"),
                ("4", "play", '{"cell": 5}'),
                ("5", "play", '{"cell": 3}'),
            ]:
                await websocket.send_message(action_command(id_, name, data).decode())
                frame = await fake_neuro.receive(websocket)
                assert frame["command"] == "action/result"
                answers[frame["data"]["id"]] = frame["data"]
            # Frames are handled in order: the ack came before the results.
            assert client.session is not None
            assert client.session.session is not None
            assert client.session.session.session_id == "s-1"
            client.stop()
    assert [answers[i]["success"] for i in "12345"] == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert "greater than the maximum" in answers["1"]["message"]
    assert "not valid JSON" in answers["2"]["message"]
    assert answers["3"]["message"] == "Unknown action 'dance'; registered: play"
    assert answers["4"]["message"] == "Cell 5 is taken"
    assert answers["5"]["message"] == "ok"
    assert played == [{"cell": 3}]


async def test_server_drop_reconnects_and_restores(fake_neuro: FakeNeuro) -> None:
    client = make_client()
    await client.register_actions([PLAY, PASS])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            first = await fake_neuro.accept()
            await expect_startup(fake_neuro, first, "play", "pass")
            await client.unregister_actions(["pass"])
            assert (await fake_neuro.receive(first))["command"] == "actions/unregister"
            await first.aclose(1001, "restarting")

            second = await fake_neuro.accept()
            await expect_startup(fake_neuro, second, "play")
            await client.wait_connected()
            await client.send_context("back again")
            assert (await fake_neuro.receive(second))["data"]["message"] == (
                "back again"
            )

            await second.send_message(reregister_all_command().decode())
            frame = await fake_neuro.receive(second)
            assert frame["command"] == "actions/register"
            assert [a["name"] for a in frame["data"]["actions"]] == ["play"]
            client.stop()
    assert fake_neuro.handshakes == 2


async def test_rejected_handshakes_are_retried(fake_neuro: FakeNeuro) -> None:
    fake_neuro.reject_next = 2
    client = make_client()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            websocket = await fake_neuro.accept()
            await expect_startup(fake_neuro, websocket)
            client.stop()
    assert fake_neuro.handshakes == 3


async def silent_server(
    nursery: trio.Nursery,
) -> tuple[str, trio.MemoryReceiveChannel[None]]:
    """A TCP server that accepts and never answers the WebSocket handshake."""
    send, receive = trio.open_memory_channel[None](math.inf)

    async def silent(stream: trio.SocketStream) -> None:
        send.send_nowait(None)
        await trio.sleep_forever()

    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, silent, 0, host="127.0.0.1")
    )
    return f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}", receive


async def test_hanging_handshake_times_out_and_retries(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    url, accepted = await silent_server(nursery)
    client = make_client(connect_timeout=0.1)
    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            inner.start_soon(client.run, url)
            for _ in range(3):
                await accepted.receive()
            client.stop()
    assert not client.connected
    assert "ConnectionTimeout: no connection within 0.1 s" in caplog.text


async def test_cancel_during_a_hanging_handshake(nursery: trio.Nursery) -> None:
    url, accepted = await silent_server(nursery)
    client = make_client(connect_timeout=30)
    with trio.fail_after(5):
        async with trio.open_nursery() as inner:
            inner.start_soon(client.run, url)
            await accepted.receive()
            inner.cancel_scope.cancel()
    assert not client.connected


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1", "127.0.0.1:8000", "ws://", "ws://host:99999"]
)
async def test_bad_urls_are_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        await make_client().run(url)


def test_parse_url() -> None:
    target = _parse_url("ws://user@Example.com:8000/neuro?x=1")
    assert target == ("example.com", 8000, "Example.com:8000", "/neuro?x=1", None)
    secure = _parse_url("wss://[::1]")
    assert (secure.host, secure.port, secure.host_header, secure.resource) == (
        "::1",
        443,
        "[::1]",
        "/",
    )
    assert isinstance(secure.ssl_context, ssl.SSLContext)
    assert _parse_url("ws://127.0.0.1").port == 80


async def test_sends_while_disconnected(fake_neuro: FakeNeuro) -> None:
    client = make_client()
    with pytest.raises(NotConnected, match="not connected"):
        await client.send_context("anyone there?")
    with pytest.raises(NotConnected):
        _ = client.connection
    await client.register_actions([PLAY])
    with pytest.raises(NotConnected):
        await client.send_force_action(None, "Play", ["play"])

    waited = trio.Event()

    async def waiter() -> None:
        await client.wait_connected()
        waited.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert not waited.is_set()
            await nursery.start(client.run, fake_neuro.url)
            await waited.wait()
            websocket = await fake_neuro.accept()
            await expect_startup(fake_neuro, websocket, "play")
            await client.send_force_action(None, "Play", ["play"])
            assert (await fake_neuro.receive(websocket))["command"] == "actions/force"
            client.stop()


async def test_run_twice_is_refused(fake_neuro: FakeNeuro) -> None:
    client = make_client()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            with pytest.raises(RuntimeError, match="already running"):
                await client.run(fake_neuro.url)
            client.stop()
    client.stop()  # not running: no effect


# --- stopping and cancelling ------------------------------------------------


async def test_stop_closes_with_1000_and_run_returns(fake_neuro: FakeNeuro) -> None:
    client = make_client()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            websocket = await fake_neuro.accept()
            await expect_startup(fake_neuro, websocket)
            client.stop()
        with pytest.raises(ConnectionClosed) as info:
            await websocket.get_message()
    assert info.value.reason is not None
    assert info.value.reason.code == 1000
    assert not client.connected


async def test_cancel_closes_cleanly(fake_neuro: FakeNeuro) -> None:
    client = make_client()
    raised: list[BaseException] = []

    async def run() -> None:
        try:
            await client.run(fake_neuro.url)
        except BaseException as exc:
            raised.append(exc)
            raise

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            websocket = await fake_neuro.accept()
            await expect_startup(fake_neuro, websocket)
            await client.wait_connected()
            before = trio.current_time()
            nursery.cancel_scope.cancel()
        # Well under close_timeout: the closing handshake completed.
        assert trio.current_time() - before < client.close_timeout / 2
        with pytest.raises(ConnectionClosed) as info:
            await websocket.get_message()
    assert info.value.reason is not None
    assert info.value.reason.code == 1000
    assert not client.connected
    # Cancelled comes out as itself, not inside an ExceptionGroup.
    assert [type(exc) for exc in raised] == [trio.Cancelled]


async def test_cancel_during_a_handler_sends_no_result(fake_neuro: FakeNeuro) -> None:
    client = make_client()
    entered = trio.Event()

    @client.action(PLAY)
    async def play(data: Any) -> None:
        entered.set()
        await trio.sleep_forever()

    await client.register_actions([PLAY])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            websocket = await fake_neuro.accept()
            await expect_startup(fake_neuro, websocket, "play")
            await websocket.send_message(
                action_command("1", "play", '{"cell": 1}').decode()
            )
            await entered.wait()
            nursery.cancel_scope.cancel()
        with pytest.raises(ConnectionClosed) as info:
            await websocket.get_message()
    assert info.value.reason is not None
    assert info.value.reason.code == 1000


async def test_cancel_while_waiting_to_reconnect(fake_neuro: FakeNeuro) -> None:
    fake_neuro.reject_next = 100
    client = make_client(backoff=Backoff(initial=30, jitter=0))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run, fake_neuro.url)
            await fake_neuro.wait_handshakes(1)
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert fake_neuro.handshakes == 1


# --- backoff in virtual time ------------------------------------------------


class FakeWebSocket:
    """Enough of a WebSocketConnection for serve(): drops after ``hold`` s."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.sent: list[dict[str, Any]] = []

    async def send_message(self, message: str) -> None:
        await trio.lowlevel.checkpoint()
        self.sent.append(orjson.loads(message))

    async def get_message(self) -> str:
        await trio.sleep(self.hold)
        raise ConnectionClosed(CloseReason(1006, "dropped"))


class ScriptedClient(NeuroGameClient):
    """Connection attempts follow ``script``: "fail", or "ok" (drops later)."""

    def __init__(self, script: list[str], hold: float, **kwargs: Any) -> None:
        super().__init__("Test Game", **kwargs)
        self.script = script
        self.hold = hold
        self.attempts: list[float] = []
        self.sockets: list[FakeWebSocket] = []

    @asynccontextmanager
    async def _open_connection(
        self, url: str, nursery: trio.Nursery
    ) -> AsyncIterator[WebSocketConnection]:
        self.attempts.append(trio.current_time())
        await trio.lowlevel.checkpoint()
        if (self.script.pop(0) if self.script else "fail") == "fail":
            raise HandshakeError from ConnectionRefusedError(111, "refused")
        websocket = FakeWebSocket(self.hold)
        self.sockets.append(websocket)
        yield cast(WebSocketConnection, websocket)


async def test_backoff_delays_exactly_and_resets_after_success(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = ScriptedClient(
        ["fail", "fail", "fail", "ok", "fail", "fail", "fail", "fail"],
        hold=10,
        backoff=Backoff(initial=1, factor=2, maximum=3, jitter=0),
    )
    await client.register_actions([PLAY])
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run, "ws://127.0.0.1:1")
        assert trio.current_time() - start == 6  # 1 + 2 + 3 (capped)
        await trio.sleep(26)
        client.stop()
    # Connected at 6, dropped at 16; the delays restart from 1.
    assert [t - start for t in client.attempts] == [0, 1, 3, 6, 17, 19, 22, 25, 28, 31]
    assert [f["command"] for f in client.sockets[0].sent] == [
        "startup",
        "actions/register",
    ]
    retries = [r.getMessage() for r in caplog.records if "reconnecting" in r.msg]
    assert [m.split("reconnecting in ")[1] for m in retries[:5]] == [
        "1.00 s (attempt 1)",
        "2.00 s (attempt 2)",
        "3.00 s (attempt 3)",
        "1.00 s (attempt 1)",
        "2.00 s (attempt 2)",
    ]
    assert "ConnectionRefusedError" in retries[0]


async def test_backoff_jitter_in_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = Backoff(initial=1, factor=2, maximum=100, jitter=0.5)
    client = ScriptedClient([], hold=0, backoff=backoff, rng=random.Random(42))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run, "ws://127.0.0.1:1")
        await trio.sleep(20)
        client.stop()
    reference = random.Random(42)
    expected = [0.0]
    for n in range(len(client.attempts) - 1):
        expected.append(expected[-1] + backoff.delay(n, reference))
    assert [t - start for t in client.attempts] == pytest.approx(expected)
    assert len(client.attempts) >= 4


async def test_stop_during_backoff_returns_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = ScriptedClient(
        [], hold=0, backoff=Backoff(initial=60, maximum=60, jitter=0)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run, "ws://127.0.0.1:1")
        await trio.sleep(1)
        start = trio.current_time()
        client.stop()
    assert trio.current_time() == start
    assert len(client.attempts) == 1


async def test_bug_in_run_is_raised_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Broken(NeuroGameClient):
        def _open_connection(self, url: str, nursery: trio.Nursery) -> Any:
            raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError, match="bug"):
        await Broken("Test Game").run("ws://127.0.0.1:1")


async def test_failures_are_logged_as_warnings(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = ScriptedClient(["fail"], hold=0, backoff=Backoff(jitter=0))
    with caplog.at_level(logging.INFO, logger="neuro_api.trio_ws"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run, "ws://127.0.0.1:1")
            await trio.sleep(0.1)
            client.stop()
    levels = {r.levelname for r in caplog.records if "reconnecting" in r.msg}
    assert levels == {"WARNING"}
    assert "disconnected from ws://127.0.0.1:1" in caplog.text


# --- TrioNeuroAPI on a connection the caller opened -------------------------


async def test_serve_one_connection(fake_neuro: FakeNeuro) -> None:
    api = TrioNeuroAPI("Test Game")
    await api.register_actions([PASS])
    with trio.fail_after(10):
        async with open_websocket_url(fake_neuro.url) as websocket:
            server_side = await fake_neuro.accept()
            async with trio.open_nursery() as nursery:
                await nursery.start(api.serve, websocket)
                assert api.connection is websocket
                with pytest.raises(RuntimeError, match="already has a connection"):
                    await api.serve(websocket)
                await expect_startup(fake_neuro, server_side, "pass")
                # The game's side closes (the server closing first would leak
                # the client socket, see trio_ws._release_stream).
                await websocket.aclose()
            # serve() returned on its own when the connection closed.
            assert not api.connected


async def test_bound_connection_upstream_style(fake_neuro: FakeNeuro) -> None:
    with trio.fail_after(10):
        async with open_websocket_url(fake_neuro.url) as websocket:
            server_side = await fake_neuro.accept()
            api = TrioNeuroAPI("Test Game", websocket)
            assert api.connected
            await api.send_startup_command()
            await expect_startup(fake_neuro, server_side)
            await server_side.send_message(reregister_all_command().decode())
            assert (
                await api.read_from_websocket()
            ) == reregister_all_command().decode()
            await websocket.aclose()
            with pytest.raises(ConnectionClosed):
                await api.read_from_websocket()
            with pytest.raises(NotConnected, match="connection closed") as info:
                await api.send_context("still there?")
            assert isinstance(info.value.__cause__, ConnectionClosed)
            api.connect(None)
            assert not api.connected


# --- Actions run beside the reader ------------------------------------------


async def expect_result(neuro: FakeNeuro, websocket: WebSocketConnection) -> Any:
    frame = await neuro.receive(websocket)
    assert frame["command"] == "action/result", frame
    return frame["data"]


async def test_a_slow_handler_does_not_stop_the_reader(fake_neuro: FakeNeuro) -> None:
    client = make_client(action_timeout=0.5)

    @client.action(PLAY)
    async def play(data: Any) -> None:
        await trio.sleep_forever()

    @client.action(PASS)
    async def skip(data: Any) -> str:
        return "skipped"

    await client.register_actions([PLAY, PASS])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            websocket = await fake_neuro.accept()
            await expect_startup(fake_neuro, websocket, "play", "pass")
            await websocket.send_message(
                action_command("1", "play", '{"cell": 1}').decode()
            )
            await websocket.send_message(action_command("2", "pass").decode())
            # The reader still reads while "play" hangs.
            started = trio.current_time()
            await websocket.send_message(reregister_all_command().decode())
            frame = await fake_neuro.receive(websocket)
            assert frame["command"] == "actions/register"
            assert trio.current_time() - started < 0.4
            # Then the hanging handler times out, and the next action runs.
            assert await expect_result(fake_neuro, websocket) == {
                "id": "1",
                "success": False,
                "message": "The game took too long to perform 'play'.",
            }
            assert trio.current_time() - started >= 0.45
            assert await expect_result(fake_neuro, websocket) == {
                "id": "2",
                "success": True,
                "message": "skipped",
            }
            client.stop()


async def test_a_drop_during_a_hanging_handler_reconnects(
    fake_neuro: FakeNeuro,
) -> None:
    client = make_client(action_timeout=None)
    entered = trio.Event()
    cancelled = trio.Event()

    @client.action(PLAY)
    async def play(data: Any) -> None:
        entered.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    await client.register_actions([PLAY])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            first = await fake_neuro.accept()
            await expect_startup(fake_neuro, first, "play")
            await first.send_message(
                action_command("1", "play", '{"cell": 1}').decode()
            )
            await entered.wait()
            await trio.aclose_forcefully(first._stream)  # TCP gone, no close frame
            second = await fake_neuro.accept()
            await expect_startup(fake_neuro, second, "play")
            assert cancelled.is_set()  # the old connection's handler ended
            client.stop()


async def test_actions_beyond_the_queue_are_failed_at_once(
    fake_neuro: FakeNeuro,
) -> None:
    client = make_client(max_queued_actions=1)
    release = trio.Event()

    @client.action(PLAY)
    async def play(data: Any) -> str:
        await release.wait()
        return f"played {data['cell']}"

    await client.register_actions([PLAY])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            websocket = await fake_neuro.accept()
            await expect_startup(fake_neuro, websocket, "play")
            for id_ in "123":
                await websocket.send_message(
                    action_command(id_, "play", f'{{"cell": {id_}}}').decode()
                )
            busy = await expect_result(fake_neuro, websocket)
            assert busy["id"] == "3"
            assert busy["success"] is False
            assert "busy" in busy["message"]
            release.set()
            assert await expect_result(fake_neuro, websocket) == {
                "id": "1",
                "success": True,
                "message": "played 1",
            }
            assert (await expect_result(fake_neuro, websocket))["id"] == "2"
            client.stop()


@pytest.mark.parametrize("returned", [5, {"a": 1}, 10**30, ["x"]])
async def test_a_handler_returning_a_non_string_still_gets_one_result(
    fake_neuro: FakeNeuro, returned: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()

    @client.action(PASS)
    async def skip(data: Any) -> Any:
        return returned

    await client.register_actions([PASS])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, fake_neuro.url)
            websocket = await fake_neuro.accept()
            await expect_startup(fake_neuro, websocket, "pass")
            await websocket.send_message(action_command("1", "pass").decode())
            await websocket.send_message(action_command("2", "pass").decode())
            for id_ in "12":
                assert await expect_result(fake_neuro, websocket) == {
                    "id": id_,
                    "success": True,
                }
            client.stop()
    assert "not a str or None" in caplog.text
