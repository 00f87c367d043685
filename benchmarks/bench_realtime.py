"""What the Realtime pool and engine cost on top of the API (issue 15's figures).

Two figures, in one process, against ``tests/fake_realtime`` on 127.0.0.1
(the fake answers at once, so what is measured is our own work):

1. **Lease overhead, warm pool**: ``async with pool.connection_context()``
   entered and left ``--leases`` times (10,000) on a pool whose connection
   is open: p50 and p99 per lease, in microseconds. No event is sent, so
   this is the pool's bookkeeping alone (the connection serves every lease:
   with the default ``max_sessions_per_connection`` of 10, every tenth
   lease would open a new connection, a handshake, which is timed apart).
2. **Engine overhead per force**: the engine's ``choose_force_action``
   (lease, tools from the actions, one out-of-band response, validation of
   the call) against a bare client that sends the same ``response.create``
   on a trio-websocket connection of its own and reads until
   ``response.done``. Both talk to the same fake; they run in ``--slices``
   alternating slices of ``--forces`` each (this machine's speed drifts
   within seconds), and the overhead is the difference of the medians.

Run::

    .venv/bin/python benchmarks/bench_realtime.py
    .venv/bin/python benchmarks/bench_realtime.py --leases 2000 --forces 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Final

import orjson
import trio
import trio_websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_realtime import FunctionCall, open_fake_realtime

from neuro_api.command import Action, ForcePriority
from neuro_api.realtime import PoolConfig, RealtimeNeuroServer, RealtimePool, ToolSet

KEY: Final = "sk-benchmark-0123456789"
PLAY: Final = Action(
    "play",
    "Play a cell of the board",
    {
        "type": "object",
        "properties": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["cell"],
    },
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def open_times(pool: RealtimePool, count: int) -> list[float]:
    """Seconds a lease takes when it must open the connection (the handshake)."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        async with pool.connection_context() as conn:
            times.append(time.perf_counter() - start)
            conn.lost("benchmark: a new connection each time")
    return times


async def lease_overhead(pool: RealtimePool, leases: int) -> list[float]:
    """Seconds per lease (enter and leave), warm pool."""
    async with pool.connection_context():
        pass  # opens the connection
    times = []
    clock = time.perf_counter
    for _ in range(leases):
        start = clock()
        async with pool.connection_context():
            pass
        times.append(clock() - start)
    return times


def request(tools: ToolSet, text: str, n: int) -> str:
    return orjson.dumps(
        {
            "type": "response.create",
            "event_id": f"bare_{n}",
            "response": {
                "conversation": "none",
                "output_modalities": ["text"],
                "instructions": "You are Neuro-sama.",
                "tools": tools.tools,
                "tool_choice": "required",
                "max_output_tokens": 1024,
                "input": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": text}],
                    }
                ],
            },
        }
    ).decode()


async def bare_forces(ws: trio_websocket.WebSocketConnection, forces: int) -> float:
    """Seconds per request of a bare client (send, read until response.done)."""
    tools = ToolSet([PLAY])
    start = time.perf_counter()
    for n in range(forces):
        await ws.send_message(request(tools, "Game: Tic Tac Toe\n\nYour move", n))
        while True:
            event = orjson.loads(await ws.get_message())
            if event["type"] == "response.done":
                break
    return (time.perf_counter() - start) / forces


async def engine_forces(engine: RealtimeNeuroServer, forces: int) -> float:
    """Seconds per force answered by the engine (asked directly, no game)."""
    start = time.perf_counter()
    for _ in range(forces):
        name, _data = await engine.choose_force_action(
            "Tic Tac Toe", None, "Your move", False, (PLAY,), ForcePriority.LOW
        )
        assert name == "play"
    return (time.perf_counter() - start) / forces


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with open_fake_realtime(key=KEY) as fake:
        fake.responder = lambda connection, response: FunctionCall(
            "play", '{"cell": 5}'
        )
        config = PoolConfig(
            api_key=KEY,
            url=fake.url,
            max_connections=2,
            max_sessions_per_connection=10 * args.leases,
        )
        pool = RealtimePool(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            leases = await lease_overhead(pool, args.leases)
            opens = await open_times(pool, 50)
            engine = RealtimeNeuroServer(pool=pool, seed=1)
            headers = [(b"Authorization", f"Bearer {KEY}".encode())]
            async with trio_websocket.open_websocket_url(
                fake.url + "?model=gpt-realtime", extra_headers=headers
            ) as ws:
                await ws.get_message()  # session.created
                bare, ours = [], []
                for _ in range(args.slices):
                    bare.append(await bare_forces(ws, args.forces))
                    ours.append(await engine_forces(engine, args.forces))
            assert engine.counts["fallbacks"] == 0, engine.counts
            nursery.cancel_scope.cancel()
    bare_median = statistics.median(bare)
    ours_median = statistics.median(ours)
    return {
        "lease_p50_us": percentile(leases, 0.50) * 1e6,
        "lease_p99_us": percentile(leases, 0.99) * 1e6,
        "open_p50_ms": percentile(opens, 0.50) * 1e3,
        "bare_ms_per_request": bare_median * 1e3,
        "engine_ms_per_force": ours_median * 1e3,
        "engine_overhead_ms": (ours_median - bare_median) * 1e3,
        "engine_ratio": ours_median / bare_median,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leases", type=int, default=10_000)
    parser.add_argument("--forces", type=int, default=200)
    parser.add_argument("--slices", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    figures = trio.run(main, parser.parse_args())
    if parser.parse_args().json:
        print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"lease, warm pool:     p50 {figures['lease_p50_us']:.1f} µs, "
              f"p99 {figures['lease_p99_us']:.1f} µs")  # fmt: skip
        print(f"lease opening one:    p50 {figures['open_p50_ms']:.2f} ms (handshake "
              "and session.created on loopback)")  # fmt: skip
        print(
            f"bare client:          {figures['bare_ms_per_request']:.3f} ms per request"
        )
        print(
            f"engine:               {figures['engine_ms_per_force']:.3f} ms per force"
        )
        print(f"engine overhead:      {figures['engine_overhead_ms']:.3f} ms per force "
              f"({figures['engine_ratio']:.2f}x the bare client)")  # fmt: skip
