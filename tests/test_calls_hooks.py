"""The hooks a bridge capability uses: ``Setup.capability`` and
``CallsCapability.add_routes``, in a real process on 127.0.0.1 port 0.

A small capability (``Bridge``) registered after the calls capability finds
it, adds an HTTP route and a WebSocket route to the calls HTTP server, and
tries again too late; the WebSocket is opened with trio-websocket, with and
without an ``Origin`` header.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio
from quart import Blueprint, websocket
from test_calls_routes import TOKEN, Running
from trio_websocket import open_websocket_url

from neuro_api.app import (
    ControlPlaneCapability,
    GamesCapability,
    NeuroProcess,
    build_parser,
)
from neuro_api.calls import CallsCapability, CallsSettings
from neuro_api.capability import Capability, Setup
from neuro_api.control import ApiError, RouteCollision
from neuro_api.server import RandomNeuroServer
from neuro_api.settings import load_settings

pytestmark = pytest.mark.timeout(30)
WAIT: Final = 10.0


def upgrade(origin: str) -> dict[str, str]:
    """A WebSocket handshake's headers, from a web page of ``origin``."""
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(b"sixteen bytes!!!").decode(),
        "Origin": origin,
    }


def twilio_routes(name: str = "bridge") -> Blueprint:
    routes = Blueprint(name, __name__, url_prefix="/twilio")

    @routes.post("/voice")
    async def voice() -> Any:
        return "<Response/>", 200, {"Content-Type": "text/xml"}

    @routes.get("/refused")
    async def refused() -> Any:
        raise ApiError(403, "bad_signature", "no signature")

    @routes.websocket("/media")
    async def media() -> None:
        while True:
            message = await websocket.receive()
            assert isinstance(message, str)
            await websocket.send(f"echo {message}")

    return routes


class Bridge(Capability):
    """Finds the calls capability and serves routes on its HTTP server."""

    name = "bridge"

    def __init__(self, blueprint: Blueprint | None = None) -> None:
        self.blueprint = blueprint if blueprint is not None else twilio_routes()
        self.found_in_setup: CallsCapability | None = None
        self.found_in_finish: CallsCapability | None = None
        self.late: Exception | None = None

    def setup(self, app: Setup) -> None:
        calls = app.capability(CallsCapability)
        self.found_in_setup = calls
        if calls is not None and calls.service is not None:
            calls.add_routes(self.blueprint, owner=self.name)

    def finish(self, app: Setup) -> None:
        calls = app.capability(CallsCapability)
        self.found_in_finish = calls
        if calls is not None:
            try:
                calls.add_routes(twilio_routes("late"), owner=self.name)
            except RuntimeError as exc:
                self.late = exc


def make_process(
    data_dir: Path, capabilities: Sequence[Capability], *argv: str
) -> NeuroProcess:
    flags = ["--engine", "random", "--port", "0", "--http-port", "0"]
    flags += ["--api-token", TOKEN, "--data-dir", str(data_dir), "--calls-port", "0"]
    parsed = build_parser([CallsSettings]).parse_args([*flags, *argv])
    settings = load_settings(parsed, environ={}, sections=[CallsSettings])
    return NeuroProcess(
        settings,
        RandomNeuroServer(),
        capabilities=[ControlPlaneCapability(), GamesCapability(), *capabilities],
        out=io.StringIO(),
    )


@asynccontextmanager
async def running(
    process: NeuroProcess, calls: CallsCapability
) -> AsyncIterator[Running]:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            await nursery.start(
                lambda task_status: process.run(
                    handle_signals=False, task_status=task_status
                )
            )
        yield Running(process, calls)
        nursery.cancel_scope.cancel()


async def test_a_capability_serves_http_and_websocket_routes_on_the_calls_port(
    tmp_path: Path,
) -> None:
    calls, bridge = CallsCapability(), Bridge()
    process = make_process(tmp_path, [calls, bridge])
    assert bridge.found_in_setup is calls
    assert bridge.found_in_finish is calls
    assert isinstance(bridge.late, RuntimeError)
    assert "during setup() only" in str(bridge.late)
    async with running(process, calls) as run, run.client() as http:
        answer = await http.post("/twilio/voice", data={"CallSid": "CA1"})
        assert (answer.status_code, answer.text) == (200, "<Response/>")
        refused = await http.get("/twilio/refused")
        assert (refused.status_code, refused.json()) == (
            403,
            {"error": "no signature"},
        )
        assert (await http.get("/api/health")).status_code == 200  # the seed's
        assert (await http.post("/late/voice")).status_code == 404
        media = run.url.replace("http://", "ws://") + "/twilio/media"
        # Twilio sends no Origin (not a browser): quart-cors alone refused it.
        async with open_websocket_url(media) as ws:
            await ws.send_message("start")
            assert await ws.get_message() == "echo start"
        # A page of this machine is an allowed origin (--calls-origins).
        allowed = [(b"Origin", b"http://localhost:5173")]
        async with open_websocket_url(media, extra_headers=allowed) as ws:
            await ws.send_message("hi")
            assert await ws.get_message() == "echo hi"
        # A page elsewhere may not open it with the browser's credentials.
        # (The handshake by hand: trio-websocket leaves a rejected
        # connection's socket open.)
        for origin in ("https://evil.example", "http://localhost.evil.example"):
            async with run.client() as fresh:  # the server closes the connection
                refused = await fresh.get("/twilio/media", headers=upgrade(origin))
            assert (refused.status_code, refused.json()) == (
                403,
                {"error": "this origin may not connect"},
            )


