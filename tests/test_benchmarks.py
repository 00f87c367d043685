"""Smoke tests of the server benchmark (benchmarks/): floor server and driver.

Everything runs as subprocesses on 127.0.0.1, as the benchmark does; the
driver is only run against the floor server, so these tests do not depend on
the server under test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
FLOOR = BENCHMARKS / "floor_server.py"
DRIVER = BENCHMARKS / "bench_server.py"
FIGURES = {
    "force_rt_per_s_1",
    "force_rt_per_s_n",
    "context_msgs_per_s",
    "connects_per_s",
    "idle_bytes_per_client",
    "rss_after_left_ratio",
    "cpu_s_per_rt_1",
    "cpu_s_per_rt_n",
}


def run_driver(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the driver; on timeout kill its whole process group (servers too)."""
    process = subprocess.Popen(
        [sys.executable, str(DRIVER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"driver took over {timeout} s\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def frame(command: str, data: dict[str, Any] | None = None) -> str:
    message: dict[str, Any] = {"command": command, "game": "Floor Test"}
    if data is not None:
        message["data"] = data
    return orjson.dumps(message).decode()


async def test_floor_server_answers_startup_and_forces() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(FLOOR), "--host", "127.0.0.1", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        with trio.fail_after(20):
            output = b""
            while b"\n" not in output:
                chunk = await process.stdout.receive_some(1024)
                assert chunk, "floor server exited before listening"
                output += chunk
            found = re.search(rb"listening on ws://127\.0\.0\.1:(\d+)", output)
            assert found is not None, output
            url = f"ws://127.0.0.1:{int(found.group(1))}"
            async with open_websocket_url(url) as ws:
                await ws.send_message(frame("startup"))
                ack = orjson.loads(await ws.get_message())
                assert ack["command"] == "startup"
                assert set(ack["data"]["session"]) == {
                    "sessionId",
                    "characterId",
                    "displayName",
                }
                await ws.send_message(frame("context", {"message": "hi"}))
                await ws.send_message("not json")
                force = frame("actions/force", {"query": "q", "action_names": ["b"]})
                ids = []
                for _ in range(2):
                    await ws.send_message(force)
                    action = orjson.loads(await ws.get_message())
                    assert action["command"] == "action"
                    assert action["data"]["name"] == "b"
                    assert isinstance(orjson.loads(action["data"]["data"]), dict)
                    ids.append(action["data"]["id"])
                    result = {"id": ids[-1], "success": True}
                    await ws.send_message(frame("action/result", result))
                assert ids[0] != ids[1]
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            await process.stdout.aclose()


def test_driver_help_names_the_options() -> None:
    done = run_driver("--help", timeout=30)
    assert done.returncode == 0, done.stderr
    for option in ("--quick", "--only", "--server-cmd", "--json", "--seconds"):
        assert option in done.stdout


def test_driver_reports_a_server_that_does_not_start(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    broken = f"{sys.executable} -c 'raise SystemExit(3)'"
    done = run_driver(
        "--only", "neuro_api", "--server-cmd", broken, "--json", str(out), timeout=30
    )
    assert done.returncode == 2, done.stderr
    report = json.loads(out.read_text())
    server = report["servers"]["neuro_api"]
    assert "did not start" in server["errors"]["run"]
    assert set(server["figures"].values()) == {None}


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_driver_quick_run_against_the_floor(tmp_path: Path) -> None:
    # About 8 s on 2 cores: 1 s per throughput figure, 100 idle clients.
    out = tmp_path / "bench.json"
    done = run_driver("--quick", "--only", "floor", "--json", str(out), timeout=45)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert set(report["servers"]) == {"floor"}
    floor = report["servers"]["floor"]
    assert floor["errors"] == {}
    assert set(floor["figures"]) == FIGURES
    assert all(value is not None and value > 0 for value in floor["figures"].values())
    assert floor["stop"] == "exited 0 on SIGTERM"
    assert report["checks"] == []
    assert "force round trips/s" in done.stdout


def test_gil_benchmark_reports_both_ways(tmp_path: Path) -> None:
    # Timing decides the exit status (its targets); only the report is checked.
    out = tmp_path / "gil.json"
    done = subprocess.run(
        [
            *(sys.executable, str(BENCHMARKS / "bench_gil.py"), "--rounds", "1"),
            *("--properties", "3000", "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    figures = json.loads(out.read_text())
    for key in ("loop_rt_per_s_giving_way", "loop_rt_per_s_not"):
        assert figures[key] > 0
    for key in ("check_s_giving_way", "check_s_not"):
        assert 0.01 < figures[key] < 30  # a real check each time, not a cached one
    assert "loop ratio" in done.stdout


def _bench_module() -> Any:
    """The driver as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("bench_server", DRIVER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_server"] = module  # its dataclasses look themselves up
    spec.loader.exec_module(module)
    return module


def test_figures_are_medians_and_ratios_medians_of_each_rounds_ratio() -> None:
    bench = _bench_module()
    floor, server = bench.Measured(["floor"]), bench.Measured(["neuro_api"])
    # A machine that is fast in round 2 and slow in round 3. Round ratios
    # 0.9, 0.7, 0.8: their median is 0.8; the medians' ratio would be 0.9
    # and the best figures' 0.7.
    for number, (base, ours) in enumerate([(100, 90), (200, 140), (50, 40)], 1):
        for measured, value in ((floor, base), (server, ours)):
            one = bench.Measured(measured.command)
            one.figures["force_rt_per_s_n"] = float(value)
            measured.merge(one, f"round {number}: ")
    assert floor.figures["force_rt_per_s_n"] == 100
    assert server.figures["force_rt_per_s_n"] == 90
    ratios, checks = bench.compare({"floor": floor, "neuro_api": server})
    assert ratios["force_rt_per_s_n"] == pytest.approx(0.8)
    assert ratios["force_rt_per_s_1"] is None  # never measured
    check = next(c for c in checks if c["figure"] == "force_rt_per_s_n")
    assert check["passed"]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_driver_takes_the_parts_of_each_measurement_of_the_servers_in_turn(
    tmp_path: Path,
) -> None:
    # The floor stands in for the server under test too: only the order and
    # the adding up of the parts are checked here.
    out = tmp_path / "bench.json"
    floor_cmd = f"{sys.executable} {FLOOR} --host 127.0.0.1 --port 0"
    done = run_driver(
        "--quick",
        "--slices",
        "2",
        "--seconds",
        "0.6",
        "--idle-clients",
        "20",
        "--server-cmd",
        floor_cmd,
        "--json",
        str(out),
        timeout=80,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    order = re.findall(
        r"^  (floor|neuro_api): force, 1 client(.*) \.\.\.$", done.stderr, re.M
    )
    assert order == [
        ("floor", " (1/2)"),
        ("neuro_api", " (1/2)"),
        ("floor", " (2/2)"),
        ("neuro_api", " (2/2)"),
    ]
    report = json.loads(out.read_text())
    assert report["params"]["slices"] == 2
    for server in report["servers"].values():
        assert server["errors"] == {}
        assert all(value for value in server["figures"].values())
        # Two parts of 0.3 s each, added up.
        assert 0.6 <= server["load"]["force_n"]["seconds"] < 1.0
    assert "0.6 s per measurement in 2 parts" in done.stdout


class _Exited:
    """Enough of a ServerProcess for run_step: a server that keeps running."""

    name = "fake"

    def exited(self) -> None:
        return None

    def stderr_tail(self) -> str:
        return ""


async def test_a_measurement_failing_in_one_part_loses_its_figure(
    autojump_clock: trio.abc.Clock,
) -> None:
    bench = _bench_module()
    result = bench.Measured(["fake"])
    calls: list[int] = []

    async def part() -> None:
        calls.append(len(calls) + 1)
        if len(calls) == 2:
            raise OSError("connection refused")
        result.figures["context_msgs_per_s"] = 100.0 * len(calls)

    step = ("context", part, 3, ("context_msgs_per_s",))
    for number in (1, 2, 3):
        await bench.run_step(_Exited(), result, step, number)
    assert calls == [1, 2]  # the third part is not taken
    assert result.figures["context_msgs_per_s"] is None
    assert result.errors == {"context": "OSError: connection refused"}


def test_status_idle_benchmark_runs_and_reports_both_servers() -> None:
    script = BENCHMARKS / "bench_status.py"
    flags = ["--clients", "200", "--window", "0.5", "--settle", "0.3"]
    done = subprocess.run(
        [sys.executable, str(script), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "clients known: 200 (asked 200); period 0.5 s"
    assert re.match(r"idle server, status on: +[\d.]+ % of one core", lines[1])
    assert re.match(r"idle server, status off: +[\d.]+ % of one core", lines[2])
    assert re.match(r"status loop: +-?[\d.]+ % of one core \(target < 1.0 %", lines[3])


def test_calls_sync_benchmark_runs_and_compares_with_one_at_a_time() -> None:
    script = BENCHMARKS / "bench_calls_sync.py"
    flags = ["--calls", "40", "--serial-calls", "4", "--delay", "0.01"]
    done = subprocess.run(
        [sys.executable, str(script), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "Twilio answers in 10 ms; a lookup is 2 requests"
    assert re.match(r"40 calls, 20 at a time: +[\d.]+ s", lines[1])
    assert re.match(r"4 calls, one at a time: +[\d.]+ s \(so 40 would take", lines[2])
    assert re.match(r"speed-up +[\d.]+x; target < 20 s: met", lines[3])


def test_the_realtime_benchmark_runs_and_reports_its_figures() -> None:
    script = BENCHMARKS / "bench_realtime.py"
    result = subprocess.run(
        [sys.executable, str(script), "--leases", "50", "--forces", "5",
         "--slices", "1", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert set(figures) == {
        "lease_p50_us",
        "lease_p99_us",
        "open_p50_ms",
        "bare_ms_per_request",
        "engine_ms_per_force",
        "engine_overhead_ms",
        "engine_ratio",
    }
    assert all(
        value > 0 for key, value in figures.items() if key != "engine_overhead_ms"
    )


def test_the_voice_benchmark_runs_and_reports_its_figures() -> None:
    script = BENCHMARKS / "bench_voice.py"
    result = subprocess.run(
        [sys.executable, str(script), "--calls", "3", "--seconds", "0.5"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "3 calls for 0.5 s"
    for line, name in zip(lines[1:], ("caller -> API", "API -> caller"), strict=True):
        figures = r"p50 \d+ µs, p99 \d+ µs, max \d+ µs \((\d+) chunks\)"
        found = re.match(rf"{re.escape(name)} .*: {figures}", line)
        assert found, line
        assert int(found.group(1)) > 0
