"""A fake OpenAI Realtime API (GA interface) on 127.0.0.1, for tests.

It is a Trio server on trio-websocket that runs in the test's own event loop,
so its timers follow ``autojump_clock``. It speaks the WebSocket interface of
``wss://api.openai.com/v1/realtime?model=MODEL`` well enough for a client to
keep a session, build a conversation and get function calls, to hold a
phone call (server VAD on the caller's audio, spoken answers, barge-in,
truncation), and it misbehaves on demand::

    async with open_fake_realtime(key="sk-test") as fake:
        fake.script([RateLimits(), FunctionCall("jump", '{"height": 3}')])
        ws = await connect_websocket_url(
            nursery, fake.url + "?model=gpt-realtime",
            extra_headers=[(b"Authorization", b"Bearer sk-test")],
        )
        ...
        connection = fake.connections[0]
        await connection.wait_event("response.create")

``open_fake_realtime(key="sk-test", *, model_required=True)``
    Async context manager; yields a :class:`FakeRealtime` already listening.
    At exit every open connection is closed (code 1001, reason ``server
    shutting down``; a frozen one is dropped) and the listener stops. Errors
    of the block or of the fake (a responder that raised) come out as
    themselves, not in an ``ExceptionGroup``.

:class:`FakeRealtime`
    ``url`` (``ws://127.0.0.1:PORT/v1/realtime``; the client appends
    ``?model=``), ``port``, ``key``, ``model_required``;
    ``connections`` (every accepted :class:`FakeConnection`, in accept order,
    closed ones included; ``connections[i].id == i``); ``handshakes`` (attempts
    answered, accepted or refused); ``reject_status`` (``int | None``: refuse
    every handshake with this HTTP status and an OpenAI-style JSON error body;
    401 gives the invalid-key body), ``reject_body`` (``bytes | None``: that
    body instead); ``responder`` (a :data:`Responder`, default
    :func:`default_responder`); ``script(*plays)`` queues plays for the next
    valid ``response.create`` events of any connection, in order, before the
    responder is asked again (``scripted`` is that deque), automatic
    responses included; ``script_transcripts(*texts)`` queues what the next
    user audio turns say (``transcripts`` is that deque; then
    :data:`DEFAULT_TRANSCRIPT`, ``"Hello."``);
    ``await wait_connections(n)``, ``await wait_handshakes(n)``.

Handshake
    The path must be ``/v1/realtime`` (else 404 ``Invalid URL (GET path)``);
    ``Authorization: Bearer KEY`` must be there (else 401, "You didn't provide
    an API key...") and match (else 401 with ``{"error": {"message":
    "Incorrect API key provided: <masked>...", "type": "invalid_request_error",
    "code": "invalid_api_key", "param": null}}``); with ``model_required`` the
    query needs ``model`` (else 400 ``missing_required_parameter``, param
    ``model``), without it the model defaults to ``gpt-realtime``. Bodies are
    ``application/json``; trio-websocket clients see them as
    ``ConnectionRejected(status_code, headers, body)``. Other headers are
    recorded, not checked (an ``OpenAI-Beta: realtime=v1`` header, which
    would select the beta interface on the real service, is accepted: the
    fake speaks GA only; tests may assert on ``headers``).

:class:`FakeConnection`
    ``id``, ``fake`` (its :class:`FakeRealtime`), ``model``, ``path`` (with
    the query), ``headers`` (names in lower case), ``session`` (the current
    session object), ``conversation_id``,
    ``items`` (the default conversation: ``{id: item}`` in order),
    ``received`` (every client event, parsed), ``bad_frames`` (non-JSON or
    binary frames, raw), ``sent`` (server events as written to the socket),
    ``responses`` (the ``response`` object of every ``response.create``,
    ``{}`` when absent, refused ones included; automatic responses are not
    in it), ``active_response`` (id or ``None``), ``audio_buffer`` (how
    many bytes were appended since the last commit/clear), ``input_audio``
    (every byte appended in the session), ``turns`` (every user audio item
    made of the buffer, a :class:`Turn`: ``item_id``, ``by`` ``"vad"`` or
    ``"commit"``, ``audio``, ``audio_start_ms``, ``audio_end_ms``,
    ``transcript``), ``speaking`` (the VAD hears speech now),
    ``output_audio`` (``{item_id: bytearray}``: the audio the model made
    for each item), ``audio_ms`` (``{item_id: ms}``: audio lengths checked
    by ``conversation.item.truncate``, those of the model's audio items
    kept as they are made; a test may declare others),
    ``closed``, ``close_code`` and
    ``close_reason`` (the client's close frame, the code the server closed
    with, 1001 at shutdown, 1006 when the TCP connection ended without one,
    dropped ones included), ``dropped``, ``frozen``.
    ``await wait_event(type, count=1)``: until ``count`` client events of that
    type arrived; returns the ``count``-th; :class:`RuntimeError` if the
    connection ends first. ``await wait_sent(type, count=1)``: the same for
    server events written. ``events(type)`` and ``sent_events(type)`` list
    them. ``await send_event(dict)``: queue any server event (``event_id``
    added if missing) after those already queued. ``await close(code=1000,
    reason=None)``: close frame after the queued events; returns when the
    connection ended. ``await drop()``: end the TCP connection now, no close
    frame (the client's trio-websocket sees ``ConnectionClosed`` with code
    1006). ``await wait_closed()``. ``freeze()`` / ``thaw()``: a frozen
    connection reads nothing and writes nothing (the server stops reading its
    socket), so the client's pings go unanswered and its events wait; the
    thaw lets both through in order.

Protocol (GA event names; every server event has ``type`` and a unique
``event_id``; errors are ``{"type": "error", "error": {"type", "code",
"message", "param", "event_id"}}`` with ``event_id`` the client event's)
    * on accept: ``session.created`` (``type: realtime``, ``object:
      realtime.session``, ``id: sess_…``, ``model``, ``output_modalities:
      ["audio"]``, ``instructions: ""``, ``tools: []``, ``tool_choice:
      "auto"``, ``max_output_tokens: "inf"``, ``audio.input``/``output`` with
      ``audio/pcm`` 24 kHz, ``server_vad`` turn detection: threshold 0.5,
      prefix 300 ms, silence 200 ms, create and interrupt response).
    * ``session.update``: ``session.type`` must be ``realtime`` (else
      ``missing_required_parameter`` / ``invalid_value``, param
      ``session.type``); tools must be GA function tools whose names match
      ``^[a-zA-Z0-9_-]+$`` and are at most 64 characters (``invalid_value`` /
      ``string_above_max_length``, param ``session.tools[i].name``);
      ``tool_choice`` and ``output_modalities`` are checked; audio formats
      must be ``audio/pcm`` (rate 24000), ``audio/pcmu`` or ``audio/pcma``;
      a ``turn_detection`` is ``null``, ``server_vad`` (``threshold`` 0-1,
      integer ms) or ``semantic_vad`` (``eagerness``), its missing fields
      filled with the defaults above; objects are merged key by key, but
      ``format``, ``turn_detection``, ``transcription`` and
      ``noise_reduction``, which are replaced whole; answer
      ``session.updated`` with the whole session.
    * ``conversation.item.create``: message (role user/system/assistant with
      that role's content types: ``input_text``…, ``output_text``…),
      ``function_call`` or ``function_call_output`` (``call_id``, ``output``);
      an ``id`` is given if missing (a duplicate is an error); the item is
      appended (``previous_item_id`` is not used for placement); answer
      ``conversation.item.added`` then ``conversation.item.done``.
    * ``conversation.item.retrieve`` / ``delete`` / ``truncate``: unknown ids
      give ``item_retrieve_invalid_item_id`` / ``item_delete_invalid_item_id``
      / ``item_truncate_invalid_item_id`` ("Error deleting item: the item with
      id 'X' does not exist."); a truncation past the item's ``audio_ms``
      is an ``invalid_value`` (param ``audio_end_ms``) with the API's text,
      "Audio content of 13600ms is already shorter than 55960ms", and
      changes nothing; a right one sets ``audio_ms`` to ``audio_end_ms``;
      answers ``conversation.item.retrieved`` / ``deleted`` / ``truncated``.
    * ``input_audio_buffer.append`` (base64), ``clear`` (``cleared``),
      ``commit`` (``committed``, then a user message item with an
      ``input_audio`` part, ``transcript: null``; empty buffer:
      ``input_audio_buffer_commit_empty``).
    * Server VAD (``audio/pcmu`` and ``audio/pcm`` input with a turn
      detection; ``audio/pcma`` is only counted): appended audio is cut in
      10 ms windows; a window whose samples' RMS reaches 1000 times the threshold
      (500 at 0.5) is speech. Speech starting:
      ``input_audio_buffer.speech_started`` (``audio_start_ms``: that
      window's start minus ``prefix_padding_ms``, not before the buffer's
      start, in ms of all the session's input audio; ``item_id``: the item
      to come), and with ``interrupt_response`` the response running in the
      conversation is cancelled (barge-in): an audio item being streamed
      ends ``incomplete`` (``output_audio.done``, ``output_audio_transcript
      .done`` with the words sent so far, ``content_part.done``,
      ``output_item.done``), then ``response.done`` ``cancelled``,
      ``status_details: {type: cancelled, reason: turn_detected}``. After
      ``silence_duration_ms`` of windows below the threshold (semantic VAD:
      1000/500/250 ms for low/medium or auto/high eagerness):
      ``speech_stopped`` (``audio_end_ms``: the end of that silence), the
      buffer up to there committed as above, then with ``create_response``
      an automatic response (scripted plays first, then the responder with
      ``{}``) unless one is running. With input ``transcription`` set, a
      committed item's transcript follows its ``conversation.item.done``:
      ``conversation.item.input_audio_transcription.delta`` and
      ``.completed`` (``usage: {type: duration, seconds}``).
      ``idle_timeout_ms`` and ``noise_reduction`` are kept, not simulated.
    * ``response.create``: parameters checked (``conversation`` auto/none,
      ``input`` items, which may be ``item_reference``\\ s, tools,
      ``tool_choice``, ``output_modalities``, ``instructions``,
      ``metadata``). One response at a time per connection: another gets
      ``conversation_already_has_active_response``. Then the play (below):
      ``response.created`` (``object: realtime.response``, ``status:
      in_progress``, ``conversation_id``: ``conv_…``, or ``null`` with
      ``conversation: "none"``), the output, ``response.done`` (``status``,
      ``status_details``, ``output``, ``usage``). Output items go into
      ``items`` with ``conversation.item.added``/``done`` only with
      ``conversation: "auto"``.
    * ``response.cancel`` (``response_id`` optional): the active response (its
      id must match if given) stops and ends with ``response.done`` status
      ``cancelled``, ``status_details: {type: cancelled, reason:
      client_cancelled}``, with the output finished so far; else
      ``response_cancel_not_active`` ("Cancellation failed: no active
      response found").
    * An unknown ``type`` (``invalid_value``, param ``type``), a missing one
      (``missing_required_parameter``), a JSON value that is not an object
      (``invalid_type``), non-JSON text or a binary frame (``invalid_json``):
      an ``error`` event; the connection stays open.

Plays (:data:`Behaviour` or a sequence of them, from :meth:`FakeRealtime.script`
or the :data:`Responder` ``(connection, response_params) -> play``):
    Leading :class:`RateLimits` and :class:`Error` are played before any
    response: an :class:`Error` there is the answer *instead of* a response
    (no ``response.created``; ``error.event_id`` is the ``response.create``'s).
    Then ``response.created``, then each behaviour in order, then
    ``response.done`` ``completed`` unless a behaviour ended the play:

    * ``Audio(transcript="OK.", ms=None, audio=None, chunk_ms=100,
      pace=2.0, delay=0.0)``: after ``delay``, an assistant message:
      ``output_item.added``, ``content_part.added`` (``part: {type: audio,
      transcript: ""}``), per ``chunk_ms`` of audio a
      ``response.output_audio.delta`` (base64 in the session's output
      format: ``audio``, or a 440 Hz tone of ``ms``, default 60 ms a
      character, at least 200) then a ``response.output_audio_transcript
      .delta`` with its share of the words, ``pace`` ms of audio a ms
      (``None``: all at once); then ``output_audio.done``,
      ``output_audio_transcript.done``, ``content_part.done``,
      ``output_item.done`` (content ``[{type: output_audio, transcript}]``).
      With a function call after it, the response has both output items.
    * ``FunctionCall(name, arguments="{}", delay=0.0)``: after ``delay``
      (``trio.sleep``), ``response.output_item.added`` (``function_call``,
      ``in_progress``, ``call_id: call_…``), ``function_call_arguments.delta``
      (one or two chunks), ``.done`` (``response_id``, ``item_id``,
      ``output_index``, ``call_id``, ``name``, ``arguments``),
      ``response.output_item.done``. Several calls make one response with
      several output items.
    * ``Text(text, delay=0.0)``: a message item with ``content_part.added``,
      ``output_text.delta`` (one or two), ``output_text.done``,
      ``content_part.done``.
    * ``Error(code, message, type="invalid_request_error", param=None)``
      after a response exists: the ``error`` event; the play goes on.
    * ``Failed(code="server_error", message=..., type="server_error")``:
      ``response.done`` ``failed`` with ``status_details: {type: failed,
      error: {type, code, message}}``.
    * ``Stall()``: never finishes (until cancelled or the connection ends).
    * ``Drop()``: the TCP connection ends, no close frame (after the events
      already queued).
    * ``Close(code=1011, reason="")``: close frame with that code.
    * ``RateLimits(requests_limit=5000, requests_remaining=4999,
      requests_reset_seconds=0.012, tokens_limit=40000, tokens_remaining=39000,
      tokens_reset_seconds=1.5)``: ``rate_limits.updated`` with a
      ``requests`` and a ``tokens`` entry.

``open_client(fake, *, key=None, send_key=True, model="gpt-realtime",
path="/v1/realtime")``
    A bare trio-websocket client (async context manager yielding the
    ``WebSocketConnection``) that owns its TCP stream: trio-websocket 0.12's
    ``open_websocket_url``/``connect_websocket_url`` leak their socket when
    the server refuses the handshake or closes first (a ``ResourceWarning``,
    an error under this suite's warning filter) and raise a refusal twice
    (handshake and reader task, in an ``ExceptionGroup``). Here a refusal is
    one ``ConnectionRejected``; ``key`` defaults to ``fake.key``;
    ``model=None`` sends no ``?model=``.

:func:`default_responder` calls the tool ``tool_choice`` names, else the
first function tool (``response.tools`` if the request has the key, else the
session's) with arguments ``"{}"``; with ``tool_choice: "none"`` or no tools
it answers ``Text("OK.")``. A phone session (audio output in ``audio/pcmu``
or ``audio/pcma``) is answered ``Audio("OK.")``, with a tool call only when
``tool_choice`` names a tool or is ``"required"``.

Events can be checked against OpenAI's own types with
``tests/realtime_shapes.py``.
"""

from ._behaviours import (
    Audio,
    Behaviour,
    Close,
    Drop,
    Error,
    Failed,
    FunctionCall,
    Play,
    RateLimits,
    Responder,
    Stall,
    Text,
    default_responder,
)
from ._client import open_client
from ._connection import FakeConnection
from ._listening import Turn
from ._server import DEFAULT_TRANSCRIPT, FakeRealtime, open_fake_realtime

__all__ = [
    "DEFAULT_TRANSCRIPT",
    "Audio",
    "Behaviour",
    "Close",
    "Drop",
    "Error",
    "Failed",
    "FakeConnection",
    "FakeRealtime",
    "FunctionCall",
    "Play",
    "RateLimits",
    "Responder",
    "Stall",
    "Text",
    "Turn",
    "default_responder",
    "open_client",
    "open_fake_realtime",
]
