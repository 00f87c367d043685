"""Keep secrets out of log output, whoever logs them.

Libraries we drive log what their subprocesses print (pyngrok logs every line
of the ngrok agent, which repeats its auth token in some errors), so
redacting our own messages is not enough: the formatter of the process's log
handler replaces every known secret in the finished line, tracebacks
included.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

__all__ = ["REDACTED", "RedactingFormatter"]

REDACTED: Final = "***"


class RedactingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` that replaces secrets with ``***``.

    Secrets can be added after the handler is set up (:meth:`add`), for
    values made later, such as a generated control-plane token. Secrets
    shorter than 4 characters are ignored: replacing them would mangle
    ordinary text and they protect nothing.
    """

    def __init__(
        self, fmt: str | None = None, secrets: Iterable[str | None] = ()
    ) -> None:
        super().__init__(fmt)
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Redact ``secret`` from now on (``None`` and short values ignored)."""
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            # Longest first, so a secret containing another is fully hidden.
            self._secrets.sort(key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as usual, then hide every secret in the text."""
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text
