"""The voice routes on the calls HTTP server: two webhooks and the media stream.

Every request is checked with ``X-Twilio-Signature``
(``twilio.request_validator.RequestValidator`` and ``TWILIO_AUTH_TOKEN``):
a webhook over its public URL and its form fields, the WebSocket upgrade
over the public ``wss://…/twilio/media`` URL with no parameters. Unsigned
or wrongly signed: 403 and nothing opened. Without a token the routes
answer 503 unless the capability runs ``--voice-insecure``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import orjson
from quart import Blueprint, Response, request, websocket
from twilio.request_validator import RequestValidator

from neuro_api.voice._bridge import MediaClosed
from neuro_api.voice._service import VoiceService
from neuro_api.voice._twiml import (
    END_PATH,
    MEDIA_PATH,
    VOICE_PATH,
    http_url,
    stream_url,
)

__all__ = ["QuartMedia", "voice_routes"]

LOGGER: Final = logging.getLogger("neuro_api.voice")
MAX_FORM_FIELDS: Final = 100
SIGNATURE: Final = "X-Twilio-Signature"


def _xml(text: str) -> Response:
    return Response(text, mimetype="text/xml")


def _refusal(status: int, message: str) -> Response:
    body = orjson.dumps({"error": message})
    return Response(body, status=status, mimetype="application/json")


class QuartMedia:
    """Quart's server-side WebSocket as the bridge's :class:`MediaSocket`."""

    async def receive(self) -> str | bytes:
        """The next frame; :class:`MediaClosed` once it ended."""
        try:
            return await websocket.receive()
        except Exception as exc:  # Quart raises its own on a close
            raise MediaClosed(str(exc)) from None

    async def send(self, text: str) -> None:
        """Send a text frame; :class:`MediaClosed` once it ended."""
        try:
            await websocket.send(text)
        except Exception as exc:
            raise MediaClosed(str(exc)) from None

    async def close(self) -> None:
        """Close the stream (1000); nothing if it ended already."""
        try:
            await websocket.close(1000)
        except Exception as exc:  # closed by Twilio already
            LOGGER.debug("media stream close: %s", exc)


def voice_routes(
    service: VoiceService,
    *,
    auth_token: str | None,
    insecure: bool,
    public_base: Callable[[], str],
) -> Blueprint:
    """The blueprint of ``service`` (mounted on the calls HTTP app)."""
    routes = Blueprint("voice", __name__)
    validator = None if auth_token is None else RequestValidator(auth_token)

    def unavailable() -> Response | None:
        if validator is None and not insecure:
            return _refusal(
                503,
                "phone calls need TWILIO_AUTH_TOKEN (or --voice-insecure for "
                "local testing)",
            )
        return None

    def signed(url: str, params: dict[str, Any], signature: str | None) -> bool:
        if validator is None:
            return True  # --voice-insecure
        if not signature:
            return False
        return bool(validator.validate(url, params, signature))

    async def form() -> dict[str, str] | Response:
        fields = await request.form
        if len(fields) > MAX_FORM_FIELDS:
            return _refusal(400, "too many form fields")
        params = {key: fields[key] for key in fields}
        url = http_url(public_base(), request.path)
        if request.query_string:
            url += "?" + request.query_string.decode("latin-1")
        if not signed(url, params, request.headers.get(SIGNATURE)):
            service.counters["forbidden"] += 1
            return _refusal(403, "the request is not signed by Twilio")
        return params

    @routes.post(VOICE_PATH)
    async def voice() -> Response:
        """Twilio's webhook for a call: TwiML connecting it to the media stream.

        ``<Reject/>`` for a blocked caller; a spoken "busy" and a hang-up
        when no Realtime connection is free; 403 unsigned; 503 without
        ``TWILIO_AUTH_TOKEN``.
        """
        refused = unavailable()
        if refused is not None:
            return refused
        params = await form()
        if isinstance(params, Response):
            return params
        try:
            return _xml(await service.answer(params))
        except ValueError as exc:
            return _refusal(400, str(exc))

    @routes.post(END_PATH)
    async def after() -> Response:
        """What Twilio does once the stream ended: the end's message, hang up."""
        refused = unavailable()
        if refused is not None:
            return refused
        params = await form()
        if isinstance(params, Response):
            return params
        return _xml(service.after_stream(params))

    @routes.websocket(MEDIA_PATH)
    async def media() -> Any:
        """Twilio's media stream: bridged to a Realtime session for the call."""
        refused = unavailable()
        if refused is not None:
            return refused
        url = stream_url(public_base())
        if not signed(url, {}, websocket.headers.get(SIGNATURE)):
            service.counters["forbidden"] += 1
            return _refusal(403, "the stream is not signed by Twilio")
        if not service.may_open():
            service.counters["streams_refused"] += 1
            return _refusal(503, "too many streams are opening")
        await websocket.accept()
        await service.stream(QuartMedia())
        return None

    return routes
