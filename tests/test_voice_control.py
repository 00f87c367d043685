"""The voice capability's control-plane routes: ``GET /voice/calls`` and
``POST /voice/calls/{call_sid}/end``, over whole phone calls on real sockets
(the process, fake Twilio Media Streams and the fake Realtime API of
test_voice_calls.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio
from fake_realtime import Audio
from fake_twilio_media import FakeTwilioCall, open_fake_twilio_media
from speech import silence, tone
from status_helpers import eventually
from test_voice_calls import TOKEN, WAIT, Running, active_leases, running

pytestmark = pytest.mark.timeout(60)
API_TOKEN: Final = "a-control-plane-token-for-voice"
UNKNOWN: Final = "CA" + "f" * 32


def control(run: Running, token: str | None = None) -> httpx.AsyncClient:
    assert run.info.control is not None
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(
        base_url=run.info.control.local_url, headers=headers, timeout=WAIT
    )


async def live(run: Running, **params: str) -> dict[str, Any]:
    async with control(run) as http:
        answer = await http.get("/voice/calls", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def said(run: Running, call_sid: str) -> list[tuple[str, str]]:
    """The bridged call's transcript, as the bridge keeps it."""
    service = run.voice.service
    assert service is not None
    live = service.calls.get(call_sid)
    return [] if live is None or live.bridge is None else live.bridge.transcript


@asynccontextmanager
async def a_call_that_talked(run: Running) -> AsyncIterator[tuple[FakeTwilioCall, str]]:
    """A bridged call: the caller said something, Neuro answered (heard)."""
    run.fake.script_transcripts("Put an X in the middle, please.")
    run.fake.script(Audio(transcript="Hi, it's Neuro!", ms=400, pace=None))
    stream, call_sid = await run.dial()
    async with open_fake_twilio_media(
        run.media_url(),
        auth_token=TOKEN,
        public_url=stream.url,
        custom_parameters=stream.parameters,
        call_sid=call_sid,
    ) as call:
        await call.say(tone(500))
        await call.say(silence(800))
        with trio.fail_after(WAIT):
            await call.wait_played()
        yield call, call_sid


