"""Benchmark the Neuro server over real WebSockets against a floor reference.

Each server runs as a separate process (``sys.executable``), on 127.0.0.1
only, with the same parameters:

1. the floor (``benchmarks/floor_server.py``: canned frames, stores nothing);
2. the server under test (``python -m neuro_api.server --engine random``).

Both run side by side, and each measurement is taken of one right after the
other, so the two figures of a round see the same machine load. With
``--rounds N`` each figure is the median of N rounds, and each ratio the
median of the N rounds' ratios.

Every load is bounded in time and in number of clients, and every wait has a
timeout; the servers are terminated (then killed) whatever happens. See
``benchmarks/README.md`` for what each figure means, and ``--help``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import dataclasses
import json
import math
import os
import platform
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import orjson
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

HOST: Final = "127.0.0.1"  # the only address this driver ever connects to
FLOOR_SCRIPT: Final = Path(__file__).resolve().with_name("floor_server.py")
FLOOR_CMD: Final = (sys.executable, str(FLOOR_SCRIPT), "--host", HOST, "--port", "0")
NEURO_CMD: Final = (
    sys.executable,
    "-m",
    "neuro_api.server",
    "--engine",
    "random",
    "--host",
    HOST,
    "--port",
    "0",
    "--log-level",
    "warning",
    # The HTTP control plane stays on (it is part of the default footprint),
    # on a free loopback port instead of the fixed 8001.
    "--http-port",
    "0",
    # The idle load holds 1,000 games besides the others: above the default
    # cap of 1,024 connections once stragglers of a previous load remain.
    "--max-connections",
    "4096",
)
ENV_DROPPED: Final = ("NEURO_API_", "NGROK_")
"""Servers run without these variables: only the command line configures them
(a stray NEURO_API_TUNNEL or NEURO_API_HOST must not leave the loopback)."""
LISTENING: Final = re.compile(rb"listening on ws://(\[[^\]]*\]|[^\s:/]+):(\d+)")
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
KIB: Final = 1024

THROUGHPUT_MIN: Final = 0.8
"""Each throughput figure of the server must be at least this times the floor's."""
MEMORY_MAX: Final = 1.3
"""Idle memory per client may be at most this times the floor's."""
BUSY_OTHERS: Final = 0.2
"""Cores other processes may keep busy before the report warns."""

# Five small object schemas, cycled to make as many actions as needed.
SCHEMAS: Final[tuple[tuple[str, str, dict[str, Any]], ...]] = (
    (
        "move",
        "Place a mark on a cell of the board.",
        {
            "type": "object",
            "properties": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
            "required": ["cell"],
        },
    ),
    (
        "emote",
        "Show an emotion.",
        {
            "type": "object",
            "properties": {"mood": {"type": "string", "enum": ["happy", "sad", "mad"]}},
            "required": ["mood"],
        },
    ),
    (
        "buy",
        "Buy some items in the shop.",
        {
            "type": "object",
            "properties": {
                "item": {"type": "string", "enum": ["apple", "sword", "shield"]},
                "count": {"type": "integer", "minimum": 1, "maximum": 5},
            },
            "required": ["item", "count"],
        },
    ),
    (
        "aim",
        "Aim at a point of the screen.",
        {
            "type": "object",
            "properties": {
                "x": {"type": "integer", "minimum": 0, "maximum": 100},
                "y": {"type": "integer", "minimum": 0, "maximum": 100},
            },
            "required": ["x", "y"],
        },
    ),
    (
        "lights",
        "Turn the lights on or off.",
        {
            "type": "object",
            "properties": {"on": {"type": "boolean"}},
            "required": ["on"],
        },
    ),
)
CONTEXT_MESSAGE: Final = "The player moved to cell 5. It is Neuro's turn to play."


