"""Event streams: a slow reader loses its own events, and only its own.

Before issue 10 (item 6), 200 readers of ``/events`` dropped 754,642 events in
a short run, counted in one number for everyone. Each reader now has its own
buffer and its own count, is told what it lost, and readers are capped.
"""

from __future__ import annotations

import functools
import socket

import httpx
import hypercorn.config
import hypercorn.trio
import orjson
import pytest
import trio
import trio.lowlevel
from server_helpers import RecordingServer, connect, start_server

from neuro_api.control import create_app
from neuro_api.server import EventBus, TooManySubscribers


def event(n: int) -> dict[str, object]:
    return {"type": "frame.in", "game": "G", "frame": f"frame {n}"}


async def drain(reader: object, into: list[tuple[str, bytes]]) -> None:
    async for item in reader:  # type: ignore[attr-defined]
        into.append(item)


async def test_a_slow_reader_drops_only_its_own_events() -> None:
    bus = EventBus(buffer=4)
    received: list[tuple[str, bytes]] = []
    with bus.subscribe() as slow, bus.subscribe() as fast:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, fast, received)
            for n in range(20):
                bus.publish(event(n))
                await trio.lowlevel.checkpoint()  # the fast reader keeps up
            await trio.testing.wait_all_tasks_blocked()
            bus.end_subscriptions()
        assert len(received) == 20
        assert (fast.dropped, fast.delivered) == (0, 20)
        assert slow.dropped == 16
        assert slow.take_drops() == 16
        assert slow.take_drops() == 0
        late: list[tuple[str, bytes]] = []
        await drain(slow, late)
        assert [orjson.loads(data)["frame"] for _, data in late] == [
            f"frame {n}" for n in range(4)
        ]
    assert bus.dropped == 16  # readers gone, their losses still counted
    assert not bus.active


async def test_each_event_is_encoded_once() -> None:
    bus = EventBus()
    with bus.subscribe() as one, bus.subscribe() as two:
        bus.publish(event(1))
        bus.end_subscriptions()
        first = [item async for item in one]
        second = [item async for item in two]
    assert first[0][1] is second[0][1]
    assert first[0][0] == "frame.in"


def test_long_frames_are_cut_in_events() -> None:
    bus = EventBus()
    with bus.subscribe() as reader:
        bus.publish({"type": "frame.in", "frame": "x" * 100_000})
        _, data = reader._receive.receive_nowait()
    shown = orjson.loads(data)
    assert len(shown["frame"]) == 16 << 10
    assert shown["frame_size"] == 100_000
    assert shown["truncated"] is True


def test_readers_are_capped() -> None:
    bus = EventBus(max_subscribers=2)
    with bus.subscribe(), bus.subscribe():
        assert bus.full
        with (
            pytest.raises(TooManySubscribers, match="2 event streams"),
            bus.subscribe(),
        ):
            pass  # pragma: no cover
    assert not bus.full


async def read_until(stream: trio.abc.Stream, marker: bytes, into: bytearray) -> None:
    with trio.fail_after(20):
        while marker not in into[-100_000:]:
            into += await stream.receive_some()


async def test_streams_over_http_report_their_own_drops(nursery: trio.Nursery) -> None:
    server = RecordingServer()
    server.events = EventBus(buffer=64, max_subscribers=2)
    info = await start_server(nursery, server)
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    stop = trio.Event()
    binds = await nursery.start(
        functools.partial(
            hypercorn.trio.serve, create_app(server), config, shutdown_trigger=stop.wait
        )
    )
    host, port = binds[0].removeprefix("http://").rsplit(":", 1)
    request = b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    # A slow reader: a tiny receive buffer it does not read.
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    slow = trio.SocketStream(sock)
    fast = await trio.open_tcp_stream(host, int(port))
    async with slow, fast, connect(info.url, "Chatty") as game:
        fast_seen, slow_seen = bytearray(), bytearray()
        for stream, seen in ((slow, slow_seen), (fast, fast_seen)):
            await stream.send_all(request)
            await read_until(stream, b": connected", seen)
        async with httpx.AsyncClient(base_url=binds[0], timeout=5) as http:
            third = await http.get("/events")
            assert third.status_code == 503
            assert third.json()["error"]["code"] == "too_many_streams"
        await game.startup()
        # More than the kernel buffers of the slow connection hold (a few
        # MB), sent at a pace the fast reader, reading all along, keeps up.
        async with trio.open_nursery() as reading:
            reading.start_soon(read_until, fast, b"message 599", fast_seen)
            for n in range(600):
                await game.context(f"message {n:03d} " + "z" * 12_000)
                await trio.sleep(0.001)
        async with httpx.AsyncClient(base_url=binds[0], timeout=5) as http:
            streams = (await http.get("/stats")).json()["event_streams"]
        by_id = sorted(streams, key=lambda s: s["id"])
        assert by_id[0]["dropped"] > 0  # the slow one
        assert by_id[1]["dropped"] == 0  # the fast one lost nothing
        assert fast_seen.count(b"event: frame.in") == 601
        # The slow reader reads at last: told what it lost, then the rest.
        slow_reader = server.events.subscribers()[0]
        async with trio.open_nursery() as reading:
            reading.start_soon(read_until, slow, b"last one", slow_seen)
            with trio.fail_after(10):
                while slow_reader._receive.statistics().current_buffer_used:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            await game.context("last one")
        assert b"event: dropped" in slow_seen
        dropped_line = next(
            line
            for line in slow_seen.split(b"\n")
            if line.startswith(b'data: {"type":"dropped"')
        )
        assert orjson.loads(dropped_line[6:])["count"] > 0
    stop.set()
