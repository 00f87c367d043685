"""Routes about games: list them, act on them, inject raw Neuro messages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
import trio
from quart import Blueprint, current_app, redirect, request
from quart_schema import document_request, document_response, hide
from trio_websocket import ConnectionClosed

from neuro_api.command import Action, ActionMessage, ProtocolError, parse_neuro_frame
from neuro_api.control._auth import public
from neuro_api.control._bodies import STRICT, json_body
from neuro_api.control._errors import ApiError
from neuro_api.control._limits import check_action_frame, check_frame
from neuro_api.control._models import (
    ActionView,
    DiagnosticView,
    ExecuteResult,
    GameList,
    GameView,
    NeuroMessage,
    SentTo,
)
from neuro_api.control._openapi import errors
from neuro_api.schema import GenerationError, SchemaError
from neuro_api.server import (
    AbstractTrioNeuroServer,
    TooManyHeldActions,
    TrioNeuroServerClient,
)

__all__ = ["games"]

games = Blueprint("games", __name__)

ALL_GAMES = "*"


def _server() -> AbstractTrioNeuroServer:
    server: AbstractTrioNeuroServer = current_app.config["NEURO_SERVER"]
    return server


def describe(client: TrioNeuroServerClient, diagnostics: int = 20) -> GameView:
    """Return a JSON-ready view of one connected game."""
    force = client.active_force
    kept = list(client.diagnostics)[-diagnostics:]
    now = trio.current_time()
    return {
        "game": client.game_title,
        "session_id": client.session_id,
        "started": client.started,
        "actions": [
            cast(ActionView, action.to_json()) for action in client.actions.values()
        ],
        "force": None
        if force is None
        else {
            "query": force.query,
            "state": force.state,
            "priority": force.priority.value,
            "ephemeral_context": force.ephemeral_context,
            "action_names": list(force.action_names),
            "retries_left": client.force_retries_left or 0,
        },
        "pending_ids": list(client.pending_ids),
        "pending": [
            {"id": id_, "action": action, "seconds_left": round(max(0.0, due - now), 1)}
            for id_, action, due in client.pending_results()
        ],
        "frames_in": client.frames_in,
        "frames_out": client.frames_out,
        "diagnostics": [cast(DiagnosticView, d.to_json()) for d in kept],
        "held_by": client.server.gates_holding(client.game_title),
    }


def _one(game: str) -> TrioNeuroServerClient:
    if game == ALL_GAMES:
        raise ApiError(400, "one_game_only", "this route takes one game, not '*'")
    return _targets(game)[0]


def _targets(game: str) -> list[TrioNeuroServerClient]:
    server = _server()
    if game == ALL_GAMES:
        return server.games()
    client = server.get_client(game)
    if client is None:
        raise ApiError(404, "unknown_game", f"no connected game {game!r}")
    return [client]


async def _each(
    game: str, send: Callable[[TrioNeuroServerClient], Awaitable[None]]
) -> SentTo:
    sent: list[str] = []
    for client in _targets(game):
        await send(client)
        sent.append(client.game_title or client.session_id)
    return {"sent_to": sent}


@games.get("/games")
@document_response(GameList)
async def list_games() -> GameList:
    """List connected games with their actions, force and recent diagnostics."""
    return {"games": [describe(client) for client in _server().games()]}


@games.get("/games/<game>")
@document_response(GameView)
@errors(400, 404)
async def get_game(game: str) -> GameView:
    """Describe one connected game (by title or session id)."""
    return describe(_one(game))


@dataclass
class ExecuteRequest:
    """Body of an execute request.

    ``data`` is any JSON value, or ``raw`` a string sent as is. With neither,
    valid data is generated for the action's schema (as the console does),
    or none sent if it has no schema. ``validate=false`` skips the schema and
    registry checks (to send invalid data, or no data, on purpose).
    """

    __pydantic_config__ = STRICT
    data: Any = None
    raw: str | None = None
    validate: bool = True


# <name:...>: an action's name may hold "/", a leading one too (NameConverter).
@games.post("/games/<game>/actions/<name:action>")
@document_response(ExecuteResult)
@errors(400, 404, 429)
@json_body(ExecuteRequest, unknown_field='the action\'s data goes in "data"')
async def execute(game: str, action: str, data: ExecuteRequest) -> ExecuteResult:
    """Perform an action on a game and return the game's result.

    While the game is held (a capability's force gate: paused, say) the
    action waits for its release; 429 ``too_many_held_actions`` when as
    many actions as a game may have pending wait already.
    """
    client = _one(game)
    if data.raw is not None and data.data is not None:
        raise ApiError(400, "invalid_request", "give either 'data' or 'raw', not both")
    text = data.raw
    if text is None and data.data is not None:
        text = orjson.dumps(data.data).decode()
    check_action_frame(action, text, client.config.max_message_size)
    if data.validate:
        registered = client.get_action(action)
        if registered is None:
            known = ", ".join(client.actions) or "none"
            raise ApiError(
                404,
                "unknown_action",
                f"{client.game_title!r} has no action {action!r} (registered: {known})",
            )
        if text is None:
            text = await _generated(registered)
            check_action_frame(action, text, client.config.max_message_size)
        else:
            await _check(registered, text)
    try:
        outcome = await client.execute_action(action, text)
    except TooManyHeldActions as exc:
        raise ApiError(429, "too_many_held_actions", str(exc)) from None
    return {
        "outcome": {
            "id": outcome.id,
            "action": outcome.action,
            "status": outcome.status.value,
            "success": outcome.success,
            "message": outcome.message,
        }
    }


async def _generated(action: Action) -> str | None:
    """Valid data for ``action`` (``None``: it takes none), within the limits."""
    try:
        return await _server().generator.generate_json(action.schema)
    except (GenerationError, SchemaError) as exc:
        raise ApiError(
            400,
            "cannot_generate_data",
            f"no valid data could be generated for {action.name!r}: {exc}; give "
            'it in "data"',
        ) from None


async def _check(action: Action, text: str) -> None:
    try:
        verdict = await _server().validate_data(action.schema, text)
    except SchemaError as exc:  # pragma: no cover - registry refuses these
        raise ApiError(400, "invalid_schema", str(exc)) from None
    if not verdict.ok:
        raise ApiError(400, "invalid_action_data", verdict.reason)


@games.post("/games/<game>/reregister")
@document_response(SentTo)
@errors(404)
async def reregister(game: str) -> SentTo:
    """Send ``actions/reregister_all`` (``*`` = every game)."""
    return await _each(game, lambda c: c.send_reregister_all_command())


@dataclass
class GracefulRequest:
    """``wants_shutdown=false`` cancels an earlier request."""

    __pydantic_config__ = STRICT
    wants_shutdown: bool = True


@games.post("/games/<game>/shutdown/graceful")
@document_response(SentTo)
@errors(400, 404)
@json_body(GracefulRequest)
async def shutdown_graceful(game: str, data: GracefulRequest) -> SentTo:
    """Send ``shutdown/graceful`` (``*`` = every game)."""
    return await _each(
        game, lambda c: c.send_graceful_shutdown_command(data.wants_shutdown)
    )


@games.post("/games/<game>/shutdown/immediate")
@document_response(SentTo)
@errors(404)
async def shutdown_immediate(game: str) -> SentTo:
    """Send ``shutdown/immediate`` (``*`` = every game)."""
    return await _each(game, lambda c: c.send_immediate_shutdown_command())


@dataclass
class SpeechRequest:
    """Fields of ``speech_finished``."""

    __pydantic_config__ = STRICT
    is_final: bool = True
    cancelled: bool = False
    reason: str | None = None


@games.post("/games/<game>/speech-finished")
@document_response(SentTo)
@errors(400, 404)
@json_body(SpeechRequest)
async def speech_finished(game: str, data: SpeechRequest) -> SentTo:
    """Send ``speech_finished`` (``*`` = every game)."""
    return await _each(
        game,
        lambda c: c.send_speech_finished(data.is_final, data.cancelled, data.reason),
    )


DASHBOARD = "/ui/"
"""Where a browser asking for ``/`` is sent, when a dashboard is mounted there."""


@games.get("/")
@public
@hide
async def front() -> Any:
    """Send a browser to the dashboard; API clients get 405 as before.

    Only ``POST /`` is the API's (Randy's endpoint). A redirect reveals
    nothing, so it needs no token (the dashboard asks for its login).
    """
    accept = request.accept_mimetypes
    dashboard = any(rule.rule == DASHBOARD for rule in current_app.url_map.iter_rules())
    if dashboard and accept.accept_html and "text/html" in accept.values():
        return redirect(DASHBOARD, 303)
    raise ApiError(
        405, "method_not_allowed", "The method is not allowed for the requested URL."
    )


@games.post("/")
@document_request(NeuroMessage)
@document_response(SentTo)
@errors(400, 409)
async def inject() -> SentTo:
    """Send a raw Neuro-to-game message to every game (Randy's endpoint).

    The body is the message itself, e.g. ``{"command": "action", "data":
    {"id": "1", "name": "play", "data": "{}"}}``; it is checked as a Neuro
    message first, and an injected action's result is matched by its id.
    Games are sent to concurrently; one that left meanwhile, or where the
    injected id is pending, is left out of ``sent_to`` (409 when that is
    every game). A held game (a capability's force gate) gets an ``action``
    once released and is listed in ``held_for``: the answer does not wait
    for it (a held game with as many actions waiting as it may have pending
    is left out). Other messages go to held games at once.
    """
    body = await request.get_data()
    try:
        message = parse_neuro_frame(body)
    except ProtocolError as exc:
        raise ApiError(400, "invalid_message", str(exc)) from None
    server = _server()
    check_frame(message.to_frame(), server.config.max_message_size, "the frame")
    sent: list[str] = []
    held: list[str] = []
    duplicate: list[str] = []

    async def send(client: TrioNeuroServerClient) -> None:
        if client.forces_held and isinstance(message, ActionMessage):
            # Sent once the game is released; the answer does not wait.
            try:
                client.inject_soon(message)
            except ValueError as exc:  # its id is pending or waiting there
                duplicate.append(str(exc))
                return
            except RuntimeError:
                return  # it left meanwhile, or its line of held actions is full
            held.append(client.game_title or client.session_id)
            return
        try:
            await client.inject(message)
        except ValueError as exc:  # its id is pending on this game
            duplicate.append(str(exc))
            return
        except (ConnectionClosed, RuntimeError):
            return  # the game left, or is held with its queue full
        sent.append(client.game_title or client.session_id)

    # Concurrently: an action for a held game waits for its release (see
    # force gates) without holding up the other games.
    async with trio.open_nursery() as nursery:
        for client in server.games():
            nursery.start_soon(send, client)
    if duplicate and not sent and not held:
        raise ApiError(409, "duplicate_id", duplicate[0])
    if held:
        return {"sent_to": sent, "held_for": held}
    return {"sent_to": sent}
