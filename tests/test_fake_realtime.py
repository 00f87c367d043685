"""The fake OpenAI Realtime server (tests/fake_realtime), driven by a plain
trio-websocket client.

Rules: everything on 127.0.0.1, port 0; every receive has a deadline
(:func:`recv`); the client closes first (its ``async with`` ends inside the
fake's), except where a test is about the server ending the connection.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from fake_realtime import (
    Close,
    Drop,
    Error,
    Failed,
    FakeConnection,
    FakeRealtime,
    FunctionCall,
    RateLimits,
    Stall,
    Text,
    open_client,
    open_fake_realtime,
)
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection

KEY = "sk-test-key-0123456789"
MODEL = "gpt-realtime"
TOOL = {
    "type": "function",
    "name": "jump",
    "description": "Jump.",
    "parameters": {"type": "object", "properties": {"height": {"type": "integer"}}},
}
DEADLINE = 5.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtime]:
    async with open_fake_realtime(KEY) as server:
        yield server


def connect(
    fake: FakeRealtime,
    *,
    key: str | None = KEY,
    query: str = f"?model={MODEL}",
    path: str = "/v1/realtime",
) -> contextlib.AbstractAsyncContextManager[WebSocketConnection]:
    model = query.removeprefix("?model=") or None
    return open_client(fake, key=key, send_key=key is not None, model=model, path=path)


@contextlib.asynccontextmanager
async def session(
    fake: FakeRealtime,
) -> AsyncIterator[tuple[WebSocketConnection, FakeConnection]]:
    """A connection whose ``session.created`` was read."""
    async with connect(fake) as ws:
        created = await recv(ws)
        assert created["type"] == "session.created"
        yield ws, fake.connections[-1]


async def recv(ws: WebSocketConnection, deadline: float = DEADLINE) -> dict[str, Any]:
    with trio.fail_after(deadline):
        message = await ws.get_message()
    event: dict[str, Any] = orjson.loads(message)
    return event


async def recv_until(
    ws: WebSocketConnection, type_: str, deadline: float = DEADLINE
) -> list[dict[str, Any]]:
    """Every event up to and including the first of ``type_``."""
    events = [await recv(ws, deadline)]
    while events[-1]["type"] != type_:
        events.append(await recv(ws, deadline))
    return events


async def send(ws: WebSocketConnection, **event: Any) -> None:
    await ws.send_message(json.dumps(event))


async def request(ws: WebSocketConnection, type_: str, **fields: Any) -> dict[str, Any]:
    """Send one event and return the next one the server sends."""
    await send(ws, type=type_, **fields)
    return await recv(ws)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def user_message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }


# -- handshake ---------------------------------------------------------------


async def test_accepted_handshake_sends_session_created(fake: FakeRealtime) -> None:
    async with connect(fake) as ws:
        created = await recv(ws)
    assert fake.url.startswith("ws://127.0.0.1:")
    assert fake.url.endswith("/v1/realtime")
    session_ = created["session"]
    assert created["type"] == "session.created"
    assert created["event_id"].startswith("event_")
    assert session_["type"] == "realtime"
    assert session_["object"] == "realtime.session"
    assert session_["id"].startswith("sess_")
    assert session_["model"] == MODEL
    assert session_["output_modalities"] == ["audio"]
    assert (session_["instructions"], session_["tools"]) == ("", [])
    assert (session_["tool_choice"], session_["max_output_tokens"]) == ("auto", "inf")
    assert session_["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert fake.handshakes == 1
    (connection,) = fake.connections
    assert connection.id == 0
    assert connection.model == MODEL
    assert connection.headers["authorization"] == f"Bearer {KEY}"
    assert connection.path == f"/v1/realtime?model={MODEL}"
    assert connection.session == session_
    await connection.wait_closed()
    assert connection.closed
    assert connection.close_code == 1000


def rejection_body(rejected: ConnectionRejected) -> dict[str, Any]:
    assert rejected.body is not None
    body: dict[str, Any] = orjson.loads(rejected.body)
    return body


async def test_wrong_key_is_refused_with_401(fake: FakeRealtime) -> None:
    with pytest.raises(ConnectionRejected) as caught:
        async with connect(fake, key="sk-wrong-key-abcdefgh"):
            pass  # pragma: no cover
    assert caught.value.status_code == 401
    error = rejection_body(caught.value)["error"]
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None
    assert error["message"].startswith("Incorrect API key provided: sk-")
    assert "sk-wrong-key-abcdefgh" not in error["message"]  # masked, as the API does
    assert fake.handshakes == 1
    assert fake.connections == []


async def test_missing_key_is_refused_with_401(fake: FakeRealtime) -> None:
    with pytest.raises(ConnectionRejected) as caught:
        async with connect(fake, key=None):
            pass  # pragma: no cover
    assert caught.value.status_code == 401
    assert (
        "didn't provide an API key" in rejection_body(caught.value)["error"]["message"]
    )


async def test_reject_status_refuses_every_handshake(fake: FakeRealtime) -> None:
    fake.reject_status = 403
    for _ in range(2):
        with pytest.raises(ConnectionRejected) as caught:
            async with connect(fake):
                pass  # pragma: no cover
        assert caught.value.status_code == 403
        assert rejection_body(caught.value)["error"]["type"] == "invalid_request_error"
    fake.reject_status = 401
    with pytest.raises(ConnectionRejected) as caught:
        async with connect(fake):
            pass  # pragma: no cover
    assert rejection_body(caught.value)["error"]["code"] == "invalid_api_key"
    fake.reject_status = 503
    fake.reject_body = b'{"error": "custom"}'
    with pytest.raises(ConnectionRejected) as caught:
        async with connect(fake):
            pass  # pragma: no cover
    assert (caught.value.status_code, caught.value.body) == (503, fake.reject_body)
    await fake.wait_handshakes(4)
    assert fake.connections == []
    fake.reject_status = None
    async with session(fake):
        pass
    assert fake.handshakes == 5


async def test_the_model_is_required(fake: FakeRealtime) -> None:
    with pytest.raises(ConnectionRejected) as caught:
        async with connect(fake, query=""):
            pass  # pragma: no cover
    assert caught.value.status_code == 400
    error = rejection_body(caught.value)["error"]
    assert (error["code"], error["param"]) == ("missing_required_parameter", "model")


async def test_without_model_required_the_model_has_a_default() -> None:
    async with (
        open_fake_realtime(KEY, model_required=False) as fake,
        connect(fake, query="") as ws,
    ):
        created = await recv(ws)
    assert created["session"]["model"] == "gpt-realtime"


async def test_another_path_is_404(fake: FakeRealtime) -> None:
    with pytest.raises(ConnectionRejected) as caught:
        async with connect(fake, path="/v1/other"):
            pass  # pragma: no cover
    assert caught.value.status_code == 404
    assert rejection_body(caught.value)["error"]["message"] == (
        "Invalid URL (GET /v1/other)"
    )


async def test_wait_connections(fake: FakeRealtime) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fake.wait_connections, 2)
        async with session(fake), session(fake):
            with trio.fail_after(DEADLINE):
                await fake.wait_connections(2)
    assert [c.id for c in fake.connections] == [0, 1]


# -- session -----------------------------------------------------------------


async def test_session_update_merges_and_answers_the_whole_session(
    fake: FakeRealtime,
) -> None:
    async with session(fake) as (ws, connection):
        updated = await request(
            ws,
            "session.update",
            event_id="evt_1",
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": "Play the game.",
                "tools": [TOOL],
                "tool_choice": "required",
                "audio": {"output": {"voice": "marin"}},
            },
        )
    assert updated["type"] == "session.updated"
    merged = updated["session"]
    assert merged["output_modalities"] == ["text"]
    assert merged["instructions"] == "Play the game."
    assert merged["tools"] == [TOOL]
    assert merged["tool_choice"] == "required"
    assert merged["audio"]["output"]["voice"] == "marin"
    assert merged["audio"]["output"]["format"]["type"] == "audio/pcm"  # kept
    assert merged["model"] == MODEL
    assert connection.session == merged
    assert connection.received[0]["event_id"] == "evt_1"


@pytest.mark.parametrize(
    ("session_", "code", "param"),
    [
        ({"instructions": "x"}, "missing_required_parameter", "session.type"),
        ({"type": "transcription"}, "invalid_value", "session.type"),
        ({"type": "realtime", "tools": {}}, "invalid_type", "session.tools"),
        (
            {"type": "realtime", "tools": [{**TOOL, "name": "jump high"}]},
            "invalid_value",
            "session.tools[0].name",
        ),
        (
            {"type": "realtime", "tools": [TOOL, {**TOOL, "name": "j" * 65}]},
            "string_above_max_length",
            "session.tools[1].name",
        ),
        (
            {"type": "realtime", "tools": [{"name": "jump"}]},
            "invalid_value",
            "session.tools[0].type",
        ),
        ({"type": "realtime", "tool_choice": "always"}, "invalid_value", None),
        ({"type": "realtime", "tool_choice": {"type": "function"}}, None, None),
        ({"type": "realtime", "output_modalities": ["text", "audio"]}, None, None),
        ({"type": "realtime", "output_modalities": ["video"]}, None, None),
        ({"type": "realtime", "instructions": 3}, "invalid_type", None),
    ],
)
async def test_a_bad_session_update_is_an_error_and_changes_nothing(
    fake: FakeRealtime, session_: dict[str, Any], code: str | None, param: str | None
) -> None:
    async with session(fake) as (ws, connection):
        before = dict(connection.session)
        answer = await request(ws, "session.update", event_id="evt_7", session=session_)
        assert answer["type"] == "error"
        error = answer["error"]
        assert error["type"] == "invalid_request_error"
        assert error["event_id"] == "evt_7"
        if code is not None:
            assert error["code"] == code
        if param is not None:
            assert error["param"] == param
        assert connection.session == before
        # The connection stays usable.
        ok = await request(ws, "session.update", session={"type": "realtime"})
        assert ok["type"] == "session.updated"


async def test_missing_session_type_matches_the_real_message(
    fake: FakeRealtime,
) -> None:
    async with session(fake) as (ws, _):
        answer = await request(ws, "session.update", session={"instructions": "x"})
    assert answer["error"]["message"] == "Missing required parameter: 'session.type'."
    assert answer["error"]["event_id"] is None


# -- conversation items ------------------------------------------------------


async def test_items_are_created_retrieved_and_deleted(fake: FakeRealtime) -> None:
    async with session(fake) as (ws, connection):
        await send(ws, type="conversation.item.create", item=user_message("hi"))
        added, done = await recv(ws), await recv(ws)
        assert (added["type"], done["type"]) == (
            "conversation.item.added",
            "conversation.item.done",
        )
        item_id = added["item"]["id"]
        assert item_id.startswith("item_")
        assert added["previous_item_id"] is None
        assert done["item"] == added["item"]
        assert connection.items[item_id]["content"][0]["text"] == "hi"

        second = user_message("again") | {"id": "mine"}
        await send(ws, type="conversation.item.create", item=second)
        added, _ = await recv(ws), await recv(ws)
        assert added["item"]["id"] == "mine"
        assert added["previous_item_id"] == item_id
        assert list(connection.items) == [item_id, "mine"]

        retrieved = await request(ws, "conversation.item.retrieve", item_id="mine")
        assert retrieved["type"] == "conversation.item.retrieved"
        assert retrieved["item"]["id"] == "mine"

        deleted = await request(ws, "conversation.item.delete", item_id=item_id)
        assert deleted == {
            "type": "conversation.item.deleted",
            "item_id": item_id,
            "event_id": deleted["event_id"],
        }
        assert list(connection.items) == ["mine"]

        again = await request(
            ws, "conversation.item.delete", item_id=item_id, event_id="evt_d"
        )
        assert again["type"] == "error"
        assert again["error"]["code"] == "item_delete_invalid_item_id"
        assert again["error"]["message"] == (
            f"Error deleting item: the item with id '{item_id}' does not exist."
        )
        assert again["error"]["event_id"] == "evt_d"

        unknown = await request(ws, "conversation.item.retrieve", item_id="nope")
        assert unknown["error"]["code"] == "item_retrieve_invalid_item_id"
        duplicate = await request(ws, "conversation.item.create", item=second)
        assert duplicate["error"]["param"] == "item.id"


@pytest.mark.parametrize(
    ("item", "param"),
    [
        (None, "item"),
        ({"type": "note"}, "item.type"),
        ({"type": "message", "role": "robot", "content": []}, "item.role"),
        (
            {"type": "message", "role": "user", "content": [{"type": "text"}]},
            "item.content[0].type",
        ),
        (
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "input_text"}],
            },
            "item.content[0].type",
        ),
        ({"type": "message", "role": "user"}, "item.content"),
        ({"type": "function_call_output", "output": "{}"}, "item.call_id"),
        ({"type": "function_call_output", "call_id": "c", "output": 3}, "item.output"),
    ],
)
async def test_a_bad_item_is_an_error(
    fake: FakeRealtime, item: dict[str, Any] | None, param: str
) -> None:
    async with session(fake) as (ws, connection):
        fields = {} if item is None else {"item": item}
        answer = await request(ws, "conversation.item.create", **fields)
    assert answer["type"] == "error"
    assert answer["error"]["param"] == param
    assert connection.items == {}


async def test_truncate_checks_the_item_and_the_known_audio_length(
    fake: FakeRealtime,
) -> None:
    async with session(fake) as (ws, connection):
        unknown = await request(
            ws,
            "conversation.item.truncate",
            item_id="x",
            content_index=0,
            audio_end_ms=5,
        )
        assert unknown["error"]["code"] == "item_truncate_invalid_item_id"
        await send(ws, type="conversation.item.create", item=user_message("hi"))
        item_id = (await recv(ws))["item"]["id"]
        await recv(ws)
        connection.audio_ms[item_id] = 1000
        too_far = await request(
            ws,
            "conversation.item.truncate",
            item_id=item_id,
            content_index=0,
            audio_end_ms=1500,
        )
        assert too_far["error"]["param"] == "audio_end_ms"
        negative = await request(
            ws,
            "conversation.item.truncate",
            item_id=item_id,
            content_index=-1,
            audio_end_ms=1,
        )
        assert negative["error"]["param"] == "content_index"
        truncated = await request(
            ws,
            "conversation.item.truncate",
            item_id=item_id,
            content_index=0,
            audio_end_ms=400,
        )
    assert truncated["type"] == "conversation.item.truncated"
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 400)
    assert connection.audio_ms[item_id] == 400


async def test_input_audio_buffer(fake: FakeRealtime) -> None:
    audio = base64.b64encode(bytes(480)).decode()
    async with session(fake) as (ws, connection):
        empty = await request(ws, "input_audio_buffer.commit")
        assert empty["error"]["code"] == "input_audio_buffer_commit_empty"
        await send(ws, type="input_audio_buffer.append", audio=audio)
        bad = await request(ws, "input_audio_buffer.append", audio="not base64!")
        assert bad["error"]["param"] == "audio"
        assert connection.audio_buffer == 480
        cleared = await request(ws, "input_audio_buffer.clear")
        assert cleared["type"] == "input_audio_buffer.cleared"
        assert connection.audio_buffer == 0
        await send(ws, type="input_audio_buffer.append", audio=audio)
        committed = await request(ws, "input_audio_buffer.commit")
        added = await recv(ws)
        await recv(ws)
    assert committed["type"] == "input_audio_buffer.committed"
    assert added["item"]["id"] == committed["item_id"]
    assert added["item"]["content"][0]["type"] == "input_audio"
    assert list(connection.items) == [committed["item_id"]]


# -- responses ---------------------------------------------------------------


async def test_function_call_events_in_order(fake: FakeRealtime) -> None:
    fake.script(FunctionCall("jump", '{"height": 3}'))
    async with session(fake) as (ws, connection):
        await request(
            ws, "session.update", session={"type": "realtime", "tools": [TOOL]}
        )
        await send(ws, type="response.create", event_id="evt_r", response={})
        events = await recv_until(ws, "response.done")
    assert types(events) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
    ]
    created, added, _, delta1, delta2, args_done, _, item_done, done = events
    response = created["response"]
    assert response["object"] == "realtime.response"
    assert response["status"] == "in_progress"
    assert response["id"].startswith("resp_")
    assert response["conversation_id"] == connection.conversation_id
    assert response["conversation_id"].startswith("conv_")
    assert response["output"] == []
    item = added["item"]
    assert (item["type"], item["status"], item["name"]) == (
        "function_call",
        "in_progress",
        "jump",
    )
    assert item["call_id"].startswith("call_")
    assert delta1["delta"] + delta2["delta"] == '{"height": 3}'
    for event in (added, delta1, args_done, item_done):
        assert event["response_id"] == response["id"]
        assert event["output_index"] == 0
    assert args_done["item_id"] == item["id"]
    assert args_done["call_id"] == item["call_id"]
    assert (args_done["name"], args_done["arguments"]) == ("jump", '{"height": 3}')
    assert item_done["item"]["status"] == "completed"
    final = done["response"]
    assert final["id"] == response["id"]
    assert final["status"] == "completed"
    assert final["output"] == [item_done["item"]]
    assert final["usage"]["total_tokens"] > 0
    assert connection.items[item["id"]]["arguments"] == '{"height": 3}'
    assert connection.responses == [{}]
    assert connection.active_response is None
    assert [e["event_id"] for e in events] == [
        e["event_id"] for e in connection.sent[-len(events) :]
    ]
    all_ids = [event["event_id"] for event in connection.sent]
    assert len(set(all_ids)) == len(all_ids)


async def test_conversation_none_leaves_the_conversation_alone(
    fake: FakeRealtime,
) -> None:
    params = {
        "conversation": "none",
        "input": [user_message("state: ...")],
        "tools": [TOOL],
        "tool_choice": "required",
        "instructions": "Choose.",
        "output_modalities": ["text"],
        "metadata": {"force": "1"},
    }
    async with session(fake) as (ws, connection):
        await send(ws, type="response.create", response=params)
        events = await recv_until(ws, "response.done")
    assert "conversation.item.added" not in types(events)
    assert "conversation.item.done" not in types(events)
    done = events[-1]["response"]
    assert done["conversation_id"] is None
    assert done["output_modalities"] == ["text"]
    assert done["metadata"] == {"force": "1"}
    assert done["output"][0]["name"] == "jump"  # the default responder
    assert done["output"][0]["arguments"] == "{}"
    assert connection.items == {}
    assert connection.responses == [params]


async def test_input_may_refer_to_items(fake: FakeRealtime) -> None:
    async with session(fake) as (ws, _):
        await send(ws, type="conversation.item.create", item=user_message("hi"))
        item_id = (await recv(ws))["item"]["id"]
        await recv(ws)
        reference = {"type": "item_reference", "id": item_id}
        await send(
            ws,
            type="response.create",
            response={"conversation": "none", "input": [reference]},
        )
        assert (await recv_until(ws, "response.done"))[-1]["type"] == "response.done"
        bad = await request(
            ws,
            "response.create",
            response={"input": [{"type": "item_reference", "id": "gone"}]},
        )
    assert bad["error"]["param"] == "response.input[0].id"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"conversation": "other"}, "response.conversation"),
        ({"input": {}}, "response.input"),
        ({"input": [{"type": "message", "role": "user"}]}, "response.input[0].content"),
        ({"tools": [{**TOOL, "name": "a.b"}]}, "response.tools[0].name"),
        ({"tool_choice": 1}, "response.tool_choice"),
        ({"output_modalities": "text"}, "response.output_modalities"),
        ({"instructions": ["x"]}, "response.instructions"),
        ({"metadata": "x"}, "response.metadata"),
    ],
)
async def test_bad_response_parameters_are_an_error_and_no_response(
    fake: FakeRealtime, params: dict[str, Any], param: str
) -> None:
    async with session(fake) as (ws, connection):
        answer = await request(ws, "response.create", event_id="evt_b", response=params)
        assert answer["type"] == "error"
        assert (answer["error"]["param"], answer["error"]["event_id"]) == (
            param,
            "evt_b",
        )
        assert connection.active_response is None
        not_an_object = await request(ws, "response.create", response="x")
    assert not_an_object["error"]["param"] == "response"


async def test_text(fake: FakeRealtime) -> None:
    fake.script(Text("Hello there"))
    async with session(fake) as (ws, connection):
        await send(ws, type="response.create")
        events = await recv_until(ws, "response.done")
    assert types(events) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
    ]
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "Hello there"
    assert events[6]["text"] == "Hello there"
    message = events[-1]["response"]["output"][0]
    assert (message["type"], message["role"]) == ("message", "assistant")
    assert message["content"] == [{"type": "output_text", "text": "Hello there"}]
    assert connection.items[message["id"]] == message
    assert connection.responses == [{}]


async def test_default_responder(fake: FakeRealtime) -> None:
    other = {**TOOL, "name": "duck"}
    async with session(fake) as (ws, _):
        # No tools anywhere: a text answer.
        await send(ws, type="response.create")
        assert "response.output_text.done" in types(
            await recv_until(ws, "response.done")
        )
        await request(
            ws, "session.update", session={"type": "realtime", "tools": [TOOL]}
        )
        await send(ws, type="response.create")
        done = (await recv_until(ws, "response.done"))[-1]
        assert done["response"]["output"][0]["name"] == "jump"
        # The response's tools win over the session's, and tool_choice names one.
        await send(
            ws,
            type="response.create",
            response={
                "tools": [TOOL, other],
                "tool_choice": {"type": "function", "name": "duck"},
            },
        )
        done = (await recv_until(ws, "response.done"))[-1]
        assert done["response"]["output"][0]["name"] == "duck"
        await send(ws, type="response.create", response={"tools": []})
        assert "response.output_text.done" in types(
            await recv_until(ws, "response.done")
        )
        await send(ws, type="response.create", response={"tool_choice": "none"})
        assert "response.output_text.done" in types(
            await recv_until(ws, "response.done")
        )


async def test_responder_and_several_output_items(fake: FakeRealtime) -> None:
    seen: list[tuple[int, dict[str, Any]]] = []

    def responder(connection: FakeConnection, response: dict[str, Any]) -> Any:
        seen.append((connection.id, response))
        return [FunctionCall("a", "{}"), FunctionCall("b", '{"x": 1}'), Text("done")]

    fake.responder = responder
    async with session(fake) as (ws, _):
        await send(ws, type="response.create", response={"instructions": "go"})
        done = (await recv_until(ws, "response.done"))[-1]["response"]
    assert seen == [(0, {"instructions": "go"})]
    assert [item.get("name") for item in done["output"]] == ["a", "b", None]
    assert done["status"] == "completed"


async def test_rate_limits_come_before_the_response(fake: FakeRealtime) -> None:
    fake.script([RateLimits(tokens_remaining=7), FunctionCall("jump")])
    async with session(fake) as (ws, _):
        await send(ws, type="response.create")
        events = await recv_until(ws, "response.done")
    assert types(events)[:2] == ["rate_limits.updated", "response.created"]
    limits = {limit["name"]: limit for limit in events[0]["rate_limits"]}
    assert limits["tokens"]["remaining"] == 7
    assert limits["requests"] == {
        "name": "requests",
        "limit": 5000,
        "remaining": 4999,
        "reset_seconds": 0.012,
    }


async def test_error_instead_of_a_response(fake: FakeRealtime) -> None:
    fake.script(
        Error("rate_limit_exceeded", "Slow down.", type="rate_limit_error"),
        FunctionCall("jump"),
    )
    async with session(fake) as (ws, connection):
        error = await request(ws, "response.create", event_id="evt_e")
        assert error == {
            "type": "error",
            "event_id": error["event_id"],
            "error": {
                "type": "rate_limit_error",
                "code": "rate_limit_exceeded",
                "message": "Slow down.",
                "param": None,
                "event_id": "evt_e",
            },
        }
        assert connection.active_response is None
        await send(ws, type="response.create")
        events = await recv_until(ws, "response.done")
    assert events[0]["type"] == "response.created"
    assert fake.scripted == type(fake.scripted)()


async def test_error_during_a_response_does_not_end_it(fake: FakeRealtime) -> None:
    fake.script(
        [FunctionCall("jump"), Error("server_error", "Hiccup.", "server_error")]
    )
    async with session(fake) as (ws, _):
        await send(ws, type="response.create", event_id="evt_x")
        events = await recv_until(ws, "response.done")
    assert types(events)[-2:] == ["error", "response.done"]
    assert events[-2]["error"]["event_id"] == "evt_x"
    assert events[-1]["response"]["status"] == "completed"


async def test_failed(fake: FakeRealtime) -> None:
    fake.script(Failed())
    async with session(fake) as (ws, connection):
        await send(ws, type="response.create")
        events = await recv_until(ws, "response.done")
    assert types(events) == ["response.created", "response.done"]
    response = events[-1]["response"]
    assert response["status"] == "failed"
    assert response["status_details"] == {
        "type": "failed",
        "error": {
            "type": "server_error",
            "code": "server_error",
            "message": (
                "The server had an error while processing your request. "
                "Sorry about that!"
            ),
        },
    }
    assert connection.active_response is None


async def test_stall_then_cancel(fake: FakeRealtime) -> None:
    fake.script(Stall(), Stall())
    async with session(fake) as (ws, connection):
        created = await request(ws, "response.create")
        response_id = created["response"]["id"]
        assert connection.active_response == response_id
        with trio.move_on_after(0.05):
            await recv(ws)
            raise AssertionError(
                "a stalled response sent something"
            )  # pragma: no cover
        wrong = await request(ws, "response.cancel", response_id="resp_other")
        assert wrong["error"]["code"] == "response_cancel_not_active"
        done = await request(ws, "response.cancel", response_id=response_id)
        assert done["type"] == "response.done"
        assert done["response"]["id"] == response_id
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"] == {
            "type": "cancelled",
            "reason": "client_cancelled",
        }
        assert connection.active_response is None
        # Without response_id: the active one.
        await request(ws, "response.create")
        done = await request(ws, "response.cancel")
        assert done["response"]["status"] == "cancelled"
        # And the connection takes new responses.
        await send(ws, type="response.create")
        last = (await recv_until(ws, "response.done"))[-1]
    assert last["response"]["status"] == "completed"


async def test_cancel_during_a_delay_keeps_the_finished_output(
    fake: FakeRealtime, autojump_clock: trio.testing.MockClock
) -> None:
    fake.script([FunctionCall("a"), FunctionCall("b", delay=60)])
    async with session(fake) as (ws, connection):
        await send(ws, type="response.create")
        await recv_until(ws, "response.output_item.done")
        done = await request(ws, "response.cancel")
        with trio.move_on_after(120):
            await ws.get_message()
            raise AssertionError("the cancelled call went on")  # pragma: no cover
    assert done["response"]["status"] == "cancelled"
    assert [item["name"] for item in done["response"]["output"]] == ["a"]
    assert [item["name"] for item in connection.items.values()] == ["a"]


async def test_cancel_without_an_active_response(fake: FakeRealtime) -> None:
    async with session(fake) as (ws, _):
        answer = await request(ws, "response.cancel", event_id="evt_c")
    assert answer["error"] == {
        "type": "invalid_request_error",
        "code": "response_cancel_not_active",
        "message": "Cancellation failed: no active response found",
        "param": None,
        "event_id": "evt_c",
    }


async def test_one_response_at_a_time(fake: FakeRealtime) -> None:
    fake.script(Stall())
    async with session(fake) as (ws, connection):
        created = await request(ws, "response.create")
        second = await request(ws, "response.create", event_id="evt_2")
        assert second["error"]["code"] == "conversation_already_has_active_response"
        assert created["response"]["id"] in second["error"]["message"]
        assert second["error"]["event_id"] == "evt_2"
        assert connection.active_response == created["response"]["id"]
        assert len(connection.responses) == 2  # both recorded


async def test_function_call_delay_under_autojump(
    fake: FakeRealtime, autojump_clock: trio.testing.MockClock
) -> None:
    fake.script(FunctionCall("jump", delay=30))
    async with session(fake) as (ws, _):
        await send(ws, type="response.create")
        start = trio.current_time()
        created = await recv(ws)
        assert created["type"] == "response.created"
        assert trio.current_time() - start < 1
        events = await recv_until(ws, "response.done", deadline=31)
    assert trio.current_time() - start >= 30
    assert events[-1]["response"]["output"][0]["name"] == "jump"


# -- the connection ending ---------------------------------------------------


async def test_drop_mid_response(fake: FakeRealtime) -> None:
    fake.script(Drop())
    async with session(fake) as (ws, connection):
        created = await request(ws, "response.create")
        assert created["type"] == "response.created"
        with pytest.raises(ConnectionClosed) as caught:
            await recv(ws)
        assert caught.value.reason is not None
        assert caught.value.reason.code == 1006
    await connection.wait_closed()
    assert (connection.closed, connection.dropped, connection.close_code) == (
        True,
        True,
        1006,
    )


async def test_drop_from_the_test(fake: FakeRealtime) -> None:
    async with session(fake) as (ws, connection):
        await connection.drop()
        assert connection.closed
        with pytest.raises(ConnectionClosed) as caught:
            await recv(ws)
    assert caught.value.reason is not None
    assert caught.value.reason.code == 1006
    assert fake.handshakes == 1


async def test_close_mid_response(fake: FakeRealtime) -> None:
    fake.script([FunctionCall("jump", delay=0), Close(4000, "bye")])
    async with session(fake) as (ws, connection):
        await send(ws, type="response.create")
        await recv_until(ws, "response.output_item.done")
        with pytest.raises(ConnectionClosed) as caught:
            await recv(ws)
    assert caught.value.reason is not None
    assert (caught.value.reason.code, caught.value.reason.reason) == (4000, "bye")
    await connection.wait_closed()
    assert (connection.close_code, connection.close_reason) == (4000, "bye")
    assert not connection.dropped


async def test_close_and_send_event_from_the_test(fake: FakeRealtime) -> None:
    async with session(fake) as (ws, connection):
        await connection.send_event({"type": "rate_limits.updated", "rate_limits": []})
        await connection.close(1008, "policy")
        pushed = await recv(ws)
        assert pushed["type"] == "rate_limits.updated"
        assert pushed["event_id"].startswith("event_")
        with pytest.raises(ConnectionClosed) as caught:
            await recv(ws)
        assert caught.value.reason is not None
        assert caught.value.reason.code == 1008
        assert connection.closed
        with pytest.raises(trio.ClosedResourceError):
            await connection.send_event({"type": "error"})


async def test_the_client_closing_is_recorded(fake: FakeRealtime) -> None:
    async with session(fake) as (ws, connection):
        await ws.aclose(4001, "done")
    await connection.wait_closed()
    assert (connection.close_code, connection.close_reason) == (4001, "done")


async def outlive(
    fake: FakeRealtime,
    connected: trio.Event,
    ended: list[ConnectionClosed],
    freeze: bool,
) -> None:
    """A client that outlives the fake: what ended its connection goes in
    ``ended``."""
    async with connect(fake) as ws:
        await recv(ws)
        if freeze:
            fake.connections[0].freeze()
        connected.set()
        with pytest.raises(ConnectionClosed) as caught:
            await ws.get_message()
        ended.append(caught.value)


@pytest.mark.parametrize("freeze", [False, True])
async def test_leaving_the_fake_ends_open_connections(freeze: bool) -> None:
    ended: list[ConnectionClosed] = []
    async with trio.open_nursery() as nursery, open_fake_realtime(KEY) as fake:
        connected = trio.Event()
        nursery.start_soon(outlive, fake, connected, ended, freeze)
        await connected.wait()
    (closed,) = ended
    assert closed.reason is not None
    # Open: a close frame, 1001 (going away). Frozen: dropped, no close frame.
    assert closed.reason.code == (1006 if freeze else 1001)
    assert fake.connections[0].close_code == closed.reason.code
    assert fake.connections[0].dropped == freeze
    assert fake.connections[0].closed


async def test_a_responder_error_comes_out_as_itself() -> None:
    def responder(connection: FakeConnection, response: dict[str, Any]) -> Any:
        raise ValueError("responder bug")

    async def ask() -> None:
        async with open_fake_realtime(KEY) as fake:
            fake.responder = responder
            async with session(fake) as (ws, _):
                await send(ws, type="response.create")
                await trio.sleep_forever()

    with pytest.raises(ValueError, match="responder bug"):
        await ask()


# -- freezing ----------------------------------------------------------------


async def test_freeze_stops_pongs_and_answers_until_thaw(fake: FakeRealtime) -> None:
    async with session(fake) as (ws, connection):
        with trio.fail_after(DEADLINE):
            await ws.ping()
        connection.freeze()
        assert connection.frozen
        # Events are not even read (the server's reader is held back)...
        await send(ws, type="session.update", session={"type": "realtime"})
        with trio.move_on_after(0.1):
            await ws.get_message()
            raise AssertionError("a frozen connection answered")  # pragma: no cover
        assert connection.received == []
        # ... and pings get no pong.
        with trio.move_on_after(0.2) as pinging:
            await ws.ping()
        assert pinging.cancelled_caught
        connection.thaw()
        assert not fake.connections[0].frozen  # (mypy narrowed connection.frozen)
        assert (await recv(ws))["type"] == "session.updated"
        with trio.fail_after(DEADLINE):
            await ws.ping()
    assert [event["type"] for event in connection.received] == ["session.update"]


async def test_freeze_under_autojump(
    fake: FakeRealtime, autojump_clock: trio.testing.MockClock
) -> None:
    async with session(fake) as (ws, connection):
        connection.freeze()
        start = trio.current_time()
        with trio.move_on_after(30) as pinging:
            await ws.ping()
        assert pinging.cancelled_caught
        assert trio.current_time() - start >= 30
        connection.thaw()
        with trio.fail_after(1):
            await ws.ping()


# -- bad frames --------------------------------------------------------------


async def test_bad_frames_are_errors_and_the_connection_stays(
    fake: FakeRealtime,
) -> None:
    async with session(fake) as (ws, connection):
        unknown = await request(ws, "response.explode", event_id="evt_u")
        assert unknown["error"]["code"] == "invalid_value"
        assert unknown["error"]["param"] == "type"
        assert unknown["error"]["event_id"] == "evt_u"
        assert unknown["error"]["message"].startswith(
            "Invalid value: 'response.explode'. Supported values are: "
            "'session.update', "
        )
        await ws.send_message("{not json")
        not_json = await recv(ws)
        assert not_json["error"]["code"] == "invalid_json"
        assert not_json["error"]["type"] == "invalid_request_error"
        await ws.send_message(b"\x00\x01")
        binary = await recv(ws)
        assert binary["error"]["code"] == "invalid_json"
        await ws.send_message("[1, 2]")
        assert (await recv(ws))["error"]["code"] == "invalid_type"
        await ws.send_message('{"event_id": "evt_n"}')
        untyped = await recv(ws)
        assert untyped["error"]["code"] == "missing_required_parameter"
        assert untyped["error"]["event_id"] == "evt_n"
        await ws.send_message('{"type": 5}')
        assert (await recv(ws))["error"]["code"] == "invalid_type"
        ok = await request(ws, "session.update", session={"type": "realtime"})
        assert ok["type"] == "session.updated"
    assert connection.bad_frames == ["{not json", b"\x00\x01", "[1, 2]"]
    assert [e.get("type") for e in connection.received] == [
        "response.explode",
        None,
        5,
        "session.update",
    ]


# -- waiting -----------------------------------------------------------------


async def test_wait_event_and_wait_sent(fake: FakeRealtime) -> None:
    got: list[dict[str, Any]] = []

    async def wait_second(connection: FakeConnection) -> None:
        got.append(await connection.wait_event("conversation.item.create", 2))

    async with session(fake) as (ws, connection), trio.open_nursery() as nursery:
        nursery.start_soon(wait_second, connection)
        for text in ("one", "two", "three"):
            await send(ws, type="conversation.item.create", item=user_message(text))
        with trio.fail_after(DEADLINE):
            sent = await connection.wait_sent("conversation.item.done", 3)
    assert got[0]["item"]["content"][0]["text"] == "two"
    assert sent["item"]["content"][0]["text"] == "three"
    assert len(connection.events("conversation.item.create")) == 3
    assert len(connection.sent_events("conversation.item.added")) == 3


async def test_wait_event_fails_when_the_connection_ends(fake: FakeRealtime) -> None:
    async with session(fake) as (ws, connection):
        await send(ws, type="response.cancel")
        await recv(ws)
    with pytest.raises(RuntimeError, match="ended after 1 client event"):
        await connection.wait_event("response.cancel", 2)
    assert (await connection.wait_event("response.cancel"))["type"] == "response.cancel"
