"""The sync's rules for phone calls: what Twilio's word on a Call means.

A phone call is ended by its bridge. When the process running the bridge
dies mid-call (or the registry could not be written then), nothing else
would: the sync asks Twilio for the Call (:class:`CallLook`) and
:func:`decide_phone` turns the answer into a :class:`~neuro_api.calls.Verdict`.
As for rooms, Twilio is the source of truth and uncertainty never ends a
call; not knowing a call here never does either (a shared registry holds
other servers' calls):

==========================================  ==================================
Twilio says                                 The call
==========================================  ==================================
an error (5xx, timeout, auth ...)           left alone this round (``skip``)
no such call (404, code 20404)              ended at once: ``unknown_to_twilio``
``completed``, ``busy``, ``failed``,        ended: ``ended_at_twilio``, at
``no-answer``, ``canceled``                 Twilio's end time when given
                                            (kept while that is less than
                                            :data:`BRIDGE_GRACE` ago)
``queued``, ``ringing``, ``in-progress``    kept (a bridge somewhere has it)
==========================================  ==================================
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Final, Literal

from neuro_api.calls._decide import Verdict, ended_at
from neuro_api.calls._model import Call

__all__ = [
    "BRIDGE_GRACE",
    "CALL_STATUSES",
    "ENDED_AT_TWILIO",
    "OVER",
    "UNKNOWN_TO_TWILIO",
    "CallLook",
    "decide_phone",
]

CALL_STATUSES: Final = frozenset(
    {
        "queued",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "failed",
        "no-answer",
        "canceled",
    }
)
"""Every status Twilio documents for a Call; anything else is an error."""
OVER: Final = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
"""The statuses of a Call that has ended (it never goes on after them)."""
ENDED_AT_TWILIO: Final = "ended_at_twilio"
"""The end reason of a phone call the sync ended because Twilio's had."""
UNKNOWN_TO_TWILIO: Final = "unknown_to_twilio"
"""The end reason of a phone call Twilio does not know (404)."""
BRIDGE_GRACE: Final = dt.timedelta(seconds=30)
"""How long after Twilio's end a call is left to its bridge, which records
the end with its own reason (``caller_hung_up``…) a moment after Twilio."""


@dataclasses.dataclass(frozen=True, slots=True)
class CallLook:
    """What Twilio said about one Call.

    ``state`` is ``"found"`` (``status`` is one of :data:`CALL_STATUSES`),
    ``"not_found"`` (Twilio's own 404, code 20404) or ``"error"`` (Twilio
    could not say: ``error`` holds a one-line reason). ``end_time`` is
    Twilio's end time of an ended call (aware UTC), or None.
    """

    state: Literal["found", "not_found", "error"]
    status: str | None = None
    end_time: dt.datetime | None = None
    error: str | None = None


def decide_phone(call: Call, look: CallLook, now: dt.datetime) -> Verdict:
    """The verdict on an ``accepted`` phone call whose Call Twilio described."""
    if look.state == "error":
        return Verdict("skip", call, look.error or "Twilio could not be asked")
    if look.state == "not_found":
        return Verdict("end", call.end(now, UNKNOWN_TO_TWILIO))
    if look.status in OVER:
        # Within the grace either way: Twilio's clock may be a little ahead
        # of ours (an end time far off either way is no reason to wait).
        if look.end_time is not None and abs(now - look.end_time) < BRIDGE_GRACE:
            return Verdict("keep", call)  # its bridge may be recording it now
        ended = ended_at(call, look.end_time, now)
        return Verdict("end", call.end(ended, ENDED_AT_TWILIO))
    return Verdict("keep", call)
