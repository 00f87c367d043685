"""A fake Twilio REST API (Video rooms, voice calls) on 127.0.0.1, for tests.

It speaks the part of ``https://video.twilio.com/v1`` and
``https://api.twilio.com/2010-04-01`` the calls capability uses, with
Twilio's JSON shapes (the fields twilio-python's ``RoomInstance``,
``ParticipantInstance`` and ``CallInstance`` read), Basic auth with an API
key and secret, Twilio's error bodies (401 code 20003, 404 code 20404) and
pagination with absolute ``meta.next_page_url`` (on
``https://video.twilio.com`` by default, as Twilio sends them: a client that
does not rewrite them would leave loopback, which :func:`loopback_only` turns
into an error):

* ``GET /v1/Rooms/{sid or unique name}`` (a name finds only an in-progress
  room, as on Twilio);
* ``GET /v1/Rooms?Status=&UniqueName=&PageSize=&Page=``;
* ``GET /v1/Rooms/{room}/Participants?Status=&PageSize=&Page=``;
* ``POST /v1/Rooms/{room}`` with ``Status=completed``;
* ``GET /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` (the
  status tests set with :meth:`FakeTwilio.add_call`, ``end_call`` or
  ``set_call_status``; 404 code 20404 for a call it does not know);
* ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with
  ``Status=completed`` (hang up) or ``Twiml=`` (run that TwiML instead: a
  document that is not XML is 400 code 12100; the call ends when it holds
  ``<Hangup/>``), each recorded in :attr:`FakeCall.updates`; a call not in
  progress answers 400 code 21220, as Twilio.

It is a threaded ``http.server`` (one thread per connection, keep-alive), not
a Trio server: it does not depend on the test's event loop or clock, so it
answers SDK calls made from worker threads, from plain synchronous tests, and
while a test's Trio loop is busy. ``with FakeTwilio(key, secret) as fake:``
starts it; leaving the block closes every connection and joins every thread.
Tests change its state from any thread through the methods below.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import itertools
import json
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pytest

__all__ = [
    "ACCOUNT_SID",
    "FakeCall",
    "FakeParticipant",
    "FakeRoom",
    "FakeTwilio",
    "ended",
    "loopback_only",
]

ACCOUNT_SID: Final = "AC" + "0" * 32
TWILIO_HOST: Final = "https://video.twilio.com"
_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"  # what the SDK's iso8601_datetime reads


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime(_FORMAT)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _rfc2822(moment: datetime | None) -> str | None:
    """The API 2010-04-01's dates: ``Tue, 31 Aug 2010 20:36:28 +0000``."""
    return None if moment is None else format_datetime(moment.astimezone(UTC))


@dataclasses.dataclass
class FakeParticipant:
    sid: str
    identity: str
    status: str = "connected"
    start_time: datetime = dataclasses.field(default_factory=_now)
    end_time: datetime | None = None


@dataclasses.dataclass
class FakeRoom:
    sid: str
    unique_name: str
    status: str = "in-progress"
    date_created: datetime = dataclasses.field(default_factory=_now)
    end_time: datetime | None = None
    participants: list[FakeParticipant] = dataclasses.field(default_factory=list)
    fail: int | None = None
    """Answer every request about this room with this HTTP status."""
    fail_participants: int | None = None
    """Answer requests for this room's participants with this HTTP status."""
    raw: str | None = None
    """Answer a fetch of this room with this body (malformed answers)."""
    raw_participants: str | None = None
    """Answer requests for this room's participants with this body."""
    hang_up: bool = False
    """Close the connection instead of answering requests about this room."""


@dataclasses.dataclass
class FakeCall:
    sid: str
    from_: str
    to: str
    status: str = "in-progress"
    """queued, ringing, in-progress, completed, busy, failed, no-answer,
    canceled."""
    start_time: datetime = dataclasses.field(default_factory=_now)
    end_time: datetime | None = None
    updates: list[dict[str, str]] = dataclasses.field(default_factory=list)
    """The form of every update that reached the call, in order (refused
    ones too)."""
    fail: int | None = None
    """Answer every request about this call with this HTTP status."""
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Answer these fields instead of the call's own (odd JSON)."""


