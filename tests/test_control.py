"""The HTTP control plane against a live Neuro server and real game sockets.

Routes are driven through Quart's in-process client (the HTTP socket adds
nothing there) except for one test through real Hypercorn on port 0 and the
event stream, which needs a streaming HTTP client.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import hypercorn.config
import hypercorn.trio
import jsonschema
import orjson
import pytest
import trio
from quart.typing import TestClientProtocol as HttpClient
from trio_websocket import WebSocketConnection, open_websocket_url

from neuro_api import command
from neuro_api._origins import is_loopback_host
from neuro_api.command import Action, ForcePriority
from neuro_api.control import create_app
from neuro_api.control._bodies import json_body
from neuro_api.schema import validate_action_data
from neuro_api.server import (
    AbstractTrioNeuroServer,
    ServerConfig,
    TrioNeuroServerClient,
)

URL = "/games/Tic Tac Toe/actions/play"
PLAY = Action(
    "play",
    "Play a cell",
    {
        "type": "object",
        "properties": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["cell"],
    },
)
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class QuietServer(AbstractTrioNeuroServer):
    """An engine that never answers forces on its own."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        super().__init__(config)
        self.context: list[str] = []

    def add_context(
        self, game_title: str, message: str, reply_if_not_busy: bool
    ) -> None:
        self.context.append(message)

    async def choose_force_action(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


def game_client(
    server: QuietServer, title: str = "Tic Tac Toe"
) -> TrioNeuroServerClient:
    client = server.get_client(title)
    if client is None:
        raise LookupError(title)
    return client


async def eventually(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds (server state seen from outside)."""
    with trio.fail_after(5):
        while True:
            try:
                if check():
                    return
            except LookupError:
                pass
            await trio.sleep(0.01)


async def recv(ws: WebSocketConnection) -> command.NeuroMessage:
    with trio.fail_after(5):
        return command.parse_neuro_frame(await ws.get_message())


@pytest.fixture
async def server(nursery: trio.Nursery) -> QuietServer:
    engine = QuietServer()
    info = await nursery.start(engine.run, "127.0.0.1", 0)
    engine.url = info.url  # type: ignore[attr-defined]
    return engine


async def connect_game(
    server: QuietServer, title: str = "Tic Tac Toe"
) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(server.url) as ws:  # type: ignore[attr-defined]
        await ws.send_message(command.startup_command(title).decode())
        await recv(ws)
        await ws.send_message(command.actions_register_command(title, [PLAY]).decode())
        await eventually(lambda: bool(game_client(server, title).actions))
        yield ws


@pytest.fixture
async def game(server: QuietServer) -> AsyncIterator[WebSocketConnection]:
    async for ws in connect_game(server):
        yield ws


@pytest.fixture
async def client(server: QuietServer) -> AsyncIterator[HttpClient]:
    app = create_app(
        server, token=TOKEN, settings=lambda: {"port": 1, "api_token": "***"}
    )
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def body(response: Any) -> Any:
    return orjson.loads(await response.get_data())


async def test_list_games_shows_actions_and_force(
    server: QuietServer, game: WebSocketConnection, client: HttpClient
) -> None:
    await game.send_message(
        command.actions_force_command(
            "Tic Tac Toe", "board", "your turn", ["play"], priority=ForcePriority.HIGH
        ).decode()
    )
    await eventually(lambda: game_client(server).active_force is not None)
    response = await client.get("/games", headers=AUTH)
    assert response.status_code == 200
    (listed,) = (await body(response))["games"]
    assert listed["game"] == "Tic Tac Toe"
    assert listed["actions"] == [PLAY.to_json()]
    assert listed["force"]["priority"] == "high"
    assert listed["force"]["action_names"] == ["play"]
    one = await client.get(f"/games/{listed['session_id']}", headers=AUTH)
    assert (await body(one))["game"] == "Tic Tac Toe"


async def test_a_game_shows_its_retries_left_and_its_result_timer(
    server: QuietServer, game: WebSocketConnection, client: HttpClient
) -> None:
    await game.send_message(
        command.actions_force_command("Tic Tac Toe", None, "go", ["play"]).decode()
    )
    await eventually(lambda: game_client(server).active_force is not None)
    (listed,) = (await body(await client.get("/games", headers=AUTH)))["games"]
    assert listed["force"]["retries_left"] == server.config.max_retries
    assert listed["pending"] == []  # the engine is choosing: no timer yet
    raw = {"command": "action", "data": {"id": "t-1", "name": "play", "data": "{}"}}
    await client.post("/", data=orjson.dumps(raw), headers=AUTH)
    await recv(game)
    (listed,) = (await body(await client.get("/games", headers=AUTH)))["games"]
    (pending,) = listed["pending"]
    assert (pending["id"], pending["action"]) == ("t-1", "play")
    assert 0 < pending["seconds_left"] <= server.config.result_timeout


async def test_execute_returns_the_games_result(
    nursery: trio.Nursery, game: WebSocketConnection, client: HttpClient
) -> None:
    async def answer() -> None:
        message = await recv(game)
        assert isinstance(message, command.ActionMessage)
        assert orjson.loads(message.data_json or "null") == {"cell": 5}
        await game.send_message(
            command.actions_result_command(
                "Tic Tac Toe", message.id, False, "taken"
            ).decode()
        )

    nursery.start_soon(answer)
    response = await client.post(
        "/games/Tic Tac Toe/actions/play", json={"data": {"cell": 5}}, headers=AUTH
    )
    assert response.status_code == 200
    outcome = (await body(response))["outcome"]
    assert outcome["status"] == "failure"
    assert outcome["message"] == "taken"


@pytest.mark.parametrize(
    "request_body", [{}, {"json": {}}, {"json": {"data": None}}], ids=str
)
async def test_execute_without_data_generates_valid_data(
    nursery: trio.Nursery,
    game: WebSocketConnection,
    client: HttpClient,
    request_body: dict[str, Any],
) -> None:
    async def answer() -> None:
        message = await recv(game)
        assert isinstance(message, command.ActionMessage)
        assert validate_action_data(PLAY.schema, message.data_json).ok
        assert message.data_json is not None
        await game.send_message(
            command.actions_result_command(
                "Tic Tac Toe", message.id, True, "ok"
            ).decode()
        )

    nursery.start_soon(answer)
    response = await client.post(URL, headers=AUTH, **request_body)
    assert response.status_code == 200, await body(response)
    assert (await body(response))["outcome"]["status"] == "success"


async def test_execute_without_data_on_purpose(
    nursery: trio.Nursery, game: WebSocketConnection, client: HttpClient
) -> None:
    async def answer() -> None:
        message = await recv(game)
        assert isinstance(message, command.ActionMessage)
        assert message.data_json is None
        await game.send_message(
            command.actions_result_command(
                "Tic Tac Toe", message.id, False, "no cell"
            ).decode()
        )

    nursery.start_soon(answer)
    response = await client.post(URL, json={"validate": False}, headers=AUTH)
    assert (await body(response))["outcome"]["message"] == "no cell"


async def test_execute_says_when_no_data_can_be_generated(
    server: QuietServer, client: HttpClient
) -> None:
    huge = Action(
        "huge",
        "Ten megabytes",
        {
            "type": "object",
            "properties": {"a": {"type": "string", "minLength": 10**7}},
            "required": ["a"],
        },
    )
    async for greedy in connect_game(server, "Greedy"):
        await greedy.send_message(
            command.actions_register_command("Greedy", [huge]).decode()
        )
        await eventually(lambda: "huge" in game_client(server, "Greedy").actions)
        response = await client.post("/games/Greedy/actions/huge", headers=AUTH)
        assert response.status_code == 400
        error = (await body(response))["error"]
        assert error["code"] == "cannot_generate_data"
        assert "65536" in error["message"]


async def test_execute_invalid_data_on_purpose(
    nursery: trio.Nursery, game: WebSocketConnection, client: HttpClient
) -> None:
    async def answer() -> None:
        message = await recv(game)
        assert isinstance(message, command.ActionMessage)
        assert message.data_json == "{not json"
        await game.send_message(
            command.actions_result_command(
                "Tic Tac Toe", message.id, False, "bad json"
            ).decode()
        )

    nursery.start_soon(answer)
    response = await client.post(
        "/games/Tic Tac Toe/actions/play",
        json={"raw": "{not json", "validate": False},
        headers=AUTH,
    )
    assert (await body(response))["outcome"]["message"] == "bad json"


@pytest.mark.parametrize(
    ("path", "payload", "status", "code"),
    [
        (
            "/games/Tic Tac Toe/actions/play",
            {"data": {"cell": 10}},
            400,
            "invalid_action_data",
        ),
        (URL, {"data": {}}, 400, "invalid_action_data"),
        (
            "/games/Tic Tac Toe/actions/play",
            {"raw": "{oops"},
            400,
            "invalid_action_data",
        ),
        (
            "/games/Tic Tac Toe/actions/play",
            {"raw": "1", "data": 1},
            400,
            "invalid_request",
        ),
        (
            "/games/Tic Tac Toe/actions/play",
            {"validate": "maybe"},
            400,
            "invalid_request",
        ),
        ("/games/Tic Tac Toe/actions/jump", {"data": {}}, 404, "unknown_action"),
        ("/games/Nope/actions/play", {"data": {}}, 404, "unknown_game"),
        ("/games/*/actions/play", {"data": {}}, 400, "one_game_only"),
        ("/games/Nope/reregister", {}, 404, "unknown_game"),
    ],
)
async def test_bad_requests_get_json_errors(
    game: WebSocketConnection,
    client: HttpClient,
    path: str,
    payload: dict[str, Any],
    status: int,
    code: str,
) -> None:
    response = await client.post(path, json=payload, headers=AUTH)
    assert response.status_code == status
    error = (await body(response))["error"]
    assert error["code"] == code
    assert error["message"]


async def test_invalid_json_body(game: WebSocketConnection, client: HttpClient) -> None:
    response = await client.post(
        "/games/Tic Tac Toe/actions/play",
        data=b"{broken",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert (await body(response))["error"]["code"] == "invalid_json"


GRACEFUL = "/games/Tic Tac Toe/shutdown/graceful"
SPEECH = "/games/Tic Tac Toe/speech-finished"
BOOLEAN = "{}: Input should be a valid boolean"


async def test_an_empty_body_is_an_empty_object(
    game: WebSocketConnection, client: HttpClient
) -> None:
    response = await client.post(GRACEFUL, headers=AUTH)
    assert response.status_code == 200
    assert await recv(game) == command.GracefulShutdown(wants_shutdown=True)

    json_type = {**AUTH, "Content-Type": "application/json"}
    response = await client.post(GRACEFUL, data=b"", headers=json_type)
    assert response.status_code == 200
    assert await recv(game) == command.GracefulShutdown(wants_shutdown=True)

    speech = await client.post("/games/Tic Tac Toe/speech-finished", headers=AUTH)
    assert speech.status_code == 200
    assert await recv(game) == command.SpeechFinished(
        is_final=True, cancelled=False, reason=None
    )

    # {} for an action: valid data is generated for it (test_execute_generates).


async def test_a_body_that_is_not_json_is_refused(
    game: WebSocketConnection, client: HttpClient
) -> None:
    json_type = {**AUTH, "Content-Type": "application/json"}
    for data, headers in (
        (b"wants_shutdown=false", json_type),
        (b'{"wants_shutdown": false}', AUTH),  # JSON, not said to be
        (b'{"wants_shutdown": false}', {**AUTH, "Content-Type": "text/plain"}),
    ):
        response = await client.post(GRACEFUL, data=data, headers=headers)
        assert response.status_code == 400
        assert (await body(response))["error"]["code"] == "invalid_json"
    response = await client.post(
        GRACEFUL, data=b' {"wants_shutdown": false} ', headers=json_type
    )
    assert response.status_code == 200
    assert await recv(game) == command.GracefulShutdown(wants_shutdown=False)


@pytest.mark.parametrize(
    ("path", "payload", "message"),
    [
        (
            GRACEFUL,
            {"wants_shutdown": "maybe"},
            "wants_shutdown: Input should be a valid boolean",
        ),
        (GRACEFUL, [1], "body: Input should be a JSON object"),
        (
            "/games/Tic Tac Toe/speech-finished",
            {"is_final": [], "reason": 5},
            "is_final: Input should be a valid boolean; "
            "reason: Input should be a valid string",
        ),
        # Booleans are JSON booleans: no strings, numbers or null read as one.
        (URL, {"validate": "no"}, "validate: Input should be a valid boolean"),
        (URL, {"validate": 0}, "validate: Input should be a valid boolean"),
        (GRACEFUL, {"wants_shutdown": "false"}, BOOLEAN.format("wants_shutdown")),
        (GRACEFUL, {"wants_shutdown": 1}, BOOLEAN.format("wants_shutdown")),
        (SPEECH, {"is_final": "yes"}, BOOLEAN.format("is_final")),
        (SPEECH, {"cancelled": "off"}, BOOLEAN.format("cancelled")),
        (SPEECH, {"cancelled": None}, BOOLEAN.format("cancelled")),
        (URL, {"raw": 5}, "raw: Input should be a valid string"),
        # Unknown fields are named, not ignored.
        (
            URL,
            {"cell": 5},
            'cell: unknown field; the action\'s data goes in "data"',
        ),
        (
            GRACEFUL,
            {"wants_shutdown": False, "now": True},
            'now: unknown field; the fields are "wants_shutdown"',
        ),
        (
            SPEECH,
            {"final": True},
            'final: unknown field; the fields are "is_final", "cancelled", "reason"',
        ),
    ],
)
async def test_validation_errors_are_one_readable_line(
    game: WebSocketConnection,
    client: HttpClient,
    path: str,
    payload: Any,
    message: str,
) -> None:
    response = await client.post(path, json=payload, headers=AUTH)
    assert response.status_code == 400
    error = (await body(response))["error"]
    assert error == {"code": "invalid_request", "message": message}


async def test_unknown_route_is_json(client: HttpClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert (await body(response))["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/games"),
        ("GET", "/games/Tic Tac Toe"),
        ("GET", "/events"),
        ("GET", "/config"),
        ("GET", "/stats"),
        ("POST", "/games/*/reregister"),
        ("POST", "/games/Tic Tac Toe/shutdown/graceful"),
        ("POST", URL),
        ("POST", "/"),
    ],
)
async def test_routes_need_the_token_when_one_is_configured(
    game: WebSocketConnection, client: HttpClient, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        # (quart.typing's protocol forgets that ``json`` is optional.)
        options: dict[str, Any] = {"method": method, "headers": headers}
        response = await client.open(path, **options)
        assert response.status_code == 401
        assert (await body(response))["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (f"Bearer {TOKEN}", 200),
        # HTTP auth schemes are case-insensitive (RFC 7235, section 2.1).
        (f"bearer {TOKEN}", 200),
        (f"BEARER {TOKEN}", 200),
        (f"Bearer   {TOKEN}", 200),
        (f"Bearer {TOKEN}x", 401),  # a token that merely starts right
        (f"Bearer {TOKEN} {TOKEN}", 401),
        (f"Bearer {TOKEN[:-1]}", 401),  # truncated
        (f"Bearer {TOKEN[:1]}", 401),
        ("Bearer ", 401),
        ("Bearer", 401),
        ("", 401),
        ("   ", 401),
        (TOKEN, 401),
        (f"Bearer{TOKEN}", 401),
        (f"XBearer {TOKEN}", 401),
        (f"Basic {TOKEN}", 401),
        ("Basic " + base64.b64encode(f"user:{TOKEN}".encode()).decode(), 401),
        (f"Token {TOKEN}", 401),
    ],
)
async def test_the_bearer_check(
    client: HttpClient, authorization: str, status: int
) -> None:
    response = await client.get("/games", headers={"Authorization": authorization})
    assert response.status_code == status
    if status == 401:
        assert (await body(response))["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="neuro_api"'


@pytest.mark.parametrize("name", ["access_token", "token", "api_token", "Token"])
async def test_a_token_in_the_url_is_refused(client: HttpClient, name: str) -> None:
    # Not a way in, and not even with the header: URLs end up in logs.
    for headers in ({}, AUTH):
        response = await client.get(f"/games?{name}={TOKEN}", headers=headers)
        assert response.status_code == 401
        message = (await body(response))["error"]["message"]
        assert "token in the URL is refused" in message
    # Other query parameters are no problem.
    assert (await client.get("/games?verbose=1", headers=AUTH)).status_code == 200


async def test_health_and_the_documentation_need_no_token(
    game: WebSocketConnection, client: HttpClient
) -> None:
    for path in ("/health", "/openapi.json", "/docs"):
        assert (await client.get(path)).status_code == 200, path
    # A path that matches no route is a 404, token or not.
    assert (await client.get("/nope")).status_code == 404
    # The token opens the reading routes.
    assert (await client.get("/games", headers=AUTH)).status_code == 200


async def test_the_docs_page_loads_everything_from_the_control_plane(
    client: HttpClient,
) -> None:
    # Offline, a page that loads Swagger UI from a CDN is blank.
    page = await client.get("/docs")
    assert page.status_code == 200
    html = await page.get_data(as_text=True)
    assert "//" not in html.replace("://", "")  # no protocol-relative URL
    assert "http://" not in html
    assert "https://" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    kinds = {}
    for url in assets:
        assert url.startswith("/docs/assets/"), url
        response = await client.get(url)  # no token, like /docs
        assert response.status_code == 200, url
        kind = response.headers["Content-Type"].split(";")[0]
        kinds[kind] = await response.get_data()
        cache = response.headers["Cache-Control"]
        assert "public" in cache
        assert "max-age=31536000" in cache
        # A browser that has it asks again with its ETag and gets a 304.
        etag = response.headers["ETag"]
        again = await client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304
    assert sorted(kinds) == ["text/css", "text/javascript"]
    assert b"SwaggerUIBundle" in kinds["text/javascript"]
    assert b".swagger-ui" in kinds["text/css"]

    folder = assets[0].rsplit("/", 1)[0]
    for missing in (
        f"{folder}/swagger-ui-bundle.js.map",
        f"{folder}/../../../openapi.json",
        "/docs/assets/0.0.0/swagger-ui.css",
    ):
        response = await client.get(missing)
        assert response.status_code == 404, missing
        assert (await body(response))["error"]["code"] == "not_found"
    # The files are no part of the API.
    assert not [path for path in (await openapi(client))["paths"] if "docs" in path]


async def test_commands_reach_one_game_or_all(
    server: QuietServer, game: WebSocketConnection, client: HttpClient
) -> None:
    async for other in connect_game(server, "Other Game"):
        response = await client.post("/games/*/reregister", headers=AUTH)
        assert sorted((await body(response))["sent_to"]) == [
            "Other Game",
            "Tic Tac Toe",
        ]
        assert isinstance(await recv(game), command.ReregisterAll)
        assert isinstance(await recv(other), command.ReregisterAll)

        response = await client.post(
            "/games/Other Game/shutdown/graceful",
            json={"wants_shutdown": False},
            headers=AUTH,
        )
        assert (await body(response))["sent_to"] == ["Other Game"]
        assert await recv(other) == command.GracefulShutdown(wants_shutdown=False)

        await client.post("/games/Other Game/shutdown/immediate", headers=AUTH)
        assert isinstance(await recv(other), command.ImmediateShutdown)

        await client.post(
            "/games/Tic Tac Toe/speech-finished",
            json={"cancelled": True, "reason": "interrupted"},
            headers=AUTH,
        )
        assert await recv(game) == command.SpeechFinished(
            is_final=True, cancelled=True, reason="interrupted"
        )


async def test_randy_injection(
    server: QuietServer, game: WebSocketConnection, client: HttpClient
) -> None:
    raw = {"command": "action", "data": {"id": "randy-1", "name": "play", "data": "{}"}}
    response = await client.post("/", data=orjson.dumps(raw), headers=AUTH)
    assert response.status_code == 200
    assert (await body(response))["sent_to"] == ["Tic Tac Toe"]
    message = await recv(game)
    assert message == command.ActionMessage(id="randy-1", name="play", data_json="{}")
    # The injected action is tracked: its result is matched, not "unknown".
    await game.send_message(
        command.actions_result_command("Tic Tac Toe", "randy-1", True, "ok").decode()
    )
    await eventually(lambda: not game_client(server).pending_ids)
    ids = [d.id for d in server.diagnostics.get("Tic Tac Toe", ())]
    assert "result.unknown-id" not in ids

    again = await client.post("/", data=orjson.dumps(raw), headers=AUTH)
    assert again.status_code == 200  # answered ids may be reused once settled
    await recv(game)
    duplicate = await client.post("/", data=orjson.dumps(raw), headers=AUTH)
    assert duplicate.status_code == 409

    bad = await client.post("/", data=b'{"command": "explode"}', headers=AUTH)
    assert bad.status_code == 400
    assert (await body(bad))["error"]["code"] == "invalid_message"


async def test_health_stats_config(
    server: QuietServer, game: WebSocketConnection
) -> None:
    states = iter(["healthy", "unhealthy"])
    app = create_app(
        server,
        health=lambda: {"status": next(states), "services": [{"name": "x"}]},
        settings=lambda: {"api_token": "***"},
    )
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await client.get("/health")).status_code == 200
        unhealthy = await client.get("/health")
        assert unhealthy.status_code == 503
        assert (await body(unhealthy))["services"] == [{"name": "x"}]
        stats = await body(await client.get("/stats"))
        assert stats["connections"] == {"current": 1, "total": 1}
        assert stats["messages"]["in"] >= 2
        assert stats["messages"]["out"] >= 1
        assert set(stats["diagnostics"]["by_severity"]) == {"info", "warning", "error"}
        assert await body(await client.get("/config")) == {"api_token": "***"}
        # Without a token nothing needs one (loopback-only deployments).
        assert (await client.post("/games/*/reregister")).status_code == 200
        assert (await client.get("/games")).status_code == 200


async def test_without_a_token_web_pages_are_refused(server: QuietServer) -> None:
    # Open to local programs, not to a page in the user's browser: a foreign
    # Origin (CSRF) or a non-loopback Host (DNS rebinding) gets 403.
    async with create_app(server).test_app() as test_app:
        client = test_app.test_client()
        forged = await client.post(
            "/games/*/shutdown/immediate",
            headers={"Origin": "https://evil.example", "Host": "127.0.0.1:8001"},
        )
        assert forged.status_code == 403
        assert (await body(forged))["error"]["code"] == "forbidden_origin"
        rebound = await client.get("/games", headers={"Host": "evil.example:8001"})
        assert rebound.status_code == 403
        assert (await body(rebound))["error"]["code"] == "forbidden_host"
        for headers in (
            {"Host": "127.0.0.1:8001"},
            {"Host": "localhost:8001", "Origin": "http://localhost:3000"},
            {"Host": "[::1]:8001", "Origin": "http://127.0.0.1:8001"},
        ):
            assert (await client.get("/games", headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:8001", True),
        ("127.5.6.7:1", True),
        ("localhost", True),
        ("LOCALHOST:80", True),
        ("app.localhost", True),
        ("[::1]:8001", True),
        ("::1", True),
        ("", False),
        ("127.0.0.1.evil.example", False),
        ("evil.example", False),
        ("[::2]:80", False),
        ("0.0.0.0:8001", False),
        ("127.\u00b2", False),  # a superscript two: a digit, not an address
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


async def openapi(client: HttpClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = await body(response)
    return document


async def test_openapi_document(client: HttpClient) -> None:
    document = await openapi(client)
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in (
        "/health",
        "/stats",
        "/config",
        "/events",
        "/games",
        "/games/{game}",
        "/games/{game}/actions/{action}",
        "/games/{game}/reregister",
        "/games/{game}/shutdown/graceful",
        "/games/{game}/shutdown/immediate",
        "/games/{game}/speech-finished",
        "/",
    ):
        assert path in paths, path
    components = document["components"]
    assert components["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": components["securitySchemes"]["bearer"]["description"],
    }
    schemas = components["schemas"]
    assert schemas["ErrorBody"]["properties"]["error"] == {
        "$ref": "#/components/schemas/ErrorDetail"
    }
    assert set(schemas["ErrorDetail"]["required"]) == {"code", "message"}

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [ref for value in node.values() for ref in refs(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in refs(value)]
        return []

    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref

    for path, item in paths.items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            assert responses, where
            assert all(r.get("description") for r in responses.values()), where
            assert "200" in responses, where
            if path == "/health":
                assert "security" not in operation
                assert "401" not in responses
                assert "503" in responses
                continue
            assert operation["security"] == [{"bearer": []}], where
            error = responses["401"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}, where
            if "{game}" in path:
                assert "404" in responses, where
            if "requestBody" in operation:
                assert "400" in responses, where
                assert "413" in responses, where
    assert paths["/"]["post"]["requestBody"]["required"] is True
    graceful = paths["/games/{game}/shutdown/graceful"]["post"]
    assert graceful["requestBody"]["required"] is False
    assert "text/event-stream" in paths["/events"]["get"]["responses"]["200"]["content"]


async def test_without_a_token_the_document_says_it_is_optional(
    server: QuietServer,
) -> None:
    async with create_app(server).test_app() as test_app:
        document = await openapi(test_app.test_client())
    assert document["paths"]["/games"]["get"]["security"] == [{"bearer": []}, {}]


async def test_responses_match_the_documented_schemas(
    server: QuietServer, game: WebSocketConnection, client: HttpClient
) -> None:
    document = await openapi(client)
    await game.send_message("not json")  # a diagnostic to show
    await game.send_message(
        command.actions_force_command(
            "Tic Tac Toe", "board", "your turn", ["play"]
        ).decode()
    )
    await eventually(lambda: game_client(server).active_force is not None)
    session = game_client(server).session_id

    async def check(method: str, path: str, url: str, **options: Any) -> Any:
        response = await client.open(url, method=method, headers=AUTH, **options)
        status = str(response.status_code)
        operation = document["paths"][path][method.lower()]
        assert status in operation["responses"], (url, status)
        media = operation["responses"][status]["content"]["application/json"]
        data = await body(response)
        schema = {**media["schema"], "components": document["components"]}
        jsonschema.Draft202012Validator(schema).validate(data)
        return data

    listed = await check("GET", "/games", "/games")
    assert listed["games"][0]["diagnostics"]
    assert listed["games"][0]["force"] is not None
    await check("GET", "/games/{game}", f"/games/{session}")
    await check("GET", "/stats", "/stats")
    await check("GET", "/config", "/config")
    await check("GET", "/health", "/health")
    await check("GET", "/games/{game}", "/games/Nope")  # 404
    await check("POST", "/games/{game}/reregister", "/games/*/reregister")
    await check(
        "POST",
        "/games/{game}/shutdown/graceful",
        "/games/Tic Tac Toe/shutdown/graceful",
        json={"wants_shutdown": "maybe"},
    )  # 400
    await check("POST", "/", "/", data=b'{"command": "explode"}')  # 400


async def test_real_hypercorn_and_event_stream(
    nursery: trio.Nursery, server: QuietServer, game: WebSocketConnection
) -> None:
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    stop = trio.Event()
    binds = await nursery.start(
        functools.partial(
            hypercorn.trio.serve,
            create_app(server),
            config,
            shutdown_trigger=stop.wait,
        )
    )
    async with httpx.AsyncClient(base_url=binds[0], timeout=5) as http:
        assert (await http.get("/health")).json()["status"] == "healthy"
    # The event stream never ends; read it over a plain socket, which can be
    # closed at any point (httpx's nested generators cannot, under Trio).
    host, port = binds[0].removeprefix("http://").rsplit(":", 1)
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(
            b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Accept: text/event-stream\r\n\r\n"
        )
        received = b""
        with trio.fail_after(5):
            while b": connected" not in received:
                received += await stream.receive_some()
            assert b"200" in received.split(b"\r\n", 1)[0]
            await game.send_message(
                command.context_command("Tic Tac Toe", "hello").decode()
            )
            # Hypercorn chunks the body; wait for the whole event line.
            while not re.search(rb"\ndata: .*hello.*\n", received):
                received += await stream.receive_some()
    data_line = next(
        line for line in received.split(b"\n") if line.startswith(b"data: ")
    ).rstrip(b"\r")
    event = orjson.loads(data_line[6:])
    assert event["type"] == "frame.in"
    assert "hello" in event["frame"]
    stop.set()


def test_every_body_model_is_strict() -> None:
    # json_body refuses a model that would read "no" as false or ignore
    # unknown fields.
    @dataclass
    class Lax:
        flag: bool = False

    with pytest.raises(TypeError, match="STRICT"):
        json_body(Lax)
