"""Games cannot hurt the server or each other; the server survives anything.

Rules: 127.0.0.1 port 0, a deadline on every wait, the game closes first
(see ``server_helpers``); tests that need the server to go away first say so.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import importlib
import importlib.util
import ipaddress
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from server_helpers import (
    BLOCK,
    PASS,
    PLAY,
    WAIT,
    Game,
    RawGame,
    RecordingServer,
    connect,
    start_server,
)
from trio_websocket import HandshakeError

from neuro_api import command
from neuro_api.command import Action, ActionMessage, ForcePriority
from neuro_api.diagnostics import MAX_FRAME_CHARS, Severity
from neuro_api.schema import validate_action_data
from neuro_api.server import (
    AbstractTrioNeuroServer,
    OutcomeStatus,
    RandomNeuroServer,
    ServerConfig,
    TrioNeuroServerClient,
)

pytestmark = pytest.mark.timeout(30)

MOVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "cell": {"type": "integer", "minimum": 1, "maximum": 9},
        "mark": {"enum": ["x", "o"]},
        "note": {"type": "string", "maxLength": 12},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["cell", "mark"],
}


async def _round_trip(game: Game, *names: str) -> ActionMessage:
    """Force ``names``, check the action is one of them, answer success."""
    await game.force(*names)
    action = await game.expect_action()
    assert action.name in names
    await game.result(action.id, True, "ok")
    return action


# ---------------------------------------------------------------------------
# Many games with the random engine
# ---------------------------------------------------------------------------


class _RandomServer(RandomNeuroServer):
    """The random engine, telling when its last game disconnected."""

    def __init__(self, *, seed: int) -> None:
        super().__init__(seed=seed)
        self.all_gone = trio.Event()

    def on_client_disconnected(self, client: TrioNeuroServerClient) -> None:
        super().on_client_disconnected(client)
        if not self.clients:
            self.all_gone.set()


async def _random_game(url: str, index: int, sessions: set[str]) -> None:
    move = Action(f"move_{index}", "Make a move", MOVE_SCHEMA)
    async with connect(url, f"Game {index}") as game:
        ack = await game.startup()
        assert ack.session_id is not None
        sessions.add(ack.session_id)
        await game.register(move, PASS)
        await game.context(f"game {index} is ready", silent=False)
        for _ in range(3):
            await game.force(move.name, "pass", priority=ForcePriority.MEDIUM)
            action = await game.expect_action()
            assert action.name in (move.name, "pass")
            schema = move.schema if action.name == move.name else None
            checked = validate_action_data(schema, action.data_json)
            assert checked.ok, checked.reason
            if action.name == move.name:
                assert isinstance(checked.value, dict)
                assert 1 <= checked.value["cell"] <= 9
            await game.result(action.id, True, "ok")


@pytest.mark.parametrize("games", [2, 50])
async def test_many_games_with_the_random_engine(
    nursery: trio.Nursery, games: int
) -> None:
    server = _RandomServer(seed=1234)
    info = await start_server(nursery, server)
    sessions: set[str] = set()
    with trio.fail_after(30):
        async with trio.open_nursery() as players:
            for index in range(games):
                players.start_soon(_random_game, info.url, index, sessions)
    assert len(sessions) == games
    assert server.stats.connections_total == games
    assert server.stats.forces == 3 * games
    errors = [
        d
        for kept in server.diagnostics.values()
        for d in kept
        if d.severity is Severity.ERROR
    ]
    assert errors == []
    with trio.fail_after(WAIT):
        await server.all_gone.wait()


async def test_random_engine_is_repeatable(nursery: trio.Nursery) -> None:
    seen: list[list[str | None]] = []
    for _ in range(2):
        server = RandomNeuroServer(seed=99)
        info = await start_server(nursery, server)
        data: list[str | None] = []
        async with connect(info.url, "Game") as game:
            await game.startup()
            await game.register(Action("move", "Move", MOVE_SCHEMA))
            for _ in range(5):
                data.append((await _round_trip(game, "move")).data_json)
        seen.append(data)
    assert seen[0] == seen[1]


# ---------------------------------------------------------------------------
# Malformed frames
# ---------------------------------------------------------------------------

_OMIT: Any = object()


def _frame(command_: Any, data: Any = _OMIT, game: Any = "Bad") -> str:
    """A JSON frame (``_OMIT`` leaves a field out)."""
    frame: dict[str, Any] = {"command": command_}
    if game is not _OMIT:
        frame["game"] = game
    if data is not _OMIT:
        frame["data"] = data
    return orjson.dumps(frame).decode()


def _force(**data: Any) -> str:
    return _frame("actions/force", {"query": "q", "action_names": ["play"], **data})


INVALID_JSON = "protocol.invalid-json"
NOT_AN_OBJECT = "protocol.not-an-object"
MISSING = "protocol.missing-field"
WRONG_TYPE = "protocol.wrong-type"
INVALID_VALUE = "protocol.invalid-value"
UNKNOWN_COMMAND = "protocol.unknown-command"
NULL_VALUE = "protocol.null-value"

CORPUS: list[tuple[str | bytes, str]] = [
    ("not json{", INVALID_JSON),
    ("", INVALID_JSON),
    ('{"command": "startup", "game": "Bad"} {}', INVALID_JSON),
    ("[" * 5000 + "]" * 5000, INVALID_JSON),
    ('{"command": "context", "game": "Bad", "data": {"message": NaN}}', INVALID_JSON),
    ('{"command": "context", "game": "Bad", "data": "\\ud800"}', INVALID_JSON),
    ("[1, 2, 3]", NOT_AN_OBJECT),
    ("null", NOT_AN_OBJECT),
    ('"startup"', NOT_AN_OBJECT),
    ("42", NOT_AN_OBJECT),
    (b"\xff\xfe\x00 not utf-8 \xc3\x28", "protocol.not-text"),
    ('{"game": "Bad"}', MISSING),
    (_frame("startup", game=_OMIT), "protocol.missing-game"),
    (_frame("context"), MISSING),
    (_frame("context", {"message": "x"}), MISSING),
    (_frame("action/result", {"success": True}), MISSING),
    (_frame(7), WRONG_TYPE),
    (_frame(None), WRONG_TYPE),
    (_frame("startup", game=None), WRONG_TYPE),
    (_frame("startup", game=["Bad"]), WRONG_TYPE),
    (_frame("context", None), WRONG_TYPE),
    (_frame("context", []), WRONG_TYPE),
    (_frame("context", {"message": 5, "silent": True}), WRONG_TYPE),
    (_frame("context", {"message": "x", "silent": 0}), WRONG_TYPE),
    (_frame("actions/register", {"actions": None}), WRONG_TYPE),
    (_frame("actions/register", {"actions": {}}), WRONG_TYPE),
    (_frame("actions/unregister", {"action_names": [1]}), WRONG_TYPE),
    (_force(action_names="play"), WRONG_TYPE),
    (_force(query=1), WRONG_TYPE),
    (_force(ephemeral_context="yes"), WRONG_TYPE),
    (_force(priority="urgent"), INVALID_VALUE),
    (_force(priority="LOW"), INVALID_VALUE),
    (_frame("action/result", {"id": "x", "success": "yes"}), WRONG_TYPE),
    (_frame("dance"), UNKNOWN_COMMAND),
    (_frame("Startup"), UNKNOWN_COMMAND),
    (_frame("action", {"id": "1", "name": "play"}), UNKNOWN_COMMAND),
    # Huge strings, within the 1 MiB frame limit.
    (_frame("z" * 200_000), UNKNOWN_COMMAND),
    (_frame("context", {"message": "m" * 300_000, "silent": 3}), WRONG_TYPE),
    # null where a field may be omitted is only noted; the frame is handled.
    (_force(state=None, action_names=["ghost"]), NULL_VALUE),
    (
        _frame("action/result", {"id": "no", "success": False, "message": None}),
        NULL_VALUE,
    ),
    (_frame("shutdown/ready", None), NULL_VALUE),
]


async def test_malformed_frames_are_diagnosed_and_survived(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Bad") as bad:
        await bad.startup()
        for frame, expected in CORPUS:
            before = len(server.diags(expected, game="Bad"))
            await bad.send(frame)
            await server.wait_diag(expected, game="Bad", count=before + 1)
        await server.settle(bad)
        assert bad.session_id in server.clients
        # A fresh game gets the full service while the bad one is connected.
        async with connect(info.url, "Fresh") as fresh:
            await fresh.startup()
            await fresh.register(PLAY)
            await fresh.context("fresh context")
            await _round_trip(fresh, "play")
        # The misbehaving game is still connected and still served.
        await bad.register(PASS)
        await bad.context("bad context", silent=False)
        await _round_trip(bad, "pass")
        await bad.startup()
    assert server.ids("Fresh") == []
    assert "fresh context" in server.messages("Fresh")
    assert "bad context" in server.messages("Bad")
    assert server.diags("protocol.game-renamed") == []


async def test_huge_valid_context_delivered_intact(nursery: trio.Nursery) -> None:
    message = "é🎮" * 100_000 + "\u0000end"
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.context(message)
        await server.settle(game)
    assert server.messages() == [message]
    assert server.seen == []


@pytest.mark.parametrize(
    "frame",
    [
        '{"command": "' + "z" * 5_000 + '", "game": "Game"}',
        '{"command": "context", "game": "Game", "data": {"message": "x", '
        '"silent": true}, "' + "k" * 5_000 + '": 1}',
        '{"command": "context", "game": "' + "n" * 5_000 + '", "data": '
        '{"message": "x", "silent": true}}',
    ],
    ids=["unknown-command", "unknown-key", "renamed"],
)
async def test_diagnostics_of_huge_frames_stay_small(
    nursery: trio.Nursery, frame: str
) -> None:
    """Diagnostics are kept per game and outlive connections: their size is
    bounded (the frame is cut to MAX_FRAME_CHARS), or one game could fill the
    server's memory with a few large frames. Each message must be bounded too.
    """
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        await game.startup()
        await game.send(frame)
        await server.settle(game)
    [diag] = server.seen
    assert diag.frame is not None
    assert len(diag.frame) <= MAX_FRAME_CHARS
    assert len(diag.message) <= 2 * MAX_FRAME_CHARS
    assert len(diag.subject or "") <= 2 * MAX_FRAME_CHARS


# ---------------------------------------------------------------------------
# Games that disappear or stop reading
# ---------------------------------------------------------------------------


async def test_game_dropping_tcp_mid_force(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Other") as other:
        await other.startup()
        await other.register(PLAY)
        async with connect(info.url, "Dropper") as dropper:
            await dropper.startup()
            await dropper.register(PASS)
            await dropper.force("pass")
            await dropper.expect_action()
            client = server.client_of(dropper)
            assert client.pending_ids
            await dropper.drop()
            await server.wait_until(lambda: client.session_id not in server.clients)
        assert client.pending_ids == ()
        assert client.active_force is None
        # Its result timer died with it: no timeout is reported later.
        await trio.sleep(60)
        assert server.diags("result.timeout") == []
        assert [c.game_title for c in server.disconnected] == ["Dropper"]
        await _round_trip(other, "play")
    assert server.ids("Other") == []


async def test_game_dropping_tcp_while_the_engine_chooses(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    server.answers.append(BLOCK)
    info = await start_server(nursery, server)
    async with connect(info.url, "Dropper") as dropper:
        await dropper.startup()
        await dropper.register(PASS)
        await dropper.force("pass")
        call = await server.wait_force_calls(1)
        await dropper.drop()
        await server.wait_until(lambda: call.cancelled and not server.clients)
    async with connect(info.url, "Dropper") as again:
        await again.startup()
        await again.register(PASS)
        await _round_trip(again, "pass")


async def test_dropped_game_settles_its_pending_action(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """An action whose game disconnected ends as DISCONNECTED for the hooks.

    ``on_action_outcome`` is "called when an action sent to a game ends"
    and OutcomeStatus.DISCONNECTED exists for exactly this end.
    """
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Dropper") as dropper:
        await dropper.startup()
        await dropper.register(PASS)
        await dropper.force("pass")
        action = await dropper.expect_action()
        await dropper.drop()
    await server.wait_until(lambda: not server.clients)
    await trio.sleep(60)
    assert [(g, o.id, o.status) for g, o in server.outcomes] == [
        ("Dropper", action.id, OutcomeStatus.DISCONNECTED)
    ]


async def test_context_held_when_the_game_drops_is_delivered(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Context the server accepted is not lost with the connection.

    It was held only because a result was pending; when the connection ends
    that action is settled, so the held context is due (context survives
    disconnects).
    """
    server = RecordingServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Dropper") as dropper:
        await dropper.startup()
        await dropper.register(PASS)
        await dropper.force("pass")
        await dropper.expect_action()
        await dropper.context("the board changed")
        await server.settle(dropper)
        await dropper.drop()
    await server.wait_until(lambda: not server.clients)
    await trio.sleep(60)
    assert server.messages("Dropper") == ["the board changed"]


