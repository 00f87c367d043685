"""What the phone bridge adds to each audio chunk, with 20 calls at once.

``--calls`` bridges (20) run in one Trio process, each between an in-memory
Twilio side and an in-memory Realtime lease (the same interface as the real
ones, so what is timed is the bridge's own work and the scheduling of all
the calls, not loopback sockets). For ``--seconds`` (10) every call gets a
20 ms caller frame every 20 ms (Twilio's pace) and a 100 ms model audio
delta every 100 ms, and two latencies are taken per chunk:

* **caller → API**: a Twilio ``media`` frame handed to the bridge until its
  ``input_audio_buffer.append`` is sent to the Realtime side;
* **API → caller**: a ``response.output_audio.delta`` handed to the bridge
  until its Twilio ``media`` frame is sent (its ``mark`` follows).

Printed: p50, p99 and max of each, in microseconds, and the chunks timed.

Run::

    .venv/bin/python benchmarks/bench_voice.py
    .venv/bin/python benchmarks/bench_voice.py --calls 20 --seconds 5
"""

from __future__ import annotations

import argparse
import base64
import time
from collections.abc import Mapping
from typing import Any, Final, cast

import orjson
import trio

from neuro_api.realtime import ConnectionLost, RealtimeConnection
from neuro_api.voice import Bridge, BridgeLimits, MediaClosed

STREAM: Final = "MZ" + "0" * 32
CALLER_FRAME: Final = base64.b64encode(b"\x7f" * 160).decode()  # 20 ms
MODEL_DELTA: Final = base64.b64encode(b"\x7f" * 800).decode()  # 100 ms


class Twilio:
    """Twilio's side: frames in (stamped), frames out (timed)."""

    def __init__(self, out_latency: list[float], sent_at: dict[str, float]) -> None:
        self.send_in, self.receive_in = trio.open_memory_channel[str](100)
        self.out_latency = out_latency
        self.sent_at = sent_at

    async def receive(self) -> str:
        try:
            return await self.receive_in.receive()
        except trio.EndOfChannel:
            raise MediaClosed("ended") from None

    async def close(self) -> None:
        self.send_in.close()

    async def send(self, text: str) -> None:
        now = time.perf_counter()
        message = orjson.loads(text)
        if message["event"] == "media":
            started = self.sent_at.pop("delta", None)
            if started is not None:
                self.out_latency.append(now - started)


class Realtime:
    """The lease: events in (stamped), client events out (timed)."""

    def __init__(self, in_latency: list[float], sent_at: dict[str, float]) -> None:
        self.send_events, self.events = trio.open_memory_channel[dict[str, Any]](100)
        self.in_latency = in_latency
        self.sent_at = sent_at

    async def send(self, event: Mapping[str, Any]) -> None:
        now = time.perf_counter()
        if event["type"] == "input_audio_buffer.append":
            started = self.sent_at.pop("frame", None)
            if started is not None:
                self.in_latency.append(now - started)
        await trio.lowlevel.checkpoint()

    async def receive(self) -> dict[str, Any]:
        try:
            return await self.events.receive()
        except trio.EndOfChannel:
            raise ConnectionLost("ended") from None


async def one_call(
    seconds: float, in_latency: list[float], out_latency: list[float]
) -> None:
    sent_at: dict[str, float] = {}
    twilio = Twilio(out_latency, sent_at)
    api = Realtime(in_latency, sent_at)
    bridge = Bridge(
        twilio,
        cast(RealtimeConnection, api),
        STREAM,
        session={"type": "realtime"},
        limits=BridgeLimits(max_duration=seconds + 60, idle_timeout=60),
    )
    frame = orjson.dumps(
        {"event": "media", "media": {"track": "inbound", "payload": CALLER_FRAME}}
    ).decode()
    delta = {
        "type": "response.output_audio.delta",
        "item_id": "item_1",
        "content_index": 0,
        "delta": MODEL_DELTA,
    }
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bridge.run)
        deadline = trio.current_time() + seconds
        tick = 0
        while trio.current_time() < deadline:
            sent_at["frame"] = time.perf_counter()
            await twilio.send_in.send(frame)
            if tick % 5 == 0:
                sent_at["delta"] = time.perf_counter()
                await api.send_events.send(delta)
            tick += 1
            await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e6

    return (
        f"{name}: p50 {at(0.5):.0f} µs, p99 {at(0.99):.0f} µs, "
        f"max {ordered[-1] * 1e6:.0f} µs ({len(values)} chunks)"
    )


async def main(calls: int, seconds: float) -> None:
    in_latency: list[float] = []
    out_latency: list[float] = []
    async with trio.open_nursery() as nursery:
        for _ in range(calls):
            nursery.start_soon(one_call, seconds, in_latency, out_latency)
    print(f"{calls} calls for {seconds:g} s")
    print(summary("caller -> API (media -> append)", in_latency))
    print(summary("API -> caller (delta -> media)", out_latency))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    options = parser.parse_args()
    trio.run(main, options.calls, options.seconds)
