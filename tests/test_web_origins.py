"""A web page the user visits cannot drive the games' server (issue 10, item 11).

Browsers let any page open a WebSocket to ``ws://127.0.0.1:8000`` and say
which page did in ``Origin``; games send none. Pages elsewhere are refused
with 403 unless allowed (``--allowed-origins``), as the control plane
already refused them.
"""

from __future__ import annotations

import pytest
import trio
from server_helpers import RecordingServer, handshake, start_server

from neuro_api._origins import origin_allowed
from neuro_api.server import ServerConfig
from neuro_api.settings import load_settings


@pytest.mark.parametrize(
    ("origin", "allowed", "accepted"),
    [
        ("http://localhost:3000", (), True),
        ("http://127.0.0.1", (), True),
        ("http://[::1]:8080", (), True),
        ("https://evil.example", (), False),
        ("null", (), False),
        ("null", ("null",), True),
        ("https://game.example", ("https://game.example/",), True),
        ("HTTPS://Game.Example", ("https://game.example",), True),
        ("https://game.example:8443", ("https://game.example",), False),
        ("https://other.example", ("*",), True),
        ("http://localhost.evil.example", (), False),
    ],
)
def test_origin_allowed(origin: str, allowed: tuple[str, ...], accepted: bool) -> None:
    assert origin_allowed(origin, allowed) is accepted


async def test_a_foreign_page_is_refused_and_games_are_not(
    nursery: trio.Nursery,
) -> None:
    server = RecordingServer()
    info = await start_server(nursery, server)
    refused = await handshake(info.port, "Origin: https://evil.example")
    assert refused.startswith(b"HTTP/1.1 403 ")
    assert b"--allowed-origins" in refused
    assert server.clients == {}
    for headers in ((), ("Origin: http://localhost:5173",)):
        accepted = await handshake(info.port, *headers)
        assert accepted.startswith(b"HTTP/1.1 101 "), accepted


async def test_allowed_pages_connect(nursery: trio.Nursery) -> None:
    server = RecordingServer(ServerConfig(allowed_origins=("https://game.example",)))
    info = await start_server(nursery, server)
    accepted = await handshake(info.port, "Origin: https://game.example")
    assert accepted.startswith(b"HTTP/1.1 101 ")
    refused = await handshake(info.port, "Origin: https://other.example")
    assert refused.startswith(b"HTTP/1.1 403 ")


def test_the_setting_is_a_comma_separated_list() -> None:
    settings = load_settings(
        {"allowed_origins": "https://a.example, null ,,https://b.example"},
        environ={},
    )
    config = ServerConfig.from_settings(settings)
    assert config.allowed_origins == ("https://a.example", "null", "https://b.example")
    assert ServerConfig.from_settings(load_settings(environ={})).allowed_origins == ()
