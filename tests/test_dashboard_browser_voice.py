"""The dashboard's "Phone calls" page in a real headless Chromium, with a
whole phone call on real sockets (the process, fake Twilio Media Streams and
the fake Realtime API of test_voice_calls.py) and a login (so the "End call"
button's POST carries the session's CSRF token)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import httpx
import pytest
import trio
from browser_helpers import Browser, browser, browser_driver
from fake_realtime import Audio
from fake_twilio_media import TwimlStream, open_fake_twilio_media, voice_webhook
from speech import silence, tone
from status_helpers import eventually
from test_voice_calls import TOKEN, WAIT, Running, active_leases, running

__all__ = ["browser", "browser_driver"]  # the fixtures, imported to be found

pytestmark = pytest.mark.timeout(60)
API_TOKEN: Final = "a-browser-test-token-for-phone-calls"
CALLER: Final = "<b>eve</b>"
XSS: Final = "<img src=x onerror=alert(1)>"
OVERFLOW: Final = (
    "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
)


async def _dial(run: Running, caller: str) -> tuple[TwimlStream, str]:
    """Twilio's webhook for a call from ``caller``: the stream to open."""
    hook = voice_webhook(
        run.calls_url + "/twilio/voice", auth_token=TOKEN, from_=caller
    )
    async with httpx.AsyncClient(base_url=run.calls_url) as http:
        reply = await http.post("/twilio/voice", data=hook.form, headers=hook.headers)
    assert reply.status_code == 200, reply.text
    return TwimlStream.parse(reply.text), hook.call_sid


async def _log_in(browser: Browser, base: str) -> None:
    await browser.get(f"{base}/ui/voice")
    await browser.wait_for("form#login")
    await browser.type("form#login input[name=token]", API_TOKEN)
    await browser.click("form#login button[type=submit]")
    await browser.wait_for('a[data-nav="voice"][aria-current="page"]')


async def test_a_live_call_shows_with_its_transcript_and_ends_from_the_page(
    tmp_path: Path, browser: Browser
) -> None:
    async with running(tmp_path, "--api-token", API_TOKEN) as run:
        assert run.info.control is not None
        base = run.info.control.local_url
        await _log_in(browser, base)
        await browser.wait_for_text("#voice-count", "No call in progress")
        assert await browser.text('a[data-nav="voice"]') == "Phone calls"

        run.fake.script_transcripts(XSS)
        run.fake.script(Audio(transcript="Hi <i>there</i>, it's Neuro!", ms=400))
        stream, call_sid = await _dial(run, CALLER)
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
            row = f'#voice-rows tr[data-call="{call_sid}"]'
            await browser.wait_for(f'{row}[data-state="bridged"]')
            card = f'#voice-transcripts [data-call="{call_sid}"]'
            await browser.wait_for_text(f'{card} li[data-who="neuro"]', "it's Neuro!")
            # What a caller or the model says is text, never markup.
            assert await browser.text(f'{row} td[data-field="from"]') == CALLER
            assert await browser.text(f'{card} li[data-who="caller"]') == (
                f"Caller: {XSS}"
            )
            assert await browser.text(f'{card} li[data-who="neuro"]') == (
                "Neuro: Hi <i>there</i>, it's Neuro!"
            )
            assert await browser.find_all("#main b, #main i, #main img") == []
            await browser.wait_for_text('#voice-counter-rows tr[data-key="calls"]', "1")
            await browser.screenshot()
            await browser.docs_screenshot("dashboard-voice.png")
            # A phone's width, with a call on the page: wide parts scroll
            # inside their box, the page never sideways.
            await browser.phone()
            await browser.get(f"{base}/ui/voice")
            await browser.wait_for(f'{card} li[data-who="neuro"]')
            assert await browser.run(lambda d: d.execute_script(OVERFLOW)) <= 0
            await browser.screenshot("phone")
            await browser.desktop()
            await browser.get(f"{base}/ui/voice")

            await browser.click(f'button[data-end="{call_sid}"]')
            with trio.fail_after(WAIT):
                await call.wait_closed()
            assert call.closed_by == "server"  # the stream ended from our side
            await browser.wait_for_text("#voice-result", "ended_here")
            await browser.wait_gone(row)
            await browser.wait_for_text("#voice-count", "No call in progress")
            await browser.wait_for_text(
                '#voice-counter-rows tr[data-key="ended_ended_here"]', "1"
            )
        await eventually(lambda: active_leases(run) == 0, WAIT)
        (recorded,) = await run.ended()
        assert recorded["call_sid"] == call_sid
        assert recorded["caller"] == CALLER
        assert recorded["end_reason"] == "ended_here"
        await browser.assert_clean()
