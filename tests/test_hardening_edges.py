"""Edge cases of the hardening parts: odd schemas, odd platforms, odd peers."""

from __future__ import annotations

import ctypes
import functools
import math
import random
import sys
import time
from typing import Any

import pytest
import trio
import trio.testing
from server_helpers import RecordingServer, connect, start_server
from status_helpers import eventually
from trio_websocket import WebSocketRequest, open_websocket_url

from neuro_api import _validators
from neuro_api._sizes import least_size
from neuro_api._wsserve import (
    ConnectionLimit,
    Listening,
    _WatchedStream,
    serve_websocket,
)
from neuro_api.command import Action
from neuro_api.control import create_app
from neuro_api.schema import GenerationError, GenerationLimitError, check_action
from neuro_api.server import (
    DataGenerator,
    RandomNeuroServer,
    ServerConfig,
    _generation,
    _memory,
)

# --- sizes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "size"),
    [
        ({"type": "string", "minLength": math.inf}, 2),  # not a bound at all
        ({"type": "string", "minLength": 2.5}, 5),
        ({"const": float("nan")}, 4),  # orjson writes null
        ({"type": "array", "minItems": 2, "items": [{"const": "ab"}]}, 8),
        ({"type": "array", "minItems": 1, "prefixItems": [{"const": 12345}]}, 7),
        (
            {
                "allOf": [{"$ref": "#/$defs/s"}],
                "$defs": {"s": {"type": "string", "minLength": 4}},
            },
            6,
        ),
        ({"anyOf": [{"$ref": "#/anyOf/1"}, {"const": "xyz"}]}, 5),
        ({"$ref": "#/nowhere"}, 0),
        # Indexes int() refuses: not found (were a ValueError that ended the
        # game's connection when it registered the schema).
        ({"anyOf": [{"$ref": "#/anyOf/\u00b2"}, {"const": "xyz"}]}, 0),
        ({"anyOf": [{"$ref": "#/anyOf/" + "1" * 5000}, {"const": "xyz"}]}, 0),
        ({"anyOf": [{"$ref": "#/anyOf/01"}, {"const": "xyz"}]}, 0),  # RFC 6901
        ({"anyOf": [{"$ref": "#/anyOf/0"}, {"const": "xyz"}]}, 0),  # itself
        ({"$ref": "https://example.com/s"}, 0),
    ],
)
def test_least_size_of_odd_schemas(schema: Any, size: int) -> None:
    assert least_size(schema) == size


def test_least_size_of_a_value_json_cannot_hold() -> None:
    assert least_size({"const": {1: 2}}) == 0  # not JSON: no bound


# --- validators -----------------------------------------------------------------------


def test_a_schema_keyword_of_the_wrong_type_is_reported() -> None:
    found = check_action(Action("a", "A", {"type": "object", "$schema": 5}))
    assert "action.schema-invalid" in [d.id for d in found]


def test_draft_3_is_checked_by_the_reference() -> None:
    draft3 = "http://json-schema.org/draft-03/schema#"
    good = {
        "$schema": draft3,
        "type": "object",
        "properties": {"a": {"required": True}},
    }
    bad = {"$schema": draft3, "type": "object", "properties": 5}
    assert _validators.schema_problem(good) is None
    assert "properties" in (_validators.schema_problem(bad) or "")


def test_a_pattern_no_engine_compiles_is_refused() -> None:
    problem = _validators.schema_problem(
        {"type": "object", "properties": {"a": {"pattern": "(unclosed"}}}
    )
    assert problem == "'(unclosed' is not a regex (at properties/a/pattern)"


# --- the WebSocket server's parts -----------------------------------------------------


def test_a_connection_limit_must_allow_one() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionLimit(0)


async def test_the_watched_stream_passes_everything_on() -> None:
    left, right = trio.testing.memory_stream_pair()
    watched = _WatchedStream(left)
    gone: list[bool] = []
    watched.on_gone = lambda: gone.append(True)
    await watched.wait_send_all_might_not_block()
    await watched.send_all(b"hi")
    assert await right.receive_some() == b"hi"
    await right.aclose()
    assert await watched.receive_some() == b""
    assert gone == [True]
    await watched.aclose()


