"""Named HTTP and WebSocket servers and their public tunnels, in one nursery.

:class:`ServerManager` is the one place for every extra server the process
runs: Hypercorn for ASGI apps (the control plane, webhooks), trio-websocket
for WebSocket endpoints, each on ``127.0.0.1`` and port 0 by default, each
optionally exposed through a tunnel (:mod:`neuro_api.manager.tunnels`,
ngrok via pyngrok)::

    manager = ServerManager(tunnels=NgrokTunnels(ngrok_path=path, auth_token=token))
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        info = await manager.start_http("control", app, tunnel=True)
        print(info.local_url, info.public_url)
"""

from __future__ import annotations

from neuro_api.manager._errors import ServerBindError as ServerBindError
from neuro_api.manager._errors import ServerCrashedError as ServerCrashedError
from neuro_api.manager._errors import ServerStartError as ServerStartError
from neuro_api.manager._info import ServerInfo as ServerInfo
from neuro_api.manager._info import ServerKind as ServerKind
from neuro_api.manager._manager import ServerManager as ServerManager
from neuro_api.manager._websocket import WebSocketHandler as WebSocketHandler
from neuro_api.manager._websocket import WebSocketOptions as WebSocketOptions
from neuro_api.manager.tunnels import NgrokTunnels as NgrokTunnels
from neuro_api.manager.tunnels import TunnelError as TunnelError
from neuro_api.manager.tunnels import TunnelInfo as TunnelInfo
from neuro_api.manager.tunnels import TunnelProvider as TunnelProvider

__all__ = [
    "NgrokTunnels",
    "ServerBindError",
    "ServerCrashedError",
    "ServerInfo",
    "ServerKind",
    "ServerManager",
    "ServerStartError",
    "TunnelError",
    "TunnelInfo",
    "TunnelProvider",
    "WebSocketHandler",
    "WebSocketOptions",
]
