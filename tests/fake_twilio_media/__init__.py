"""A fake Twilio Media Streams client: a phone call as Twilio streams it.

It dials a bridge's WebSocket (``<Connect><Stream>``, bidirectional) the way
Twilio does, in the test's own event loop (its pacing is ``trio.sleep``, so
it runs on the real clock and under ``autojump_clock``)::

    async with open_fake_twilio_media(
        "ws://127.0.0.1:PORT/twilio/media",
        auth_token="secret-token",
        public_url="wss://example.ngrok.app/twilio/media",
        custom_parameters={"callSid": "CA..."},
    ) as call:
        await call.say(speech("Put an X in the middle."))
        await call.say(silence(800))
        media = await call.wait_for("media")
        mark = await call.wait_mark("chunk-1")  # once it has played
        await call.hang_up()                     # stop, then close 1000

``open_fake_twilio_media(url, *, auth_token=None, public_url=None,
signature=None, host=None, account_sid=None, call_sid=None, stream_sid=None,
custom_parameters=None, tracks=("inbound",), microphone=True,
send_start=True, strict=True, connect_timeout=5.0)``
    Async context manager; yields a :class:`FakeTwilioCall` once the
    WebSocket is open (and ``connected`` and ``start`` are sent, unless
    ``send_start=False``). ``url`` is where it connects (``ws://`` on this
    machine). The upgrade carries ``X-Twilio-Signature``: ``signature`` as
    given (a wrong one), else ``RequestValidator(auth_token)
    .compute_signature(public_url or url, {})`` (Twilio signs a stream's
    upgrade over its URL, no parameters), else (no ``auth_token``) no
    header; ``User-Agent: Twilio.TmeWs/1.0``; ``Host`` is ``host`` or the
    ``url``'s (what a server behind a proxy sees: validate against the
    public URL). SIDs default to random ``AC…``, ``CA…``, ``MZ…``. A refused
    handshake raises one ``trio_websocket.ConnectionRejected``
    (``status_code``, ``body``). At exit the caller hangs up if the call is
    still open (``stop``, close 1000; a frozen call is dropped). A server
    that closes at once (a busy line) gives a call that ends, no error.
    Errors of the block come out as themselves, not in an
    ``ExceptionGroup``.

What it sends (``sequenceNumber`` counts every message from ``"1"``;
``connected`` has none)
    ``connected`` (``protocol: Call``, ``version: 1.0.0``); ``start``
    (``accountSid``, ``streamSid``, ``callSid``, ``tracks``,
    ``customParameters``, ``mediaFormat: {encoding: audio/x-mulaw,
    sampleRate: 8000, channels: 1}``); ``media`` (``track: inbound``,
    ``chunk`` from ``"1"``, ``timestamp`` = 20 ms * (chunk - 1), ``payload``:
    160 bytes of base64 μ-law); ``dtmf`` (``track: inbound_track``,
    ``digit``); ``mark`` (``name``) sent back; ``stop`` (``accountSid``,
    ``callSid``), always last.

The microphone
    With ``microphone=True`` (Twilio's way) a 20 ms frame goes out every
    20 ms from ``start`` to ``stop``: what :meth:`~FakeTwilioCall.say`
    queued, else silence (``0xFF``). With ``microphone=False`` frames go
    out only while there is speech queued. A late microphone catches up
    in a burst (up to 100 ms), then ticks afresh.

The ear
    Every ``media`` the server sends is queued and played at real time
    (8 bytes a millisecond, no gap between chunks queued back to back); a
    ``mark`` is queued too and sent back once the audio queued before it
    has played. A ``clear`` drops the queued audio (the chunk playing is cut
    where it is) and sends every pending mark back at once, in order: such
    marks are recorded with ``cleared=True`` (on the wire they look the
    same; the bridge must tell them apart itself).

Protocol errors
    A server may send ``media`` (``{event, streamSid, media: {payload}}``,
    non-empty base64), ``mark`` (``{event, streamSid, mark: {name}}``) and
    ``clear`` (``{event, streamSid}``) only. Anything else is recorded in
    ``protocol_errors`` as a :class:`ProtocolError` with Twilio's code:
    another event type 31924 (an ERROR: the stream ends), a binary frame
    31950, non-JSON, a missing or extra field, a wrong ``streamSid`` or a
    bad payload 31951 (Twilio lists these two as WARNINGs). With ``strict``
    (the default) every one closes the WebSocket (code 1002, reason
    ``Twilio error NNNNN``), so a bridge's mistake cannot go unseen; without
    it only 31924 does. (Twilio does not document its close code.)

:class:`FakeTwilioCall`
    ``url``, ``signed_url``, ``signature`` (sent, or ``None``),
    ``account_sid``, ``call_sid``, ``stream_sid``, ``tracks``,
    ``custom_parameters``, ``microphone``, ``strict``;
    ``sent`` (every message sent, as sent), ``frames`` (every frame
    received, raw), ``received`` (the valid ones, parsed), ``events(event)``,
    ``protocol_errors``, ``media_received`` (all audio the server sent),
    ``played`` (the part of it that played: cut chunks count up to the
    cut), ``heard_ms`` (its length in ms, the chunk playing counted up to
    now), ``queued_ms`` (still to play), ``marks`` (every
    :class:`ReturnedMark` ``(name, cleared, heard_ms, time)`` sent back, in
    order), ``clears`` (``clear`` messages received), ``started``,
    ``stopped``, ``closed``, ``ending`` (closed, or closing: nothing can be
    sent), ``close_code``, ``close_reason``, ``closed_by``
    (``"twilio"``: the fake closed or dropped it; ``"server"``: the bridge
    closed it, or the TCP connection ended under it), ``frozen``.

    ``await say(audio, *, wait=True)``: queue μ-law audio on the
    microphone; with ``wait``, returns once its last frame was sent.
    ``await send_audio(audio)``: send it in 20 ms frames now, unpaced
    (benchmarks; use ``microphone=False`` to keep silence out).
    ``await send_dtmf(digit)``; ``await send_start()`` (with
    ``send_start=False``); ``await send_raw(frame)`` (anything, as is).
    ``await hang_up()``: ``stop`` then close 1000; returns once closed.
    ``await drop()``: the TCP connection ends, no ``stop``, no close frame.
    ``freeze()`` / ``thaw()``: a stalled network (nothing read, nothing
    written, pings unanswered) and its recovery.
    ``await wait_for(event, count=1)`` (the ``count``-th valid message of
    that type), ``await wait_mark(name)`` (its :class:`ReturnedMark`),
    ``await wait_heard(ms)``, ``await wait_played()`` (all queued audio
    played, all marks back), ``await wait_closed()``; all but the last raise
    :class:`RuntimeError` if the stream ends first. Sending on an ended
    stream raises :class:`trio.ClosedResourceError`.

:class:`TwimlStream` ``.parse(twiml)``
    The ``<Stream>`` a webhook's TwiML names: ``url``, ``parameters`` (its
    ``<Parameter>``\\ s), ``bidirectional`` (under ``<Connect>``).

``voice_webhook(url, *, auth_token=None, signature=None, call_sid=None,
account_sid=None, from_="+15550001111", to="+15550002222",
call_status="ringing", extra=None)``
    The ``POST`` Twilio makes when a call comes in, as a
    :class:`VoiceWebhook` (``url``, ``form``, ``headers``, ``call_sid``,
    ``account_sid``): Twilio's form fields, ``X-Twilio-Signature`` over
    ``url`` and the fields (or ``signature`` as given, or none). A whole
    call::

        hook = voice_webhook(PUBLIC + "/twilio/voice", auth_token=TOKEN)
        reply = await http.post(LOCAL + "/twilio/voice", data=hook.form,
                                headers=hook.headers)
        stream = TwimlStream.parse(reply.text)
        async with open_fake_twilio_media(
            LOCAL_WS + "/twilio/media", auth_token=TOKEN,
            public_url=stream.url, custom_parameters=stream.parameters,
            call_sid=hook.call_sid, account_sid=hook.account_sid,
        ) as call:
            ...
"""

from ._call import FakeTwilioCall, ProtocolError
from ._dial import open_fake_twilio_media
from ._player import ReturnedMark
from ._twiml import TwimlStream
from ._webhook import VoiceWebhook, voice_webhook
from ._wire import (
    FRAME_BYTES,
    FRAME_MS,
    INVALID_MESSAGE,
    MALFORMED_MESSAGE,
    PROTOCOL_ERROR,
)

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "INVALID_MESSAGE",
    "MALFORMED_MESSAGE",
    "PROTOCOL_ERROR",
    "FakeTwilioCall",
    "ProtocolError",
    "ReturnedMark",
    "TwimlStream",
    "VoiceWebhook",
    "open_fake_twilio_media",
    "voice_webhook",
]
