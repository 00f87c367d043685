"""A process with the client-status capability, for the status tests.

Real sockets on 127.0.0.1 port 0 (games' server, control plane), the real
files in a directory of the test's, a console on a memory stream. The
files are looked at every 0.05 s (``--status-period``) so that tests wait
little; they still wait for what they check, never for a fixed time.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import trio
import trio.testing
from server_helpers import Output

from neuro_api.app import (
    ConsoleCapability,
    ControlPlaneCapability,
    GamesCapability,
    NeuroProcess,
    ProcessInfo,
    build_parser,
)
from neuro_api.server import RandomNeuroServer
from neuro_api.settings import load_settings
from neuro_api.status import StatusCapability, StatusManager, StatusSettings

WAIT: Final = 10.0
TOKEN: Final = "a-control-plane-token-for-status-tests"


class Running:
    """One process with status on, and what a test needs to drive it."""

    def __init__(
        self,
        process: NeuroProcess,
        info: ProcessInfo,
        status: StatusCapability,
        typed: trio.abc.SendStream,
        output: Output,
        directory: Path,
    ) -> None:
        self.process = process
        self.info = info
        self.capability = status
        self.typed = typed
        self.output = output
        self.directory = directory

    @property
    def manager(self) -> StatusManager:
        assert self.capability.manager is not None
        return self.capability.manager

    @property
    def games_url(self) -> str:
        return self.info.games.local_url

    def http(self) -> httpx.AsyncClient:
        assert self.info.control is not None
        return httpx.AsyncClient(
            base_url=self.info.control.local_url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=WAIT,
        )

    def file(self, name: str) -> Path:
        return self.directory / name

    def clients(self, name: str) -> list[str]:
        clients: list[str] = orjson.loads(self.file(name).read_bytes())["clients"]
        return clients

    def edit(self, name: str, clients: list[str] | bytes) -> None:
        """Edit a file by hand (not atomically: as an editor might)."""
        data = (
            clients
            if isinstance(clients, bytes)
            else orjson.dumps({"clients": clients})
        )
        self.file(name).write_bytes(data)

    async def type(self, line: str) -> None:
        await self.typed.send_all(line.encode() + b"\n")


async def eventually(check: Callable[[], object], within: float = WAIT) -> None:
    """Wait until ``check()`` is true (polled: files change on their own)."""
    with trio.fail_after(within):
        while not check():  # noqa: ASYNC110 - files change outside Trio
            await trio.sleep(0.01)


def status_settings(
    data_dir: Path, *argv: str, environ: dict[str, str] | None = None
) -> Any:
    flags = [
        "--engine",
        "random",
        "--port",
        "0",
        "--http-port",
        "0",
        "--api-token",
        TOKEN,
        "--data-dir",
        str(data_dir),
        "--status-period",
        "0.05",
        *argv,
    ]
    parsed = build_parser([StatusSettings]).parse_args(flags)
    return load_settings(parsed, environ=environ or {}, sections=[StatusSettings])


@asynccontextmanager
async def running_status(
    data_dir: Path, *argv: str, environ: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    """Run a process with status on; ``data_dir`` holds its ``Server_Data``."""
    settings = status_settings(data_dir, "--console", *argv, environ=environ)
    status = StatusCapability()
    typed, input_stream = trio.testing.memory_stream_pair()
    output = Output()
    process = NeuroProcess(
        settings,
        RandomNeuroServer(),
        capabilities=[
            ControlPlaneCapability(),
            GamesCapability(),
            status,
            ConsoleCapability(input=input_stream, output=output),
        ],
        out=io.StringIO(),
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            info = await nursery.start(
                lambda task_status: process.run(
                    handle_signals=False, task_status=task_status
                )
            )
        yield Running(process, info, status, typed, output, data_dir / "Server_Data")
        nursery.cancel_scope.cancel()
