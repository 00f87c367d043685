"""How long a call sync takes against a slow Twilio (issue 14's target).

Runs the real sync (``CallSync`` over the real Twilio client in worker
threads, a SQLite registry) against ``tests/fake_twilio`` on 127.0.0.1,
whose every answer takes ``--delay`` seconds (50 ms; a lookup is two
requests: the room, then its participants). First with the configured
concurrency over ``--calls`` accepted calls (1,000), then one lookup at a
time over ``--serial-calls`` of them (100: the whole 1,000 would take
minutes), and prints both, with the serial time scaled to ``--calls``.
Target: 1,000 calls in seconds, not a minute.

Run::

    .venv/bin/python benchmarks/bench_calls_sync.py
    .venv/bin/python benchmarks/bench_calls_sync.py --calls 200 --serial-calls 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_twilio import FakeTwilio

from neuro_api.calls import Call, SqliteCallStore, SyncRules, TwilioRooms
from neuro_api.calls._sync import AsyncStore, CallSync, ThreadedRooms

KEY: Final = "SK" + "1" * 32
SECRET: Final = "a-benchmark-secret-of-at-least-32-bytes"
TARGET: Final = 20.0
"""Seconds a sync of 1,000 calls may take: seconds, not minutes (one at a
time it takes over three)."""


async def one_sync(fake: FakeTwilio, calls: int, concurrency: int) -> float:
    """Seconds one sync of ``calls`` accepted calls takes."""
    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteCallStore(Path(tmp) / "calls.sqlite3")
        for n in range(calls):
            name = f"bench-{concurrency}-{n}"
            fake.add_room(name, participants=2)
            store.add(Call.new("a", "b", name, now).accept(now))
        twilio = TwilioRooms(
            "AC" + "0" * 32, KEY, SECRET, base_url=fake.url, timeout=30
        )
        rooms = ThreadedRooms(twilio, trio.CapacityLimiter(concurrency), 60)
        sync = CallSync(AsyncStore(store), rooms, SyncRules(), concurrency=concurrency)
        start = time.monotonic()
        result = await sync.sync_once()
        elapsed = time.monotonic() - start
        twilio.close()
        store.close()
    if result.synced != calls or result.skipped:
        raise SystemExit(f"the sync went wrong: {result}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--serial-calls", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--check", action="store_true", help="exit 1 over target")
    args = parser.parse_args()
    with FakeTwilio(KEY, SECRET) as fake:
        fake.delay = args.delay
        together = trio.run(one_sync, fake, args.calls, args.concurrency)
        serial = trio.run(one_sync, fake, args.serial_calls, 1)
    scaled = serial * args.calls / args.serial_calls
    print(f"Twilio answers in {args.delay * 1000:g} ms; a lookup is 2 requests")
    print(
        f"{args.calls} calls, {args.concurrency} at a time: {together:7.2f} s "
        f"({args.calls / together:6.1f} calls/s)"
    )
    print(
        f"{args.serial_calls} calls, one at a time: {serial:7.2f} s "
        f"(so {args.calls} would take {scaled:7.1f} s)"
    )
    verdict = "met" if together < TARGET else "MISSED"
    print(f"speed-up {scaled / together:5.1f}x; target < {TARGET:g} s: {verdict}")
    return 1 if args.check and together >= TARGET else 0


if __name__ == "__main__":
    raise SystemExit(main())