async def test_a_bridged_call_shows_with_what_was_said_and_ends_from_here(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as run:
        async with a_call_that_talked(run) as (call, call_sid):
            await eventually(lambda: len(said(run, call_sid)) == 2, WAIT)
            body = await live(run)
            assert body["count"] == 1
            (shown,) = body["calls"]
            assert shown["call_sid"] == call_sid
            assert (shown["from"], shown["to"]) == ("+15550001111", "+15550002222")
            assert shown["state"] == "bridged"
            assert shown["seconds"] >= 0
            assert shown["barge_ins"] == shown["tool_calls"] == shown["dtmf"] == 0
            assert shown["playing"] is False
            assert shown["heard_ms"] >= 390  # what the marks said was played
            assert shown["transcript"] == [
                {"who": "caller", "text": "Put an X in the middle, please."},
                {"who": "neuro", "text": "Hi, it's Neuro!"},
            ]
            counters = body["counters"]
            assert counters["calls"] == 1
            for name in ("busy", "rejected", "forbidden", "replayed"):
                assert counters[name] == 0, name
            # Bounded: the newest lines only, or none.
            (one,) = (await live(run, lines="1"))["calls"]
            assert one["transcript"] == [{"who": "neuro", "text": "Hi, it's Neuro!"}]
            (none,) = (await live(run, lines="0"))["calls"]
            assert none["transcript"] == []

            async with control(run) as http:
                ended = await http.post(f"/voice/calls/{call_sid}/end")
            assert ended.status_code == 200, ended.text
            assert ended.json() == {"call_sid": call_sid, "reason": "ended_here"}
            with trio.fail_after(WAIT):
                await call.wait_closed()
            assert call.closed_by == "server"
        await eventually(lambda: active_leases(run) == 0, WAIT)
        (recorded,) = await run.ended()
        assert recorded["call_sid"] == call_sid
        assert recorded["end_reason"] == "ended_here"
        after = await live(run)
        assert (after["calls"], after["count"]) == ([], 0)
        assert after["counters"]["ended_ended_here"] == 1
        # Over: nothing left to end.
        async with control(run) as http:
            again = await http.post(f"/voice/calls/{call_sid}/end")
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "unknown_call"


async def test_a_call_still_connecting_is_shown_but_not_ended(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        _, call_sid = await run.dial()  # answered; its stream never opens
        (shown,) = (await live(run))["calls"]
        assert shown["call_sid"] == call_sid
        assert shown["state"] == "connecting"
        assert "transcript" not in shown
        async with control(run) as http:
            refused = await http.post(f"/voice/calls/{call_sid}/end")
        assert refused.status_code == 404
        assert refused.json() == {
            "error": {
                "code": "unknown_call",
                "message": f"no phone call {call_sid} is bridged now",
            }
        }
        assert (await live(run))["count"] == 1  # still there


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", f"/voice/calls/{UNKNOWN}/end", 404, f"no phone call {UNKNOWN}"),
        ("POST", "/voice/calls/CA123/end", 400, "call_sid is CA followed by 32"),
        ("POST", "/voice/calls/%3Cb%3Eeve/end", 400, "call_sid is CA"),
        ("POST", f"/voice/calls/{UNKNOWN.lower()}x/end", 400, "call_sid is CA"),
        ("GET", "/voice/calls?lines=51", 400, "lines must be a whole number 0 to 50"),
        ("GET", "/voice/calls?lines=-1", 400, "lines must be a whole number 0 to 50"),
        ("GET", "/voice/calls?lines=ten", 400, "lines must be a whole number"),
        # Digits int() refuses (a superscript; more than 4,300 of them).
        ("GET", "/voice/calls?lines=%C2%B2", 400, "lines must be a whole number"),
        ("GET", "/voice/calls?lines=" + "9" * 5000, 400, "lines must be a whole"),
    ],
)
async def test_bad_requests_get_clear_errors(
    tmp_path: Path, method: str, path: str, status: int, message: str
) -> None:
    async with running(tmp_path) as run, control(run) as http:
        answer = await http.request(method, path)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == ("unknown_call" if status == 404 else "invalid_request")
    assert error["message"].startswith(message)


async def test_the_routes_take_the_control_plane_token(tmp_path: Path) -> None:
    async with running(tmp_path, "--api-token", API_TOKEN) as run:
        async with control(run) as anonymous:
            assert (await anonymous.get("/voice/calls")).status_code == 401
            refused = await anonymous.post(f"/voice/calls/{UNKNOWN}/end")
            assert refused.status_code == 401
        async with control(run, API_TOKEN) as http:
            assert (await http.get("/voice/calls")).json()["count"] == 0
            assert (await http.post(f"/voice/calls/{UNKNOWN}/end")).status_code == 404
            paths = (await http.get("/openapi.json")).json()["paths"]
    listed = paths["/voice/calls"]["get"]
    ending = paths["/voice/calls/{call_sid}/end"]["post"]
    assert "security" in listed
    assert "security" in ending
    assert "ended_here" in ending["description"]


async def test_the_health_anyone_may_read_names_no_caller(tmp_path: Path) -> None:
    # /health needs no token (load balancers): a call's numbers and SID are
    # for the token's holders (/stats, /voice/calls), its count for anyone.
    async with running(tmp_path, "--api-token", API_TOKEN) as run:
        _, call_sid = await run.dial()
        async with control(run) as anonymous:
            health = await anonymous.get("/health")
        assert health.status_code == 200
        assert health.json()["capabilities"]["voice"]["live_calls"] == 1
        for secret in (call_sid, "+15550001111", "+15550002222"):
            assert secret not in health.text
        async with control(run, API_TOKEN) as http:
            stats = (await http.get("/stats")).json()
        (shown,) = stats["capabilities"]["voice"]["live"]
        assert (shown["call_sid"], shown["from"]) == (call_sid, "+15550001111")