class _Error(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _HangUp(Exception):
    pass


def _not_found(path: str) -> _Error:
    return _Error(404, 20404, f"The requested resource {path} was not found")


class FakeTwilio:
    """The fake server and its state; every method is thread-safe.

    ``delay`` (seconds, settable at any time) is waited before every answer
    (cut short when the server stops). ``fail_all`` makes every request
    answer that HTTP status. ``max_page_size`` caps ``PageSize`` (Twilio's
    default page is 50). ``requests`` counts the requests that reached the
    server, ``log`` lists them as ``(method, path?query)``, ``connections``
    counts the TCP connections accepted (keep-alive reuse shows there).
    """

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        max_page_size: int = 50,
        page_host: str = TWILIO_HOST,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.max_page_size = max_page_size
        self.page_host = page_host
        self.delay = 0.0
        self.slow_gets = 0.0
        """Seconds every ``GET`` waits before its answer (lookups, not updates)."""
        self.fail_all: int | None = None
        self.log: list[tuple[str, str]] = []
        self.connections = 0
        self._rooms: dict[str, FakeRoom] = {}
        self._calls: dict[str, FakeCall] = {}
        self._lock = threading.Lock()
        self._sids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifetime ---------------------------------------------------------

    def __enter__(self) -> Self:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._stopping.set()
        self._server.shutdown()
        self._thread.join()
        self._server.close_connections()
        self._server.server_close()  # joins the connection threads

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the client's ``base_url``."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.log)

    # -- state ------------------------------------------------------------

    def _sid(self, prefix: str) -> str:
        return f"{prefix}{next(self._sids):032x}"

    def add_room(
        self,
        unique_name: str | None = None,
        *,
        status: str = "in-progress",
        participants: int | Sequence[str] = 0,
        date_created: datetime | None = None,
        end_time: datetime | None = None,
    ) -> str:
        """Add a room (its name defaults to its SID, as on Twilio); its SID."""
        with self._lock:
            sid = self._sid("RM")
            room = FakeRoom(sid, unique_name or sid, status, end_time=end_time)
            if date_created is not None:
                room.date_created = date_created
            self._rooms[sid] = room
            names = (
                [f"user{i}" for i in range(participants)]
                if isinstance(participants, int)
                else participants
            )
            for identity in names:
                room.participants.append(FakeParticipant(self._sid("PA"), identity))
            return sid

    def _find(self, room: str) -> FakeRoom:
        """By SID, else the newest room of that name (any status)."""
        if room in self._rooms:
            return self._rooms[room]
        for candidate in reversed(self._rooms.values()):
            if candidate.unique_name == room:
                return candidate
        raise KeyError(room)

    def change(self, room: str, action: Callable[[FakeRoom], None]) -> None:
        """Run ``action`` on a room (by SID or name) under the lock."""
        with self._lock:
            action(self._find(room))

    def room(self, room: str) -> FakeRoom:
        """A deep copy of a room's state (by SID or name)."""
        with self._lock:
            return copy.deepcopy(self._find(room))

    def add_participant(self, room: str, identity: str) -> str:
        """Connect one more participant; its SID."""
        with self._lock:
            sid = self._sid("PA")
            self._find(room).participants.append(FakeParticipant(sid, identity))
            return sid

    def disconnect(self, room: str, identity: str) -> None:
        """The connected participant ``identity`` leaves ``room``."""
        with self._lock:
            for participant in self._find(room).participants:
                if participant.identity == identity and participant.status == (
                    "connected"
                ):
                    participant.status = "disconnected"
                    participant.end_time = _now()
                    return
            raise KeyError(identity)

    def set_status(
        self, room: str, status: str, *, end_time: datetime | None = None
    ) -> None:
        """Set a room's status (any string) and end time."""

        def action(found: FakeRoom) -> None:
            found.status = status
            found.end_time = end_time

        self.change(room, action)

    def remove_room(self, room: str) -> None:
        """Forget a room: it answers 404 from now on."""
        with self._lock:
            del self._rooms[self._find(room).sid]

    def fail(self, room: str, status: int | None = 500) -> None:
        """Make every request about ``room`` answer ``status`` (None: stop)."""

        def action(found: FakeRoom) -> None:
            found.fail = status

        self.change(room, action)

    def fail_participants(self, room: str, status: int | None = 500) -> None:
        """Make requests for ``room``'s participants answer ``status``."""

        def action(found: FakeRoom) -> None:
            found.fail_participants = status

        self.change(room, action)

    def answer_raw(
        self, room: str, body: str | None, *, participants: bool = False
    ) -> None:
        """Answer a fetch of ``room`` (or of its participants) with 200 and
        ``body`` (None: stop)."""

        def action(found: FakeRoom) -> None:
            if participants:
                found.raw_participants = body
            else:
                found.raw = body

        self.change(room, action)

    def hang_up(self, room: str, hang_up: bool = True) -> None:
        """Close the connection, unanswered, on every request about ``room``."""

        def action(found: FakeRoom) -> None:
            found.hang_up = hang_up

        self.change(room, action)

    def add_call(
        self,
        from_: str = "+15550001111",
        to: str = "+15550002222",
        *,
        sid: str | None = None,
        status: str = "in-progress",
        start_time: datetime | None = None,
    ) -> str:
        """Add a phone call (in progress: answered); its SID."""
        with self._lock:
            sid = sid or self._sid("CA")
            call = FakeCall(sid, from_, to, status)
            if start_time is not None:
                call.start_time = start_time
            self._calls[sid] = call
            return sid

    def call(self, sid: str) -> FakeCall:
        """A deep copy of a call's state."""
        with self._lock:
            return copy.deepcopy(self._calls[sid])

    def end_call(
        self, sid: str, status: str = "completed", *, end_time: datetime | None = None
    ) -> None:
        """The call ends on Twilio's side (the caller hung up), at ``end_time``
        (default: now)."""
        with self._lock:
            call = self._calls[sid]
            call.status = status
            call.end_time = end_time or _now()

    def set_call_status(self, sid: str, status: str) -> None:
        """Set a call's status (any string; ``GET`` answers it), end time kept."""
        with self._lock:
            self._calls[sid].status = status

    def remove_call(self, sid: str) -> None:
        """Forget a call: it answers 404 (code 20404) from now on."""
        with self._lock:
            del self._calls[sid]

    def answer_call_fields(self, sid: str, fields: dict[str, Any]) -> None:
        """Answer ``fields`` (any JSON) instead of call ``sid``'s own."""
        with self._lock:
            self._calls[sid].fields = dict(fields)

    def fail_call(self, sid: str, status: int | None = 500) -> None:
        """Make every request about call ``sid`` answer ``status`` (None: stop)."""
        with self._lock:
            self._calls[sid].fail = status

    # -- the API ------------------------------------------------------------

    def _record(self, method: str, target: str) -> None:
        with self._lock:
            self.log.append((method, target))

    def _address(self, name_or_sid: str) -> FakeRoom:
        """A room as Twilio addresses it: by SID, or by name while in progress."""
        room = self._rooms.get(name_or_sid)
        if room is None:
            for candidate in self._rooms.values():
                if (
                    candidate.unique_name == name_or_sid
                    and candidate.status == "in-progress"
                ):
                    room = candidate
        if room is None:
            raise _not_found(f"/Rooms/{name_or_sid}")
        if room.hang_up:
            raise _HangUp
        if room.fail is not None:
            raise _Error(room.fail, 20500, "Internal Server Error")
        return room

    def _room_json(self, room: FakeRoom) -> dict[str, Any]:
        url = f"{TWILIO_HOST}/v1/Rooms/{room.sid}"
        duration = (
            int((room.end_time - room.date_created).total_seconds())
            if room.end_time is not None
            else None
        )
        return {
            "sid": room.sid,
            "status": room.status,
            "date_created": _iso(room.date_created),
            "date_updated": _iso(room.end_time or room.date_created),
            "account_sid": ACCOUNT_SID,
            "enable_turn": True,
            "unique_name": room.unique_name,
            "status_callback": None,
            "status_callback_method": "POST",
            "end_time": _iso(room.end_time),
            "duration": duration,
            "type": "group",
            "max_participants": 50,
            "max_participant_duration": 14400,
            "max_concurrent_published_tracks": 170,
            "record_participants_on_connect": False,
            "video_codecs": ["VP8", "H264"],
            "media_region": "us1",
            "audio_only": False,
            "empty_room_timeout": 5,
            "unused_room_timeout": 5,
            "large_room": False,
            "url": url,
            "links": {
                "participants": f"{url}/Participants",
                "recordings": f"{url}/Recordings",
                "recording_rules": f"{url}/RecordingRules",
            },
        }

    def _participant_json(
        self, room: FakeRoom, participant: FakeParticipant
    ) -> dict[str, Any]:
        url = f"{TWILIO_HOST}/v1/Rooms/{room.sid}/Participants/{participant.sid}"
        return {
            "sid": participant.sid,
            "room_sid": room.sid,
            "account_sid": ACCOUNT_SID,
            "status": participant.status,
            "identity": participant.identity,
            "date_created": _iso(participant.start_time),
            "date_updated": _iso(participant.end_time or participant.start_time),
            "start_time": _iso(participant.start_time),
            "end_time": _iso(participant.end_time),
            "duration": None,
            "url": url,
            "links": {
                "published_tracks": f"{url}/PublishedTracks",
                "subscribed_tracks": f"{url}/SubscribedTracks",
                "subscribe_rules": f"{url}/SubscribeRules",
            },
        }

    def _page(
        self,
        path: str,
        query: dict[str, str],
        key: str,
        records: list[dict[str, Any]],
    ) -> dict[str, Any]:
        try:
            size = int(query.get("PageSize", "50"))
            page = int(query.get("Page", "0"))
        except ValueError:
            raise _Error(400, 20001, "Invalid PageSize or Page") from None
        if size < 1 or page < 0:
            raise _Error(400, 20001, "Invalid PageSize or Page")
        size = min(size, self.max_page_size)
        chunk = records[page * size : (page + 1) * size]

        def url(number: int) -> str:
            params = {**query, "PageSize": str(size), "Page": str(number)}
            if number:
                params["PageToken"] = f"PA{number * size}"
            else:
                params.pop("PageToken", None)
            return f"{self.page_host}/v1{path}?{urlencode(params)}"

        more = (page + 1) * size < len(records)
        return {
            key: chunk,
            "meta": {
                "page": page,
                "page_size": size,
                "first_page_url": url(0),
                "previous_page_url": url(page - 1) if page else None,
                "url": url(page),
                "next_page_url": url(page + 1) if more else None,
                "key": key,
            },
        }

    def handle(
        self, method: str, target: str, authorization: str | None, body: str
    ) -> tuple[int, str]:
        """One request's status and JSON body (the HTTP handler's core).

        Status 0: close the connection without answering.
        """
        self._record(method, target)
        if self.delay > 0:
            self._stopping.wait(self.delay)
        if method == "GET" and self.slow_gets > 0:
            self._stopping.wait(self.slow_gets)
        parts = urlsplit(target)
        try:
            if not self._authorized(authorization):
                raise _Error(401, 20003, "Authenticate")
            with self._lock:
                if self.fail_all is not None:
                    raise _Error(self.fail_all, 20500, "Internal Server Error")
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                form = {k: v[-1] for k, v in parse_qs(body).items()}
                answer = self._route(method, parts.path, query, form)
        except _HangUp:
            return 0, ""
        except _Error as error:
            status = error.status
            answer = {
                "code": error.code,
                "message": error.message,
                "more_info": f"https://www.twilio.com/docs/errors/{error.code}",
                "status": error.status,
            }
        else:
            status = 200
            if isinstance(answer, str):
                return status, answer
        return status, json.dumps(answer)

    def _authorized(self, authorization: str | None) -> bool:
        if authorization is None or not authorization.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode()
        except ValueError:
            return False
        return decoded == f"{self.api_key}:{self.api_secret}"

    def _route(
        self, method: str, path: str, query: dict[str, str], form: dict[str, str]
    ) -> dict[str, Any] | str:
        segments = [unquote(part) for part in path.split("/")]
        if segments[:2] == ["", "2010-04-01"]:
            return self._route_calls(method, path, segments[2:], form)
        if segments[:3] != ["", "v1", "Rooms"]:
            raise _not_found(path)
        rest = segments[3:]
        if method == "GET" and not rest:
            return self._list_rooms(query)
        if method == "GET" and len(rest) == 1:
            room = self._address(rest[0])
            return room.raw if room.raw is not None else self._room_json(room)
        if method == "POST" and len(rest) == 1:
            return self._update(self._address(rest[0]), form)
        if method == "GET" and len(rest) == 2 and rest[1] == "Participants":
            room = self._address(rest[0])
            if room.fail_participants is not None:
                raise _Error(room.fail_participants, 20500, "Internal Server Error")
            if room.raw_participants is not None:
                return room.raw_participants
            return self._list_participants(room, query)
        raise _not_found(path)

    def _list_rooms(self, query: dict[str, str]) -> dict[str, Any]:
        rooms = [
            room
            for room in self._rooms.values()
            if query.get("Status") in {None, room.status}
            and query.get("UniqueName") in {None, room.unique_name}
        ]
        records = [self._room_json(room) for room in reversed(rooms)]
        return self._page("/Rooms", query, "rooms", records)

    def _list_participants(
        self, room: FakeRoom, query: dict[str, str]
    ) -> dict[str, Any]:
        # Twilio's default: connected ones of an in-progress room,
        # disconnected ones of an ended room.
        wanted = query.get(
            "Status", "connected" if room.status == "in-progress" else "disconnected"
        )
        records = [
            self._participant_json(room, participant)
            for participant in room.participants
            if participant.status == wanted
        ]
        return self._page(
            f"/Rooms/{room.sid}/Participants", query, "participants", records
        )

    def _update(self, room: FakeRoom, form: dict[str, str]) -> dict[str, Any]:
        if form.get("Status") != "completed":
            raise _Error(400, 53103, "Invalid Room status")
        if room.status != "in-progress":
            raise _Error(400, 53118, "Room is not in progress")
        room.status = "completed"
        room.end_time = _now()
        for participant in room.participants:
            if participant.status == "connected":
                participant.status = "disconnected"
                participant.end_time = room.end_time
        return self._room_json(room)

    def _route_calls(
        self, method: str, path: str, segments: list[str], form: dict[str, str]
    ) -> dict[str, Any]:
        """``Accounts/{AccountSid}/Calls/{CallSid}.json``: fetch or update."""
        if (
            len(segments) != 4
            or segments[0] != "Accounts"
            or segments[1] != ACCOUNT_SID
            or segments[2] != "Calls"
            or not segments[3].endswith(".json")
        ):
            raise _not_found(path)
        call = self._calls.get(segments[3].removesuffix(".json"))
        if call is None:
            raise _not_found(path)
        if call.fail is not None:
            raise _Error(call.fail, 20500, "Internal Server Error")
        if method == "POST":
            call.updates.append(dict(form))
            self._update_call(call, form)
        elif method != "GET":
            raise _not_found(path)
        return self._call_json(call)

    def _update_call(self, call: FakeCall, form: dict[str, str]) -> None:
        if call.status != "in-progress":
            raise _Error(400, 21220, "Call is not in-progress. Cannot redirect.")
        status, twiml = form.get("Status"), form.get("Twiml")
        if status is not None:
            if status not in {"completed", "canceled"}:
                raise _Error(400, 20001, f"Invalid Status {status}")
        elif twiml is not None:
            try:
                document = ET.fromstring(twiml)
            except ET.ParseError:
                raise _Error(400, 12100, "Document parse failure") from None
            if document.tag != "Response":
                raise _Error(400, 12100, "Document parse failure")
            if document.find("Hangup") is None:
                return  # the call goes on with the new TwiML
        else:
            raise _Error(400, 20001, "Nothing to update")
        call.status = "completed"
        call.end_time = _now()

    def _call_json(self, call: FakeCall) -> dict[str, Any]:
        uri = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call.sid}.json"
        duration = (
            str(int((call.end_time - call.start_time).total_seconds()))
            if call.end_time is not None
            else None
        )
        return {
            "sid": call.sid,
            "date_created": _rfc2822(call.start_time),
            "date_updated": _rfc2822(call.end_time or call.start_time),
            "parent_call_sid": None,
            "account_sid": ACCOUNT_SID,
            "to": call.to,
            "to_formatted": call.to,
            "from": call.from_,
            "from_formatted": call.from_,
            "phone_number_sid": "PN" + "0" * 32,
            "status": call.status,
            "start_time": _rfc2822(call.start_time),
            "end_time": _rfc2822(call.end_time),
            "duration": duration,
            "price": None,
            "price_unit": "USD",
            "direction": "inbound",
            "answered_by": None,
            "api_version": "2010-04-01",
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "stir_verstat": None,
            "trunk_sid": None,
            "uri": uri,
            "subresource_uris": {
                "notifications": uri.replace(".json", "/Notifications.json"),
                "recordings": uri.replace(".json", "/Recordings.json"),
                "streams": uri.replace(".json", "/Streams.json"),
            },
            **call.fields,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close joins them
    fake: FakeTwilio

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        """Wake the threads waiting on kept-alive connections (they see EOF)."""
        with self.connections_lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Twilio
    timeout = 30  # a connection idle this long is closed
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)
        with self.server.fake._lock:
            self.server.fake.connections += 1

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake's log is :attr:`FakeTwilio.log`."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        status, text = self.server.fake.handle(
            self.command, self.path, self.headers.get("Authorization"), body
        )
        if status == 0:
            self.close_connection = True
            return
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _answer
    do_POST = _answer


@contextlib.contextmanager
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every name lookup of a non-loopback host fail, and list them.

    ``socket.getaddrinfo`` (which ``urllib3`` calls before connecting) is
    patched for the block: ``127.0.0.1`` and ``localhost`` resolve, any other
    host raises ``socket.gaierror`` and is appended to the yielded list, so a
    test can assert the list stayed empty: nothing ever left loopback.
    """
    real = socket.getaddrinfo
    refused: list[str] = []

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in {"127.0.0.1", "localhost", "::1"}:
            refused.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"{name} is not loopback")
        return real(host, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", guarded)
        yield refused


def ended(minutes_ago: float) -> datetime:
    """A whole-second UTC time ``minutes_ago`` minutes ago (an end time)."""
    return _now() - timedelta(minutes=minutes_ago)
