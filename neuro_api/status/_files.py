"""The seed's list files: ``{"clients": [...]}``, read on change, written whole.

Each file is a :class:`ListFile`. Reading is cheap when nothing changed (a
``stat`` only); a file that cannot be used (not JSON, the wrong shape, a
name that is not a client name, too large) is reported through
:attr:`ListFile.error` and never overwritten: the last good list stays in
force until the file is fixed. Writes go through
:func:`~neuro_api._atomic.write_atomic` and happen only when the content
changes. Everything here blocks: call it from a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import orjson

from neuro_api._atomic import remove_stale_temporaries, write_atomic
from neuro_api._text import printable

__all__ = [
    "INPUT_FILES",
    "MAX_FILE_BYTES",
    "MAX_LISTED",
    "MAX_NAME_LENGTH",
    "OUTPUT_FILES",
    "ListFile",
    "client_name_problem",
    "encode_clients",
    "os_reason",
]

INPUT_FILES: Final = {
    "paused": "pause_clients.json",
    "blocked": "blocked_clients.json",
}
"""Edited by hand or through the API (the seed's names)."""
OUTPUT_FILES: Final = {
    "active": "active_clients.json",
    "deactivated": "deactivate_clients.json",
    "connection_error": "Network_Action.json",
}
"""Written by the server only (the seed's names)."""
MAX_FILE_BYTES: Final = 16 << 20
"""A list file larger than this is refused (not read)."""
MAX_NAME_LENGTH: Final = 256
"""Characters of one client name (a game title)."""
MAX_LISTED: Final = 10_000
"""Clients one paused or blocked list may hold (each change rewrites it)."""

_MISSING: Final = "the file is missing"
_Stamp = tuple[int, int, int]
"""What ``stat`` says of a file: inode, size, modification time (ns)."""


def client_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a client name, or None.

    A name is a string of 1 to 256 characters without control characters;
    it is not looked up (a title may be listed before it ever connects).
    """
    if not isinstance(name, str):
        return f"a client name must be a string, not {type(name).__name__}"
    if not name:
        return "a client name must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"a client name is at most {MAX_NAME_LENGTH} characters"
    if not name.isprintable():
        return f"client name {printable(name)!r} has control characters"
    return None


def os_reason(exc: OSError) -> str:
    """What went wrong, without the file name (a temporary's is new each time)."""
    return exc.strerror or str(exc)


def encode_clients(clients: Iterable[str]) -> bytes:
    """A list file's content: sorted, indented like the seed's files."""
    return orjson.dumps({"clients": sorted(set(clients))}, option=orjson.OPT_INDENT_2)


def _parse(data: bytes, max_clients: int | None = None) -> frozenset[str]:
    """The clients of a list file; ValueError saying what is wrong."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("clients"), list):
        raise ValueError('expected {"clients": [...]}')
    clients = document["clients"]
    if max_clients is not None and len(clients) > max_clients:
        raise ValueError(
            f"{len(clients)} clients listed: at most {max_clients} clients"
        )
    for index, name in enumerate(clients):
        problem = client_name_problem(name)
        if problem is not None:
            raise ValueError(f"clients[{index}]: {problem}")
    return frozenset(clients)


class ListFile:
    """One list file: its last good content, and what is wrong with it now.

    ``max_clients``: more names than this make the file unusable (the
    input files: a list is taken and applied in the event loop).
    """

    def __init__(self, path: Path, *, max_clients: int | None = None) -> None:
        self.path = path
        self.max_clients = max_clients
        self.clients: frozenset[str] = frozenset()
        """The last good list (empty until one was read or written)."""
        self.error: str | None = None
        """Why the file cannot be used now (None: it is fine)."""
        self._stamp: _Stamp | None = None

    @property
    def missing(self) -> bool:
        """Whether the file was missing when last looked at."""
        return self.error == _MISSING

    def ensure(self) -> None:
        """Create the directory and the file (``{"clients": []}``) if missing.

        Also removes temporary files a crash left beside it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        if not self.path.exists():
            self._write(encode_clients(()))
            self.clients, self.error = frozenset(), None

    def _stat(self) -> _Stamp | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def read_if_changed(self) -> bool:
        """Read the file if it changed since it was last read or written.

        Returns whether :attr:`clients` or :attr:`error` changed. A missing
        file counts as an error (it is created again by :meth:`ensure`).
        """
        before = (self.clients, self.error)
        try:
            stamp = self._stat()
        except OSError as exc:  # not a directory, no permission ...
            self._stamp = None
            self.error = f"cannot look at it: {os_reason(exc)}"
            return (self.clients, self.error) != before
        if stamp is not None and stamp == self._stamp:
            return False
        self._stamp = stamp
        if stamp is None:
            self.error = _MISSING
        elif stamp[1] > MAX_FILE_BYTES:
            self.error = f"the file is over {MAX_FILE_BYTES} bytes"
        else:
            try:
                self.clients = _parse(self.path.read_bytes(), self.max_clients)
                self.error = None
            except (OSError, ValueError) as exc:
                self.error = str(exc)
        return (self.clients, self.error) != before

    def write(self, clients: Iterable[str]) -> bool:
        """Make the file list ``clients``; False if nothing was written.

        Nothing is written when the content would not change, or when the
        file is unusable now (a hand edit to fix, not to overwrite). Raises
        :class:`OSError` when it cannot be written (the file is unchanged).
        """
        wanted = frozenset(clients)
        self.read_if_changed()
        if self.error is not None and self._stat() is not None:
            return False
        if wanted == self.clients and self.error is None:
            return False
        self._write(encode_clients(wanted))
        self.clients, self.error = wanted, None
        return True

    def update(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> bool:
        """Add and remove clients, merged with what the file says right now.

        The file is read again first, so a hand edit made since is kept.
        Returns False (nothing written) when the file is unusable, or when
        it already says so; raises :class:`OSError` as :meth:`write` does.
        """
        self.read_if_changed()
        if self.error is not None and self._stat() is not None:
            return False
        return self.write((self.clients | frozenset(add)) - frozenset(remove))

    def _write(self, data: bytes) -> None:
        # Made again if it was deleted while the server runs.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        written = write_atomic(self.path, data)
        # What we wrote, not what is there now: a hand edit made since is
        # read at the next look.
        self._stamp = (written.st_ino, written.st_size, written.st_mtime_ns)
