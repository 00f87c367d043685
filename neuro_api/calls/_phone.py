"""Phone calls in the registry: the checks and the two moves of their life.

A phone call is registered when it begins (accepted at once: Twilio has
answered it) and ended when its bridge ends, with the reason; its id, room
and ``call_sid`` are Twilio's CallSid, so whichever server runs the bridge
finds it by that alone. A call left accepted (its bridge's process died) is
ended by the sync once Twilio says it is over (see ``_phone_rules``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Final

from neuro_api._text import printable
from neuro_api.calls._model import Call
from neuro_api.calls._store import CallExists
from neuro_api.calls._sync import AsyncStore

__all__ = [
    "PARTY_MAX",
    "REASON_MAX",
    "call_sid_problem",
    "end_phone_call",
    "party",
    "start_phone_call",
]

PARTY_MAX: Final = 128
"""Characters of a caller or callee kept (Twilio's ``From``/``To``)."""
REASON_MAX: Final = 64
"""Characters of an end reason."""
UNKNOWN: Final = "unknown"
"""The caller or callee of a phone call whose ``From``/``To`` is empty
(a withheld number)."""

# Twilio's SIDs: two letters naming the resource, 32 hexadecimal digits.
# Letters and digits only, so the id is safe in a URL path as it is.
_CALL_SID: Final = re.compile(r"CA[0-9A-Za-z]{32}\Z")


def call_sid_problem(value: object) -> str | None:
    """Why ``value`` is not a Twilio CallSid (``CA`` + 32 characters), or None."""
    if not isinstance(value, str) or _CALL_SID.match(value) is None:
        return f"not a Twilio CallSid (CA and 32 letters or digits): {value!r:.60}"
    return None


def party(value: str) -> str:
    """A caller or callee as the registry keeps it.

    ``From`` and ``To`` are whatever the phone network says (``+15551234567``,
    ``client:alice``, ``sip:...``, ``anonymous``, or empty): control and bidi
    characters are escaped, surrounding whitespace dropped, the length cut to
    :data:`PARTY_MAX`, and an empty value becomes ``unknown``.
    """
    return printable(value).strip()[:PARTY_MAX] or UNKNOWN


def _reason_problem(reason: object) -> str | None:
    if (
        not isinstance(reason, str)
        or not reason
        or len(reason) > REASON_MAX
        or printable(reason) != reason
        or reason != reason.strip()
    ):
        return (
            f"an end reason is 1 to {REASON_MAX} printable characters, "
            f"not {reason!r:.80}"
        )
    return None


async def start_phone_call(
    store: AsyncStore,
    clock: Callable[[], dt.datetime],
    call_sid: str,
    from_: str,
    to: str,
) -> Call:
    """Register a phone call (accepted now); see ``CallsService.start_phone_call``."""
    problem = call_sid_problem(call_sid)
    if problem is not None:
        raise ValueError(problem)
    call = Call.phone(call_sid, party(from_), party(to), clock())
    try:
        await store.call(store.store.add, call)
    except CallExists:
        existing = await store.call(store.store.get, call_sid)
        if existing is not None and existing.kind == "phone":
            return existing  # Twilio asked twice about one call
        raise ValueError(f"{call_sid} names a call that is no phone call") from None
    return call


async def end_phone_call(
    store: AsyncStore,
    clock: Callable[[], dt.datetime],
    call_sid: str,
    reason: str,
) -> Call | None:
    """End a phone call in the registry; see ``CallsService.end_phone_call``."""
    problem = call_sid_problem(call_sid) or _reason_problem(reason)
    if problem is not None:
        raise ValueError(problem)
    call = await store.call(store.store.get, call_sid)
    if call is None or call.kind != "phone" or call.status == "ended":
        return None
    ended = call.end(clock(), reason)
    if not await store.replace(ended, call.status):
        return None  # ended meanwhile (another server, an operator)
    return ended
