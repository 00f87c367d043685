"""Idle cost of the client-status capability (issue 13's target: < 1 % of a core).

Starts ``python -m neuro_api.server`` twice in a row as a separate process,
on 127.0.0.1 only, with a data directory that knows 10,000 clients (the
last run's ``deactivate_clients.json``, plus paused and blocked lists), once
with the status capability and once with ``--no-status``. Once the server is
up and has settled, nothing changes; the driver reads the process's CPU time
(``/proc/PID/stat``: user + system) over a window and reports it as a share
of one core. The difference between the two runs is what the status loop
costs (a ``stat`` of each input file every period in a worker thread); the
``--no-status`` figure is the rest of an idle server.

Linux only (``/proc``). Run::

    .venv/bin/python benchmarks/bench_status.py            # 30 s windows
    .venv/bin/python benchmarks/bench_status.py --window 10 --clients 10000
    .venv/bin/python benchmarks/bench_status.py --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import orjson

TARGET: Final = 1.0
"""Percent of one core the status loop may cost when nothing changes."""
_LISTENING: Final = re.compile(rb"listening on ws://127\.0\.0\.1:(\d+)")
_TICKS: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command: state is field 3; utime and stime are 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def prepare(directory: Path, clients: int) -> None:
    """A data directory whose files know ``clients`` clients."""
    data = directory / "Server_Data"
    data.mkdir(parents=True, exist_ok=True)
    names = [f"Game number {n:05d}" for n in range(clients)]
    lists = {
        "deactivate_clients.json": names,
        "pause_clients.json": names[: clients // 10],
        "blocked_clients.json": names[clients // 10 : clients // 5],
        "Network_Action.json": names[: clients // 100],
    }
    for name, listed in lists.items():
        (data / name).write_bytes(
            orjson.dumps({"clients": listed}, option=orjson.OPT_INDENT_2)
        )


def measure(
    flags: list[str], data_dir: Path, settle: float, window: float
) -> tuple[float, float]:
    """(% of one core while idle, RSS in MiB) of one server run."""
    command = [
        sys.executable,
        "-m",
        "neuro_api.server",
        "--engine",
        "random",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-http",
        "--log-level",
        "warning",
        "--data-dir",
        str(data_dir),
        *flags,
    ]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not _LISTENING.search(line):
            raise SystemExit(f"not a listening line: {line!r}")
        time.sleep(settle)
        start_cpu, start = cpu_seconds(process.pid), time.monotonic()
        time.sleep(window)
        used = cpu_seconds(process.pid) - start_cpu
        elapsed = time.monotonic() - start
        status = Path(f"/proc/{process.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status)[1]) / 1024  # type: ignore[index]
        return 100 * used / elapsed, rss
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before")
    parser.add_argument("--period", type=float, default=0.5, help="--status-period")
    parser.add_argument("--redis-url", help="also share through this Redis")
    parser.add_argument("--check", action="store_true", help="exit 1 over target")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        directory = Path(tmp)
        prepare(directory, args.clients)
        with_status = ["--status-period", str(args.period)]
        if args.redis_url:
            with_status += ["--redis-url", args.redis_url]
        on, on_rss = measure(with_status, directory, args.settle, args.window)
        known = len(
            orjson.loads(
                (directory / "Server_Data" / "deactivate_clients.json").read_bytes()
            )["clients"]
        )
        off, off_rss = measure(["--no-status"], directory, args.settle, args.window)
    cost = on - off
    print(f"clients known: {known} (asked {args.clients}); period {args.period} s")
    print(f"idle server, status on:  {on:6.3f} % of one core, RSS {on_rss:6.1f} MiB")
    print(f"idle server, status off: {off:6.3f} % of one core, RSS {off_rss:6.1f} MiB")
    verdict = "met" if cost < TARGET else "MISSED"
    print(f"status loop: {cost:6.3f} % of one core (target < {TARGET} %: {verdict})")
    return 1 if args.check and cost >= TARGET else 0


if __name__ == "__main__":
    raise SystemExit(main())
