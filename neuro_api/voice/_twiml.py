"""TwiML answers and the URLs Twilio is given and signs.

Built with ``twilio.twiml.voice_response`` (escaping included). A stream
URL carries no query string (Twilio refuses one): values travel as
``<Parameter>`` s. Twilio signs each request over the URL *it* used, so
behind a tunnel or a reverse proxy the signature is checked against the
public URL, never the one the server sees.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from twilio.twiml.voice_response import Connect, VoiceResponse

__all__ = [
    "END_PATH",
    "MEDIA_PATH",
    "VOICE_PATH",
    "connect_stream",
    "reject",
    "say_and_hang_up",
    "stream_url",
]

VOICE_PATH = "/twilio/voice"
"""The webhook Twilio calls when someone phones the number."""
MEDIA_PATH = "/twilio/media"
"""The media stream's WebSocket."""
END_PATH = "/twilio/voice/end"
"""Where Twilio asks what to do once the stream ended (a goodbye...)."""


def stream_url(base: str) -> str:
    """The media stream's URL under ``base`` (``https`` becomes ``wss``)."""
    parts = urllib.parse.urlsplit(base)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/") + MEDIA_PATH
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


def http_url(base: str, path: str) -> str:
    """``path`` under the public ``base`` (an ``http(s)://`` URL)."""
    parts = urllib.parse.urlsplit(base)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit(
        (scheme, parts.netloc, parts.path.rstrip("/") + path, "", "")
    )


def connect_stream(base: str, parameters: Mapping[str, str]) -> str:
    """Connect the call to our media stream; after it, ask :data:`END_PATH`."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url(base))
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    response.redirect(http_url(base, END_PATH), method="POST")
    return str(response)


def say_and_hang_up(text: str | None) -> str:
    """Say ``text`` (if any), then hang up."""
    response = VoiceResponse()
    if text:
        response.say(text)
    response.hangup()
    return str(response)


def reject() -> str:
    """Refuse the call (the caller hears it busy or unanswered)."""
    response = VoiceResponse()
    response.reject()
    return str(response)