async def test_the_handler_sees_the_request_as_trio_websocket_shows_it(
    nursery: trio.Nursery,
) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: WebSocketRequest) -> None:
        seen["path"] = request.path
        seen["protocols"] = request.proposed_subprotocols
        seen["headers"] = {k.lower(): v for k, v in request.headers}
        seen["local"] = request.local
        seen["remote"] = request.remote
        websocket = await request.accept(subprotocol="neuro")
        await websocket.send_message("hello")

    listening: Listening = await nursery.start(
        functools.partial(serve_websocket, handler, "127.0.0.1", 0, None)
    )
    url = f"ws://127.0.0.1:{listening.port}/game?x=1"
    async with open_websocket_url(url, subprotocols=["neuro"]) as websocket:
        assert await websocket.get_message() == "hello"
    assert seen["path"] == "/game?x=1"
    assert seen["protocols"] == ("neuro",)
    assert seen["headers"][b"upgrade"] == b"websocket"
    assert seen["local"].port == listening.port
    assert str(seen["remote"].address) == "127.0.0.1"
    assert not seen["local"].is_ssl


# --- generation -----------------------------------------------------------------------


def test_generator_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_size"):
        DataGenerator(max_size=0)
    with pytest.raises(ValueError, match="timeout"):
        DataGenerator(timeout=0)


async def test_a_draw_that_overstays_its_time_is_abandoned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def stuck(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)  # a worker that does not notice its time limit
        return {}

    monkeypatch.setattr(_generation, "generate_data", stuck)
    generator = DataGenerator(timeout=0.1)
    big = {
        "type": "object",
        "properties": {"a": {"type": "string", "minLength": 20_000}},
        "required": ["a"],
    }
    with pytest.raises(GenerationLimitError, match="busy"):
        await generator.generate(big)


async def test_the_random_engine_skips_what_it_cannot_generate_unforced(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="neuro_api.server.random")
    server = RandomNeuroServer(unforced_interval=1.0, seed=2)
    empty = Action(
        "odd",
        "No value",
        {"type": "object", "properties": {"a": {"enum": []}}, "required": ["a"]},
    )
    assert server.pick_now((empty,)) is None
    info = await start_server(nursery, server)
    async with connect(info.url, "Odd") as game:
        await game.startup()
        await game.register(empty)
        with trio.fail_after(30):
            while not any("not acting unforced" in m for m in caplog.messages):  # noqa: ASYNC110
                await trio.sleep(0.5)
        await game.expect_silence(0.1)


def test_the_random_engine_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="delay"):
        RandomNeuroServer(delay=-1)
    with pytest.raises(ValueError, match="unforced_interval"):
        RandomNeuroServer(unforced_interval=0)


# --- memory ---------------------------------------------------------------------------


def test_malloc_trim_is_only_used_where_it_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _memory._malloc_trim() is None
    monkeypatch.setattr(sys, "platform", "linux")

    def no_libc(name: Any) -> Any:
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert _memory._malloc_trim() is None


# --- the control plane ----------------------------------------------------------------


async def test_a_frame_too_large_from_any_route_is_a_413(nursery: trio.Nursery) -> None:
    server = RecordingServer(ServerConfig(max_message_size=2048))
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await server.settle(game)
        app = create_app(server)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            response = await client.post(
                "/games/Game/speech-finished", json={"reason": "x" * 3000}
            )
            assert response.status_code == 413
            body = await response.get_json()
            assert body["error"]["code"] == "payload_too_large"
            assert "2048 byte limit" in body["error"]["message"]


def test_generation_errors_name_their_kind() -> None:
    assert issubclass(GenerationLimitError, GenerationError)
    assert random.Random(1).random() < 1


async def test_a_schema_pointing_at_a_superscript_index_keeps_the_game() -> None:
    # "#/.../²": str.isdigit() said yes, int() raised, and the traceback
    # ended the game's connection.
    server = RandomNeuroServer()
    schema = {
        "type": "object",
        "required": ["v"],
        "properties": {
            "v": {"$ref": "#/properties/w/items/\u00b2"},
            "w": {"type": "array", "items": [{"type": "string"}]},
        },
    }
    async with trio.open_nursery() as nursery:
        info = await start_server(nursery, server)
        async with connect(info.url, "Refs") as game:
            await game.startup()
            await game.register(Action("odd", "An odd pointer", schema))
            await game.register(Action("fine", "A fine action"))
            await eventually(lambda: any("fine" in c.actions for c in server.games()))
            (client,) = server.games()
            assert "action.rejected" in {d.id for d in client.diagnostics}
        nursery.cancel_scope.cancel()
