"""The floor reference for the server benchmark: the least a Neuro server can do.

A bare trio-websocket server, one handler per connection, that speaks just
enough of the protocol for the benchmark driver (``bench_server.py``):

* ``startup`` gets a canned acknowledgement;
* ``actions/force`` gets a canned ``action`` frame for the first forced
  action name, with a fixed data string and an incrementing id;
* everything else (context, registrations, results, ...) is parsed and
  dropped; nothing is stored.

It parses every frame as JSON (with orjson), because any real server must,
and nothing more. Same command line contract as the server under test::

    python benchmarks/floor_server.py --host 127.0.0.1 --port 0

prints ``floor server listening on ws://HOST:PORT`` once ready and serves
until SIGINT or SIGTERM, then exits with status 0.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import signal
import sys
from collections.abc import Sequence
from typing import Final

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

STARTUP_ACK: Final = orjson.dumps(
    {
        "command": "startup",
        "data": {
            "session": {
                "sessionId": "floor",
                "characterId": "neuro",
                "displayName": "Neuro-sama",
            }
        },
    }
).decode()
ACTION_DATA: Final = '{"value": 1}'

_ids = itertools.count(1)


def _action_frame(name: str) -> str:
    return orjson.dumps(
        {
            "command": "action",
            "data": {"id": str(next(_ids)), "name": name, "data": ACTION_DATA},
        }
    ).decode()


async def handle(request: WebSocketRequest) -> None:
    """Serve one connection; never lets an exception reach the server."""
    try:
        ws = await request.accept()
        while True:
            message = await ws.get_message()
            try:
                frame = orjson.loads(message)
                command = frame["command"]
                if command == "startup":
                    await ws.send_message(STARTUP_ACK)
                elif command == "actions/force":
                    name = frame["data"]["action_names"][0]
                    await ws.send_message(_action_frame(str(name)))
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
                continue  # not the floor's job to diagnose
    except ConnectionClosed:
        pass
    except Exception as exc:  # the connection boundary: keep serving others
        print(f"floor server: connection failed: {exc!r}", file=sys.stderr)


async def serve(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                functools.partial(
                    serve_websocket,
                    handle,
                    host,
                    port,
                    None,
                    message_queue_size=1,
                    connect_timeout=10,
                    disconnect_timeout=10,
                )
            )
            shown = f"[{host}]" if ":" in host else host
            print(f"floor server listening on ws://{shown}:{server.port}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Floor reference Neuro server (canned frames) for benchmarks."
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument(
        "--port", type=int, default=0, help="0 picks a free port (default)"
    )
    args = parser.parse_args(argv)
    trio.run(serve, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
