"""Find the real ngrok executable, never pyngrok's download script.

pip installs pyngrok's console script ``ngrok`` next to the virtualenv's
Python, so inside an activated virtualenv ``ngrok`` on ``PATH`` is that
script, not the agent. Run with pyngrok's arguments it downloads ngrok from
the internet (and fails with two long tracebacks offline), so it is
recognised and passed over, and the search goes on.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import shutil
from pathlib import Path
from typing import Final

from pyngrok import conf

__all__ = ["NGROK_DOWNLOAD_URL", "find_ngrok", "is_pyngrok_script"]

NGROK_DOWNLOAD_URL: Final = "https://ngrok.com/download"
_FIX: Final = (
    f"install ngrok from {NGROK_DOWNLOAD_URL} or set NEURO_API_NGROK_PATH / "
    "--ngrok-path (it is never downloaded automatically)"
)
_SNIFF_BYTES: Final = 8192
# Console-script templates (pip, uv, setuptools) import the entry point's
# module on a line of its own: "from pyngrok.ngrok import main".
_IMPORTS_PYNGROK: Final = re.compile(rb"^[ \t]*(?:from|import)[ \t]+pyngrok\b", re.M)


@functools.cache
def _installed_scripts() -> frozenset[Path]:
    """The files the installed pyngrok distribution put in a ``bin/`` directory.

    Its RECORD lists its console scripts, so this also recognises the
    Windows ``ngrok.exe`` launcher, which is no text file.
    """
    try:
        files = importlib.metadata.distribution("pyngrok").files or []
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return frozenset()
    return frozenset(
        Path(file.locate()).resolve()
        for file in files
        if file.stem == "ngrok" and file.suffix in ("", ".exe")
    )


def is_pyngrok_script(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is pyngrok's ``ngrok`` console script, not the agent.

    True for a file the installed pyngrok distribution installed as its
    ``ngrok`` script, and for any script (``#!``) that imports pyngrok (the
    script of another virtualenv). The real agent is a native executable.
    """
    try:
        if Path(path).resolve() in _installed_scripts():
            return True
        with open(path, "rb") as file:
            head = file.read(_SNIFF_BYTES)
    except OSError:
        return False
    return head.startswith(b"#!") and _IMPORTS_PYNGROK.search(head) is not None


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_ngrok(
    ngrok_path: str | os.PathLike[str] | None = None,
) -> tuple[str | None, str | None]:
    """Locate the ngrok agent; return ``(path, None)`` or ``(None, problem)``.

    An explicit ``ngrok_path`` must be an executable that is not pyngrok's
    script. Otherwise every ``ngrok`` on ``PATH`` is tried in order, skipping
    pyngrok's scripts, then pyngrok's default install location. The problem
    is one line saying what is missing and how to fix it. Nothing is run.
    """
    if ngrok_path is not None:
        path = os.fspath(ngrok_path)
        if is_pyngrok_script(path):
            return None, f"{path} is pyngrok's ngrok download script, not ngrok: {_FIX}"
        if not _executable(path):
            return None, f"ngrok executable not found at {path}: {_FIX}"
        return path, None
    skipped: list[str] = []
    candidates = [
        found
        for directory in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if directory and (found := shutil.which("ngrok", path=directory))
    ]
    candidates.append(conf.DEFAULT_NGROK_PATH)
    for candidate in candidates:
        if not _executable(candidate) or candidate in skipped:
            continue
        if is_pyngrok_script(candidate):
            skipped.append(candidate)
            continue
        return candidate, None
    problem = f"ngrok executable not found on PATH or at {conf.DEFAULT_NGROK_PATH}"
    if skipped:
        problem += f" (skipped pyngrok's download script {', '.join(skipped)})"
    return None, f"{problem}: {_FIX}"