class BenchError(Exception):
    """The benchmark cannot go on (a server misbehaved or did not start)."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """``trio.fail_after`` that says what took too long."""
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise BenchError(f"timed out after {seconds:g} s: {what}") from None


# --- parameters -----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Params:
    """What every server is measured with (identical for all of them)."""

    seconds: float
    clients: int
    context_clients: int
    context_batch: int
    connect_concurrency: int
    connect_actions: int
    idle_clients: int
    idle_concurrency: int
    timeout: float
    startup_timeout: float
    grace: float
    rounds: int
    slices: int = 1
    """Parts each throughput measurement is cut into, taken of the servers in
    turn (see run_all)."""
    left_wait: float = 20.0
    """Seconds after the idle games closed before their memory is read."""

    @property
    def slice_seconds(self) -> float:
        return self.seconds / self.slices


def make_actions(prefix: str, count: int) -> list[dict[str, Any]]:
    """``count`` actions named ``{prefix}_{kind}_{n}``, unique per prefix."""
    actions = []
    for n in range(count):
        kind, description, schema = SCHEMAS[n % len(SCHEMAS)]
        actions.append(
            {
                "name": f"{prefix}_{kind}_{n}",
                "description": description,
                "schema": schema,
            }
        )
    return actions


def _frame(command: str, game: str, data: dict[str, Any] | None = None) -> str:
    frame: dict[str, Any] = {"command": command, "game": game}
    if data is not None:
        frame["data"] = data
    return orjson.dumps(frame).decode()


class Game:
    """The game side of one connection, frames prepared in advance."""

    def __init__(
        self, ws: WebSocketConnection, title: str, actions: list[dict[str, Any]]
    ) -> None:
        self.ws = ws
        self.title = title
        self.names = frozenset(a["name"] for a in actions)
        self._startup = _frame("startup", title)
        self._register = _frame("actions/register", title, {"actions": actions})
        self._force = _frame(
            "actions/force",
            title,
            {
                "state": "Benchmark board: empty.",
                "query": "Pick an action.",
                "action_names": [a["name"] for a in actions],
            },
        )
        self._context = _frame(
            "context", title, {"message": CONTEXT_MESSAGE, "silent": True}
        )

    async def _expect(self, command: str) -> dict[str, Any]:
        """Receive frames until one with ``command`` (others are skipped)."""
        for _ in range(1000):
            message = await self.ws.get_message()
            frame = orjson.loads(message)
            if isinstance(frame, dict) and frame.get("command") == command:
                return frame
        raise BenchError(f"{self.title}: 1000 frames and no {command!r}")

    async def startup(self) -> None:
        """Send ``startup`` and wait for the acknowledgement."""
        await self.ws.send_message(self._startup)
        await self._expect("startup")

    async def register(self) -> None:
        """Register this game's actions (no reply is expected)."""
        await self.ws.send_message(self._register)

    async def context(self, count: int) -> None:
        """Send ``count`` silent context messages."""
        for _ in range(count):
            await self.ws.send_message(self._context)

    async def force_round_trip(self) -> None:
        """Force all actions, receive the ``action``, answer success."""
        await self.ws.send_message(self._force)
        frame = await self._expect("action")
        data = frame.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise BenchError(f"{self.title}: malformed action frame {frame!r}")
        if data.get("name") not in self.names:
            raise BenchError(f"{self.title}: action for an unforced name {frame!r}")
        result = {"id": data["id"], "success": True, "message": "Done."}
        await self.ws.send_message(_frame("action/result", self.title, result))


# --- the server process -----------------------------------------------------


@dataclasses.dataclass(slots=True)
class ServerProcess:
    """A running server and what it printed."""

    name: str
    argv: Sequence[str]
    popen: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    stdout_tail: collections.deque[str]

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> int | None:
        """The exit status if the process has ended, else None."""
        return self.popen.poll()

    def stderr_tail(self) -> str:
        return _read_tail(self.stderr_path)


# Resolved here, in the parent: the child only calls it between fork and exec.
_PRCTL: Final = (
    ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
)
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """SIGTERM the server when the driver's main thread dies (even by SIGKILL)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_DROPPED)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(argv: Sequence[str], stderr_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv``: stdin closed, stdout piped, stderr appended to a file.

    Blocking on purpose: it runs in the main thread, because Linux sends the
    parent-death signal when the *thread* that forked the child ends (Trio's
    ``open_process`` forks from a worker thread that idles out after a while).
    """
    with stderr_path.open("ab") as stderr, warnings.catch_warnings():
        # Python 3.12+ warns about preexec_fn when threads exist: the child
        # only makes one system call through a function resolved beforehand.
        warnings.simplefilter("ignore", DeprecationWarning)
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_server_env(),
            # Safe here: one call of a function resolved before the fork.
            preexec_fn=_die_with_parent if _PRCTL is not None else None,  # noqa: PLW1509
        )


def _stdout_stream(popen: subprocess.Popen[bytes]) -> trio.lowlevel.FdStream:
    """The child's stdout as a Trio stream (the Popen file object is closed)."""
    assert popen.stdout is not None
    stream = trio.lowlevel.FdStream(os.dup(popen.stdout.fileno()))
    popen.stdout.close()
    return stream


class _Lines:
    """Lines read from a stream, the last few kept for error messages."""

    def __init__(self, stream: trio.lowlevel.FdStream) -> None:
        self.stream = stream
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self._buffer = b""

    async def next_batch(self) -> list[bytes] | None:
        """The complete lines of the next chunk; None at end of file."""
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            return None
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        self.tail.extend(line.decode(errors="replace") for line in lines)
        return lines

    async def listening_port(self) -> int:
        """Read until the ``listening on ws://HOST:PORT`` line; the port."""
        while (lines := await self.next_batch()) is not None:
            for line in lines:
                found = LISTENING.search(line)
                if found is None:
                    continue
                host = found.group(1).decode()
                if host != HOST:
                    raise BenchError(
                        f"the server listens on {host}, not {HOST}: refusing to connect"
                    )
                return int(found.group(2))
        raise BenchError("the server closed stdout before it listened")

    async def drain(self) -> None:
        """Keep reading, so a chatty server never blocks on a full pipe."""
        while await self.next_batch() is not None:
            pass


