"""The supervisor: ordered start and stop, restarts with backoff, critical failures.

Every test that waits runs on Trio's autojump clock, so delays are asserted
exactly in virtual time and nothing really sleeps.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import random
import re
from collections.abc import Callable
from typing import Any, cast

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypercorn.utils import LifespanFailureError

import neuro_api.supervisor as supervisor_module
from neuro_api.supervisor import (
    CriticalServiceError,
    ServiceError,
    ServiceState,
    ServiceStatus,
    Supervisor,
    describe_exception,
)
from neuro_api.supervisor._supervisor import backoff_delay

LOGGER_NAME = "neuro_api.supervisor"
S = ServiceState


class Fake:
    """A service that logs what happens to it into a shared list.

    ``crashes_at_start`` attempts fail before ``started()``; after that each
    attempt fails ``crash_after`` seconds after ``started()`` (None: never),
    for the first ``crashes`` attempts (None: every time). ``stop()`` asks it
    to return after ``drain`` seconds; with ``obey_stop=False`` it ignores that.
    """

    def __init__(
        self,
        name: str,
        log: list[str],
        *,
        start_delay: float = 0.0,
        info: object = None,
        crashes_at_start: int = 0,
        crash_after: float | None = None,
        crashes: int | None = None,
        drain: float = 0.0,
        obey_stop: bool = True,
    ) -> None:
        self.name = name
        self.log = log
        self.start_delay = start_delay
        self.info = info
        self.crashes_at_start = crashes_at_start
        self.crash_after = crash_after
        self.crashes = crashes
        self.drain = drain
        self.obey_stop = obey_stop
        self.starts: list[float] = []
        self.ready: list[float] = []
        self.ends: list[float] = []
        self.stop_calls: list[float] = []
        self.cancelled = False
        self._stop = trio.Event()
        self._started = trio.Event()

    async def wait_for_attempts(self, count: int) -> None:
        while len(self.starts) < count:
            await self._started.wait()

    def stop(self) -> None:
        self.stop_calls.append(trio.current_time())
        self.log.append(f"stop-hook {self.name}")
        if self.obey_stop:
            self._stop.set()

    async def run(
        self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        attempt = len(self.starts)
        self.starts.append(trio.current_time())
        self._started.set()
        self._started = trio.Event()
        self.log.append(f"start {self.name}")
        try:
            await trio.sleep(self.start_delay)
            if attempt < self.crashes_at_start:
                msg = f"{self.name} start {attempt}"
                raise OSError(msg)
            task_status.started(self.info)
            self.ready.append(trio.current_time())
            self.log.append(f"ready {self.name}")
            crash_after = math.inf
            if self.crashes is None or attempt < self.crashes:
                crash_after = self.crash_after or math.inf
            with trio.move_on_after(crash_after):
                await self._stop.wait()
                await trio.sleep(self.drain)
                self.log.append(f"drained {self.name}")
                return
            msg = f"crash {attempt}"
            raise RuntimeError(msg)
        except trio.Cancelled:
            self.cancelled = True
            raise
        finally:
            self.ends.append(trio.current_time())
            self.log.append(f"end {self.name}")


def states(sup: Supervisor) -> dict[str, ServiceState]:
    return {status.name: status.state for status in sup.status()}


def status_of(sup: Supervisor, name: str) -> ServiceStatus:
    return next(status for status in sup.status() if status.name == name)


def transitions(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The states ``name`` went through, from the supervisor's debug log."""
    result: list[str] = []
    for record in caplog.records:
        if record.name == LOGGER_NAME and record.msg == "service %r: %s -> %s":
            service, old, new = cast("tuple[str, str, str]", record.args)
            if service == name:
                result.extend([old] if not result else [])
                result.append(new)
    return result


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)


# -- start order -----------------------------------------------------------