async def test_a_capability_registered_first_finds_calls_only_in_finish(
    tmp_path: Path,
) -> None:
    calls, bridge = CallsCapability(), Bridge()
    make_process(tmp_path, [bridge, calls])
    assert bridge.found_in_setup is None  # not set up yet
    assert bridge.found_in_finish is calls  # every setup has run
    assert isinstance(bridge.late, RuntimeError)


async def test_no_routes_when_calls_are_off(tmp_path: Path) -> None:
    calls, bridge = CallsCapability(), Bridge()
    make_process(tmp_path, [calls, bridge], "--no-calls")
    assert bridge.found_in_setup is calls  # found; it says it is off
    assert calls.service is None
    with pytest.raises(RuntimeError, match="the calls capability is off"):
        calls.add_routes(twilio_routes("more"))


def test_a_route_the_calls_app_serves_is_refused(tmp_path: Path) -> None:
    clash = Blueprint("clash", __name__)

    @clash.get("/api/health")
    async def health() -> Any:  # pragma: no cover - never served
        return {}

    with pytest.raises(RouteCollision, match="route GET /api/health of bridge"):
        make_process(tmp_path, [CallsCapability(), Bridge(clash)])


def test_a_websocket_beside_an_http_route_of_one_path_is_no_clash(
    tmp_path: Path,
) -> None:
    both = Blueprint("both", __name__)

    @both.websocket("/api/health")
    async def health() -> None:  # pragma: no cover - never served
        pass

    make_process(tmp_path, [CallsCapability(), Bridge(both)])


def test_a_blueprint_name_on_the_calls_app_is_refused(tmp_path: Path) -> None:
    # The calls app's own blueprints are named calls_token, calls_registry...
    with pytest.raises(ValueError, match="'calls_token' of bridge is on the calls"):
        make_process(
            tmp_path, [CallsCapability(), Bridge(twilio_routes("calls_token"))]
        )


def test_two_websockets_on_one_path_are_refused(tmp_path: Path) -> None:
    class Second(Bridge):
        name = "second"

    other = Blueprint("other", __name__)

    @other.websocket("/twilio/media")
    async def media() -> None:  # pragma: no cover - never served
        pass

    with pytest.raises(RouteCollision, match="route WebSocket /twilio/media of second"):
        make_process(tmp_path, [CallsCapability(), Bridge(), Second(other)])


def test_setup_capability_finds_by_class_and_subclass(tmp_path: Path) -> None:
    class MyCalls(CallsCapability):
        pass

    class Looker(Capability):
        name = "looker"

        def __init__(self) -> None:
            self.seen: dict[str, object] = {}

        def setup(self, app: Setup) -> None:
            self.seen["calls"] = app.capability(CallsCapability)
            self.seen["mine"] = app.capability(MyCalls)
            self.seen["itself"] = app.capability(Looker)
            self.seen["games"] = app.capability(GamesCapability)
            self.seen["bridge"] = app.capability(Bridge)

        def finish(self, app: Setup) -> None:
            self.seen["itself later"] = app.capability(Looker)
            self.seen["bridge later"] = app.capability(Bridge)

    calls, looker, bridge = MyCalls(), Looker(), Bridge()
    process = make_process(tmp_path, [calls, looker, bridge])
    games = next(c for c in process.capabilities if isinstance(c, GamesCapability))
    assert looker.seen == {
        "calls": calls,  # a subclass counts
        "mine": calls,
        "itself": None,  # not set up before itself
        "games": games,
        "bridge": None,  # registered after: not set up yet
        "itself later": looker,
        "bridge later": bridge,
    }
    assert bridge.found_in_setup is calls


async def test_routes_added_to_calls_do_not_reach_the_control_plane(
    tmp_path: Path,
) -> None:
    calls = CallsCapability()
    process = make_process(tmp_path, [calls, Bridge()])
    async with running(process, calls) as run, run.control() as control:
        assert (await control.post("/twilio/voice")).status_code == 404
        async with httpx.AsyncClient(base_url=run.url, timeout=WAIT) as http:
            paths = (await http.get("/openapi.json")).json()["paths"]
        assert "/twilio/voice" in paths
