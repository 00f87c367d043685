"""The sync's rules: what to do with one accepted call, given its room.

A pure function (no I/O, no clock): :func:`decide` takes the call, what
Twilio said of its room (:class:`RoomLook`), the time and the rules, and
returns a :class:`Verdict`. Twilio is the source of truth, and uncertainty
never ends a call:

=================================  =========================================
Twilio says                        The call
=================================  =========================================
an error (5xx, timeout, auth ...)  left alone this round (``skipped``)
room not found (404 / 20404)       ended at once: ``room_not_found``
room ``completed``                 ended at once: ``room_completed`` (at the
                                   room's end time when Twilio gives it)
room ``failed``                    ended at once: ``room_failed``
room empty                         ended once empty for more than the empty
                                   timeout: ``room_abandoned``
one participant                    ended once alone for more than the single
                                   timeout: ``single_participant_timeout``
two or more participants           kept (the empty/single clocks reset)
=================================  =========================================

The empty and single rules apply only to calls older than the minimum age
(from their creation); "for more than" is measured from the first sync that
saw the room so (kept in the call: ``empty_since``, ``single_since``), so
it holds across syncs, restarts and instances.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Final, Literal

from neuro_api.calls._model import Call
from neuro_api.calls._twilio import RoomLook

__all__ = ["RoomLook", "SyncRules", "Verdict", "decide", "ended_at"]


@dataclasses.dataclass(frozen=True, slots=True)
class SyncRules:
    """The timeouts of the empty and single rules, in seconds."""

    min_age: float = 300.0
    empty_timeout: float = 300.0
    single_timeout: float = 600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What becomes of the call: ``call`` as it should be stored now."""

    action: Literal["end", "keep", "skip"]
    call: Call
    """Ended, or with its tracking updated, or unchanged (``skip``)."""
    error: str | None = None
    """Why it was skipped (Twilio's trouble)."""

    @property
    def changed(self) -> bool:
        """Whether the call must be written back."""
        return self.action != "skip"


_AT_ONCE: Final = {"completed": "room_completed", "failed": "room_failed"}


def ended_at(call: Call, reported: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """When ``call`` ended: Twilio's ``reported`` end time, else ``now``.

    Never before the call began nor later than now (clocks differ).
    """
    if reported is None:
        return now
    began = call.accepted_at or call.created_at
    return min(max(reported, began), now)


def decide(call: Call, look: RoomLook, now: dt.datetime, rules: SyncRules) -> Verdict:
    """The verdict on an ``accepted`` call whose room Twilio described."""
    if look.state == "error":
        return Verdict("skip", call, look.error or "Twilio could not be asked")
    if look.state == "not_found":
        return Verdict("end", call.end(now, "room_not_found"))
    reason = _AT_ONCE.get(look.status or "")
    if reason is not None:
        return Verdict("end", call.end(ended_at(call, look.end_time, now), reason))
    old_enough = (now - call.created_at).total_seconds() >= rules.min_age
    if look.participants <= 0:
        since = call.empty_since or now
        tracked = dataclasses.replace(call, empty_since=since, single_since=None)
        if old_enough and (now - since).total_seconds() > rules.empty_timeout:
            return Verdict("end", tracked.end(now, "room_abandoned"))
        return Verdict("keep", tracked)
    if look.participants == 1:
        since = call.single_since or now
        tracked = dataclasses.replace(call, single_since=since, empty_since=None)
        if old_enough and (now - since).total_seconds() > rules.single_timeout:
            return Verdict("end", tracked.end(now, "single_participant_timeout"))
        return Verdict("keep", tracked)
    return Verdict(
        "keep", dataclasses.replace(call, empty_since=None, single_since=None)
    )
