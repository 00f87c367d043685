"""NgrokTunnels (pyngrok) against the fake ngrok agent in tests/fake_ngrok.

The real ngrok is never downloaded or run: every NgrokTunnels here points at
the fake, or at a path that does not exist.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
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
NO_TOKEN = (
    "no ngrok auth token: set NGROK_AUTHTOKEN (or --ngrok-authtoken), from "
    "https://dashboard.ngrok.com/get-started/your-authtoken"
)
PYNGROK_LOGGERS = (
    "pyngrok.agent",
    "pyngrok.installer",
    "pyngrok.ngrok",
    "pyngrok.process",
    "pyngrok.process.ngrok",
)


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


def pyngrok_filters() -> list[set[object]]:
    """The filters on each of pyngrok's loggers."""
    return [set(logging.getLogger(name).filters) for name in PYNGROK_LOGGERS]


def command_line(pid: int) -> bytes:
    """What ``ps`` shows every local user of process ``pid`` (Linux)."""
    path = Path(f"/proc/{pid}/cmdline")
    if not path.exists():  # pragma: no cover - not Linux
        pytest.skip("no /proc here")
    return path.read_bytes()


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
    assert config.exists()

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

    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN)
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
        NgrokTunnels(ngrok_path=tmp_path / "missing" / "ngrok", auth_token=TOKEN),
        NgrokTunnels(auth_token=TOKEN),
    ):
        with pytest.raises(TunnelError, match="never downloaded"):
            await tunnels.open("http://127.0.0.1:8001", name="api")
        await tunnels.kill()
    assert NgrokTunnels().ngrok_path is None


async def test_without_a_token_nothing_starts(
    fake: FakeNgrok, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyngrok would take NGROK_AUTHTOKEN from the environment: we do not.
    monkeypatch.setenv("NGROK_AUTHTOKEN", "from-the-environment")
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path)

    assert tunnels.missing() == [NO_TOKEN]
    with pytest.raises(TunnelError) as caught:
        await tunnels.open("http://127.0.0.1:8001", name="a")

    assert str(caught.value) == NO_TOKEN
    assert fake.events() == []  # the agent was never run
    await tunnels.kill()


@pytest.mark.parametrize("token", [TOKEN, 'odd "token": #1 \\ \u00e9\n--x'])
async def test_the_token_is_in_a_private_file_never_on_the_command_line(
    fake: FakeNgrok, token: str
) -> None:
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=token)
    await tunnels.open("http://127.0.0.1:8001", name="a")

    [start] = fake.starts()
    assert "--authtoken" not in start["argv"]
    assert not any(token in arg for arg in start["argv"])
    pid = fake.pid()
    assert pid is not None
    assert token.encode() not in command_line(pid)
    config = start["config"]
    assert config["mode"] == 0o600
    path = Path(config["path"])
    assert path.parent.stat().st_mode & 0o777 == 0o700
    # The agent configuration, version 3, as pyngrok (and ngrok) read it.
    loaded = installer.get_ngrok_config(str(path), use_cache=False)
    assert loaded == {"version": "3", "agent": {"authtoken": token}}
    assert token not in repr(tunnels)
    launchers = [p for p in path.parent.iterdir() if p != path]
    assert all(token not in p.read_text(encoding="utf-8") for p in launchers)

    await tunnels.kill()
    assert not path.parent.exists()


async def test_what_the_agent_prints_reaches_the_log_redacted(
    fake: FakeNgrok,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # No handler of ours: the records must be clean whoever formats them.
    caplog.set_level(logging.INFO, logger="pyngrok")
    fake.set_mode("ok", echo_token=True)
    before = pyngrok_filters()
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN)
    await tunnels.open("http://127.0.0.1:8001", name="a")
    running = pyngrok_filters()
    await tunnels.kill()

    agent_lines = [
        r.getMessage() for r in caplog.records if r.name == "pyngrok.process.ngrok"
    ]
    # Its stdout line, and its stderr line: captured, not inherited.
    assert any('msg="fake ngrok echoes its authtoken" token=***' in line
               for line in agent_lines)  # fmt: skip
    assert "fake ngrok on stderr: authtoken ***" in agent_lines
    assert TOKEN not in caplog.text
    out, err = capfd.readouterr()
    assert TOKEN not in out + err
    # One filter on each pyngrok logger, as long as the agent runs.
    assert all(len(now - old) == 1 for now, old in zip(running, before, strict=True))
    assert pyngrok_filters() == before


async def test_a_config_file_of_your_own_is_never_written(
    fake: FakeNgrok, tmp_path: Path
) -> None:
    own = tmp_path / "own.yml"
    own.write_text('version: "3"\n', encoding="utf-8")

    with pytest.raises(TunnelError, match="auth_token or config_path, not both"):
        NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN, config_path=own)

    # Without a token, the file is trusted to hold one.
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, config_path=own)
    assert tunnels.missing() == []
    await tunnels.open("http://127.0.0.1:8001", name="a")
    await tunnels.kill()
    assert own.read_text(encoding="utf-8") == 'version: "3"\n'
    assert os.stat(own).st_mode & 0o777 != 0  # still there


async def test_start_failure_is_a_tunnel_error_with_the_token_redacted(
    fake: FakeNgrok, capfd: pytest.CaptureFixture[str]
) -> None:
    fake.set_mode("fail_start")
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN)

    with pytest.raises(TunnelError, match="authentication failed") as caught:
        await tunnels.open("http://127.0.0.1:8001", name="api")

    assert TOKEN not in str(caught.value)
    assert "Your authtoken: ***" in str(caught.value)  # read from the config file
    # Nor in a printed traceback: pyngrok's own error is left off the chain.
    assert TOKEN not in "".join(traceback.format_exception(caught.value))
    # The agent's stderr (which repeats the token) is not ours.
    out, err = capfd.readouterr()
    assert TOKEN not in out + err
    assert fake.running_pids() == []


async def test_a_refused_tunnel_stops_an_idle_agent(fake: FakeNgrok) -> None:
    fake.set_mode("fail_connect")
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN)

    with pytest.raises(TunnelError, match="502"):
        await tunnels.open("http://127.0.0.1:8001", name="refused")

    assert len(fake.starts()) == 1
    assert fake.running_pids() == []


async def test_a_refused_tunnel_keeps_the_agent_serving_others(
    fake: FakeNgrok,
) -> None:
    fake.set_mode("ok", refuse_upstream="http://127.0.0.1:8002")
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN)
    kept = await tunnels.open("http://127.0.0.1:8001", name="kept")

    with pytest.raises(TunnelError, match="8002"):
        await tunnels.open("http://127.0.0.1:8002", name="refused")

    assert [t.public_url for t in await tunnels.list()] == [kept]
    assert len(fake.running_pids()) == 1
    await tunnels.kill()
    assert fake.running_pids() == []


async def test_a_cancelled_open_is_still_cleaned_up_by_kill(fake: FakeNgrok) -> None:
    fake.set_mode("ok", start_delay=0.3)
    tunnels = NgrokTunnels(ngrok_path=fake.ngrok_path, auth_token=TOKEN)
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
