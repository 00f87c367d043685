"""The voice webhook request Twilio makes when a call comes in (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from twilio.request_validator import RequestValidator

from . import _wire


@dataclass(frozen=True)
class VoiceWebhook:
    """A ``POST`` of Twilio's: its ``form`` fields and ``headers``.

    Send it with any HTTP client: ``client.post(hook.url, data=hook.form,
    headers=hook.headers)``. ``url`` is the public URL Twilio was given;
    post to the local one, the signature stays over ``url``.
    """

    url: str
    form: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def call_sid(self) -> str:
        return self.form["CallSid"]

    @property
    def account_sid(self) -> str:
        return self.form["AccountSid"]


def voice_webhook(
    url: str,
    *,
    auth_token: str | None = None,
    signature: str | None = None,
    call_sid: str | None = None,
    account_sid: str | None = None,
    from_: str = "+15550001111",
    to: str = "+15550002222",
    call_status: str = "ringing",
    extra: Mapping[str, str] | None = None,
) -> VoiceWebhook:
    """The request of an incoming call to ``url`` (the number's voice URL).

    The fields are those Twilio sends (``AccountSid``, ``ApiVersion``,
    ``CallSid``, ``CallStatus``, ``Called``, ``Caller``, ``Direction:
    inbound``, ``From``, ``To``) and ``extra`` (a redirect's, say).
    ``X-Twilio-Signature``: ``signature`` as given, else computed with
    ``auth_token`` over ``url`` and the fields (Twilio's rule for form
    POSTs), else absent.
    """
    form = {
        "AccountSid": account_sid or _wire.sid("AC"),
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid or _wire.sid("CA"),
        "CallStatus": call_status,
        "Called": to,
        "Caller": from_,
        "Direction": "inbound",
        "From": from_,
        "To": to,
        **(extra or {}),
    }
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "TwilioProxy/1.1",
    }
    if signature is None and auth_token is not None:
        signature = cast(str, RequestValidator(auth_token).compute_signature(url, form))
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return VoiceWebhook(url, form, headers)
