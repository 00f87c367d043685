"""NeuroProcess in-process: services added by a library user, health, output.

Real sockets on 127.0.0.1 port 0; tunnels come from in-process providers
(no ngrok at all), which is all NeuroProcess needs to see.
"""

from __future__ import annotations

import gc
import io
import logging
import socket

import httpx
import pytest
import trio
import trio.testing
from server_helpers import Output

from neuro_api.app import NeuroProcess, ProcessInfo
from neuro_api.calls import CallsSettings
from neuro_api.manager.tunnels import TunnelError
from neuro_api.server import RandomNeuroServer
from neuro_api.settings import Settings
from neuro_api.status import StatusSettings

pytestmark = pytest.mark.timeout(30)
WAIT = 10.0


class Provider:
    """Opens every tunnel, or refuses every one (``fail=True``)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def open(self, upstream_url: str, *, name: str) -> str:
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise TunnelError("no tunnels today")
        return f"https://{name}.tunnel.test"

    async def close(self, public_url: str) -> None:
        await trio.lowlevel.checkpoint()

    async def kill(self) -> None:
        await trio.lowlevel.checkpoint()


def settings(**changes: object) -> Settings:
    """The core's settings; the status and calls capabilities off (these
    tests are about the process and its control plane, and the calls API
    would take its default port)."""
    base: dict[str, object] = {
        "engine": "random",
        "port": 0,
        "http_port": 0,
        "sections": {
            "status": StatusSettings(enabled=False),
            "calls": CallsSettings(enabled=False),
        },
    }
    return Settings(**(base | changes))  # type: ignore[arg-type]


async def start(nursery: trio.Nursery, process: NeuroProcess) -> ProcessInfo:
    with trio.fail_after(WAIT):
        info = await nursery.start(
            lambda task_status: process.run(
                handle_signals=False, task_status=task_status
            )
        )
    assert isinstance(info, ProcessInfo)
    return info


async def health(info: ProcessInfo) -> dict[str, object]:
    assert info.control is not None
    async with httpx.AsyncClient(base_url=info.control.local_url) as http:
        response = await http.get("/health")
    body: dict[str, object] = response.json()
    return body


async def test_a_library_user_adds_a_supervised_service(nursery: trio.Nursery) -> None:
    process = NeuroProcess(settings(), RandomNeuroServer(), out=io.StringIO())
    ran: list[str] = []
    stopped = trio.Event()

    async def scoreboard(*, task_status: trio.TaskStatus[str]) -> None:
        # Started after the games' server, as the default dependency says.
        ran.append("games" if process.server.games() == [] else "?")
        task_status.started("scoreboard ready")
        try:
            await trio.sleep_forever()
        finally:
            stopped.set()

    process.add_service("scoreboard", scoreboard)
    with pytest.raises(ValueError, match="duplicate"):
        process.add_service("scoreboard", scoreboard)
    info = await start(nursery, process)
    report = await health(info)
    services = {s["name"]: s for s in report["services"]}  # type: ignore[attr-defined]
    assert services["scoreboard"]["state"] == "running"
    assert services["scoreboard"]["info"] == "scoreboard ready"
    assert report["status"] == "healthy"
    assert ran == ["games"]
    with pytest.raises(RuntimeError, match="already ran"):
        process.add_service("late", scoreboard)
    process.supervisor.request_shutdown()
    with trio.fail_after(WAIT):
        await stopped.wait()


async def test_a_failed_tunnel_makes_health_degraded(nursery: trio.Nursery) -> None:
    out = io.StringIO()
    process = NeuroProcess(
        settings(tunnel=True), RandomNeuroServer(), tunnels=Provider(fail=True), out=out
    )
    info = await start(nursery, process)
    assert info.games.tunnel_error
    report = await health(info)
    assert report["status"] == "degraded"
    assert sorted(report["tunnel_errors"]) == [  # type: ignore[call-overload]
        "control: no tunnels today",
        "games: no tunnels today",
    ]
    assert "neuro_api games: no tunnel: no tunnels today" in out.getvalue()
    process.supervisor.request_shutdown()


async def test_a_control_plane_that_starts_late_is_announced_with_its_token(
    nursery: trio.Nursery,
) -> None:
    # The control plane's port is taken at first: it starts in backoff, and
    # once the port is free it comes up; its URL and the token it needs must
    # still be printed, once.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        out = Output()
        process = NeuroProcess(
            settings(tunnel=True, http_port=port),
            RandomNeuroServer(),
            tunnels=Provider(),
            out=out,
        )
        info = await start(nursery, process)
        assert info.control is None
        assert "control plane on" not in out.getvalue()
        assert "control plane token" not in out.getvalue()
        assert "neuro_api control plane not started yet: " in out.getvalue()
    await out.wait_for("control plane token")
    lines = out.getvalue().splitlines()
    assert f"neuro_api control plane on http://127.0.0.1:{port}" in lines
    assert "neuro_api public control URL: https://control.tunnel.test" in lines
    assert lines.count(f"neuro_api control plane token: {process.token}") == 1
    process.supervisor.request_shutdown()


async def test_a_busy_control_plane_port_is_said_once_and_shown_in_health(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="neuro_api.supervisor")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        busy = f"cannot listen on 127.0.0.1:{port}: Address already in use"
        out = Output()
        # Without the status and calls capabilities (settings()): their I/O
        # in worker threads would make the autojump clock leap (FACTS.md).
        process = NeuroProcess(settings(http_port=port), RandomNeuroServer(), out=out)
        info = await start(nursery, process)
        assert info.control is None
        assert out.getvalue().splitlines()[1:] == [
            f"neuro_api control plane not started yet: {busy} (retrying at least "
            "every 5 s; its URL follows once it starts)"
        ]
        assert f"3 of 4 services started; control-plane is retrying: {busy}" in (
            caplog.messages
        )
        assert "all 4 services started" not in caplog.messages
        report = process.health_report()
        assert report["status"] == "degraded"
        control = {s["name"]: s for s in report["services"]}["control-plane"]
        assert (control["state"], control["last_error"]) == ("backoff", busy)
        assert 0 < control["retry_in"] <= 0.5
        await trio.sleep(60)  # virtual: many more attempts, never 5 s apart
        failures = [
            r
            for r in caplog.records
            if r.getMessage().startswith("service 'control-plane' failed")
        ]
        assert [r.levelno for r in failures[:2]] == [logging.WARNING, logging.DEBUG]
        assert {r.levelno for r in failures[1:]} == {logging.DEBUG}
        assert len(failures) >= 14  # 0.5 + 1 + 2 + 4 + 5 + 5 ... s
        assert {r.getMessage().split(": ", 1)[1].split(";")[0] for r in failures} == {
            busy
        }
        assert process.health_report()["status"] == "degraded"
    # The port is free: the control plane starts within 5 s and says where.
    await trio.sleep(5)
    report = process.health_report()
    control = {s["name"]: s for s in report["services"]}["control-plane"]
    assert (report["status"], control["state"]) == ("healthy", "running")
    assert control["restarts"] == len(failures)
    assert out.getvalue().splitlines()[2:] == [
        f"neuro_api control plane on http://127.0.0.1:{port}"
    ]
    assert (
        f"service 'control-plane' running (after {len(failures)} failed attempts)"
        in caplog.messages
    )


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({}, None),  # loopback only: no token at all
        ({"tunnel": True}, "***"),  # exposed: a token is generated
        ({"api_token": "given-token-0123456789"}, "***"),
    ],
)
async def test_config_shows_whether_a_token_is_set(
    nursery: trio.Nursery, changes: dict[str, object], shown: str | None
) -> None:
    process = NeuroProcess(
        settings(**changes), RandomNeuroServer(), tunnels=Provider(), out=io.StringIO()
    )
    info = await start(nursery, process)
    assert info.control is not None
    assert (info.token is None) is (shown is None)
    headers = {} if info.token is None else {"Authorization": f"Bearer {info.token}"}
    async with httpx.AsyncClient(base_url=info.control.local_url) as http:
        response = await http.get("/config", headers=headers)
    assert response.status_code == 200
    config = response.json()
    assert config["api_token"] == shown
    assert str(info.token) not in response.text
    process.supervisor.request_shutdown()


@pytest.mark.parametrize("tune_gc", [False, True])
async def test_tune_gc_freezes_startup_and_collects_less_only_while_asked(
    tune_gc: bool,
) -> None:
    assert gc.get_freeze_count() == 0
    before = gc.get_threshold()
    process = NeuroProcess(settings(), RandomNeuroServer(), out=io.StringIO())
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(WAIT):
                await nursery.start(
                    lambda task_status: process.run(
                        handle_signals=False, tune_gc=tune_gc, task_status=task_status
                    )
                )
            frozen = gc.get_freeze_count()
            during = gc.get_threshold()
            process.supervisor.request_shutdown()
        after = (gc.get_freeze_count(), gc.get_threshold())
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
        gc.set_threshold(*before)
    if tune_gc:
        assert frozen > 10_000  # the imported modules and the app, at least
        assert during == (5_000, *before[1:])
    else:
        assert (frozen, during) == (0, before)
    assert after == (0, before)  # run() leaves the collector as it found it
