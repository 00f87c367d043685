"""Files written whole or not at all: after a crash, the old content or the new.

:func:`write_atomic` writes a temporary file in the same directory, flushes
it to disk, renames it over the target (atomic on POSIX) and flushes the
directory, so that a crash, a ``kill -9`` or a power cut at any moment
leaves either the previous file or the new one, never a mix or an empty
file. It blocks: call it from a worker thread in Trio code.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Final

__all__ = ["TEMP_SUFFIX", "remove_stale_temporaries", "write_atomic"]

TEMP_SUFFIX: Final = ".tmp"
"""Temporary files are ``.<name>.<random>.tmp`` beside their target."""
_DEFAULT_MODE: Final = 0o666


def _umask() -> int:
    # os.umask can only be read by setting it; put it back at once.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> os.stat_result:
    """Replace ``path``'s content with ``data``, atomically and durably.

    A new file gets the usual mode (``0o666`` less the umask); an existing
    one keeps its own. Returns what ``stat`` says of the file written, as
    it was written: ``path`` may be changed again by someone else at once.
    Raises :class:`OSError` (nothing changed, no temporary file left) when
    the directory cannot be written.
    """
    directory = path.parent
    fd, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{path.name}.", suffix=TEMP_SUFFIX
    )
    try:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = _DEFAULT_MODE & ~_umask()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            fd = -1  # the file object closes it
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
            written = os.fstat(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)
    return written


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (the directory entry)."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(path: Path) -> int:
    """Remove what a crash in :func:`write_atomic` left beside ``path``.

    Returns how many temporary files were removed. Call it at start, before
    anything writes ``path``.
    """
    removed = 0
    for leftover in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed
