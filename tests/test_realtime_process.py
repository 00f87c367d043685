"""The realtime capability in a process: settings, CLI, routes, console, redaction."""

from __future__ import annotations

import ast
import contextlib
import io
import os
import pathlib
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import orjson
import pytest
import trio
import trio.testing
from fake_realtime import Error, FakeRealtime, FunctionCall, open_fake_realtime
from server_helpers import Output, connect
from status_helpers import eventually
from test_cli import (
    PLAY,
    TITLE,
    force,
    game,
    one_error_line,
    recv_action,
    run,
    server_process,
)

from neuro_api import settings as settings_module
from neuro_api.app import (
    ConsoleCapability,
    ControlPlaneCapability,
    GamesCapability,
    NeuroProcess,
    build_parser,
    default_capabilities,
    main,
    make_engine,
)
from neuro_api.capability import Capability
from neuro_api.manager import ServerInfo as ManagedServer
from neuro_api.realtime import RealtimeCapability, RealtimeNeuroServer, RealtimeSettings
from neuro_api.server import AbstractTrioNeuroServer, ServerConfig
from neuro_api.settings import Settings, SettingsError, load_settings

KEY: Final = "sk-process-tests-0123456789abcdef"
TOKEN: Final = "an-admin-token-for-the-realtime-tests"
WAIT: Final = 10.0


class Running:
    def __init__(
        self,
        process: NeuroProcess,
        realtime: RealtimeCapability,
        typed: Any,
        output: Output,
    ) -> None:
        self.process = process
        self.realtime = realtime
        self.typed = typed
        self.output = output

    def _url(self, name: str) -> str:
        info = {s.name: s.info for s in self.process.supervisor.status()}[name]
        assert isinstance(info, ManagedServer)
        return info.local_url

    @property
    def games_url(self) -> str:
        return self._url("games")

    def http(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.AsyncClient(
            base_url=self._url("control-plane"), headers=headers, timeout=WAIT
        )

    async def type(self, line: str) -> None:
        await self.typed.send_all(line.encode() + b"\n")


URL: Final = "ws://127.0.0.1:9/v1/realtime"
"""A URL for tests that open no connection (port 9: discard)."""


def settings_of(url: str, *argv: str, key: str | None = KEY) -> Any:
    flags = ["--port", "0", "--http-port", "0", "--api-token", TOKEN]
    flags += ["--realtime-url", url, "--console", *argv]
    kinds = [RealtimeSettings]
    parsed = build_parser(kinds, ["realtime"]).parse_args(flags)
    environ = {} if key is None else {"OPENAI_API_KEY": key}
    return load_settings(parsed, environ=environ, sections=kinds, engines=["realtime"])


@contextlib.asynccontextmanager
async def running(fake: FakeRealtime, *argv: str) -> AsyncIterator[Running]:
    realtime = RealtimeCapability()
    settings = settings_of(fake.url, *argv)
    server = make_engine(settings, [realtime])
    typed, input_stream = trio.testing.memory_stream_pair()
    output = Output()
    process = NeuroProcess(
        settings,
        server,
        capabilities=[
            ControlPlaneCapability(),
            GamesCapability(),
            realtime,
            ConsoleCapability(input=input_stream, output=output),
        ],
        out=io.StringIO(),
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            await nursery.start(
                lambda task_status: process.run(
                    handle_signals=False, task_status=task_status
                )
            )
        yield Running(process, realtime, typed, output)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def fake() -> Any:
    async with open_fake_realtime(key=KEY) as fake:
        yield fake


# --- settings and the command line -----------------------------------------------


def test_the_seed_variables_are_read() -> None:
    kinds = [RealtimeSettings]
    environ = {
        "OPENAI_API_KEY": KEY,
        "OPENAI_REALTIME_MODEL": "gpt-realtime-mini",
        "OPENAI_REALTIME_URL": URL,
        "WEBSOCKET_MAX_CONNECTIONS": "3",
        "WEBSOCKET_MAX_CONNECTION_AGE": "60",
        "WEBSOCKET_MAX_IDLE_TIME": "5",
        "WEBSOCKET_HEALTH_CHECK_INTERVAL": "2",
        "WEBSOCKET_MAX_SESSIONS_PER_CONNECTION": "4",
        "WEBSOCKET_PING_INTERVAL": "7",
        "WEBSOCKET_PING_TIMEOUT": "8",
        "WEBSOCKET_CLOSE_TIMEOUT": "9",
    }
    settings = load_settings(environ=environ, sections=kinds)
    config = settings.section(RealtimeSettings).pool_config()
    assert config.shown() | {"lease_timeout": None, "connect_timeout": None} == {
        "max_connections": 3,
        "max_connection_age": 60.0,
        "max_idle_time": 5.0,
        "health_check_interval": 2.0,
        "max_sessions_per_connection": 4,
        "ping_interval": 7.0,
        "ping_timeout": 8.0,
        "close_timeout": 9.0,
        "openai_model": "gpt-realtime-mini",
        "openai_api_base_url": URL,
        "websocket_url": URL + "?model=gpt-realtime-mini",
        "lease_timeout": None,
        "connect_timeout": None,
    }
    assert KEY not in repr(settings)
    assert KEY not in orjson.dumps(settings.redacted()).decode()


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="WEBSOCKET_MAX_CONNECTIONS"):
        load_settings(
            environ={"WEBSOCKET_MAX_CONNECTIONS": "0"}, sections=[RealtimeSettings]
        )
    with pytest.raises(SettingsError, match=r"OPENAI_REALTIME_URL.*ws://"):
        load_settings(
            environ={"OPENAI_REALTIME_URL": "https://x"}, sections=[RealtimeSettings]
        )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPENAI_REALTIME_URL", "ws://[::1"),
        ("OPENAI_REALTIME_URL", "ws://api.example:99999/v1/realtime"),
        ("OPENAI_REALTIME_URL", "wss://"),
        ("OPENAI_REALTIME_MODEL", ""),
    ],
)
def test_values_the_pool_refuses_are_refused_naming_the_variable(
    name: str, value: str
) -> None:
    # Refused with the settings (naming where the value came from), not
    # later by the pool's configuration with a field name the user never saw.
    with pytest.raises(SettingsError, match=f"^{name}: "):
        load_settings(
            environ={"OPENAI_API_KEY": KEY, name: value}, sections=[RealtimeSettings]
        )


