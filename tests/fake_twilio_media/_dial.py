"""Dialling a stream: the signed upgrade, the call's life, its end."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import cast
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionRejected, wrap_client_stream
from twilio.request_validator import RequestValidator
from valve import Valve

from neuro_api._shared import leaves, raise_one

from . import _wire
from ._call import CLOSE_TIMEOUT, MAX_MESSAGE_SIZE, FakeTwilioCall


def _signature(url: str, auth_token: str | None, signature: str | None) -> str | None:
    if signature is not None:
        return signature
    if auth_token is None:
        return None
    # A WebSocket upgrade is signed over its URL alone (no parameters).
    return cast(str, RequestValidator(auth_token).compute_signature(url, {}))


async def _end(call: FakeTwilioCall) -> None:
    """Hang up at the end of the block; drop a stalled call."""
    if not call.frozen:
        with trio.move_on_after(2 * CLOSE_TIMEOUT):
            await call.hang_up()
    await call.drop()


@contextlib.asynccontextmanager
async def open_fake_twilio_media(
    url: str,
    *,
    auth_token: str | None = None,
    public_url: str | None = None,
    signature: str | None = None,
    host: str | None = None,
    account_sid: str | None = None,
    call_sid: str | None = None,
    stream_sid: str | None = None,
    custom_parameters: Mapping[str, str] | None = None,
    tracks: Sequence[str] = ("inbound",),
    microphone: bool = True,
    send_start: bool = True,
    strict: bool = True,
    connect_timeout: float = 5.0,
) -> AsyncIterator[FakeTwilioCall]:
    """Dial ``url`` as Twilio dials a ``<Stream>``; see the package docstring."""
    target = urlsplit(url)
    if target.scheme != "ws" or target.hostname is None:
        raise ValueError(f"the fake dials ws:// URLs on this machine, not {url!r}")
    port = target.port or 80
    resource = target.path or "/"
    if target.query:
        resource += "?" + target.query
    signed_url = public_url or url
    sent_signature = _signature(signed_url, auth_token, signature)
    headers = [(b"User-Agent", b"Twilio.TmeWs/1.0")]
    if sent_signature is not None:
        headers.append((b"X-Twilio-Signature", sent_signature.encode()))
    with trio.fail_after(connect_timeout):
        stream = await trio.open_tcp_stream(target.hostname, port)
    valve = Valve(stream)
    try:
        async with trio.open_nursery() as nursery:
            # trio-websocket's reader lives here, outside the call's tasks:
            # the closing handshake needs it after they end.
            with trio.fail_after(connect_timeout):
                websocket = await wrap_client_stream(
                    nursery,
                    cast(trio.SocketStream, valve),
                    host or target.netloc,
                    resource,
                    extra_headers=headers,
                    max_message_size=MAX_MESSAGE_SIZE,
                )
            call = FakeTwilioCall(
                websocket,
                valve,
                url=url,
                signed_url=signed_url,
                signature=sent_signature,
                account_sid=account_sid or _wire.sid("AC"),
                call_sid=call_sid or _wire.sid("CA"),
                stream_sid=stream_sid or _wire.sid("MZ"),
                tracks=tracks,
                custom_parameters=custom_parameters or {},
                microphone=microphone,
                strict=strict,
            )
            async with trio.open_nursery() as tasks:
                await tasks.start(call.run)
                try:
                    if send_start:
                        await call.send_start()
                    yield call
                finally:
                    with trio.CancelScope(shield=True):
                        await _end(call)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # trio-websocket raises a refusal from the handshake and from its
        # reader task: one ConnectionRejected for the test.
        rejected, others = group.split(ConnectionRejected)
        if rejected is not None and others is None:
            raise next(leaves(rejected)) from None
        raise_one(group)
    finally:
        await trio.aclose_forcefully(valve)
