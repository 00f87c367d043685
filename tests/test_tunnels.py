"""NgrokTunnels (pyngrok) against the fake ngrok agent in tests/fake_ngrok.

The real ngrok is never downloaded or run: every NgrokTunnels here points at
the fake, or at a path that does not exist.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from fake_ngrok import FakeNgrok
from pyngrok import conf, installer, ngrok, process

from neuro_api.manager import NgrokTunnels, TunnelError, TunnelInfo

pytestmark = pytest.mark.timeout(20)

TOKEN = "fake-authtoken-0123456789abcdef"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeNgrok]:
    fake = FakeNgrok.create(tmp_path)
    yield fake
    leftovers = fake.running_pids()
    process.kill_process(str(fake.ngrok_path))  # pyngrok's table, after a failure
    fake.kill_leftovers()
    assert leftovers == [], f"fake ngrok agents left running: {leftovers}"


def config_arg(fake: FakeNgrok) -> Path:
    """The ``--config`` path pyngrok gave the latest ``ngrok start``."""
    argv: list[str] = fake.starts()[-1]["argv"]
    return Path(argv[argv.index("--config") + 1])


async def test_open_list_close_and_the_idle_agent_stops(fake: FakeNgrok) -> None:
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN)
    assert await tunnels.list() == []  # does not start the agent
    assert fake.starts() == []

    first = await tunnels.open("http://127.0.0.1:8001", name="control plane")
    second = await tunnels.open("http://127.0.0.1:8002", name="games")

    listed = sorted(await tunnels.list(), key=lambda t: t.upstream_url)
    assert [(t.public_url, t.upstream_url) for t in listed] == [
        (first, "http://127.0.0.1:8001"),
        (second, "http://127.0.0.1:8002"),
    ]
    assert all(isinstance(t, TunnelInfo) for t in listed)
    assert listed[0].name.startswith("control-plane-")
    [post, _] = fake.requests("POST")
    assert post["body"] == {
        "name": listed[0].name,
        "upstream": {"url": "http://127.0.0.1:8001"},
    }
    pid = fake.pid()
    config = config_arg(fake)
    assert config.read_text(encoding="utf-8").strip() == "version: '3'"

    await tunnels.close(first)
    assert [r["path"] for r in fake.requests("DELETE")] == [
        f"/api/endpoints/{listed[0].name}"
    ]
    assert fake.running_pids() == [pid]

    await tunnels.close(second)
    assert fake.running_pids() == []
    assert not config.parent.exists()  # the private temp config is gone
    assert len(fake.starts()) == 1


async def test_pyngrok_never_runs_on_the_event_loop(
    fake: FakeNgrok, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, bool]] = []
    main = threading.current_thread()

    def spy(name: str) -> Callable[..., Any]:
        real = getattr(ngrok, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, threading.current_thread() is main))
            return real(*args, **kwargs)

        return wrapper

    for name in ("connect", "disconnect", "get_tunnels", "kill"):
        monkeypatch.setattr(ngrok, name, spy(name))

    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path)
    url = await tunnels.open("http://127.0.0.1:8001", name="a")
    await tunnels.list()
    await tunnels.open("http://127.0.0.1:8002", name="b")
    await tunnels.close(url)
    await tunnels.kill()

    assert [name for name, _ in calls] == [
        "connect",
        "get_tunnels",
        "connect",
        "disconnect",
        "kill",
    ]
    assert not any(on_loop for _, on_loop in calls)


async def test_a_missing_executable_is_refused_not_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("pyngrok tried to download ngrok")

    monkeypatch.setattr(installer, "install_ngrok", no_download)
    monkeypatch.setattr(ngrok, "install_ngrok", no_download)
    monkeypatch.setenv("PATH", str(tmp_path))  # no ngrok on PATH either
    monkeypatch.setattr(conf, "DEFAULT_NGROK_PATH", str(tmp_path / "none" / "ngrok"))

    for tunnels in (
        NgrokTunnels(ngrok_path=tmp_path / "missing" / "ngrok"),
        NgrokTunnels(),
    ):
        with pytest.raises(TunnelError, match="never downloaded"):
            await tunnels.open("http://127.0.0.1:8001", name="api")
        await tunnels.kill()
    assert NgrokTunnels().ngrok_path is None


async def test_the_auth_token_comes_only_from_the_argument(
    fake: FakeNgrok, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NGROK_AUTHTOKEN", "from-the-environment")

    without = NgrokTunnels(ngrok_path=fake.ngrok_path)
    await without.open("http://127.0.0.1:8001", name="a")
    await without.kill()
    with_token = NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN)
    await with_token.open("http://127.0.0.1:8001", name="a")
    await with_token.kill()

    first, second = (start["argv"] for start in fake.starts())
    assert "--authtoken" not in first
    assert "from-the-environment" not in first
    assert second[second.index("--authtoken") + 1] == TOKEN
    assert TOKEN not in repr(with_token)


async def test_start_failure_is_a_tunnel_error_with_the_token_redacted(
    fake: FakeNgrok,
) -> None:
    fake.set_mode("fail_start")
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN)

    with pytest.raises(TunnelError, match="authentication failed") as caught:
        await tunnels.open("http://127.0.0.1:8001", name="api")

    assert TOKEN not in str(caught.value)
    assert "Your authtoken: ***" in str(caught.value)
    assert fake.running_pids() == []


async def test_a_refused_tunnel_stops_an_idle_agent(fake: FakeNgrok) -> None:
    fake.set_mode("fail_connect")
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path)

    with pytest.raises(TunnelError, match="502"):
        await tunnels.open("http://127.0.0.1:8001", name="refused")

    assert len(fake.starts()) == 1
    assert fake.running_pids() == []


async def test_a_refused_tunnel_keeps_the_agent_serving_others(
    fake: FakeNgrok,
) -> None:
    fake.set_mode("ok", refuse_upstream="http://127.0.0.1:8002")
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path)
    kept = await tunnels.open("http://127.0.0.1:8001", name="kept")

    with pytest.raises(TunnelError, match="8002"):
        await tunnels.open("http://127.0.0.1:8002", name="refused")

    assert [t.public_url for t in await tunnels.list()] == [kept]
    assert len(fake.running_pids()) == 1
    await tunnels.kill()
    assert fake.running_pids() == []


async def test_a_cancelled_open_is_still_cleaned_up_by_kill(fake: FakeNgrok) -> None:
    fake.set_mode("ok", start_delay=0.3)
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path)
    with trio.move_on_after(0.05) as scope:
        await tunnels.open("http://127.0.0.1:8001", name="slow")
    assert scope.cancelled_caught  # returned at once, the thread carries on

    await tunnels.kill()  # waits for that thread, then kills its agent

    assert len(fake.starts()) == 1
    assert len(fake.requests("POST")) == 1  # the tunnel did open meanwhile
    assert fake.running_pids() == []


async def test_an_explicit_config_path_is_kept(fake: FakeNgrok, tmp_path: Path) -> None:
    config = tmp_path / "conf" / "ngrok.yml"
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, config_path=config)
    await tunnels.open("http://127.0.0.1:8001", name="a")
    assert config_arg(fake) == config

    await tunnels.kill()
    await tunnels.kill()  # idempotent

    assert config.exists()
    assert fake.running_pids() == []
