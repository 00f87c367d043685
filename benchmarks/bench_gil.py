"""How much a large check in a worker thread slows the event loop.

A game registering a large schema (here 22,000 properties, nearly a
megabyte, as in ``tests/test_attacks.py``) has it checked in a worker thread.
Meanwhile the event loop, which serves every other game, does socket round
trips on a socket pair; this counts them per second, with the worker giving
the loop its turn (:mod:`neuro_api._gil`) and without (its ``_give_way``
replaced by nothing), and how long the check took each way.

Targets: the loop does at least 5 times more round trips per second while
the worker gives way, and the check takes at most 1.5 times as long.

Usage: ``python benchmarks/bench_gil.py [--rounds N] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import trio

from neuro_api import _gil
from neuro_api.command import Action
from neuro_api.server._checks import check_actions

LOOP_TARGET = 5.0
CHECK_TARGET = 1.5


def wide(properties: int, nonce: int) -> Action:
    """A schema not seen before (checks are cached by the schema's text)."""
    schema = {
        "type": "object",
        "properties": {
            f"p{nonce}_{i}": {"type": "integer", "minimum": 0}
            for i in range(properties)
        },
    }
    return Action("wide", f"{properties} properties", schema)


async def measure(action: Action) -> tuple[float, float]:
    """Loop round trips per second during one check, and the check's seconds."""
    done = trio.Event()
    trips = 0

    async def ping_pong() -> None:
        nonlocal trips
        a, b = trio.socket.socketpair()
        with a, b:
            while not done.is_set():
                await a.send(b"x")
                await b.recv(1)
                trips += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ping_pong)
        await trio.sleep(0.05)
        trips = 0
        start = time.perf_counter()
        await check_actions([action], game="bench", max_generated_size=1 << 20)
        took = time.perf_counter() - start
        done.set()
    return trips / took, took


def run(rounds: int, properties: int) -> dict[str, Any]:
    real = _gil._give_way
    results: dict[str, list[tuple[float, float]]] = {"giving way": [], "not": []}
    for round_ in range(rounds):
        for index, name in enumerate(results):
            action = wide(properties, 2 * round_ + index)
            _gil._give_way = real if name == "giving way" else (lambda: None)
            try:
                results[name].append(trio.run(measure, action))
            finally:
                _gil._give_way = real
    loop = {k: statistics.median(r for r, _ in v) for k, v in results.items()}
    check = {k: statistics.median(t for _, t in v) for k, v in results.items()}
    return {
        "properties": properties,
        "rounds": rounds,
        "loop_rt_per_s_giving_way": loop["giving way"],
        "loop_rt_per_s_not": loop["not"],
        "check_s_giving_way": check["giving way"],
        "check_s_not": check["not"],
        "loop_ratio": loop["giving way"] / loop["not"],
        "check_ratio": check["giving way"] / check["not"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each (median)")
    parser.add_argument(
        "--properties", type=int, default=22_000, help="size of the schema checked"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = run(args.rounds, args.properties)
    print(f"check of a {args.properties:,}-property schema in a worker thread")
    print("| | loop round trips/s | check (s) |")
    print("|---|---:|---:|")
    for name, key in (("giving way", "giving_way"), ("not giving way", "not")):
        print(
            f"| {name} | {figures[f'loop_rt_per_s_{key}']:,.0f} "
            f"| {figures[f'check_s_{key}']:.2f} |"
        )
    loop_ok = figures["loop_ratio"] >= LOOP_TARGET
    check_ok = figures["check_ratio"] <= CHECK_TARGET
    print(
        f"loop ratio {figures['loop_ratio']:.1f} (target >= {LOOP_TARGET:g}): "
        f"{'pass' if loop_ok else 'FAIL'}; check ratio "
        f"{figures['check_ratio']:.2f} (target <= {CHECK_TARGET:g}): "
        f"{'pass' if check_ok else 'FAIL'}"
    )
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return 0 if loop_ok and check_ok else 1


if __name__ == "__main__":
    sys.exit(main())
