"""``python -m neuro_api.server`` as a real subprocess, with real game sockets.

Rules: the server binds 127.0.0.1 with ``--port 0`` and the test reads the
real port from the listening line; every wait has a deadline; the process
is always killed (if still running) and reaped in ``finally``; its stderr
is drained all along so logging can never block it.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from fake_ngrok import FakeNgrok
from test_ngrok_path import pyngrok_script
from trio_websocket import WebSocketConnection, open_websocket_url, wrap_client_stream

from neuro_api import command
from neuro_api.command import Action, ActionMessage
from neuro_api.schema import validate_action_data

SERVER = [sys.executable, "-m", "neuro_api.server"]
LISTENING = re.compile(r"^neuro_api server listening on (wss?://127\.0\.0\.1:\d+)$")
WAIT = 10.0
TITLE = "Tic Tac Toe"
PLAY = Action(
    "play",
    "Play a cell",
    {
        "type": "object",
        "properties": {"cell": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["cell"],
    },
)
FLAGS = (
    "--host", "--port", "--engine", "--character", "--display-name",
    "--result-timeout", "--max-retries", "--force-policy", "--certfile",
    "--keyfile", "--delay", "--unforced-interval", "--seed", "--log-level",
    "--version", "--help",
)  # fmt: skip


class Server:
    """A running server process: its URL, its stdout as text, its stderr."""

    def __init__(self, process: trio.Process, errors: bytearray) -> None:
        assert process.stdout is not None
        self.process = process
        self.errors = errors
        self.url = ""
        self._stdout = process.stdout
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.seen = 0

    async def expect(self, needle: str) -> str:
        """Wait for ``needle`` on stdout after the last one; return what led to it."""
        with trio.fail_after(WAIT):
            while (found := self.text.find(needle, self.seen)) < 0:
                chunk = await self._stdout.receive_some()
                if not chunk:
                    raise AssertionError(
                        f"stdout ended before {needle!r}:\n{self.text[self.seen :]}"
                        f"\nstderr:\n{self.errors.decode()}"
                    )
                self.text += self._decoder.decode(chunk)
        end = found + len(needle)
        shown = self.text[self.seen : end]
        self.seen = end
        return shown

    async def type(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        with trio.fail_after(WAIT):
            return await self.process.wait()


async def drain(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    while chunk := await stream.receive_some():
        into += chunk


@contextlib.asynccontextmanager
async def server_process(
    *flags: str, stdin: int | None = subprocess.PIPE, close_stdin: bool = False
) -> AsyncIterator[Server]:
    """Run the command; ``close_stdin`` starts it with descriptor 0 closed."""
    argv = [*SERVER, "--port", "0", "--http-port", "0", *flags]
    if close_stdin:
        argv = ["sh", "-c", 'exec "$0" "$@" <&-', *argv]
        stdin = None
    process = await trio.lowlevel.open_process(
        argv,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        errors = bytearray()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, process.stderr, errors)
            server = Server(process, errors)
            first = (await server.expect("\n")).rstrip("\n")
            match = LISTENING.match(first)
            assert match, f"not a listening line: {first!r}"
            server.url = match[1]
            yield server
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(WAIT, shield=True):
            await process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    await stream.aclose()


async def run(*args: str, env: dict[str, str] | None = None) -> Any:
    with trio.fail_after(WAIT * 2):
        return await trio.run_process(
            [*SERVER, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )


@contextlib.asynccontextmanager
async def game(
    url: str, title: str = TITLE, actions: Sequence[Action] = (PLAY,)
) -> AsyncIterator[WebSocketConnection]:
    """A game connection whose TCP stream the test owns.

    trio-websocket 0.12 leaves a client's socket open when the server closes
    first (as on shutdown), so the stream is opened and closed here.
    """
    port = int(url.rsplit(":", 1)[1])
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(WAIT):
                ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/")
            try:
                await ws.send_message(command.startup_command(title).decode())
                await recv(ws)
                await ws.send_message(
                    command.actions_register_command(title, actions).decode()
                )
                yield ws
            finally:
                with trio.move_on_after(WAIT, shield=True):
                    await ws.aclose()
                await stream.aclose()  # ends the connection's reader task
    finally:
        await stream.aclose()


async def recv(ws: WebSocketConnection) -> command.NeuroMessage:
    with trio.fail_after(WAIT):
        return command.parse_neuro_frame(await ws.get_message())


async def recv_action(ws: WebSocketConnection) -> ActionMessage:
    message = await recv(ws)
    assert isinstance(message, ActionMessage), message
    return message


async def force(ws: WebSocketConnection, title: str = TITLE) -> None:
    await ws.send_message(
        command.actions_force_command(title, None, "Your move", ["play"]).decode()
    )


def one_error_line(result: Any) -> str:
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("neuro_api.server: error: "), lines
    assert result.stdout == b""
    return str(lines[0])


# --- command line ---------------------------------------------------------------


async def test_help_mentions_every_flag() -> None:
    result = await run("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.decode().split())  # unwrap help lines
    for flag in FLAGS:
        assert flag in text, flag
    assert "(default: 127.0.0.1)" in text
    assert "(default: 8000)" in text
    assert "(default: 20.0)" in text
    assert "(default: replace)" in text


async def test_version() -> None:
    result = await run("--version")
    assert result.returncode == 0
    assert result.stdout.decode().startswith("neuro_api.server ")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--port"], "argument --port: expected one argument"),
        (["--result-timeout", "-1"], "--result-timeout: must be > 0"),
        (["--result-timeout", "soon"], "--result-timeout: expected a number"),
        (["--port", "70000"], "--port: must be a port number from 0 to 65535"),
        (["--engine", "human"], "--engine: 'human' is not one of console, random"),
        (["--max-retries", "-1"], "--max-retries: must be >= 0"),
        (["--certfile", __file__], "--certfile and --keyfile: give both or neither"),
        (["--certfile", "/nonexistent.pem", "--keyfile", __file__], "cannot read"),
    ],
)
async def test_bad_flag_or_value_is_one_line_and_exit_2(
    flags: list[str], message: str
) -> None:
    result = await run(*flags)
    assert result.returncode == 2
    assert message in one_error_line(result)


async def test_bad_environment_value_names_the_variable() -> None:
    env = {**os.environ, "NEURO_API_RESULT_TIMEOUT": "0"}
    result = await run(env=env)
    assert result.returncode == 2
    assert "NEURO_API_RESULT_TIMEOUT: must be > 0" in one_error_line(result)


async def test_unknown_environment_variable_is_a_warning_line() -> None:
    # Only this variable of ours, whatever the shell running the tests holds.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURO_API_")}
    result = await run("--print-config", env=env | {"NEURO_API_PROT": "9000"})
    assert result.returncode == 0
    assert orjson.loads(result.stdout)["port"] == 8000  # the typo set nothing
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        " WARNING neuro_api.settings: NEURO_API_PROT is not a neuro_api setting"
        " and is ignored (did you mean NEURO_API_PORT?)"
    )


async def test_unusable_certificate_is_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    result = await run("--certfile", str(junk), "--keyfile", str(junk))
    assert result.returncode == 2
    assert "cannot load the certificate" in one_error_line(result)


def tunnel_env(
    tmp_path: Path, path: Sequence[Path], token: str | None = None
) -> dict[str, str]:
    """The environment with only ``path`` on PATH and no ngrok settings.

    HOME and XDG_CONFIG_HOME point into ``tmp_path``, so pyngrok's default
    install location holds no ngrok either.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "NGROK_AUTHTOKEN" and not key.startswith("NEURO_API_")
    }
    env["PATH"] = os.pathsep.join(map(str, path))
    env["HOME"] = str(tmp_path / "home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    if token is not None:
        env["NGROK_AUTHTOKEN"] = token
    return env


async def test_tunnel_with_only_pyngrok_s_script_is_one_line_and_exit_2(
    tmp_path: Path,
) -> None:
    # A virtualenv's bin/ on PATH, holding pyngrok's script and no ngrok.
    marker = tmp_path / "ran"
    script = pyngrok_script(tmp_path / "venv" / "bin", marker)
    env = tunnel_env(tmp_path, [script.parent], token="ngrok-token-for-tests")

    for flags in (["--tunnel"], ["--tunnel", "--ngrok-path", str(script)]):
        result = await run(*flags, env=env)

        assert result.returncode == 2
        line = one_error_line(result)
        assert str(script) in line
        assert "pyngrok's" in line
        assert "install ngrok from https://ngrok.com/download" in line
        assert "NEURO_API_NGROK_PATH / --ngrok-path" in line
    assert not marker.exists()  # never run, so nothing was downloaded


async def test_tunnel_without_a_token_is_one_line_and_exit_2(tmp_path: Path) -> None:
    fake = FakeNgrok.create(tmp_path)
    env = tunnel_env(tmp_path, [])

    result = await run("--tunnel", "--ngrok-path", str(fake.ngrok_path), env=env)

    assert result.returncode == 2
    assert one_error_line(result) == (
        "neuro_api.server: error: no ngrok auth token: set NGROK_AUTHTOKEN (or "
        "--ngrok-authtoken), from https://dashboard.ngrok.com/get-started/"
        "your-authtoken"
    )
    assert fake.events() == []  # the agent never ran


async def test_tunnel_missing_both_is_a_line_each_and_exit_2(tmp_path: Path) -> None:
    script = pyngrok_script(tmp_path / "venv" / "bin", tmp_path / "ran")

    result = await run("--tunnel", env=tunnel_env(tmp_path, [script.parent]))

    assert result.returncode == 2
    assert result.stdout == b""
    first, second = result.stderr.decode().splitlines()
    assert first.startswith("neuro_api.server: error: ngrok executable not found")
    assert second.startswith("neuro_api.server: error: no ngrok auth token")


async def test_address_in_use_is_one_line_and_exit_1() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    try:
        port = listeners[0].socket.getsockname()[1]
        result = await run(
            "--port", str(port), "--http-port", "0", "--engine", "random"
        )
    finally:
        for listener in listeners:
            await listener.aclose()
    assert result.returncode == 1
    # Services log as they start and stop; the error itself is the last line,
    # and no traceback reaches the user.
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    last = stderr.splitlines()[-1]
    assert last.startswith("neuro_api.server: error: cannot listen on 127.0.0.1:")
    assert f":{port}: " in last
    assert last.count(str(port)) == 1, last  # said once, not repeated


async def test_busy_control_plane_port_is_said_once_then_its_url_when_free() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    busy = f"cannot listen on 127.0.0.1:{port}: Address already in use"
    try:
        flags = ["--engine", "random", "--http-port", str(port)]
        async with server_process(*flags, stdin=subprocess.DEVNULL) as server:
            line = (await server.expect("\n")).strip()
            assert line == (
                f"neuro_api control plane not started yet: {busy} (retrying at "
                "least every 5 s; its URL follows once it starts)"
            )
            await trio.sleep(2)  # a few more attempts: 0.5, 1, 2 s apart
            for listener in listeners:
                await listener.aclose()
            url = await control_url(server)
            assert url == f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
                health = (await http.get("/health")).json()
            assert await server.stop() == 0
    finally:
        for listener in listeners:
            await listener.aclose()
    assert health["status"] == "healthy"
    control = {s["name"]: s for s in health["services"]}["control-plane"]
    assert (control["state"], control["last_error"]) == ("running", busy)
    assert control["restarts"] >= 2
    log = server.errors.decode().splitlines()
    assert not re.search(r"all \d+ services started", "\n".join(log))
    # Said once as it happened, once in the start summary; retries are quiet.
    warnings = [line for line in log if " WARNING " in line]
    assert len(warnings) == 2, warnings
    assert f"service 'control-plane' failed: {busy}; restarting in " in warnings[0]
    # Every service but the control plane started (their number grows
    # with the capabilities).
    started = re.search(
        r"(\d+) of (\d+) services started; control-plane is retrying: (.*)$",
        warnings[1],
    )
    assert started is not None, warnings[1]
    assert int(started[1]) == int(started[2]) - 1
    assert started[3] == busy
    assert any("service 'control-plane' running (after " in line for line in log)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
async def test_certificate_serves_wss(tmp_path: Path) -> None:
    import ssl  # noqa: PLC0415 - only this test needs it

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await trio.run_process(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_stdout=True,
        capture_stderr=True,
    )  # fmt: skip
    flags = ["--engine", "random", "--certfile", str(cert), "--keyfile", str(key)]
    async with server_process(*flags, stdin=subprocess.DEVNULL) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        async with open_websocket_url(server.url, ssl_context=trusted) as ws:
            await ws.send_message(command.startup_command(TITLE).decode())
            assert isinstance(await recv(ws), command.StartupAcknowledgement)
        assert await server.stop() == 0


# --- the random engine -------------------------------------------------------------


async def test_random_engine_answers_with_valid_data() -> None:
    flags = ["--engine", "random", "--seed", "3", "--character", "evil"]
    async with server_process(*flags, stdin=subprocess.DEVNULL) as server:
        async with open_websocket_url(server.url) as ws:
            await ws.send_message(command.startup_command(TITLE).decode())
            ack = await recv(ws)
            assert isinstance(ack, command.StartupAcknowledgement)
            assert (ack.character_id, ack.display_name) == ("evil", "Evil Neuro")
            await ws.send_message(
                command.actions_register_command(TITLE, [PLAY]).decode()
            )
            for _ in range(3):
                await force(ws)
                message = await recv_action(ws)
                assert validate_action_data(PLAY.schema, message.data_json).ok
                await ws.send_message(
                    command.actions_result_command(
                        TITLE, message.id, True, "ok"
                    ).decode()
                )
        assert await server.stop() == 0
        assert server.text.startswith(f"neuro_api server listening on {server.url}\n")


# --- the console engine over a pipe --------------------------------------------------


async def test_console_prompt_answered_with_the_default_example() -> None:
    async with server_process() as server, game(server.url) as ws:
        await force(ws)
        shown = await server.expect("[1]: ")
        assert f"[{TITLE}] FORCE (priority low)" in shown
        assert "1) play: Play a cell" in shown
        await server.type("1")
        shown = await server.expect("]: ")
        example = shown.split("data [", 1)[1].removesuffix("]: ")
        await server.type("")
        message = await recv_action(ws)
        assert (message.name, message.data_json) == ("play", example)
        assert validate_action_data(PLAY.schema, example).ok


async def test_console_refuses_invalid_json_and_asks_again() -> None:
    async with server_process() as server, game(server.url) as ws:
        await force(ws)
        await server.expect("[1]: ")
        await server.type("")
        await server.expect("data [")
        await server.type('{"cell": ')
        await server.expect("refused: Action data is not valid JSON")
        await server.expect("data [")
        await server.type('{"cell": 10}')
        await server.expect("refused: Invalid action data: data.cell")
        await server.type('{"cell": 7}')
        message = await recv_action(ws)
        assert orjson.loads(message.data_json or "") == {"cell": 7}


async def test_console_send_command_delivers_an_action() -> None:
    async with server_process() as server, game(server.url) as ws:
        # Frames of one game are handled in order: once this context is
        # printed, the registration before it was handled too.
        await ws.send_message(command.context_command(TITLE, "registered").decode())
        await server.expect(f"[{TITLE}] [CONTEXT] registered")
        await server.type("list")
        await server.expect("    play: Play a cell")
        await server.type(f'send "{TITLE}" play {{"cell": 2}}')
        message = await recv_action(ws)
        assert (message.name, message.data_json) == ("play", '{"cell": 2}')
        await ws.send_message(
            command.actions_result_command(TITLE, message.id, True, "placed").decode()
        )
        await server.expect("succeeded: placed")


async def test_console_two_games_forcing_at_once_are_both_answered() -> None:
    async with (
        server_process() as server,
        game(server.url) as one,
        game(server.url, "Chess") as two,
    ):
        await force(one)
        first = await server.expect("[1]: ")
        await force(two, "Chess")
        await server.expect("[Chess] force waiting its turn")
        await server.type("")
        await server.type('{"cell": 1}')
        await server.expect("[Chess] FORCE")
        await server.expect("[1]: ")
        await server.type("play")
        await server.type('{"cell": 9}')
        got = {
            "one": orjson.loads((await recv_action(one)).data_json or ""),
            "two": orjson.loads((await recv_action(two)).data_json or ""),
        }
        assert got == {"one": {"cell": 1}, "two": {"cell": 9}}
        assert f"[{TITLE}] FORCE" in first


async def test_console_with_closed_stdin_keeps_serving() -> None:
    async with server_process(stdin=subprocess.DEVNULL) as server:
        async with game(server.url) as ws:
            await force(ws)
            message = await recv_action(ws)
            assert validate_action_data(PLAY.schema, message.data_json).ok
        assert await server.stop() == 0
        assert b"console input ended" in server.errors


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh to close fd 0")
async def test_console_with_stdin_descriptor_closed_keeps_serving() -> None:
    # Descriptor 0 closed (not /dev/null): the console must not read
    # whatever Trio opens there next.
    async with server_process(close_stdin=True) as server:
        async with game(server.url) as ws:
            await force(ws)
            message = await recv_action(ws)
            assert validate_action_data(PLAY.schema, message.data_json).ok
        assert await server.stop() == 0
        assert b"console input ended (end of input)" in server.errors


async def test_other_games_are_served_while_a_prompt_waits() -> None:
    async with server_process() as server, game(server.url) as one:
        await force(one)
        await server.expect("[1]: ")  # the prompt waits for a person
        async with game(server.url, "Chess") as two:  # startup acknowledged
            await two.send_message(command.context_command("Chess", "e4").decode())
            await server.expect("[Chess] [CONTEXT] e4")
        await server.type("")
        await server.type("")  # the generated example data
        message = await recv_action(one)
        assert validate_action_data(PLAY.schema, message.data_json).ok


async def test_console_quit_exits_0() -> None:
    async with server_process() as server, game(server.url):
        await server.type("quit")
        with trio.fail_after(WAIT):
            assert await server.process.wait() == 0


async def test_any_engine_gets_the_console_with_the_flag() -> None:
    # No terminal here: --console turns it on anyway.
    async with server_process("--engine", "random", "--console") as server:
        await server.type("help")
        await server.expect("quit - Stop the server")
        async with game(server.url):
            await server.type("list")
            await server.expect(f"Game: {TITLE}")
            await server.type("diag")
            await server.expect("diagnostics")
        await server.type("quit")
        await server.expect("stopping the server")
        with trio.fail_after(WAIT):
            assert await server.process.wait() == 0


async def test_random_engine_reads_no_console_by_default() -> None:
    async with server_process("--engine", "random") as server:
        await server.type("quit")  # not read: it goes on serving
        async with game(server.url) as ws:
            await force(ws)
            assert (await recv_action(ws)).name == PLAY.name
        assert server.process.returncode is None
        assert await server.stop() == 0


async def test_no_console_makes_the_console_engine_answer_by_itself() -> None:
    async with server_process("--no-console") as server:
        await server.type("help")
        async with game(server.url) as ws:
            await force(ws)  # no prompt waits for a line: answered at once
            assert (await recv_action(ws)).name == PLAY.name
        assert await server.stop() == 0


# --- the access log -------------------------------------------------------------

ACCESS_LINE = re.compile(
    r'^127\.0\.0\.1:\d+ - - \[[^]]+\] "(\w+) (\S+) HTTP/1\.1" (\d+) (\d+|-) '
    r'"-" "[^"]*" \d+\.\d+$'
)


async def control_url(server: Server) -> str:
    await server.expect("neuro_api control plane on ")
    return (await server.expect("\n")).strip()


async def get_and_leave(url: str, path: str) -> int:
    """GET like curl: read the response, then close at once (no keep-alive).

    Closing while the server finishes the response made Hypercorn log the
    request twice.
    """
    host, port = url.removeprefix("http://").split(":")
    with trio.fail_after(WAIT):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            )
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some()
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"content-length: (\d+)", head, re.I)[1])  # type: ignore[index]
            while len(body) < length:
                body += await stream.receive_some()
    return int(head.split()[1])