async def test_start_order_follows_dependencies_and_readiness(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    sup = Supervisor()
    ws = Fake("ws", log)
    extra = Fake("extra", log)
    http = Fake("http", log, start_delay=1.0)
    store = Fake("store", log, start_delay=2.0)
    sup.add("ws", ws.run, critical=True, depends_on=["http"])
    sup.add("extra", extra.run)
    sup.add("http", http.run, depends_on=["store"])
    sup.add("store", store.run)
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        assert await nursery.start(sup.run) is sup
        assert trio.current_time() - t0 == pytest.approx(3.0)
        assert [entry for entry in log if entry.startswith("start")] == [
            "start extra",
            "start store",
            "start http",
            "start ws",
        ]
        # A slow start delays its dependants until it reported ready.
        assert store.ready[0] - t0 == pytest.approx(2.0)
        assert http.starts[0] == store.ready[0]
        assert ws.starts[0] == http.ready[0]
        assert set(states(sup).values()) == {S.RUNNING}
        await sup.shutdown()
    # Stopped in reverse start order.
    assert [entry for entry in log if entry.startswith("end")] == [
        "end ws",
        "end http",
        "end store",
        "end extra",
    ]
    assert set(states(sup).values()) == {S.STOPPED}


async def test_started_info_and_uptime_are_visible(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor()
    handle = sup.add("http", Fake("http", [], info={"url": "http://127.0.0.1:1"}).run)
    assert handle.name == "http"
    assert handle.status().state is S.STOPPED
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        status = handle.status()
        assert status.info == {"url": "http://127.0.0.1:1"}
        assert status.state is S.RUNNING
        assert status.started_at == pytest.approx(trio.current_time())
        await trio.sleep(5)
        assert handle.status().uptime == pytest.approx(5.0)
        assert sup.status() == [handle.status()]
        report = sup.health_report()
        assert report["status"] == "healthy"
        assert report["services"] == [
            {
                "name": "http",
                "state": "running",
                "critical": False,
                "restarts": 0,
                "last_error": None,
                "uptime": pytest.approx(5.0),
                "retry_in": None,
                "info": {"url": "http://127.0.0.1:1"},
            }
        ]
        await sup.shutdown()
    assert handle.status().uptime == 0.0
    assert repr(handle) == "<ServiceHandle 'http'>"


def test_status_as_dict_turns_info_into_json() -> None:
    status = ServiceStatus(
        name="x",
        state=S.BACKOFF,
        critical=True,
        restarts=2,
        last_error="OSError: no",
        started_at=None,
        uptime=0.0,
        info={"urls": ("a", 1), "obj": object, "raw": b"x", "data": _Point(1, 2)},
    )
    info = status.as_dict()["info"]
    assert info["urls"] == ["a", 1]
    assert info["data"] == {"x": 1, "y": 2}  # dataclasses become JSON
    assert info["obj"] is None  # no repr with a memory address in /health
    assert info["raw"] is None
    assert status.as_dict()["state"] == "backoff"


@dataclasses.dataclass
class _Point:
    x: int
    y: int


# -- stopping ---------------------------------------------------------------


async def test_stop_hook_is_called_before_cancelling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    sup = Supervisor()
    store = Fake("store", log, drain=1.0)
    http = Fake("http", log, drain=2.0)
    plain = Fake("plain", log)
    sup.add("store", store.run, stop=store.stop)
    sup.add("http", http.run, stop=http.stop, depends_on=["store"])
    sup.add("plain", plain.run, depends_on=["http"])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        t0 = trio.current_time()
        await sup.shutdown(grace=10)
        assert trio.current_time() - t0 == pytest.approx(3.0)
    assert log[-7:] == [
        "end plain",  # no hook: cancelled at once
        "stop-hook http",
        "drained http",
        "end http",
        "stop-hook store",
        "drained store",
        "end store",
    ]
    assert plain.cancelled
    assert not http.cancelled
    assert not store.cancelled
    assert http.stop_calls == [pytest.approx(t0)]
    assert store.stop_calls == [pytest.approx(t0 + 2.0)]


async def test_grace_deadline_is_respected_and_shared(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[str] = []
    sup = Supervisor()
    first = Fake("first", log, obey_stop=False)
    second = Fake("second", log, obey_stop=False)
    sup.add("first", first.run, stop=first.stop)
    sup.add("second", second.run, stop=second.stop)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        t0 = trio.current_time()
        await sup.shutdown(grace=3)
        # Three seconds in all, not three per service.
        assert trio.current_time() - t0 == pytest.approx(3.0)
    assert second.stop_calls == [pytest.approx(t0)]
    assert second.ends == [pytest.approx(t0 + 3.0)]
    assert first.stop_calls == [pytest.approx(t0 + 3.0)]
    assert first.ends == [pytest.approx(t0 + 3.0)]
    assert first.cancelled
    assert second.cancelled
    assert "service 'second' did not stop; cancelling it" in caplog.text
    assert set(states(sup).values()) == {S.STOPPED}


async def test_async_and_failing_stop_hooks(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[str] = []
    sup = Supervisor()
    slow = Fake("slow", log)
    broken = Fake("broken", log)

    async def slow_stop() -> None:
        await trio.sleep(1)
        slow.stop()

    def broken_stop() -> None:
        raise ValueError("hook broke")

    sup.add("slow", slow.run, stop=slow_stop)
    sup.add("broken", broken.run, stop=broken_stop)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        t0 = trio.current_time()
        await sup.shutdown()
        assert trio.current_time() - t0 == pytest.approx(1.0)
    assert broken.cancelled
    assert not slow.cancelled
    assert slow.stop_calls == [pytest.approx(t0 + 1.0)]
    assert "stop hook of service 'broken' failed: ValueError: hook broke" in caplog.text


async def test_cancelling_run_stops_everything_in_reverse(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    sup = Supervisor(grace=5)
    fakes = [Fake(name, log, drain=1.0) for name in ("a", "b", "c")]
    for fake in fakes:
        sup.add(fake.name, fake.run, stop=fake.stop)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            t0 = trio.current_time()
            scope.cancel()
    assert scope.cancelled_caught
    assert trio.current_time() - t0 == pytest.approx(3.0)
    assert [entry for entry in log if entry.startswith(("stop-hook", "end"))] == [
        "stop-hook c",
        "end c",
        "stop-hook b",
        "end b",
        "stop-hook a",
        "end a",
    ]
    assert not any(fake.cancelled for fake in fakes)
    assert set(states(sup).values()) == {S.STOPPED}
    assert sup.health() == "unhealthy"


async def test_cancelling_run_during_startup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    sup = Supervisor()
    fast = Fake("fast", log)
    slow = Fake("slow", log, start_delay=100)
    later = Fake("later", log)
    sup.add("fast", fast.run, stop=fast.stop)
    sup.add("slow", slow.run)
    sup.add("later", later.run)
    t0 = trio.current_time()
    with trio.move_on_after(1):
        await sup.run()
    assert trio.current_time() - t0 == pytest.approx(1.0)
    assert slow.cancelled
    assert slow.ready == []
    assert later.starts == []
    assert log[-4:] == ["end slow", "stop-hook fast", "drained fast", "end fast"]
    assert set(states(sup).values()) == {S.STOPPED}


async def test_second_shutdown_is_immediate(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[str] = []
    sup = Supervisor()
    stubborn = Fake("stubborn", log, obey_stop=False)
    other = Fake("other", log, obey_stop=False)
    sup.add("other", other.run, stop=other.stop)
    sup.add("stubborn", stubborn.run, stop=stubborn.stop)
    finished: list[float] = []

    async def first_shutdown() -> None:
        await sup.shutdown(grace=10)
        finished.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        t0 = trio.current_time()
        nursery.start_soon(first_shutdown)
        await trio.sleep(1)
        assert sup.health() == "unhealthy"
        assert states(sup)["stubborn"] is S.STOPPING
        await sup.shutdown(grace=10)
        assert trio.current_time() - t0 == pytest.approx(1.0)
    assert finished == [pytest.approx(t0 + 1.0)]
    assert stubborn.cancelled
    assert other.cancelled
    assert other.stop_calls == []  # cancelled at once, no hook any more
    assert "stopping at once" in caplog.text
    assert set(states(sup).values()) == {S.STOPPED}


async def test_cancelling_run_during_a_shutdown_stops_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor()
    stubborn = Fake("stubborn", [], obey_stop=False)
    sup.add("stubborn", stubborn.run, stop=stubborn.stop)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            t0 = trio.current_time()
            sup.request_shutdown(grace=30)
            await trio.sleep(2)
            scope.cancel()  # e.g. a second Ctrl+C
    assert trio.current_time() - t0 == pytest.approx(2.0)
    assert stubborn.cancelled
    assert stubborn.stop_calls == [pytest.approx(t0)]
    assert states(sup) == {"stubborn": S.STOPPED}


async def test_shutdown_during_startup_returns_without_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor()
    slow = Fake("slow", [], start_delay=100)
    sup.add("slow", slow.run)

    async def stop_soon() -> None:
        await trio.sleep(1)
        sup.request_shutdown()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_soon)
        with pytest.raises(RuntimeError, match=r"without calling task_status\.started"):
            await nursery.start(sup.run)
    assert slow.cancelled
    assert states(sup) == {"slow": S.STOPPED}


async def test_shutdown_outside_run_does_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor()
    sup.add("a", Fake("a", []).run)
    await sup.shutdown()
    sup.request_shutdown()
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.shutdown()
    await sup.shutdown()  # already finished
    assert states(sup) == {"a": S.STOPPED}


async def test_service_can_ask_for_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor()

    async def quitter(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(2)
        sup.request_shutdown()
        await trio.sleep_forever()

    sup.add("quitter", quitter)
    t0 = trio.current_time()
    await sup.run()
    assert trio.current_time() - t0 == pytest.approx(2.0)
    assert states(sup) == {"quitter": S.STOPPED}


async def test_failure_while_stopping_is_logged_not_raised(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor()

    async def messy(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            raise OSError("flush failed")

    sup.add("messy", messy, critical=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.shutdown()
    assert "service 'messy' failed stopping: OSError: flush failed" in caplog.text
    assert states(sup) == {"messy": S.STOPPED}


# -- restarts ---------------------------------------------------------------


async def test_crashing_service_restarts_with_exponential_backoff(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(jitter=0.0)
    flaky = Fake("flaky", [], crash_after=1.0)
    sup.add("flaky", flaky.run, initial_backoff=0.5, max_backoff=4.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await flaky.wait_for_attempts(7)
        delays = [
            start - end
            for start, end in zip(flaky.starts[1:], flaky.ends, strict=False)
        ]
        assert delays == pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0, 4.0])
        status = status_of(sup, "flaky")
        assert status.restarts == 6
        assert status.last_error == "RuntimeError: crash 5"
        await sup.shutdown()
    assert "service 'flaky' failed: RuntimeError: crash 0; restarting in 0.50 s" in (
        caplog.text
    )


def failure_records(
    caplog: pytest.LogCaptureFixture, name: str
) -> list[tuple[int, str]]:
    """(level, message) of each failure of ``name`` the supervisor logged."""
    return [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if record.name == LOGGER_NAME
        and record.getMessage().startswith(f"service {name!r} failed")
    ]


async def test_the_same_failure_in_a_row_is_a_warning_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(jitter=0.0)
    errors = ["in use"] * 4 + ["denied"] * 2 + ["in use"]
    attempts = 0

    async def binds(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= len(errors):
            raise ServiceError(errors[attempts - 1])
        task_status.started()
        await trio.sleep_forever()

    sup.add("web", binds, initial_backoff=1.0, max_backoff=2.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(60)
        assert states(sup)["web"] is S.RUNNING
        await sup.shutdown()
    logged = failure_records(caplog, "web")
    assert [level for level, _ in logged] == [
        logging.WARNING,  # in use
        *[logging.DEBUG] * 3,
        logging.WARNING,  # denied: another failure
        logging.DEBUG,
        logging.WARNING,  # in use again, after another one
    ]
    assert logged[0][1] == (
        "service 'web' failed: in use; restarting in 1.00 s"
        " (the same failure again is logged at debug level)"
    )
    assert logged[1][1] == "service 'web' failed again: in use; restarting in 2.00 s"
    assert "service 'web' running (after 7 failed attempts)" in caplog.messages


async def test_status_says_when_a_service_in_backoff_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor(jitter=0.0)
    flaky = Fake("flaky", [], crashes_at_start=2)
    sup.add("flaky", flaky.run, initial_backoff=4.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        status = status_of(sup, "flaky")
        assert (status.state, status.retry_in) == (S.BACKOFF, 4.0)
        assert status.last_error == "OSError: flaky start 0"
        await trio.sleep(1.5)
        assert status_of(sup, "flaky").retry_in == pytest.approx(2.5)
        assert sup.health_report()["services"][0]["retry_in"] == pytest.approx(2.5)
        await trio.sleep(3)  # failed again at 4 s: 8 s to wait now
        assert status_of(sup, "flaky").retry_in == pytest.approx(7.5)
        await trio.sleep(10)
        assert status_of(sup, "flaky").state is S.RUNNING
        assert status_of(sup, "flaky").retry_in is None
        await sup.shutdown()


async def test_the_start_summary_names_what_is_not_running(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(jitter=0.0)
    sup.add("store", Fake("store", []).run)
    sup.add("flaky", Fake("flaky", [], crashes_at_start=1).run, initial_backoff=5)
    sup.add("web", Fake("web", []).run, depends_on=["flaky"])
    sup.add("once", Fake("once", [], crashes_at_start=1).run, restart=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert caplog.messages[-1] == (
            "1 of 4 services started; flaky is retrying: OSError: flaky start 0; "
            "web waits for flaky; once failed: OSError: once start 0"
        )
        assert caplog.records[-1].levelno == logging.WARNING
        await sup.shutdown()
    assert not [m for m in caplog.messages if "services started" in m][1:]
    everything = Supervisor()
    everything.add("store", Fake("store", []).run)
    everything.add("web", Fake("web", []).run)
    caplog.clear()
    async with trio.open_nursery() as nursery:
        await nursery.start(everything.run)
        assert "all 2 services started" in caplog.messages
        await everything.shutdown()


async def test_backoff_jitter_stays_within_bounds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor(jitter=0.25, rng=random.Random(1234))
    flaky = Fake("flaky", [], crash_after=1.0)
    sup.add("flaky", flaky.run, initial_backoff=1.0, max_backoff=8.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await flaky.wait_for_attempts(7)
        await sup.shutdown()
    delays = [
        start - end for start, end in zip(flaky.starts[1:], flaky.ends, strict=False)
    ]
    for failure, delay in enumerate(delays, start=1):
        base = min(8.0, 2.0 ** (failure - 1))
        assert 0.75 * base - 1e-9 <= delay <= base + 1e-9
    # Not all at the upper bound: the jitter is really applied.
    assert any(delay < min(8.0, 2.0**i) - 0.01 for i, delay in enumerate(delays))
    # With the same seed, the same delays: exactly what the rng chose.
    rng = random.Random(1234)
    expected = [
        backoff_delay(n, 1.0, 8.0, 0.25, rng.random())
        for n in range(1, len(delays) + 1)
    ]
    assert delays == pytest.approx(expected)


async def test_state_transitions_of_a_restart_are_observable(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(jitter=0.0)
    flaky = Fake("flaky", [], crash_after=1.0, crashes=1, start_delay=0.5)
    sup.add("flaky", flaky.run, initial_backoff=2.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        t0 = trio.current_time()
        seen = []
        # Crash at 1.0, backoff until 3.0, starting until 3.5, then running.
        for at in (0.5, 2.0, 3.25, 4.0):
            await trio.sleep_until(t0 + at)
            seen.append(states(sup)["flaky"])
        assert seen == [S.RUNNING, S.BACKOFF, S.STARTING, S.RUNNING]
        assert status_of(sup, "flaky").started_at == pytest.approx(t0 + 3.5)
        assert status_of(sup, "flaky").restarts == 1
        assert sup.health() == "healthy"
        await sup.shutdown()
    assert transitions(caplog, "flaky") == [
        "stopped",
        "starting",
        "running",
        "backoff",
        "starting",
        "running",
        "stopping",
        "stopped",
    ]


async def test_backoff_resets_after_stable_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor(jitter=0.0, stable_after=10.0)
    attempts: list[float] = []
    seven = trio.Event()

    async def service(*, task_status: trio.TaskStatus[None]) -> None:
        attempts.append(trio.current_time())
        if len(attempts) == 7:
            seven.set()
        task_status.started()
        # Attempts 0-2 crash after 1 s; attempt 3 runs 20 s; then 1 s again.
        await trio.sleep(20.0 if len(attempts) == 4 else 1.0)
        raise RuntimeError("crash")

    sup.add("svc", service, initial_backoff=1.0, max_restarts=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await seven.wait()
        await sup.shutdown()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # run 1 + backoff 1, 1 + 2, 1 + 4, 20 + 1 (reset), 1 + 2, 1 + 4
    assert gaps == pytest.approx([2.0, 3.0, 5.0, 21.0, 3.0, 5.0])
    # max_restarts=3 counts failures in a row: the stable run reset it too.
    assert status_of(sup, "svc").restarts == 6


async def test_max_restarts_then_failed(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(jitter=0.0)
    flaky = Fake("flaky", [], crashes_at_start=100)
    other = Fake("other", [])
    sup.add("flaky", flaky.run, max_restarts=2, initial_backoff=1.0)
    sup.add("other", other.run)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        t0 = flaky.starts[0]
        assert states(sup)["flaky"] is S.BACKOFF
        assert sup.health() == "degraded"
        await trio.sleep(10)
        assert [t - t0 for t in flaky.starts] == pytest.approx([0.0, 1.0, 3.0])
        status = status_of(sup, "flaky")
        assert status.state is S.FAILED
        assert status.restarts == 2
        assert status.last_error == "OSError: flaky start 2"
        assert states(sup)["other"] is S.RUNNING
        assert sup.health() == "degraded"
        await sup.shutdown()
    assert "service 'flaky' failed for good: OSError: flaky start 2" in caplog.text
    assert states(sup) == {"flaky": S.STOPPED, "other": S.STOPPED}
    assert status_of(sup, "flaky").last_error == "OSError: flaky start 2"


async def test_restart_false_fails_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor()
    once = Fake("once", [], crash_after=1.0)
    sup.add("once", once.run, restart=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(5)
        assert len(once.starts) == 1
        assert status_of(sup, "once").state is S.FAILED
        await sup.shutdown()


async def test_returning_service_counts_as_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor(jitter=0.0)
    runs: list[float] = []

    async def quits(label: str, *, task_status: trio.TaskStatus[str]) -> None:
        runs.append(trio.current_time())
        task_status.started(f"{label} {len(runs)}")

    sup.add("quits", functools.partial(quits, "run"), initial_backoff=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(2.5)
        assert [t - runs[0] for t in runs] == pytest.approx([0.0, 1.0])
        status = status_of(sup, "quits")
        assert status.last_error == "returned without being asked to stop"
        assert status.info == "run 2"
        await sup.shutdown()


async def test_optional_failure_at_start_does_not_block_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    sup = Supervisor(jitter=0.0)
    flaky = Fake("flaky", log, crashes_at_start=2)
    web = Fake("web", log)
    other = Fake("other", log)
    sup.add("flaky", flaky.run, initial_backoff=1.0)
    sup.add("web", web.run, depends_on=["flaky"])
    sup.add("other", other.run)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        t0 = trio.current_time()
        # Reported started at once: flaky waits to retry, web waits for it.
        assert states(sup) == {
            "flaky": S.BACKOFF,
            "web": S.STARTING,
            "other": S.RUNNING,
        }
        assert web.starts == []
        assert sup.health() == "degraded"
        await trio.sleep(10)
        assert [t - t0 for t in flaky.starts] == pytest.approx([0.0, 1.0, 3.0])
        assert web.starts == [flaky.ready[0]]
        assert set(states(sup).values()) == {S.RUNNING}
        assert sup.health() == "healthy"
        assert status_of(sup, "flaky").last_error == "OSError: flaky start 1"
        await sup.shutdown()
    ends = [entry for entry in log if entry.startswith("end")]
    assert ends[-3:] == ["end other", "end web", "end flaky"]


async def test_dependants_of_a_service_failed_for_good_fail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor()
    broken = Fake("broken", [], crashes_at_start=1)
    sup.add("broken", broken.run, max_restarts=0)
    sup.add("web", Fake("web", []).run, depends_on=["broken"])
    sup.add("api", Fake("api", []).run, depends_on=["web"])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert states(sup) == {"broken": S.FAILED, "web": S.FAILED, "api": S.FAILED}
        assert status_of(sup, "web").last_error == (
            "dependency 'broken' failed: OSError: broken start 0"
        )
        assert status_of(sup, "api").last_error.startswith(  # type: ignore[union-attr]
            "dependency 'web' failed: dependency 'broken' failed"
        )
        await sup.shutdown()


async def test_critical_dependant_of_a_failed_service_is_fatal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor(jitter=0.0)
    broken = Fake("broken", [], crashes_at_start=100)
    sup.add("broken", broken.run, max_restarts=1, initial_backoff=1.0)
    sup.add("ws", Fake("ws", []).run, critical=True, depends_on=["broken"])
    t0 = trio.current_time()
    with pytest.raises(CriticalServiceError) as caught:
        await sup.run()
    assert trio.current_time() - t0 == pytest.approx(1.0)
    assert caught.value.name == "ws"
    assert caught.value.reason == "dependency 'broken' failed: OSError: broken start 1"


# -- critical services --------------------------------------------------------


async def test_critical_failure_at_start(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[str] = []
    sup = Supervisor()
    store = Fake("store", log)
    http = Fake("http", log, drain=1.0)
    later = Fake("later", log)

    async def ws(*, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise OSError(98, "Address already in use")

    sup.add("store", store.run)
    sup.add("http", http.run, stop=http.stop, depends_on=["store"])
    sup.add("ws", ws, critical=True, depends_on=["http"])
    sup.add("later", later.run, depends_on=["ws"])
    with pytest.raises(CriticalServiceError) as caught:
        await sup.run()
    assert caught.value.name == "ws"
    assert caught.value.reason == "OSError: [Errno 98] Address already in use"
    assert str(caught.value) == (
        "critical service 'ws' failed: OSError: [Errno 98] Address already in use"
    )
    assert isinstance(caught.value.__cause__, ExceptionGroup)
    assert later.starts == []
    # Everything else stopped, in reverse order, their finally blocks ran.
    assert log[-4:] == ["stop-hook http", "drained http", "end http", "end store"]
    assert set(states(sup).values()) == {S.STOPPED}
    assert status_of(sup, "ws").last_error == caught.value.reason
    assert sup.health() == "unhealthy"
    assert "critical service 'ws' failed: OSError" in caplog.text


async def test_critical_failure_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    sup = Supervisor()
    store = Fake("store", log)
    ws = Fake("ws", log, crash_after=5.0)
    http = Fake("http", log)
    sup.add("store", store.run, stop=store.stop)
    sup.add("ws", ws.run, critical=True, depends_on=["store"])
    sup.add("http", http.run, depends_on=["store"])
    health: list[str] = []
    t0 = trio.current_time()

    async def watch() -> None:
        health.append(sup.health())
        await trio.sleep(6)
        health.append(sup.health())

    with pytest.RaisesGroup(
        pytest.RaisesExc(
            CriticalServiceError, match="'ws' failed: RuntimeError: crash 0"
        )
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            nursery.start_soon(watch)
            await trio.sleep_forever()
    assert trio.current_time() - t0 == pytest.approx(5.0)
    assert health == ["healthy"]
    assert [entry for entry in log if entry.startswith("end")] == [
        "end ws",
        "end http",
        "end store",
    ]
    assert http.cancelled
    assert store.stop_calls  # asked gracefully
    assert len(ws.starts) == 1  # critical services are not restarted
    assert set(states(sup).values()) == {S.STOPPED}


async def test_critical_error_unwraps_nested_groups(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hypercorn_like(*, task_status: trio.TaskStatus[None]) -> None:
        failure = LifespanFailureError("startup", "db down")
        raise ExceptionGroup(
            "outer", [ExceptionGroup("middle", [ExceptionGroup("inner", [failure])])]
        )

    sup = Supervisor()
    sup.add("http", hypercorn_like, critical=True)
    with pytest.raises(CriticalServiceError) as caught:
        await sup.run()
    assert caught.value.reason == (
        "LifespanFailureError: Lifespan failure in startup. 'db down'"
    )


async def test_critical_service_returning_is_fatal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def quits(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(1)

    sup = Supervisor()
    sup.add("ws", quits, critical=True)
    with pytest.raises(
        CriticalServiceError, match="returned without being asked to stop"
    ):
        await sup.run()


async def test_critical_service_never_reporting_started_is_fatal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def forgetful(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.lowlevel.checkpoint()

    sup = Supervisor()
    sup.add("ws", forgetful, critical=True)
    with pytest.raises(CriticalServiceError, match="without calling task_status"):
        await sup.run()


# -- health -------------------------------------------------------------------


async def test_health_in_each_case(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor(jitter=0.0)
    slow_critical = Fake("ws", [], start_delay=2.0)
    flaky = Fake("flaky", [], crash_after=10.0, crashes=1)
    sup.add("flaky", flaky.run, initial_backoff=5.0)
    sup.add("ws", slow_critical.run, critical=True, stop=slow_critical.stop)
    assert sup.health() == "unhealthy"  # nothing runs yet
    seen: dict[str, str] = {}

    async def probe(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(1)
        seen["ws starting"] = sup.health()

    async with trio.open_nursery() as nursery:
        await nursery.start(probe)
        await nursery.start(sup.run)
        assert sup.health() == "healthy"
        await trio.sleep(9)  # flaky crashes at 10 s after its start
        assert states(sup)["flaky"] is S.BACKOFF
        assert sup.health() == "degraded"
        await trio.sleep(5)
        assert sup.health() == "healthy"
        sup.request_shutdown()
        assert sup.health() == "unhealthy"
    assert seen == {"ws starting": "unhealthy"}
    assert Supervisor().health() == "healthy"
    only_optional = Supervisor()
    only_optional.add("x", Fake("x", []).run)
    assert only_optional.health() == "degraded"


# -- validation -----------------------------------------------------------------


def noop_service() -> Callable[..., Any]:
    return Fake("noop", []).run


def test_duplicate_name_is_rejected_at_add() -> None:
    sup = Supervisor()
    sup.add("store", noop_service())
    with pytest.raises(ValueError, match="duplicate service name 'store'"):
        sup.add("store", noop_service())


def test_bad_parameters_are_rejected() -> None:
    sup = Supervisor()
    with pytest.raises(TypeError, match="not a str"):
        sup.add("http", noop_service(), depends_on="store")
    with pytest.raises(ValueError, match="initial_backoff <= max_backoff"):
        sup.add("http", noop_service(), initial_backoff=5, max_backoff=1)
    with pytest.raises(ValueError, match="max_restarts"):
        sup.add("http", noop_service(), max_restarts=-1)
    with pytest.raises(ValueError, match="jitter"):
        Supervisor(jitter=2)


async def test_unknown_dependency_is_rejected_at_run() -> None:
    sup = Supervisor()
    sup.add("http", noop_service(), depends_on=["stor"])
    with pytest.raises(
        ValueError, match="service 'http' depends on unknown service 'stor'"
    ):
        await sup.run()


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": ["a"]}, "'a' -> 'a'"),
        ({"x": [], "a": ["b"], "b": ["c"], "c": ["a"]}, "'a' -> 'b' -> 'c' -> 'a'"),
        ({"d": ["a"], "a": ["b"], "b": ["a"]}, "'a' -> 'b' -> 'a'"),
    ],
)
async def test_dependency_cycle_is_rejected_at_run(
    graph: dict[str, list[str]], cycle: str
) -> None:
    sup = Supervisor()
    for name, deps in graph.items():
        sup.add(name, noop_service(), depends_on=deps)
    with pytest.raises(
        ValueError, match=re.escape(f"dependency cycle between services: {cycle}")
    ):
        await sup.run()


async def test_run_once_and_no_add_after_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor()
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with pytest.raises(RuntimeError, match="already ran"):
            sup.add("late", noop_service())
        with pytest.raises(RuntimeError, match="only be called once"):
            await sup.run()
        await sup.shutdown()


def test_backoff_delay_is_bounded() -> None:
    assert backoff_delay(1, 0.5, 30.0, 0.25, 0.0) == 0.5
    assert backoff_delay(3, 0.5, 30.0, 0.25, 0.0) == 2.0
    assert backoff_delay(3, 0.5, 30.0, 0.25, 1.0) == 1.5
    assert backoff_delay(10_000, 0.5, 30.0, 0.0, 0.5) == 30.0  # no overflow


# -- describe_exception ---------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ValueError("bad value"), "ValueError: bad value"),
        (KeyError("key"), "KeyError: 'key'"),
        (RuntimeError(), "RuntimeError"),
        (OSError("two\n  lines"), "OSError: two lines"),
        (
            ServiceError("cannot listen on 127.0.0.1:1: in use"),
            "cannot listen on 127.0.0.1:1: in use",
        ),
        (ServiceError(), "ServiceError"),
        (
            ExceptionGroup(
                "top",
                [
                    ValueError("a"),
                    ExceptionGroup("mid", [KeyError("b"), ValueError("a")]),
                ],
            ),
            "ValueError: a; KeyError: 'b'",
        ),
        (
            ExceptionGroup(
                "1",
                [
                    ExceptionGroup(
                        "2",
                        [
                            ExceptionGroup(
                                "3", [LifespanFailureError("startup", "boom")]
                            )
                        ],
                    )
                ],
            ),
            "LifespanFailureError: Lifespan failure in startup. 'boom'",
        ),
    ],
)
def test_describe_exception(exc: BaseException, text: str) -> None:
    assert describe_exception(exc) == text


async def test_describe_exception_skips_cancelled_leaves() -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.sleep(1)
        except trio.Cancelled as exc:
            cancelled = exc
            group = BaseExceptionGroup("g", [exc, OSError("real")])
            assert describe_exception(group) == "OSError: real"
            assert describe_exception(cancelled).startswith("Cancelled: ")
            raise


def test_public_names() -> None:
    names = supervisor_module.__all__
    assert names == sorted(names, key=lambda n: (not n[:1].isupper(), n))
    assert all(hasattr(supervisor_module, name) for name in names)
    assert {
        "CriticalServiceError",
        "ServiceState",
        "ServiceStatus",
        "Supervisor",
        "describe_exception",
    } <= set(names)
    assert [state.value for state in ServiceState] == [
        "starting",
        "running",
        "backoff",
        "failed",
        "stopping",
        "stopped",
    ]
