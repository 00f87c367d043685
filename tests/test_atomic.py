"""Atomic file writes: whole files after any crash, modes kept, no leftovers."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from neuro_api._atomic import remove_stale_temporaries, write_atomic

pytestmark = pytest.mark.timeout(60)

FILES = ("pause_clients.json", "blocked_clients.json", "active_clients.json")

# Writes ever larger lists to three files as fast as it can, until killed.
STORM = """
import sys
from pathlib import Path
import orjson
from neuro_api._atomic import write_atomic

directory = Path(sys.argv[1])
names = sys.argv[2:]
count = 0
print("ready", flush=True)
while True:
    count += 1
    for name in names:
        clients = [f"game {i} of {count}" for i in range(count % 500)]
        data = orjson.dumps({"clients": clients}, option=orjson.OPT_INDENT_2)
        write_atomic(directory / name, data)
"""


def test_a_write_replaces_the_content(tmp_path: Path) -> None:
    target = tmp_path / "active_clients.json"
    write_atomic(target, b'{"clients": []}')
    write_atomic(target, b'{"clients": ["Tic Tac Toe"]}')
    assert orjson.loads(target.read_bytes()) == {"clients": ["Tic Tac Toe"]}
    assert [p.name for p in tmp_path.iterdir()] == ["active_clients.json"]


def test_a_new_file_follows_the_umask_and_an_old_one_keeps_its_mode(
    tmp_path: Path,
) -> None:
    target = tmp_path / "new.json"
    old_mask = os.umask(0o027)
    try:
        write_atomic(target, b"{}")
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    target.chmod(0o600)
    write_atomic(target, b"[]")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_write_changes_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "blocked_clients.json"
    write_atomic(target, b'{"clients": ["a"]}')
    (tmp_path / "sub").mkdir()
    with pytest.raises(OSError, match="Is a directory"):
        write_atomic(tmp_path / "sub", b"x")  # cannot replace a directory
    assert target.read_bytes() == b'{"clients": ["a"]}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked_clients.json", "sub"]


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "pause_clients.json"
    (tmp_path / ".pause_clients.json.abc123.tmp").write_bytes(b'{"cli')
    (tmp_path / ".other.json.abc123.tmp").write_bytes(b"x")
    assert remove_stale_temporaries(target) == 1
    assert [p.name for p in tmp_path.iterdir()] == [".other.json.abc123.tmp"]


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.29, 0.41, 0.6])
def test_kill_9_during_a_storm_of_writes_leaves_every_file_whole(
    tmp_path: Path, delay: float
) -> None:
    for name in FILES:
        write_atomic(tmp_path / name, b'{"clients": []}')
    storm = subprocess.Popen(
        [sys.executable, "-c", STORM, str(tmp_path), *FILES],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert storm.stdout is not None
        assert storm.stdout.readline().strip() == "ready"
        time.sleep(delay)
        storm.send_signal(signal.SIGKILL)
        assert storm.wait(timeout=10) == -signal.SIGKILL
    finally:
        if storm.poll() is None:
            storm.kill()
        if storm.stdout is not None:
            storm.stdout.close()
    written = 0
    for name in FILES:
        content = orjson.loads((tmp_path / name).read_bytes())
        assert isinstance(content["clients"], list), name
        written += len(content["clients"])
    assert written, "the storm never wrote: the test proves nothing"
    # What the killed writer may have left is only temporaries, and they go.
    leftovers = [p for p in tmp_path.iterdir() if p.name not in FILES]
    assert all(p.name.endswith(".tmp") for p in leftovers), leftovers
    for name in FILES:
        remove_stale_temporaries(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
