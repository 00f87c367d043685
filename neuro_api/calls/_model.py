"""A call of the registry (the seed's "database" row) and its life.

``pending`` (created) → ``accepted`` → ``ended``; a pending call may end
too (hung up before it was answered). Every time is an aware UTC
``datetime``; in JSON it is ISO-8601 with ``Z``.

A call is of one of two kinds: ``video`` (the seed's: two identities in a
Twilio Video room, made through the API) or ``phone`` (a person phoning the
Twilio number: accepted when it begins, its id, room and ``call_sid`` all
Twilio's CallSid, its caller and callee Twilio's ``From`` and ``To``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from typing import Any, Final, Literal

__all__ = [
    "KINDS",
    "STATUSES",
    "Call",
    "CallKind",
    "CallStatus",
    "IllegalTransition",
    "iso",
    "parse_iso",
    "whole_seconds",
]

CallStatus = Literal["pending", "accepted", "ended"]
STATUSES: Final[tuple[CallStatus, ...]] = ("pending", "accepted", "ended")
CallKind = Literal["video", "phone"]
KINDS: Final[tuple[CallKind, ...]] = ("video", "phone")
_NEXT: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"accepted", "ended"}),
    "accepted": frozenset({"ended"}),
    "ended": frozenset(),
}


class IllegalTransition(Exception):
    """A call cannot go from its status to the one asked (HTTP 409)."""


def iso(moment: dt.datetime | None) -> str | None:
    """``2026-12-06T08:30:00.123Z`` (milliseconds, UTC), or None."""
    if moment is None:
        return None
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_iso(text: str | None) -> dt.datetime | None:
    """The moment :func:`iso` wrote (aware UTC), or None."""
    if text is None:
        return None
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def whole_seconds(start: dt.datetime, end: dt.datetime) -> int:
    """Whole seconds from ``start`` to ``end`` (0 if ``end`` is earlier)."""
    return max(0, int((end - start).total_seconds()))


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One call between two identities: in a Twilio room, or on the phone."""

    id: str
    caller: str
    callee: str
    room: str
    status: CallStatus
    created_at: dt.datetime
    accepted_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    duration: int | None = None
    """Whole seconds from ``accepted_at`` to ``ended_at`` (0 if never
    accepted)."""
    end_reason: str | None = None
    empty_since: dt.datetime | None = None
    """Since when the sync saw the room empty (None: not empty last time)."""
    single_since: dt.datetime | None = None
    """Since when the sync saw one participant alone in the room."""
    kind: CallKind = "video"
    """``video`` (a Twilio Video room, the sync's) or ``phone``."""
    call_sid: str | None = None
    """Twilio's CallSid of a phone call (None for a video call)."""

    @classmethod
    def new(cls, caller: str, callee: str, room: str, now: dt.datetime) -> Call:
        """A pending video call with a fresh id."""
        return cls(secrets.token_hex(8), caller, callee, room, "pending", now)

    @classmethod
    def phone(cls, call_sid: str, caller: str, callee: str, now: dt.datetime) -> Call:
        """A phone call, accepted at ``now``; its id and room are ``call_sid``."""
        return cls(
            call_sid,
            caller,
            callee,
            call_sid,
            "accepted",
            now,
            accepted_at=now,
            kind="phone",
            call_sid=call_sid,
        )

    def _moved(self, status: CallStatus) -> None:
        if status not in _NEXT[self.status]:
            raise IllegalTransition(
                f"call {self.id} is {self.status}: it cannot become {status}"
            )

    def accept(self, now: dt.datetime) -> Call:
        """The call answered (IllegalTransition unless pending)."""
        self._moved("accepted")
        return dataclasses.replace(self, status="accepted", accepted_at=now)

    def end(self, now: dt.datetime, reason: str) -> Call:
        """The call ended at ``now`` (IllegalTransition if it had)."""
        self._moved("ended")
        began = self.accepted_at
        return dataclasses.replace(
            self,
            status="ended",
            ended_at=now,
            duration=0 if began is None else whole_seconds(began, now),
            end_reason=reason,
            empty_since=None,
            single_since=None,
        )

    def to_json(self) -> dict[str, Any]:
        """The seed's shape (tracking fields included, for the sync)."""
        return {
            "id": self.id,
            "caller": self.caller,
            "callee": self.callee,
            "room": self.room,
            "status": self.status,
            "created_at": iso(self.created_at),
            "accepted_at": iso(self.accepted_at),
            "ended_at": iso(self.ended_at),
            "duration": self.duration,
            "end_reason": self.end_reason,
            "empty_since": iso(self.empty_since),
            "single_since": iso(self.single_since),
            "kind": self.kind,
            "call_sid": self.call_sid,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Call:
        """The call :meth:`to_json` wrote (KeyError/ValueError if not one).

        A row written before calls had kinds is a ``video`` call.
        """
        status = data["status"]
        if status not in STATUSES:
            raise ValueError(f"unknown call status {status!r}")
        kind = data.get("kind") or "video"
        if kind not in KINDS:
            raise ValueError(f"unknown call kind {kind!r}")
        call_sid = data.get("call_sid")
        created = parse_iso(data["created_at"])
        if created is None:
            raise ValueError("a call has a created_at")
        return cls(
            id=str(data["id"]),
            caller=str(data["caller"]),
            callee=str(data["callee"]),
            room=str(data["room"]),
            status=status,
            created_at=created,
            accepted_at=parse_iso(data.get("accepted_at")),
            ended_at=parse_iso(data.get("ended_at")),
            duration=data.get("duration"),
            end_reason=data.get("end_reason"),
            empty_since=parse_iso(data.get("empty_since")),
            single_since=parse_iso(data.get("single_since")),
            kind=kind,
            call_sid=None if call_sid is None else str(call_sid),
        )