async def make_requests(url: str) -> list[tuple[str, str, str]]:
    """A few requests, each way clients make them; (method, path, status) each."""
    made = []
    for path in ("/health", "/games", "/nope"):
        status = await get_and_leave(url, path)
        made.append(("GET", path, str(status)))
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:  # keep-alive
        for method, path in (("GET", "/health"), ("POST", "/games/x/context")):
            response = await http.request(method, path, json={})
            made.append((method, path, str(response.status_code)))
    return made


@pytest.mark.parametrize("target", [None, "file", "-"])
async def test_access_log_is_off_by_default_and_one_line_per_request(
    target: str | None, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    flags = [] if target is None else ["--access-log", str(log), "--log-level", "error"]
    if target == "-":
        flags[1] = "-"
    async with server_process(*flags) as server:  # the console engine
        made = await make_requests(await control_url(server))
        assert await server.stop() == 0
    assert {status for _, _, status in made} == {"200", "404"}
    for method, path, _ in made:  # never in the console
        assert f"{method} {path}" not in server.text
    stderr = server.errors.decode().splitlines()
    if target == "file":
        lines = log.read_text().splitlines()
    elif target == "-":  # the rest of stderr is the log, here errors only
        lines = stderr
    else:
        lines = []
        for method, path, _ in made:  # nor in the log
            assert not [line for line in stderr if f"{method} {path}" in line]
    matches = [ACCESS_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [m.groups()[:3] for m in matches if m] == (made if target else [])
    assert log.exists() is (target == "file")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_exits_0_promptly(signum: int) -> None:
    # The console is blocked reading its (open) stdin in a worker thread.
    async with server_process() as server, game(server.url) as ws:
        await force(ws)
        await server.expect("[1]: ")
        with trio.fail_after(5):
            assert await server.stop(signum) == 0