async def test_game_that_never_reads_is_disconnected(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    big = orjson.dumps({"blob": "x" * (16 << 20)}).decode()
    server = RecordingServer(send_timeout=1.0, max_message_size=32 << 20)
    server.answers_by_game["Slow"] = collections.deque([("pass", big)])
    info = await start_server(nursery, server)
    async with connect(info.url, "Good") as good:
        await good.startup()
        await good.register(PLAY)
        slow = await RawGame.connect(info.port, "Slow", rcvbuf=4096)
        try:
            await slow.send(command.startup_command("Slow").decode())
            await slow.send(command.actions_register_command("Slow", [PASS]).decode())
            start = trio.current_time()
            await slow.send(
                command.actions_force_command("Slow", None, "q", ["pass"]).decode()
            )
            await server.wait_until(
                lambda: any(
                    c.pending_ids
                    for c in server.clients.values()
                    if c.game_title == "Slow"
                )
            )
            # The server is stuck writing to Slow; Good is served all the same.
            await _round_trip(good, "play")
            await server.wait_until(
                lambda: all(c.game_title != "Slow" for c in server.clients.values()),
                within=60,
            )
            elapsed = trio.current_time() - start
        finally:
            await slow.aclose()
        await _round_trip(good, "play")
        await good.context("still fine")
        await server.wait_until(lambda: "still fine" in server.messages())
    assert 1 <= elapsed < 30, elapsed
    assert server.diags(game="Good") == []


async def test_engine_errors_of_one_game_do_not_touch_another(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    server.context_errors["Broken"] = RuntimeError("cannot read this game")
    server.force_errors["Broken"] = RuntimeError("cannot play this game")
    info = await start_server(nursery, server)
    async with connect(info.url, "Broken") as broken, connect(info.url, "Fine") as fine:
        await broken.startup()
        await fine.startup()
        await broken.register(PASS)
        await fine.register(PLAY)
        for index in range(3):
            await broken.context(f"broken {index}")
            await broken.force("pass")
            await fine.context(f"fine {index}")
            await _round_trip(fine, "play")
            await server.wait_diag("force.engine-error", game="Broken", count=index + 1)
        await server.settle(broken)
        await server.settle(fine)
        assert broken.session_id in server.clients
        assert fine.session_id in server.clients
        await broken.startup()
    assert server.ids("Fine") == []
    assert [m for m in server.messages("Fine") if m.startswith("fine")] == [
        "fine 0",
        "fine 1",
        "fine 2",
    ]


async def test_subclass_with_only_the_two_decisions_works(
    nursery: trio.Nursery,
) -> None:
    received: list[tuple[str, str, bool]] = []

    class MinimalServer(AbstractTrioNeuroServer):
        def add_context(
            self, game_title: str, message: str, reply_if_not_busy: bool
        ) -> None:
            received.append((game_title, message, reply_if_not_busy))

        async def choose_force_action(
            self,
            game_title: str,
            state: str | None,
            query: str,
            ephemeral_context: bool,
            actions: tuple[Action, ...],
            priority: ForcePriority,
        ) -> tuple[str, str | None]:
            return actions[-1].name, '{"cell": 3}'

    server = MinimalServer()
    info = await start_server(nursery, server)
    async with connect(info.url, "Game") as game:
        ack = await game.startup()
        await game.register(PASS, PLAY)
        await game.context("hello", silent=False)
        await game.force("pass", "play")
        first = await game.expect_action()
        await game.result(first.id, False, "cell 3 is taken")
        second = await game.expect_action()
        await game.result(second.id, True, "played")
    assert ack.display_name == "Neuro-sama"
    assert (first.name, first.data_json) == ("play", '{"cell": 3}')
    assert second.name == "play"
    assert received == [
        ("Game", "hello", True),
        ("Game", "Result of action 'play': failed: cell 3 is taken", False),
        ("Game", "Result of action 'play': succeeded: played", False),
    ]


class _Stoppable:
    """Runs a server in a cancel scope of its own, and tells when it stopped."""

    def __init__(self, server: AbstractTrioNeuroServer) -> None:
        self.server = server
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[Any]) -> None:
        try:
            with self.scope:
                await self.server.run("127.0.0.1", 0, task_status=task_status)
        finally:
            self.stopped.set()


async def test_server_cancellation_closes_every_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = RecordingServer()
    server.answers.append(BLOCK)
    runner = _Stoppable(server)
    scope, stopped = runner.scope, runner.stopped
    info = await nursery.start(runner.serve)
    async with connect(info.url, "A") as a, connect(info.url, "B") as b:
        await a.startup()
        await b.startup()
        await b.register(PASS)
        await b.force("pass")
        call = await server.wait_force_calls(1)
        # The server goes away first here: that is the behaviour under test.
        scope.cancel()
        closed_a = await a.expect_closed()
        closed_b = await b.expect_closed()
        with trio.fail_after(WAIT):
            await stopped.wait()
    assert closed_a.code == closed_b.code == 1000
    assert call.cancelled
    assert server.clients == {}
    with pytest.raises((OSError, HandshakeError)), trio.fail_after(WAIT):
        async with connect(info.url, "Late"):
            pass


async def test_server_cancellation_is_prompt(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Stopping the server does not wait out a closing handshake it cannot see.

    On cancellation each connection sends its close frame and then waits,
    shielded, for the game's reply; but the connection's reader task was
    cancelled with the server, so the reply is never seen and every stop
    takes the full close timeout (5 s), during which the game's own close
    hangs too (it waits for the server to drop TCP).
    """
    server = RecordingServer()
    runner = _Stoppable(server)
    info = await nursery.start(runner.serve)
    async with connect(info.url, "Game") as game:
        await game.startup()
        start = trio.current_time()
        runner.scope.cancel()
        await game.expect_closed()
        with trio.fail_after(WAIT):
            await runner.stopped.wait()
        stopped_after = trio.current_time() - start
    assert stopped_after < 1


# ---------------------------------------------------------------------------
# wss://
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    ca: Path
    chain: Path
    key: Path


def _with_trustme(directory: Path) -> TLSFiles:
    trustme: Any = importlib.import_module("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(
        directory / "ca.pem", directory / "chain.pem", directory / "key.pem"
    )
    ca.cert_pem.write_to_path(str(files.ca))
    cert.private_key_pem.write_to_path(str(files.key))
    files.chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return files


def _with_cryptography(directory: Path) -> TLSFiles:
    x509: Any = importlib.import_module("cryptography.x509")
    hashes: Any = importlib.import_module("cryptography.hazmat.primitives.hashes")
    ec: Any = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ec")
    serialization: Any = importlib.import_module(
        "cryptography.hazmat.primitives.serialization"
    )
    oid: Any = importlib.import_module("cryptography.x509.oid")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TLSFiles(
        directory / "cert.pem", directory / "cert.pem", directory / "key.pem"
    )
    files.chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def _with_openssl(directory: Path, openssl: str) -> TLSFiles:
    files = TLSFiles(
        directory / "cert.pem", directory / "cert.pem", directory / "key.pem"
    )
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(files.key),
            "-out",
            str(files.chain),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return files


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A self-signed certificate for 127.0.0.1, made for this test run."""
    directory = tmp_path_factory.mktemp("tls")
    if importlib.util.find_spec("trustme") is not None:
        return _with_trustme(directory)
    if importlib.util.find_spec("cryptography") is not None:
        return _with_cryptography(directory)
    openssl = shutil.which("openssl")
    if openssl is not None:
        return _with_openssl(directory, openssl)
    pytest.skip("no trustme, cryptography or openssl to make a certificate")


async def test_wss_end_to_end(nursery: trio.Nursery, tls_files: TLSFiles) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tls_files.chain, tls_files.key)
    client_context = ssl.create_default_context(cafile=str(tls_files.ca))
    server = RecordingServer()
    info = await start_server(nursery, server, server_context)
    assert info.secure
    assert info.url.startswith("wss://127.0.0.1:")
    async with connect(info.url, "Secure", ssl_context=client_context) as game:
        ack = await game.startup()
        await game.register(PLAY)
        await game.context("over TLS")
        action = await _round_trip(game, "play")
    assert ack.session_id
    assert action.name == "play"
    assert "over TLS" in server.messages()
    async with connect(info.url, "Again", ssl_context=client_context) as again:
        await again.startup()


def test_server_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="send_timeout"):
        ServerConfig(send_timeout=0)
    with pytest.raises(ValueError, match="max_message_size"):
        ServerConfig(max_message_size=10)
