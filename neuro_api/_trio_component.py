"""``TrioNeuroAPIComponent``: upstream's libcomponent game client on trio-websocket.

Imported by :mod:`neuro_api.trio_ws` on first use of the name, so that
module works without the optional ``libcomponent`` dependency.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import trio
import trio_websocket

from neuro_api.event import AbstractNeuroAPIComponent
from neuro_api.trio_ws import TrioNeuroAPI

__all__ = ["TrioNeuroAPIComponent"]

LOGGER: Final = logging.getLogger("neuro_api.trio_ws")


class TrioNeuroAPIComponent(AbstractNeuroAPIComponent, TrioNeuroAPI):
    """A libcomponent component speaking to Neuro over trio-websocket.

    The upstream package ``neuro-api`` 4.0.0's class, with its methods:
    raise the event ``connect`` with a ``ws://`` URL as data (or call
    :meth:`handle_connect`) to connect and read until the connection ends;
    :meth:`stop` closes it. Needs ``pip install "trio-neuro-api[component]"``.
    For a game that reconnects by itself, see
    :class:`~neuro_api.trio_ws.NeuroGameClient`.
    """

    def __init__(
        self,
        component_name: str,
        game_title: str,
        connection: trio_websocket.WebSocketConnection | None = None,
    ) -> None:
        AbstractNeuroAPIComponent.__init__(self, component_name, game_title)
        TrioNeuroAPI.__init__(self, game_title, connection)

    async def read_message(self, frame: str | bytes | None = None) -> Any:
        """Read and handle one frame; a closed connection stops the component."""
        try:
            return await super().read_message(frame)
        except trio_websocket.ConnectionClosed:
            await self.stop()
            return None

    def websocket_connect_failed(self) -> None:
        """Called when the WebSocket handshake fails; logs it."""
        LOGGER.warning("failed to connect to Neuro's WebSocket")

    async def websocket_connect_successful(self) -> None:
        """Called once connected, before reading; logs it."""
        LOGGER.info("connected to Neuro's WebSocket")
        await trio.lowlevel.checkpoint()

    async def handle_connect(self, event: Any) -> None:
        """Connect to ``event.data`` (a URL) and read frames until it closes."""
        url = event.data
        stream: Any = None
        try:
            async with trio_websocket.open_websocket_url(url) as websocket:
                stream = getattr(websocket, "_stream", None)
                self.connect(websocket)
                await self.websocket_connect_successful()
                try:
                    while not self.not_connected:
                        await self.read_message()
                finally:
                    self.connect(None)
        except trio_websocket.HandshakeError:
            self.websocket_connect_failed()
        finally:
            # trio-websocket's client leaves its socket open when the server
            # closed first: close it here.
            if isinstance(stream, trio.abc.AsyncResource):
                await trio.aclose_forcefully(stream)

    async def stop(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection (if any) and forget it."""
        connection = self._connection
        self.connect(None)
        if connection is not None:
            await connection.aclose(code, reason)
        else:
            await trio.lowlevel.checkpoint()
