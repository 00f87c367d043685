"""The seed's list files: read on change, malformed ones kept, written whole."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from neuro_api import _atomic
from neuro_api.status import _files
from neuro_api.status._files import (
    MAX_FILE_BYTES,
    ListFile,
    client_name_problem,
    encode_clients,
)


def state(file: ListFile) -> tuple[frozenset[str], str | None]:
    """The file's list and error, read afresh (not narrowed by an assert)."""
    return file.clients, file.error


def list_file(tmp_path: Path, name: str = "pause_clients.json") -> ListFile:
    file = ListFile(tmp_path / "Data" / "Server_Data" / name)
    file.ensure()
    return file


def test_a_missing_file_and_directory_are_created_empty(tmp_path: Path) -> None:
    file = list_file(tmp_path)
    assert orjson.loads(file.path.read_bytes()) == {"clients": []}
    assert file.path.read_bytes() == encode_clients(())
    assert file.read_if_changed() is False  # written by us: nothing new
    assert (file.clients, file.error) == (frozenset(), None)


def test_a_hand_edit_is_read_once(tmp_path: Path) -> None:
    file = list_file(tmp_path)
    file.path.write_text('{"clients": ["Tic Tac Toe", "Chess"]}')
    assert file.read_if_changed() is True
    assert file.clients == {"Tic Tac Toe", "Chess"}
    assert file.read_if_changed() is False  # a stat, no read


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b'{"clients": [', "not JSON"),
        (b'["Chess"]', 'expected {"clients": [...]}'),
        (b'{"clients": "Chess"}', 'expected {"clients": [...]}'),
        (b'{"clients": ["Chess", 7]}', "clients[1]: a client name must be a string"),
        (b'{"clients": [""]}', "clients[0]: a client name must not be empty"),
        (b'{"clients": ["a\\u0000b"]}', "control characters"),
        (b'{"clients": ["' + b"x" * 300 + b'"]}', "at most 256 characters"),
    ],
)
def test_a_malformed_file_keeps_the_last_good_list_and_is_not_overwritten(
    tmp_path: Path, content: bytes, error: str
) -> None:
    file = list_file(tmp_path)
    file.path.write_text('{"clients": ["Chess"]}')
    file.read_if_changed()
    file.path.write_bytes(content)
    assert file.read_if_changed() is True
    assert file.error is not None
    assert error in file.error
    assert file.clients == {"Chess"}  # still enforced
    assert file.write(["Go"]) is False  # never overwritten
    assert file.update(add=["Go"]) is False
    assert file.path.read_bytes() == content
    file.path.write_text('{"clients": ["Go"]}')  # fixed by hand
    assert file.read_if_changed() is True
    assert state(file) == (frozenset({"Go"}), None)


def test_a_file_too_large_is_not_read(tmp_path: Path) -> None:
    file = list_file(tmp_path)
    with file.path.open("wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)
    assert file.read_if_changed() is True
    assert file.error == f"the file is over {MAX_FILE_BYTES} bytes"


def test_writes_happen_only_when_the_content_changes(tmp_path: Path) -> None:
    file = list_file(tmp_path, "active_clients.json")
    assert file.write(["B", "A"]) is True
    assert file.path.read_bytes() == encode_clients(["A", "B"])
    inode = file.path.stat().st_ino
    assert file.write(["A", "B"]) is False
    assert file.path.stat().st_ino == inode  # not replaced


def test_an_update_keeps_a_hand_edit_made_since(tmp_path: Path) -> None:
    file = list_file(tmp_path, "blocked_clients.json")
    assert file.update(add=["From API"]) is True
    file.path.write_text('{"clients": ["From API", "By Hand"]}')  # not read yet
    assert file.update(add=["Also API"], remove=["From API"]) is True
    assert orjson.loads(file.path.read_bytes()) == {"clients": ["Also API", "By Hand"]}


def test_a_deleted_file_is_an_error_until_created_again(tmp_path: Path) -> None:
    file = list_file(tmp_path)
    file.update(add=["Chess"])
    file.path.unlink()
    assert file.read_if_changed() is True
    assert file.error == "the file is missing"
    assert file.clients == {"Chess"}
    assert file.write(["Chess"]) is True  # a missing file may be written
    assert state(file) == (frozenset({"Chess"}), None)


def test_client_names() -> None:
    assert client_name_problem("Tic Tac Toe") is None
    assert client_name_problem("é" * 256) is None
    assert client_name_problem("x\n") is not None
    assert client_name_problem(None) is not None


def test_a_hand_edit_right_after_a_write_is_not_taken_for_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file was looked at (stat) after the write, to know it as ours: a
    # hand edit in between (the rename and the directory's fsync are
    # milliseconds) was taken for ours, never read, and overwritten later.
    file = list_file(tmp_path)
    write_atomic = _atomic.write_atomic

    def write_then_edit(path: Path, data: bytes) -> os.stat_result:
        written = write_atomic(path, data)
        path.write_text('{"clients": ["By Hand"]}')  # an editor, at that moment
        return written

    monkeypatch.setattr(_files, "write_atomic", write_then_edit)
    assert file.update(add=["From API"]) is True
    monkeypatch.undo()
    assert file.read_if_changed() is True
    assert file.clients == {"By Hand"}
    assert file.update(add=["Later"]) is True
    assert orjson.loads(file.path.read_bytes()) == {"clients": ["By Hand", "Later"]}