def test_the_engine_needs_a_key() -> None:
    settings = settings_of(URL, "--engine", "realtime", key=None)
    with pytest.raises(SettingsError, match="OPENAI_API_KEY"):
        make_engine(settings, [RealtimeCapability()])


def test_without_a_key_the_capability_is_off() -> None:
    settings = settings_of(URL, key=None)
    realtime = RealtimeCapability()
    NeuroProcess(
        settings,
        make_engine(settings, [realtime]),
        capabilities=[ControlPlaneCapability(), GamesCapability(), realtime],
        out=io.StringIO(),
    )
    assert realtime.pool is None


async def test_cli_engine_realtime_without_a_key_is_one_line_and_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = await run("--engine", "realtime", env=env)
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in one_error_line(result)


async def test_cli_help_lists_the_engine_and_the_seed_variables() -> None:
    result = await run("--help")
    text = " ".join(result.stdout.decode().split())
    assert "{console,random,realtime}" in text
    for name in ("OPENAI_API_KEY", "OPENAI_REALTIME_MODEL", "WEBSOCKET_PING_TIMEOUT"):
        assert name in text


async def test_cli_print_config_redacts_the_key() -> None:
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    result = await run("--print-config", env=env)
    assert result.returncode == 0
    assert KEY not in result.stdout.decode()
    shown = orjson.loads(result.stdout)
    assert shown["realtime"]["api_key"] != KEY


