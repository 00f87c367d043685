"""Keep secrets out of log output, whoever logs them.

Libraries we drive log what their subprocesses print (pyngrok logs every line
of the ngrok agent, which repeats its auth token in some errors), so
redacting our own messages is not enough. Two layers: the formatter of the
command line's log handler replaces every known secret in the finished
line, tracebacks included; and a :class:`RedactingFilter`, installed on a
library's own loggers by the code that hands it a secret, hides that secret
from every handler, whoever configured logging.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from neuro_api._text import printable

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "RedactingFormatter",
    "redact",
    "redact_data",
]

REDACTED: Final = "***"
_MIN_LENGTH: Final = 4


def _add(secrets: list[str], secret: str | None) -> None:
    if secret and len(secret) >= _MIN_LENGTH and secret not in secrets:
        secrets.append(secret)
        # Longest first, so a secret containing another is fully hidden.
        secrets.sort(key=len, reverse=True)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Return ``text`` with every secret (of 4 characters or more) as ``***``."""
    ordered: list[str] = []
    for secret in secrets:
        _add(ordered, secret)
    for secret in ordered:
        text = text.replace(secret, REDACTED)
    return text


class RedactingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` that replaces secrets with ``***``.

    Secrets can be added after the handler is set up (:meth:`add`), for
    values made later, such as a generated control-plane token. Secrets
    shorter than 4 characters are ignored: replacing them would mangle
    ordinary text and they protect nothing.

    It also escapes control characters in a record's string arguments (see
    :func:`neuro_api._text.printable`): those are where values from games
    and clients go, and a newline or a terminal escape in one would forge
    or hide log lines. The message templates keep theirs.
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
        _add(self._secrets, secret)

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as usual, then hide every secret in the text."""
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, str) for a in args):
            record = logging.makeLogRecord(record.__dict__)
            record.args = tuple(printable(a) if isinstance(a, str) else a for a in args)
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class RedactingFilter(logging.Filter):
    """A :class:`logging.Filter` that rewrites records to hide secrets.

    Install it on the loggers that may see a secret (a filter on a logger
    applies to the records made on that logger, not to those propagated from
    its children): the message (with its arguments merged), a formatted
    traceback and the stack text are redacted in place, before any handler
    sees the record. It never drops a record.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        for secret in secrets:
            _add(self._secrets, secret)

    def _hide(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always keep it."""
        message = record.getMessage()
        hidden = self._hide(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: a traceback holding a
            # secret is formatted here, redacted, and reused by every handler.
            trace = logging.Formatter().formatException(record.exc_info)
            if (hidden := self._hide(trace)) != trace:
                record.exc_text = hidden
        elif record.exc_text:
            record.exc_text = self._hide(record.exc_text)
        if record.stack_info:
            record.stack_info = self._hide(record.stack_info)
        return True


def redact_data(data: Any, secrets: Iterable[str | None]) -> Any:
    """``data`` (JSON-ready: dicts, lists, strings...) with every secret hidden.

    Strings are redacted as by :func:`redact`, at any depth; the rest is
    returned as is. For reports that may quote an error message.
    """
    known = [secret for secret in secrets if secret]
    if not known:
        return data
    if isinstance(data, str):
        return redact(data, known)
    if isinstance(data, dict):
        return {key: redact_data(value, known) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(value, known) for value in data]
    return data
