"""The README's code runs as written: each test takes its block from README.md.

Rules: the code runs in a real subprocess; it binds 127.0.0.1 port 0 (see
:data:`LAUNCHER`); every wait has a deadline; the process is killed (if
still running) and reaped in ``finally``; its stderr is drained all along.
"""

from __future__ import annotations

import codecs
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import trio
from server_helpers import PLAY, RecordingServer, connect, start_server

from neuro_api.command import Action, StartupAcknowledgement
from neuro_api.schema import validate_action_data

README = Path(__file__).resolve().parent.parent / "README.md"
WAIT = 10.0

LAUNCHER = """\
import runpy, sys
from neuro_api.server import AbstractTrioNeuroServer

# The README's backend listens on port 8000, as a user's would; a test must
# not take a fixed port (other runs share the machine), so only the default
# port of run() changes, to 0: the code under test stays the README's own.
host, port, ssl_context = AbstractTrioNeuroServer.run.__defaults__
AbstractTrioNeuroServer.run.__defaults__ = (host, 0, ssl_context)
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def readme_block(heading: str) -> str:
    """The first ```python block of README.md after the line ``heading``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    match = re.compile(r"^```python\n(.*?)^```$", re.M | re.S).search(text, start)
    assert match is not None, f"no python block after {heading!r}"
    return match[1]


async def drain(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    while chunk := await stream.receive_some():
        into += chunk


async def read_line(stream: trio.abc.ReceiveStream, errors: bytearray) -> str:
    """The next line of ``stream`` (within WAIT)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    text = ""
    with trio.fail_after(WAIT):
        while "\n" not in text:
            chunk = await stream.receive_some(1)  # no further than the line
            assert chunk, f"stdout ended: {text!r}\nstderr:\n{errors.decode()}"
            text += decoder.decode(chunk)
    return text


async def test_your_own_neuro_serves_a_game_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    script = tmp_path / "echo_backend.py"
    script.write_text(readme_block("## Your own Neuro"), encoding="utf-8")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", LAUNCHER, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # print() to a pipe is block-buffered: the test reads the URL at once.
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    errors = bytearray()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, process.stderr, errors)
            line = await read_line(process.stdout, errors)
            found = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
            assert found, f"no URL in {line!r}"
            assert found[1] != "0"
            async with connect(found[0], "Game") as game:
                assert isinstance(await game.startup(), StartupAcknowledgement)
                await game.register(PLAY, Action("wave", "Wave at chat"))
                await game.force("play")
                action = await game.expect_action()
                assert action.name == "play"
                assert validate_action_data(PLAY.schema, action.data_json).ok
                await game.result(action.id, True, "placed")
                # Ctrl-C with a game connected: it is disconnected.
                process.send_signal(signal.SIGINT)
                await game.expect_closed()
            with trio.fail_after(WAIT):
                code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(WAIT, shield=True):
            await process.wait()
            await process.stdout.aclose()
            await process.stderr.aclose()
    assert code == 0, errors.decode()
    assert "Traceback" not in errors.decode()


async def test_the_game_in_a_few_lines_plays_against_our_server(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    code = readme_block("## A game in a few lines")
    assert '"ws://127.0.0.1:8000"' in code
    script = tmp_path / "coin_flip.py"
    script.write_text(code.replace("ws://127.0.0.1:8000", info.url), encoding="utf-8")
    with trio.fail_after(WAIT):
        done = await trio.run_process(
            [sys.executable, str(script)], capture_stderr=True, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    await server.wait_until(lambda: server.outcomes)
    [(title, outcome)] = server.outcomes
    assert (title, outcome.success, outcome.message) == ("Coin Flip", True, "Heads!")
    # Every frame went out as text, in order: nothing to report.
    assert [d.id for d in server.seen if d.severity != "info"] == []
    assert not [d for d in server.seen if d.id == "protocol.binary-frame"]
