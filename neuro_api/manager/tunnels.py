"""Public tunnels to local servers: a provider protocol and its ngrok backend.

:class:`TunnelProvider` is what :class:`~neuro_api.manager.ServerManager`
needs (open, close, kill); :class:`NgrokTunnels` implements it with pyngrok.
pyngrok is blocking and keeps module-global state per ``ngrok_path``, so every
call runs in a worker thread (``trio.to_thread.run_sync``) behind the
instance's own ``CapacityLimiter(1)``: one pyngrok call at a time, never on
the event loop.

The ngrok auth token never reaches the agent's command line, which every
local user can read in the process table: it goes into a private
configuration file. Whatever the agent prints, its stderr included, reaches
the log only through pyngrok's loggers, with the token hidden.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
import shlex
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn, Protocol

import trio
from pyngrok import conf, ngrok, process
from pyngrok.exception import PyngrokError

from neuro_api._redact import RedactingFilter, redact
from neuro_api.manager._ngrok_path import find_ngrok

__all__ = ["NgrokTunnels", "TunnelError", "TunnelInfo", "TunnelProvider"]

_AUTHTOKEN_URL: Final = "https://dashboard.ngrok.com/get-started/your-authtoken"
_NO_TOKEN: Final = (
    f"no ngrok auth token: set NGROK_AUTHTOKEN (or --ngrok-authtoken), from "
    f"{_AUTHTOKEN_URL}"
)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")
# Every logger pyngrok logs on; pyngrok.process.ngrok gets each agent line.
_PYNGROK_LOGGERS: Final = (
    "pyngrok.agent",
    "pyngrok.installer",
    "pyngrok.ngrok",
    "pyngrok.process",
    "pyngrok.process.ngrok",
)


class TunnelError(Exception):
    """A tunnel could not be opened or closed (the message says why)."""


class TunnelProvider(Protocol):
    """Opens public URLs onto local servers.

    The manager opens one tunnel per server, closes it before stopping the
    server, and calls :meth:`kill` when it exits.
    """

    async def open(self, upstream_url: str, *, name: str) -> str:
        """Expose ``upstream_url`` (``http://127.0.0.1:PORT``); return the public URL.

        Raises :class:`TunnelError` when no tunnel could be opened.
        """
        ...

    async def close(self, public_url: str) -> None:
        """Close the tunnel :meth:`open` returned ``public_url`` for.

        Raises :class:`TunnelError` when the provider refused.
        """
        ...

    async def kill(self) -> None:
        """Close every tunnel and stop any helper process; idempotent."""
        ...


@dataclass(frozen=True)
class TunnelInfo:
    """A tunnel as the ngrok agent reports it."""

    name: str
    public_url: str
    upstream_url: str


class NgrokTunnels:
    """Tunnels through an ngrok agent process, driven by pyngrok.

    The agent is started on the first :meth:`open` and killed as soon as no
    tunnel is open (and by :meth:`kill`), so it runs only while it is needed.

    Nothing is ever downloaded: ``ngrok_path`` names the ngrok executable
    (default: the first ``ngrok`` on ``PATH`` that is not pyngrok's download
    script, else one pyngrok installed earlier at its default location).
    :meth:`missing` says what is lacking (the executable, the token) before
    anything starts; :meth:`open` raises :class:`TunnelError` with that text.

    The auth token comes only from ``auth_token`` (pyngrok's fallback to
    ``NGROK_AUTHTOKEN`` is overridden). It is written as ``agent.authtoken``
    of a version 3 agent configuration, ``ngrok.yml`` (mode 0600) in a
    private temporary directory (mode 0700) removed when the agent stops,
    never onto the agent's command line. A ``config_path`` of your own is
    used as it is and never written to: put the token in it yourself
    (``agent: authtoken: ...``); giving both raises :class:`TunnelError`.

    While the agent runs, a :class:`logging.Filter` on pyngrok's loggers
    hides the token in every line pyngrok logs, whatever handlers the
    application set up. The agent's stderr goes to its stdout,
    which pyngrok reads and logs line by line (on POSIX, through a two-line
    ``sh`` launcher in the private directory; elsewhere the agent's stderr
    is inherited). Error messages are redacted too.

    pyngrok keeps its process table per ``ngrok_path`` at module level. On
    POSIX that is the launcher, one per agent; elsewhere it is the
    executable itself: use one instance per ngrok executable there.
    """

    def __init__(
        self,
        *,
        ngrok_path: str | os.PathLike[str] | None = None,
        auth_token: str | None = None,
        config_path: str | os.PathLike[str] | None = None,
        region: str | None = None,
        startup_timeout: int = 15,
        request_timeout: float = 4.0,
    ) -> None:
        if auth_token and config_path is not None:
            raise TunnelError(
                "NgrokTunnels: give auth_token or config_path, not both (the "
                "token is never written into your own config file: put it "
                "there as agent.authtoken, or leave config_path unset)"
            )
        self._ngrok_path, self._path_problem = find_ngrok(ngrok_path)
        self._auth_token = auth_token or None
        self._config_path = None if config_path is None else os.fspath(config_path)
        self._region = region
        self._startup_timeout = startup_timeout
        self._request_timeout = request_timeout
        self._limiter = trio.CapacityLimiter(1)
        # Touched only by worker threads holding the limiter.
        self._pyngrok_config: conf.PyngrokConfig | None = None
        self._temp_dir: str | None = None
        self._redactor: RedactingFilter | None = None
        self._open: set[str] = set()

    def __repr__(self) -> str:
        return f"NgrokTunnels(ngrok_path={self._ngrok_path!r})"

    @property
    def ngrok_path(self) -> str | None:
        """The ngrok executable the agent runs (``None``: none was found)."""
        return self._ngrok_path

    def missing(self) -> builtins.list[str]:
        """What the agent lacks to start, one line each (empty: nothing).

        The ngrok executable, and an auth token unless ``config_path`` was
        given (that file is expected to hold it). Each line says how to fix
        it. Nothing is started, run or downloaded.
        """
        problems = [] if self._path_problem is None else [self._path_problem]
        if self._auth_token is None and self._config_path is None:
            problems.append(_NO_TOKEN)
        return problems

    async def open(self, upstream_url: str, *, name: str) -> str:
        """Start the agent if needed and open an HTTP tunnel to ``upstream_url``.

        Returns the public URL as ngrok reports it (``https://...``). ``name``
        labels the endpoint (a unique suffix is added). Raises
        :class:`TunnelError`; when something is :meth:`missing`, its lines
        joined by ``"; "`` are the message and nothing is started. On
        cancellation the call returns at once; the worker thread finishes in
        the background and its tunnel, if any, is still closed by
        :meth:`kill`.
        """
        endpoint = f"{_UNSAFE_NAME.sub('-', name).strip('-') or 'server'}"
        endpoint += f"-{uuid.uuid4().hex[:8]}"
        return await trio.to_thread.run_sync(
            self._open_sync,
            upstream_url,
            endpoint,
            limiter=self._limiter,
            abandon_on_cancel=True,
        )

    async def close(self, public_url: str) -> None:
        """Close one tunnel; stops the agent when it was the last one.

        Raises :class:`TunnelError` when the agent refused (the tunnel is
        forgotten either way). Not cancellable while the call is in flight.
        """
        await trio.to_thread.run_sync(
            self._close_sync, public_url, limiter=self._limiter
        )

    async def list(self) -> builtins.list[TunnelInfo]:
        """The tunnels the running agent reports (empty when it is not running)."""
        return await trio.to_thread.run_sync(
            self._list_sync, limiter=self._limiter, abandon_on_cancel=True
        )

    async def kill(self) -> None:
        """Kill the agent (closing all its tunnels) and remove the temp config.

        Waits for any pyngrok call in flight first. Not cancellable while the
        kill runs; callers bound it with a shielded timeout.
        """
        await trio.to_thread.run_sync(self._kill_sync, limiter=self._limiter)

    # Everything below runs in a worker thread holding self._limiter.

    def _config(self) -> conf.PyngrokConfig:
        if self._pyngrok_config is not None:
            return self._pyngrok_config
        if problems := self.missing():
            raise TunnelError("; ".join(problems))
        path = self._ngrok_path
        # Checked again at each start: pyngrok downloads ngrok into a missing
        # ngrok_path.
        if path is None or not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise TunnelError(f"the ngrok executable {path} is gone")
        temp_dir = Path(tempfile.mkdtemp(prefix="neuro_api-ngrok-"))  # mode 0700
        self._temp_dir = str(temp_dir)
        config_path = self._config_path
        if config_path is None:
            assert self._auth_token is not None  # else missing() said so
            token_config = _agent_config(self._auth_token)
            config_path = _write_private(temp_dir / "ngrok.yml", token_config)
        if os.name == "posix":
            path = _write_private(temp_dir / "ngrok", _launcher(path), mode=0o700)
        if self._auth_token is not None:
            self._redactor = RedactingFilter([self._auth_token])
            for name in _PYNGROK_LOGGERS:
                logging.getLogger(name).addFilter(self._redactor)
        config = conf.PyngrokConfig(
            ngrok_path=path,
            config_path=config_path,
            region=self._region,
            startup_timeout=self._startup_timeout,
            request_timeout=self._request_timeout,
        )
        # PyngrokConfig falls back to NGROK_AUTHTOKEN / NGROK_API_KEY from the
        # environment, and pyngrok puts auth_token on the agent's command
        # line: the token is in the config file instead.
        config.auth_token = None
        config.api_key = None
        self._pyngrok_config = config
        return config

    def _fail(self, message: str, exc: BaseException) -> NoReturn:
        """Raise a redacted :class:`TunnelError` for ``exc``."""
        text = f"{message}: {exc}"
        redacted = redact(text, [self._auth_token])
        # An exc holding the token (pyngrok keeps the agent's log on it too)
        # stays off the chain that tracebacks print.
        raise TunnelError(redacted) from (exc if redacted == text else None)

    def _open_sync(self, upstream_url: str, endpoint: str) -> str:
        try:
            config = self._config()
            tunnel = ngrok.connect(
                upstream_url, proto="http", name=endpoint, pyngrok_config=config
            )
        except (PyngrokError, OSError) as exc:
            self._kill_if_idle()
            message = f"ngrok could not open a tunnel to {upstream_url}"
            self._fail(message, exc)
        public_url = tunnel.public_url
        if public_url is None:  # pragma: no cover - pyngrok raises first
            raise TunnelError(f"ngrok returned no public URL for {upstream_url}")
        self._open.add(public_url)
        return public_url

    def _close_sync(self, public_url: str) -> None:
        self._open.discard(public_url)
        try:
            if self._pyngrok_config is not None:
                ngrok.disconnect(public_url, pyngrok_config=self._pyngrok_config)
        except (PyngrokError, OSError) as exc:
            self._fail(f"ngrok could not close {public_url}", exc)
        finally:
            self._kill_if_idle()

    def _list_sync(self) -> builtins.list[TunnelInfo]:
        config = self._pyngrok_config
        if config is None or not process.is_process_running(config.ngrok_path):
            return []
        try:
            tunnels = ngrok.get_tunnels(pyngrok_config=config)
        except (PyngrokError, OSError) as exc:
            self._fail("ngrok could not list tunnels", exc)
        return [
            TunnelInfo(
                name=tunnel.name or "",
                public_url=tunnel.public_url or "",
                upstream_url=str(tunnel.upstream.get("url", "")),
            )
            for tunnel in tunnels
        ]

    def _kill_if_idle(self) -> None:
        if not self._open:
            self._kill_sync()

    def _kill_sync(self) -> None:
        self._open.clear()
        config, self._pyngrok_config = self._pyngrok_config, None
        if config is not None:
            ngrok.kill(pyngrok_config=config)  # the agent is dead and reaped
        redactor, self._redactor = self._redactor, None
        if redactor is not None:
            for name in _PYNGROK_LOGGERS:
                logging.getLogger(name).removeFilter(redactor)
        temp_dir, self._temp_dir = self._temp_dir, None
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _agent_config(auth_token: str) -> str:
    """An ngrok agent configuration (version 3) holding the auth token."""
    # A JSON string is a valid YAML double-quoted scalar: any token is safe.
    return f'version: "3"\nagent:\n  authtoken: {json.dumps(auth_token)}\n'


def _launcher(ngrok_path: str) -> str:
    """An ``sh`` script running ngrok with its stderr sent to its stdout.

    pyngrok reads the agent's stdout and logs each line (on loggers the
    token filter covers) but leaves its stderr on ours, unredacted. ``exec``
    keeps one process, so pyngrok's kill still reaches the agent itself.
    """
    return f'#!/bin/sh\nexec {shlex.quote(ngrok_path)} "$@" 2>&1\n'


def _write_private(path: Path, text: str, *, mode: int = 0o600) -> str:
    """Create ``path`` (it must not exist) for its owner only; return it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    return str(path)
