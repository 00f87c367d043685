"""Public tunnels to local servers: a provider protocol and its ngrok backend.

:class:`TunnelProvider` is what :class:`~neuro_api.manager.ServerManager`
needs (open, close, kill); :class:`NgrokTunnels` implements it with pyngrok.
pyngrok is blocking and keeps module-global state per ``ngrok_path``, so every
call runs in a worker thread (``trio.to_thread.run_sync``) behind the
instance's own ``CapacityLimiter(1)``: one pyngrok call at a time, never on
the event loop.
"""

from __future__ import annotations

import builtins
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio
from pyngrok import conf, ngrok, process
from pyngrok.exception import PyngrokError

__all__ = ["NgrokTunnels", "TunnelError", "TunnelInfo", "TunnelProvider"]

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


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
    Nothing is ever downloaded: ``ngrok_path`` must name an existing
    executable (default: ``ngrok`` on ``PATH``, else one pyngrok installed
    earlier at its default location), otherwise :meth:`open` raises
    :class:`TunnelError`. ``config_path`` defaults to a file in a private
    temporary directory, removed by :meth:`kill`. The auth token comes only
    from ``auth_token`` (pyngrok's fallback to ``NGROK_AUTHTOKEN`` is
    overridden) and is redacted from error messages.

    pyngrok keeps its process table per ``ngrok_path`` at module level: use
    one instance per ngrok executable.
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
        if ngrok_path is None:
            ngrok_path = shutil.which("ngrok")
        if ngrok_path is None and os.path.isfile(conf.DEFAULT_NGROK_PATH):
            ngrok_path = conf.DEFAULT_NGROK_PATH
        self._ngrok_path = None if ngrok_path is None else os.fspath(ngrok_path)
        self._auth_token = auth_token or None
        self._config_path = None if config_path is None else os.fspath(config_path)
        self._region = region
        self._startup_timeout = startup_timeout
        self._request_timeout = request_timeout
        self._limiter = trio.CapacityLimiter(1)
        # Touched only by worker threads holding the limiter.
        self._pyngrok_config: conf.PyngrokConfig | None = None
        self._temp_dir: str | None = None
        self._open: set[str] = set()

    def __repr__(self) -> str:
        return f"NgrokTunnels(ngrok_path={self._ngrok_path!r})"

    @property
    def ngrok_path(self) -> str | None:
        """The ngrok executable pyngrok launches (``None``: none was found)."""
        return self._ngrok_path

    async def open(self, upstream_url: str, *, name: str) -> str:
        """Start the agent if needed and open an HTTP tunnel to ``upstream_url``.

        Returns the public URL as ngrok reports it (``https://...``). ``name``
        labels the endpoint (a unique suffix is added). Raises
        :class:`TunnelError`. On cancellation the call returns at once; the
        worker thread finishes in the background and its tunnel, if any, is
        still closed by :meth:`kill`.
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
        path = self._ngrok_path
        if path is None or not os.path.isfile(path) or not os.access(path, os.X_OK):
            # pyngrok would download ngrok from the internet here; refuse.
            raise TunnelError(
                f"ngrok executable not found ({path or 'not on PATH'}); install "
                "ngrok and pass its path (it is never downloaded automatically)"
            )
        config_path = self._config_path
        if config_path is None:
            self._temp_dir = tempfile.mkdtemp(prefix="neuro_api-ngrok-")
            config_path = str(Path(self._temp_dir) / "ngrok.yml")
        config = conf.PyngrokConfig(
            ngrok_path=path,
            config_path=config_path,
            auth_token=self._auth_token,
            region=self._region,
            startup_timeout=self._startup_timeout,
            request_timeout=self._request_timeout,
        )
        # PyngrokConfig falls back to NGROK_AUTHTOKEN / NGROK_API_KEY from the
        # environment; only the settings layer reads the environment here.
        config.auth_token = self._auth_token
        config.api_key = None
        self._pyngrok_config = config
        return config

    def _error(self, message: str, exc: BaseException) -> TunnelError:
        text = f"{message}: {exc}"
        if self._auth_token:
            text = text.replace(self._auth_token, "***")
        return TunnelError(text)

    def _open_sync(self, upstream_url: str, endpoint: str) -> str:
        config = self._config()
        try:
            tunnel = ngrok.connect(
                upstream_url, proto="http", name=endpoint, pyngrok_config=config
            )
        except (PyngrokError, OSError) as exc:
            self._kill_if_idle()
            message = f"ngrok could not open a tunnel to {upstream_url}"
            raise self._error(message, exc) from exc
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
            raise self._error(f"ngrok could not close {public_url}", exc) from exc
        finally:
            self._kill_if_idle()

    def _list_sync(self) -> builtins.list[TunnelInfo]:
        config = self._pyngrok_config
        if config is None or not process.is_process_running(config.ngrok_path):
            return []
        try:
            tunnels = ngrok.get_tunnels(pyngrok_config=config)
        except (PyngrokError, OSError) as exc:
            raise self._error("ngrok could not list tunnels", exc) from exc
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
            ngrok.kill(pyngrok_config=config)
        temp_dir, self._temp_dir = self._temp_dir, None
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
