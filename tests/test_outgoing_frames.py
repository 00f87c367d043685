"""What the server sends is held to the limit it enforces on what it receives.

Before issue 10 (item 7), ``POST /`` forwarded a 15 MB frame to games, and an
engine could answer with data of any size, although a game sending more than
``max_message_size`` (1 MiB) was disconnected for it.
"""

from __future__ import annotations

import logging

import pytest
import trio
from server_helpers import PASS, PLAY, RecordingServer, connect, start_server

from neuro_api import command
from neuro_api.server import FrameTooLarge

LIMIT = 2048
TOO_BIG = '{"cell": "' + "x" * LIMIT + '"}'


async def test_an_engine_answer_too_large_drops_the_force(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer(max_message_size=LIMIT)
    server.answers.append(("play", TOO_BIG))
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await game.force("play")
        found = await server.wait_diag("force.unanswerable", game="Game")
        assert "over the 2048 byte limit (max_message_size)" in found.message
        assert "the force was dropped" in found.message
        client = server.client_of(game)
        assert client.active_force is None
        assert client.pending_ids == ()
        await game.expect_silence(0.1)
        # The connection goes on as usual.
        await game.force("play")
        action = await game.expect_action()
        await game.result(action.id, True, "ok")


async def test_execute_and_inject_refuse_and_forget(nursery: trio.Nursery) -> None:
    server = RecordingServer(max_message_size=LIMIT)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await server.settle(game)
        client = server.client_of(game)
        with pytest.raises(FrameTooLarge) as caught:
            await client.execute_action("play", TOO_BIG)
        assert caught.value.limit == LIMIT
        assert caught.value.size > LIMIT
        message = command.ActionMessage(id="big-1", name="play", data_json=TOO_BIG)
        with pytest.raises(FrameTooLarge):
            await client.inject(message)
        assert client.pending_ids == ()
        await game.expect_silence(0.1)
        # Exactly at the limit is fine.
        fits = command.ActionMessage(id="f", name="play", data_json="")
        filler = LIMIT - len(fits.to_frame().encode())
        exact = command.ActionMessage(id="f", name="play", data_json="y" * filler)
        assert len(exact.to_frame().encode()) == LIMIT
        await client.inject(exact)
        received = await game.expect_action()
        assert received.id == "f"


async def test_an_action_started_in_the_background_logs_the_refusal(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = RecordingServer(max_message_size=LIMIT)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PASS)
        await server.settle(game)
        with caplog.at_level(logging.WARNING, logger="neuro_api.server"):
            server.client_of(game).start_action("pass", TOO_BIG)
            with trio.fail_after(5):
                while not any("not sent" in m for m in caplog.messages):  # noqa: ASYNC110
                    await trio.sleep(0.01)
        await game.context("still connected")
        await server.wait_until(lambda: server.messages() == ["still connected"])


async def test_a_multibyte_frame_is_measured_in_bytes(nursery: trio.Nursery) -> None:
    server = RecordingServer(max_message_size=LIMIT)
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.register(PLAY)
        await server.settle(game)
        client = server.client_of(game)
        # 700 characters, 2,800 bytes of UTF-8.
        with pytest.raises(FrameTooLarge):
            await client.execute_action("play", '"' + "🎲" * 700 + '"')
