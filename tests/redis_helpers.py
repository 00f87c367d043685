"""A real ``redis-server`` for the tests, on 127.0.0.1 and a free port.

``.ci/run`` installs redis-server when it is missing; tests that need it
are skipped with the reason when it still cannot be found (a developer's
machine without it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; :meth:`kill` and :meth:`start` it at will."""

    def __init__(self, directory: Path) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (.ci/run installs it)")
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._client: redis.Redis | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """The test's own client (one, reused: closed with the server)."""
        if self._client is None:
            self._client = redis.Redis(
                host="127.0.0.1", port=self.port, socket_timeout=5
            )
        return self._client

    def close(self) -> None:
        """Kill the server and close the test's client."""
        self.kill()
        if self._client is not None:
            self._client.close()
            self._client = None

    def start(self) -> None:
        """Start it (again, on the same port); return once it answers."""
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def kill(self) -> None:
        """Kill it at once (SIGKILL): everything it held is lost."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.close()
