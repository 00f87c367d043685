"""Launch the fake ``ngrok`` agent (``fake_ngrok.py``) from tests.

:meth:`FakeNgrok.create` writes an executable ``ngrok`` shell wrapper into a
test's temporary directory that sets the fake's environment and execs
``fake_ngrok.py`` with this interpreter (``sys.executable``, the virtualenv's
Python). Point ``PyngrokConfig.ngrok_path`` at :attr:`FakeNgrok.ngrok_path`:
pyngrok then launches the fake and never downloads the real ngrok.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SCRIPT = Path(__file__).with_name("fake_ngrok.py")

Mode = Literal["ok", "fail_start", "fail_connect"]


def _alive(pid: int) -> bool:
    """Whether ``pid`` still exists; reaps it first if it is our zombie child."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass(frozen=True)
class FakeNgrok:
    """One fake agent installation: its wrapper, PID file and request log."""

    directory: Path

    @classmethod
    def create(cls, directory: Path, *, mode: Mode = "ok") -> FakeNgrok:
        """Write the wrapper into ``directory`` (which must exist)."""
        fake = cls(directory)
        fake.set_mode(mode)
        return fake

    @property
    def ngrok_path(self) -> Path:
        """The executable to hand to pyngrok as ``ngrok_path``."""
        return self.directory / "ngrok"

    @property
    def pid_file(self) -> Path:
        """Where ``ngrok start`` writes its PID."""
        return self.directory / "ngrok.pid"

    @property
    def log_file(self) -> Path:
        """JSON lines: every invocation and every API request."""
        return self.directory / "ngrok-requests.jsonl"

    def set_mode(
        self,
        mode: Mode,
        *,
        refuse_upstream: str = "",
        start_delay: float = 0.0,
        echo_token: bool = False,
    ) -> None:
        """Rewrite the wrapper; applies from the next launch on.

        ``refuse_upstream``: the agent answers 502 to a tunnel for that
        upstream URL only. ``start_delay``: seconds the agent takes to start.
        ``echo_token``: the agent prints its auth token on stdout and stderr.
        """
        env = {
            "FAKE_NGROK_MODE": mode,
            "FAKE_NGROK_ECHO_TOKEN": "1" if echo_token else "",
            "FAKE_NGROK_REFUSE_UPSTREAM": refuse_upstream,
            "FAKE_NGROK_START_DELAY": str(start_delay),
            "FAKE_NGROK_PID_FILE": str(self.pid_file),
            "FAKE_NGROK_LOG": str(self.log_file),
            "FAKE_NGROK_MAX_LIFETIME": "120",
        }
        lines = ["#!/bin/sh"]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
        command = shlex.join([sys.executable, "-I", "-u", str(SCRIPT)])
        lines.append(f'exec {command} "$@"')
        self.ngrok_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.ngrok_path.chmod(0o755)

    def events(self) -> list[dict[str, Any]]:
        """Everything the fake recorded so far, oldest first."""
        if not self.log_file.exists():
            return []
        with self.log_file.open(encoding="utf-8") as log:
            return [json.loads(line) for line in log if line.strip()]

    def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        """The API requests received (``method``, ``path``, ``body``)."""
        return [
            event
            for event in self.events()
            if event["event"] == "request"
            and (method is None or event["method"] == method)
        ]

    def starts(self) -> list[dict[str, Any]]:
        """One record per ``ngrok start`` invocation.

        Each has ``pid``, ``argv`` and ``config`` (``None`` without
        ``--config``, else ``path``, ``mode`` and ``text`` of the file, or
        ``error`` when it could not be read).
        """
        return [
            event
            for event in self.events()
            if event["event"] == "invoke" and event["argv"][:1] == ["start"]
        ]

    def api_url(self) -> str:
        """The agent API base URL (``http://127.0.0.1:PORT``) of the latest start."""
        listening = [e for e in self.events() if e["event"] == "listening"]
        if not listening:
            raise LookupError("the fake ngrok agent has not started")
        return f"http://{listening[-1]['addr']}"

    def pid(self) -> int | None:
        """The PID of the latest ``ngrok start``, if one ran."""
        if not self.pid_file.exists():
            return None
        return int(self.pid_file.read_text(encoding="utf-8"))

    def running_pids(self) -> list[int]:
        """The agents this fake started that are still alive."""
        return [event["pid"] for event in self.starts() if _alive(event["pid"])]

    def kill_leftovers(self) -> list[int]:
        """SIGKILL and reap agents still alive (test teardown); return them."""
        leftovers = self.running_pids()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        return leftovers