async def _wait(popen: subprocess.Popen[bytes], seconds: float) -> None:
    with trio.move_on_after(seconds):
        while popen.poll() is None:  # noqa: ASYNC110 - polling a child is fine
            await trio.sleep(0.02)


async def _stop(popen: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL (call shielded)."""
    if popen.poll() is None:
        popen.terminate()
        await _wait(popen, grace)
    if popen.poll() is None:
        popen.kill()
        await _wait(popen, grace)


def _new_log(name: str) -> Path:
    fd, path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".stderr")
    os.close(fd)
    return Path(path)


def _read_tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode(errors="replace")


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running (could not be stopped)"
    if code == 0:
        return "exited 0 on SIGTERM"
    if code < 0:
        return f"ended by signal {signal.Signals(-code).name}"
    return f"exit status {code}"


@contextlib.asynccontextmanager
async def launch(
    name: str, argv: Sequence[str], params: Params, stop_status: dict[str, str]
) -> AsyncIterator[ServerProcess]:
    """Start a server, wait until it listens, and always stop it on exit.

    Stopping is SIGTERM, then SIGKILL after ``params.grace`` seconds;
    ``stop_status[name]`` says how it ended.
    """
    stderr_path = _new_log(name)
    try:
        popen = _spawn(argv, stderr_path)
        try:
            async with _stdout_stream(popen) as stream, trio.open_nursery() as nursery:
                lines = _Lines(stream)
                try:
                    with trio.fail_after(params.startup_timeout):
                        port = await lines.listening_port()
                except (BenchError, trio.TooSlowError) as exc:
                    with trio.CancelScope(shield=True):
                        await _stop(popen, params.grace)
                    why = (
                        "no listening line in time"
                        if isinstance(exc, trio.TooSlowError)
                        else exc
                    )
                    raise BenchError(
                        f"{name} did not start ({shlex.join(argv)}): {why}; "
                        f"{_exit_text(popen.poll())}; stdout tail: "
                        f"{list(lines.tail)!r}; stderr tail:\n{_read_tail(stderr_path)}"
                    ) from None
                nursery.start_soon(lines.drain)
                try:
                    yield ServerProcess(
                        name, argv, popen, port, stderr_path, lines.tail
                    )
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await _stop(popen, params.grace)
            stop_status[name] = _exit_text(popen.poll())
    finally:
        stderr_path.unlink(missing_ok=True)


# --- /proc readings -----------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (a server may spawn helpers)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children[parent].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process tree (``/proc/PID/stat``)."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident memory of the process tree (``VmRSS`` of ``/proc/PID/status``)."""
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * KIB
    return total


async def settled_rss(pid: int, limit: float = 3.0) -> int:
    """RSS once it stops moving (3 readings 0.1 s apart within 16 KiB)."""
    previous = rss_bytes(pid)
    stable = 0
    with trio.move_on_after(limit):
        while stable < 3:
            await trio.sleep(0.1)
            current = rss_bytes(pid)
            stable = stable + 1 if abs(current - previous) <= 16 * KIB else 0
            previous = current
    return previous


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine used (``/proc/stat``)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """Wall time, and CPU of the server, of this driver and of the machine."""

    wall: float
    server_cpu: float
    driver_cpu: float
    system_cpu: float

    @classmethod
    def take(cls, pid: int) -> Sample:
        return cls(
            trio.current_time(),
            cpu_seconds(pid),
            time.process_time(),
            system_busy_seconds(),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """What happened between two samples."""

    count: int
    elapsed: float
    server_cpu: float
    driver_cpu: float
    other_cpu: float
    """CPU used by every other process: load that skews the figures."""

    @classmethod
    def between(cls, count: int, start: Sample, end: Sample) -> Window:
        server = end.server_cpu - start.server_cpu
        driver = end.driver_cpu - start.driver_cpu
        system = end.system_cpu - start.system_cpu
        return cls(
            count,
            end.wall - start.wall,
            server,
            driver,
            max(0.0, system - server - driver),
        )

    @classmethod
    def combine(cls, windows: Sequence[Window]) -> Window:
        """One window for several: counts, times and CPU added up."""
        return cls(
            sum(w.count for w in windows),
            sum(w.elapsed for w in windows),
            sum(w.server_cpu for w in windows),
            sum(w.driver_cpu for w in windows),
            sum(w.other_cpu for w in windows),
        )

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def load(self) -> dict[str, float]:
        """CPU use of the server, the driver, the rest (1.0 = one core busy)."""
        wall = self.elapsed or math.inf
        return {
            "seconds": round(self.elapsed, 3),
            "server_cpu_cores": round(self.server_cpu / wall, 3),
            "driver_cpu_cores": round(self.driver_cpu / wall, 3),
            "other_cpu_cores": round(self.other_cpu / wall, 3),
        }


# --- client groups ------------------------------------------------------------


class Countdown:
    """An event that fires once ``count`` tasks have arrived."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.event = trio.Event()
        if count <= 0:
            self.event.set()

    def arrive(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.event.set()


Setup = Callable[[Game], Awaitable[None]]
Work = Callable[[Game, float], Awaitable[int]]


async def run_group(
    server: ServerProcess,
    params: Params,
    *,
    count: int,
    concurrency: int,
    prefix: str,
    setup: Setup,
    work: Work | None,
    seconds: float,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> Window:
    """Connect ``count`` games, set them up, run ``work`` in all at once.

    At most ``concurrency`` games connect and set up at a time. Once every
    game is set up, ``on_ready`` runs (the games are connected and idle),
    then the clock starts and every game runs ``work`` until ``seconds``
    have passed. The window covers the work only; games close afterwards.
    """
    ready, done = Countdown(count), Countdown(count)
    go, release = trio.Event(), trio.Event()
    gate = trio.Semaphore(concurrency)
    counts = [0] * count
    deadline = 0.0

    async def client(index: int) -> None:
        await gate.acquire()
        holding = True
        try:
            async with open_websocket_url(
                server.url,
                connect_timeout=params.timeout,
                disconnect_timeout=params.timeout,
            ) as ws:
                tag = f"{prefix}{index}"
                game = Game(ws, f"Bench {tag}", make_actions(tag, len(SCHEMAS)))
                with time_limit(params.timeout, f"{game.title} setup"):
                    await setup(game)
                gate.release()
                holding = False
                ready.arrive()
                await go.wait()
                if work is not None:
                    counts[index] = await work(game, deadline)
                done.arrive()
                await release.wait()
        finally:
            if holding:
                gate.release()

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(client, index)
        with time_limit(params.timeout + 0.1 * count, f"{count} games set up"):
            await ready.event.wait()
        if on_ready is not None:
            await on_ready()
        start = Sample.take(server.pid)
        deadline = start.wall + seconds
        go.set()
        with time_limit(seconds + 2 * params.timeout, "every game done"):
            await done.event.wait()
        end = Sample.take(server.pid)
        release.set()
    return Window.between(sum(counts), start, end)


async def setup_forcing(game: Game) -> None:
    """Startup, register, and two warm-up round trips."""
    await game.startup()
    await game.register()
    for _ in range(2):
        await game.force_round_trip()


def force_work(params: Params) -> Work:
    async def work(game: Game, deadline: float) -> int:
        done = 0
        while trio.current_time() < deadline:
            with time_limit(params.timeout, f"{game.title} force round trip"):
                await game.force_round_trip()
            done += 1
        return done

    return work


def context_work(params: Params) -> Work:
    async def work(game: Game, deadline: float) -> int:
        sent = 0
        while trio.current_time() < deadline:
            with time_limit(params.timeout, f"{game.title} context + round trip"):
                await game.context(params.context_batch)
                # Answered only once the server has read all of the above.
                await game.force_round_trip()
            sent += params.context_batch
        return sent

    return work


async def setup_idle(game: Game) -> None:
    """Startup, register, and a ping: the server has read the registration."""
    await game.startup()
    await game.register()
    await game.ws.ping()


async def connect_cycles(
    server: ServerProcess, params: Params, seconds: float
) -> Window:
    """Connect + startup + register N actions + close, a few at a time."""
    counts = [0] * params.connect_concurrency
    deadline = 0.0

    async def worker(slot: int) -> None:
        tag = f"c{slot}"
        actions = make_actions(tag, params.connect_actions)
        while trio.current_time() < deadline:
            with time_limit(3 * params.timeout, f"connect cycle {tag}"):
                async with open_websocket_url(
                    server.url,
                    connect_timeout=params.timeout,
                    disconnect_timeout=params.timeout,
                ) as ws:
                    game = Game(ws, f"Bench {tag}", actions)
                    await game.startup()
                    await game.register()
            counts[slot] += 1

    start = Sample.take(server.pid)
    deadline = start.wall + seconds
    with time_limit(seconds + 4 * params.timeout, "connect workers done"):
        async with trio.open_nursery() as nursery:
            for slot in range(params.connect_concurrency):
                nursery.start_soon(worker, slot)
    return Window.between(sum(counts), start, Sample.take(server.pid))


async def warm_up(server: ServerProcess, params: Params) -> None:
    """A few full sessions, so one-time work is not counted anywhere."""
    for round_ in range(3):
        with time_limit(3 * params.timeout, f"warm-up session {round_}"):
            async with open_websocket_url(
                server.url,
                connect_timeout=params.timeout,
                disconnect_timeout=params.timeout,
            ) as ws:
                tag = f"w{round_}"
                game = Game(
                    ws, f"Bench {tag}", make_actions(tag, params.connect_actions)
                )
                await game.startup()
                await game.register()
                await game.context(20)
                for _ in range(20):
                    await game.force_round_trip()
    await trio.sleep(0.3)


# --- measuring one server -----------------------------------------------------

THROUGHPUT_KEYS: Final = (
    "force_rt_per_s_1",
    "force_rt_per_s_n",
    "context_msgs_per_s",
    "connects_per_s",
)
FIGURE_KEYS: Final = (
    *THROUGHPUT_KEYS,
    "idle_bytes_per_client",
    "rss_after_left_ratio",
    "cpu_s_per_rt_1",
    "cpu_s_per_rt_n",
)
RSS_AFTER_LEFT_MAX: Final = 1.10

"""Target: RSS once the idle games left, over the RSS before they came."""


@dataclasses.dataclass(slots=True)
class Measured:
    """The figures of one server (None where a measurement failed)."""

    command: Sequence[str]
    figures: dict[str, float | None] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(FIGURE_KEYS)
    )
    load: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    stop: str = ""
    rounds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """Each round's own figures, load, errors and stop status."""

    def merge(self, one: Measured, label: str) -> None:
        """Add a round; each figure becomes the median of its rounds."""
        self.rounds.append(
            {
                "figures": one.figures,
                "load": one.load,
                "errors": one.errors,
                "stop": one.stop,
            }
        )
        for key in self.figures:
            values = [r["figures"][key] for r in self.rounds]
            known = [v for v in values if v is not None]
            self.figures[key] = statistics.median(known) if known else None
        self.errors.update({f"{label}{k}": v for k, v in one.errors.items()})
        self.load, self.stop = one.load, one.stop


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def describe(exc: BaseException) -> str:
    """The first leaf exception (nursery groups flattened), and how many more."""
    leaves = _leaves(exc)
    first = leaves[0]
    text = f"{type(first).__name__}: {first}" if str(first) else type(first).__name__
    if len(leaves) > 1:
        text += f" (and {len(leaves) - 1} more errors)"
    return text


Step = tuple[str, Callable[[], Awaitable[None]], int, tuple[str, ...]]
"""A measurement: its label, what measures one part of it, how many parts
(``Params.slices`` for throughput, else 1), and the figures it sets."""


def measurements(server: ServerProcess, params: Params, result: Measured) -> list[Step]:
    """Every measurement of one running server, in the fixed order."""

    async def idle_memory() -> None:
        baseline = await settled_rss(server.pid)
        after = 0

        async def read_rss() -> None:
            nonlocal after
            after = await settled_rss(server.pid)

        await run_group(
            server,
            params,
            count=params.idle_clients,
            concurrency=params.idle_concurrency,
            prefix="i",
            setup=setup_idle,
            work=None,
            seconds=0.0,
            on_ready=read_rss,
        )
        # The games closed: the server must give their memory back. It does
        # once the wave of disconnections is over (neuro_api.server._memory:
        # two quiet looks 5 s apart); read after that, at a fixed time
        # (--left-wait).
        await trio.sleep(params.left_wait)
        left = await settled_rss(server.pid)
        result.figures["idle_bytes_per_client"] = (after - baseline) / (
            params.idle_clients
        )
        result.figures["rss_after_left_ratio"] = left / baseline
        result.load["idle"] = {
            "rss_before_bytes": baseline,
            "rss_after_bytes": after,
            "rss_after_left_bytes": left,
        }

    # Throughput is measured in parts (slices); each figure is that of all
    # the parts so far together.
    parts: dict[str, list[Window]] = {}

    def add_part(name: str, window: Window) -> Window:
        windows = parts.setdefault(name, [])
        windows.append(window)
        total = Window.combine(windows)
        result.load[name] = total.load()
        return total

    async def forcing(key: str, clients: int) -> None:
        window = await run_group(
            server,
            params,
            count=clients,
            concurrency=params.connect_concurrency,
            prefix=f"f{key}_",
            setup=setup_forcing,
            work=force_work(params),
            seconds=params.slice_seconds,
        )
        total = add_part(f"force_{key}", window)
        result.figures[f"force_rt_per_s_{key}"] = total.rate
        result.figures[f"cpu_s_per_rt_{key}"] = (
            total.server_cpu / total.count if total.count else None
        )

    async def context() -> None:
        window = await run_group(
            server,
            params,
            count=params.context_clients,
            concurrency=params.connect_concurrency,
            prefix="x",
            setup=setup_forcing,
            work=context_work(params),
            seconds=params.slice_seconds,
        )
        result.figures["context_msgs_per_s"] = add_part("context", window).rate

    async def connects() -> None:
        window = await connect_cycles(server, params, params.slice_seconds)
        result.figures["connects_per_s"] = add_part("connect", window).rate

    slices = params.slices
    return [
        ("warm-up", lambda: warm_up(server, params), 1, ()),
        (
            "idle memory",
            idle_memory,
            1,
            ("idle_bytes_per_client", "rss_after_left_ratio"),
        ),
        (
            "force, 1 client",
            lambda: forcing("1", 1),
            slices,
            ("force_rt_per_s_1", "cpu_s_per_rt_1"),
        ),
        (
            f"force, {params.clients} clients",
            lambda: forcing("n", params.clients),
            slices,
            ("force_rt_per_s_n", "cpu_s_per_rt_n"),
        ),
        ("context", context, slices, ("context_msgs_per_s",)),
        ("connect", connects, slices, ("connects_per_s",)),
    ]


async def run_step(
    server: ServerProcess, result: Measured, step: Step, part: int = 1
) -> None:
    """Run one part of a measurement; a failure is recorded, not raised.

    A measurement that failed (in any part) loses its figures, and its
    remaining parts are skipped: a figure is all of its parts or nothing.
    """
    label, run, parts, keys = step
    if label in result.errors:
        return
    status = server.exited()
    if status is not None:
        result.errors[label] = f"skipped: the server had exited ({status})"
        return
    shown = f"{label} ({part}/{parts})" if parts > 1 else label
    print(f"  {server.name}: {shown} ...", file=sys.stderr, flush=True)
    try:
        await run()
    except Exception as exc:
        error = describe(exc)
        await trio.sleep(0.2)
        if server.exited() is not None:
            error += f"\n(the server exited; stderr tail:)\n{server.stderr_tail()}"
        result.errors[label] = error
        for key in keys:  # what earlier parts set is not the whole figure
            result.figures[key] = None
        print(f"  {server.name}: {shown} failed: {error}", file=sys.stderr)
    await trio.sleep(0.3)  # let closing connections finish


def server_budget(params: Params) -> float:
    """Seconds after which measuring one server is abandoned (never hang)."""
    per_phase = params.seconds + params.slices * (4 * params.timeout + 1.0)
    return (
        params.startup_timeout
        + 9 * params.timeout  # warm-up
        + 0.1 * params.idle_clients
        + 2 * params.timeout
        + 6.0  # settling
        + params.left_wait
        + 4 * per_phase
        + 0.1 * (params.clients + params.context_clients)
        + 4 * params.grace
        + 5.0
    )


async def run_all(
    servers: Sequence[tuple[str, Sequence[str]]], params: Params
) -> dict[str, Measured]:
    """Measure every server ``params.rounds`` times, the servers side by side.

    In each round every server is started afresh, and each measurement is
    taken of one server right after the other: so the figures compared in
    one round were measured seconds apart, under the same machine load.
    Throughput measurements are also cut into ``params.slices`` parts taken
    in turn (floor, server, floor, server ...), so a change of the machine's
    speed within a measurement falls on both servers alike.
    """
    results = {name: Measured(list(argv)) for name, argv in servers}
    stop_status: dict[str, str] = {}
    for round_ in range(1, params.rounds + 1):
        label = f"round {round_}: " if params.rounds > 1 else ""
        this_round = {name: Measured(list(argv)) for name, argv in servers}
        budget = server_budget(params) * len(servers)
        try:
            with time_limit(budget, f"all measurements of {label or 'the run'}"):
                async with contextlib.AsyncExitStack() as stack:
                    plans: list[tuple[ServerProcess, Measured, list[Step]]] = []
                    for name, argv in servers:
                        result = this_round[name]
                        print(
                            f"{label}{name}: starting {shlex.join(argv)}",
                            file=sys.stderr,
                            flush=True,
                        )
                        try:
                            server = await stack.enter_async_context(
                                launch(name, argv, params, stop_status)
                            )
                        except Exception as exc:
                            result.errors["run"] = describe(exc)
                            print(f"{name}: {describe(exc)}", file=sys.stderr)
                            continue
                        plans.append(
                            (server, result, measurements(server, params, result))
                        )
                    # Each part of a measurement is taken of one server right
                    # after the other: a figure sums parts spread over the
                    # whole step, so both servers share the machine's moods.
                    for index in range(len(plans[0][2]) if plans else 0):
                        parts = plans[0][2][index][2]
                        for part in range(1, parts + 1):
                            for server, result, steps in plans:
                                await run_step(server, result, steps[index], part)
        except Exception as exc:
            for result in this_round.values():
                result.errors.setdefault("run", describe(exc))
            print(f"{label}{describe(exc)}", file=sys.stderr)
        for name, result in this_round.items():
            result.stop = stop_status.get(name, "")
            results[name].merge(result, label)
    return results


# --- report ---------------------------------------------------------------------


def labels(params: Params) -> dict[str, str]:
    return {
        "force_rt_per_s_1": "force round trips/s, 1 client",
        "force_rt_per_s_n": f"force round trips/s, {params.clients} clients",
        "context_msgs_per_s": f"context messages/s, {params.context_clients} clients",
        "connects_per_s": (
            f"connect+startup+register {params.connect_actions} /s, "
            f"{params.connect_concurrency} at a time"
        ),
        "idle_bytes_per_client": (
            f"idle memory per client (KiB), {params.idle_clients} clients"
        ),
        "rss_after_left_ratio": (
            f"RSS after {params.idle_clients} idle games left / before they came"
        ),
        "cpu_s_per_rt_1": "server CPU per round trip (us), 1 client",
        "cpu_s_per_rt_n": f"server CPU per round trip (us), {params.clients} clients",
    }


def _shown(key: str, value: float | None) -> str:
    if value is None:
        return "error"
    if key == "idle_bytes_per_client":
        return f"{value / KIB:,.1f}"
    if key == "rss_after_left_ratio":
        return f"{value:.3f}"
    if key.startswith("cpu_s_"):
        return f"{value * 1e6:,.1f}"
    return f"{value:,.0f}"


def paired_ratio(key: str, server: Measured, floor: Measured) -> float | None:
    """The median over the rounds of server/floor for ``key``.

    Each round's two figures were measured side by side (see run_all), so
    their ratio is what a change of machine speed between rounds moves the
    least; the median then sets aside a round that one server was unlucky in.
    """
    ratios = [
        ours["figures"][key] / base["figures"][key]
        for ours, base in zip(server.rounds, floor.rounds, strict=False)
        if ours["figures"][key] is not None and base["figures"][key]
    ]
    return statistics.median(ratios) if ratios else None


def compare(results: dict[str, Measured]) -> tuple[dict[str, float | None], list[Any]]:
    """Ratios server/floor and the pass/fail checks (empty without both)."""
    if "floor" not in results or "neuro_api" not in results:
        return {}, []
    ratios = {
        key: paired_ratio(key, results["neuro_api"], results["floor"])
        for key in FIGURE_KEYS
        if key != "rss_after_left_ratio"  # a ratio already, to its own start
    }
    checks: list[Any] = []
    for key in (*THROUGHPUT_KEYS, "idle_bytes_per_client"):
        ratio = ratios[key]
        if key == "idle_bytes_per_client":
            limit, passed = (
                f"<= {MEMORY_MAX}",
                ratio is not None and ratio <= MEMORY_MAX,
            )
        else:
            limit = f">= {THROUGHPUT_MIN}"
            passed = ratio is not None and ratio >= THROUGHPUT_MIN
        checks.append(
            {"figure": key, "ratio": ratio, "target": limit, "passed": passed}
        )
    own = results["neuro_api"].figures["rss_after_left_ratio"]
    checks.append(
        {
            "figure": "rss_after_left_ratio",
            "ratio": own,
            "target": f"<= {RSS_AFTER_LEFT_MAX} (own)",
            "passed": own is not None and own <= RSS_AFTER_LEFT_MAX,
        }
    )
    return ratios, checks


def render(
    results: dict[str, Measured],
    params: Params,
    ratios: dict[str, float | None],
    checks: list[Any],
) -> str:
    names = list(results)
    by_figure = {c["figure"]: c for c in checks}
    header = ["figure", *names]
    if ratios:
        header += ["ratio", "target", "result"]
    rows = [header]
    for key, label in labels(params).items():
        row = [label, *(_shown(key, results[n].figures[key]) for n in names)]
        if ratios:
            ratio = ratios.get(key)
            check = by_figure.get(key)
            row.append("-" if ratio is None else f"{ratio:.2f}")
            row.append(check["target"] if check else "")
            row.append(("pass" if check["passed"] else "FAIL") if check else "")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append(
        "CPU use during each measurement (cores busy: server / driver / others):"
    )
    busiest = 0.0
    for name in names:
        rounds = results[name].rounds
        for number, round_ in enumerate(rounds, 1):
            parts = []
            for phase, load in round_["load"].items():
                if "server_cpu_cores" not in load:
                    continue
                busiest = max(busiest, load["other_cpu_cores"])
                parts.append(
                    f"{phase} {load['server_cpu_cores']:.2f}/"
                    f"{load['driver_cpu_cores']:.2f}/{load['other_cpu_cores']:.2f}"
                )
            title = f"{name} #{number}" if len(rounds) > 1 else name
            lines.append(f"  {title}: {', '.join(parts) or '-'}")
    if busiest > BUSY_OTHERS:
        lines.append(
            f"WARNING: other processes kept up to {busiest:.2f} cores busy during "
            "a measurement: the figures are skewed (run on a quiet machine)."
        )
    for name in names:
        result = results[name]
        lines.append(f"{name}: {result.stop or 'not started'}")
        for label, error in result.errors.items():
            lines.append(f"  error in {label}: {error}")
    if checks:
        passed = all(c["passed"] for c in checks)
        lines.append(f"targets: {'all met' if passed else 'NOT met'}")
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------


def raise_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``needed`` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Measure the Neuro server (python -m neuro_api.server) and a floor "
            "reference server over real WebSockets on 127.0.0.1, each in its own "
            "process, and compare them."
        ),
        epilog=(
            "A server command must print a line containing "
            "'listening on ws://127.0.0.1:PORT' on stdout once it is ready, and "
            "stop on SIGTERM. Exit status: 0 done, 1 a target was missed "
            "(with --check), 2 a measurement failed."
        ),
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="duration of each throughput measurement (default 5, --quick 1)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 s per measurement in 1 part, and 100 idle clients",
    )
    parser.add_argument(
        "--only",
        choices=("floor", "neuro_api"),
        help="measure one server only (no ratios, no targets)",
    )
    parser.add_argument(
        "--server-cmd",
        default=shlex.join(NEURO_CMD),
        help="command of the server under test (default: %(default)s)",
    )
    parser.add_argument(
        "--floor-cmd",
        default=shlex.join(FLOOR_CMD),
        help="command of the floor server (default: %(default)s)",
    )
    parser.add_argument(
        "--clients", type=int, default=50, help="concurrent forcing clients (50)"
    )
    parser.add_argument(
        "--context-clients",
        type=int,
        default=10,
        help="clients sending context at once (10)",
    )
    parser.add_argument(
        "--context-batch",
        type=int,
        default=100,
        help="context messages between two force round trips (100)",
    )
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=10,
        help="connections opened at a time in the connect test (10)",
    )
    parser.add_argument(
        "--connect-actions",
        type=int,
        default=20,
        help="actions registered per connection in the connect test (20)",
    )
    parser.add_argument(
        "--idle-clients",
        type=int,
        default=None,
        help="idle clients for the memory figure (default 1000, --quick 100)",
    )
    parser.add_argument(
        "--left-wait",
        type=float,
        default=None,
        help="seconds after the idle games left before the memory they leave "
        "is read (default 20, --quick 1; the server returns memory once the "
        "disconnections are over)",
    )
    parser.add_argument(
        "--idle-concurrency",
        type=int,
        default=20,
        help="idle clients connecting at a time (20)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds any single wait may take before it is an error (10)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=30.0,
        help="seconds a server has to print its listening line (30)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help=(
            "rounds of measurements, each on fresh servers; figures are the "
            "medians of the rounds, ratios the medians of each round's ratio "
            "(tames noise from other load; default 1)"
        ),
    )
    parser.add_argument(
        "--slices",
        type=int,
        default=None,
        help=(
            "parts each throughput measurement is cut into, taken of the "
            "servers in turn, so that both meet the same machine speed "
            "(default 5, --quick 1)"
        ),
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 when a target is missed",
    )
    args = parser.parse_args(argv)
    positive = (
        "clients",
        "context_clients",
        "context_batch",
        "connect_concurrency",
        "connect_actions",
        "idle_concurrency",
        "rounds",
        "timeout",
        "startup_timeout",
    )
    for name in positive:
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    for name in ("seconds", "idle_clients", "slices"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = Params(
        seconds=args.seconds or (1.0 if args.quick else 5.0),
        clients=args.clients,
        context_clients=args.context_clients,
        context_batch=args.context_batch,
        connect_concurrency=args.connect_concurrency,
        connect_actions=args.connect_actions,
        idle_clients=args.idle_clients or (100 if args.quick else 1000),
        idle_concurrency=args.idle_concurrency,
        timeout=args.timeout,
        startup_timeout=args.startup_timeout,
        grace=5.0,
        rounds=args.rounds,
        slices=args.slices or (1 if args.quick else 5),
        left_wait=args.left_wait
        if args.left_wait is not None
        else (1.0 if args.quick else 20.0),
    )
    servers = [
        ("floor", shlex.split(args.floor_cmd)),
        ("neuro_api", shlex.split(args.server_cmd)),
    ]
    if args.only:
        servers = [s for s in servers if s[0] == args.only]
    fd_limit = raise_fd_limit(params.idle_clients + params.clients + 512)

    started = time.time()
    try:
        results = trio.run(run_all, servers, params)
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:
        if not all(isinstance(leaf, KeyboardInterrupt) for leaf in _leaves(exc)):
            raise
        print("interrupted: the servers were stopped", file=sys.stderr)
        return 130
    ratios, checks = compare(results)
    print()
    print(
        f"Neuro server benchmark: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {params.seconds:g} s per measurement"
        f"{f' in {params.slices} parts' if params.slices > 1 else ''}, "
        f"{params.rounds} round{'s' if params.rounds > 1 else ''}, "
        f"{time.time() - started:.0f} s in all"
    )
    print(render(results, params, ratios, checks))

    failed = any(r.errors for r in results.values())
    if args.json is not None:
        report = {
            "params": dataclasses.asdict(params),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "fd_limit": fd_limit,
            },
            "servers": {
                name: {
                    "command": list(r.command),
                    "figures": r.figures,
                    "load": r.load,
                    "errors": r.errors,
                    "stop": r.stop,
                    "rounds": r.rounds,
                }
                for name, r in results.items()
            },
            "ratios": ratios,
            "checks": checks,
            "passed": all(c["passed"] for c in checks) if checks else None,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if failed:
        return 2
    if args.check and checks and not all(c["passed"] for c in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