async def test_cli_engine_realtime_plays_a_game_through_the_api(
    fake: FakeRealtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.script(FunctionCall("play", '{"cell": 5}'))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    flags = ["--engine", "realtime", "--realtime-url", fake.url, "--no-console"]
    async with server_process(*flags) as server, game(server.url) as ws:
        await force(ws)
        action = await recv_action(ws)
        assert (action.name, orjson.loads(action.data_json or "")) == (
            "play",
            {"cell": 5},
        )
        assert fake.connections[0].headers["authorization"] == f"Bearer {KEY}"
        assert (
            TITLE in fake.connections[0].responses[0]["input"][0]["content"][0]["text"]
        )
        assert PLAY.name == "play"


class _Offers(Capability):
    """A third-party capability offering engines (it makes none here)."""

    def __init__(self, name: str, *engines: str) -> None:
        self.name = name  # type: ignore[misc]
        self.engines = engines  # type: ignore[misc]
        self.made: list[str] = []

    def make_engine(
        self, name: str, settings: Settings, config: ServerConfig
    ) -> AbstractTrioNeuroServer:
        self.made.append(name)
        raise SettingsError(f"--engine {name}: {self.name} cannot make it here")


def test_a_third_party_engine_is_made_by_its_capability(
    capsys: pytest.CaptureFixture[str],
) -> None:
    llm = _Offers("llm", "llm")
    with pytest.raises(SystemExit) as exited:
        main(
            ["--engine", "llm"], environ={}, capabilities=[*default_capabilities(), llm]
        )
    assert exited.value.code == 2
    assert llm.made == ["llm"]
    assert capsys.readouterr().err == (
        "neuro_api.server: error: --engine llm: llm cannot make it here\n"
    )


@pytest.mark.parametrize(
    ("offers", "clash"),
    [
        ([_Offers("hijack", "random")], "'random'"),
        ([_Offers("one", "llm"), _Offers("two", "llm")], "'llm'"),
    ],
)
def test_an_engine_name_offered_twice_is_a_one_line_error(
    offers: list[Capability], clash: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Else the first capability silently takes the name: a plug-in could
    # replace --engine random without anyone noticing.
    with pytest.raises(SystemExit) as exited:
        main(
            ["--engine", "random", "--print-config"],
            environ={},
            capabilities=[*default_capabilities(), *offers],
        )
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("neuro_api.server: error: ")
    assert clash in line
    assert all(not o.made for o in offers if isinstance(o, _Offers))


def test_specs_keeps_its_documentation() -> None:
    # The settings page documents SPECS with the string under it
    # (autodata); core_specs must not come between them.
    module = ast.parse(pathlib.Path(settings_module.__file__).read_text("utf-8"))
    body = module.body
    (at,) = [
        n
        for n, node in enumerate(body)
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "SPECS"
    ]
    after = body[at + 1]
    assert isinstance(after, ast.Expr)
    assert isinstance(after.value, ast.Constant)
    assert "Every core setting" in str(after.value.value)


# --- routes, health, stats, console ------------------------------------------------


async def test_routes_have_the_seed_bodies_and_never_the_key(
    fake: FakeRealtime,
) -> None:
    fake.script(FunctionCall("play", '{"cell": 1}'))
    async with running(fake, "--engine", "realtime") as run_:
        async with connect(run_.games_url, "Tic Tac Toe") as g:
            await g.startup()
            await g.register(PLAY)
            await g.force("play")
            await g.expect_action()
        async with run_.http(token=None) as public:
            health = await public.get("/realtime/health")
            assert health.status_code == 200
            assert set(health.json()) == {"status", "websocket_manager", "message"}
            assert (await public.get("/realtime/stats")).status_code == 401
            assert (await public.get("/realtime/config")).status_code == 401
        async with run_.http() as admin:
            stats = (await admin.get("/realtime/stats")).json()
            config = (await admin.get("/realtime/config")).json()
            main_health = (await admin.get("/health")).json()
            main_stats = (await admin.get("/stats")).json()
            main_config = (await admin.get("/config")).text
    assert stats["total_sessions_handled"] == 1
    assert stats["total_connections"] == 1
    assert [c["state"] for c in stats["connections"]] == ["idle"]
    assert config["websocket_manager"]["websocket_url"].startswith(fake.url)
    assert main_health["capabilities"]["realtime"]["status"] == "healthy"
    realtime_stats = main_stats["capabilities"]["realtime"]
    assert realtime_stats["engine"]["answered"] == 1
    for text in (str(stats), str(config), str(main_health), main_config):
        assert KEY not in text


async def test_a_refused_key_makes_health_degraded_with_the_reason(
    fake: FakeRealtime,
) -> None:
    fake.key = "sk-another-key-entirely"
    async with running(fake, "--engine", "realtime") as run_:
        async with connect(run_.games_url, "Tic Tac Toe") as g:
            await g.startup()
            await g.register(PLAY)
            await g.force("play")
            await g.expect_action()  # answered at random
        async with run_.http() as admin:
            health = (await admin.get("/health")).json()
            pool = (await admin.get("/realtime/health")).json()
    assert health["status"] == "degraded"
    assert pool["status"] == "degraded"
    assert "HTTP 401" in pool["problem"]
    assert KEY not in str(health)


async def test_the_console_shows_the_pool(fake: FakeRealtime) -> None:
    async with running(fake, "--engine", "random") as run_:
        pool = run_.realtime.pool
        assert pool is not None
        async with pool.connection_context():
            await run_.type("realtime")
            await eventually(lambda: "leases: 1 active" in run_.output.getvalue())
    text = run_.output.getvalue()
    assert "realtime: healthy" in text
    assert "model gpt-realtime" in text
    assert KEY not in text


async def test_the_pool_stops_after_the_games(fake: FakeRealtime) -> None:
    async with running(fake, "--engine", "realtime") as run_:
        order = run_.process.supervisor.start_order()
    # Started before games connect, stopped after they left (reverse order).
    assert order.index("realtime-pool") < order.index("games")
    assert isinstance(run_.process.server, RealtimeNeuroServer)


async def test_a_key_the_api_echoes_is_not_in_the_realtime_routes(
    fake: FakeRealtime,
) -> None:
    fake.script(Error("invalid_api_key", f"Incorrect API key provided: {KEY}"))
    async with (
        running(fake, "--engine", "realtime") as run_,
        connect(run_.games_url, "Tic Tac Toe") as g,
        run_.http() as admin,
    ):
        await g.startup()
        await g.register(PLAY)
        await g.force("play")
        await g.expect_action()  # answered at random
        games = (await admin.get("/games")).text
        texts = [
            (await admin.get(path)).text
            for path in ("/realtime/stats", "/realtime/health", "/stats")
        ]
    assert "engine-fallback" in games
    assert "invalid_api_key" in texts[0]
    for text in (games, *texts):
        assert KEY not in text
