"""Secrets out of log records: the formatter and the filter of ``_redact``."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from neuro_api._redact import RedactingFilter, RedactingFormatter, redact

SECRET = "s3cret-0123456789"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger with a filter hiding SECRET, and a plain handler's output."""
    logger = logging.getLogger("tests.redact")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    redactor = RedactingFilter([SECRET, None, "ab"])
    logger.addHandler(handler)
    logger.addFilter(redactor)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeFilter(redactor)
        logger.removeHandler(handler)
        logger.propagate = True


def test_redact_hides_the_longest_secret_first() -> None:
    assert redact(f"a {SECRET}-x b", ["s3cret", SECRET]) == "a ***-x b"
    assert redact("abc abc", ["abc", None]) == "abc abc"  # too short to hide


def test_the_filter_hides_messages_and_arguments(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    logger.warning("token %s in %r", SECRET, {"k": SECRET})
    logger.warning("nothing secret about %s", "ab")

    assert out.getvalue().splitlines() == [
        "WARNING token *** in {'k': '***'}",
        "WARNING nothing secret about ab",
    ]


def test_the_filter_hides_tracebacks_and_stacks(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    try:
        raise RuntimeError(f"agent said {SECRET}")
    except RuntimeError:
        logger.exception("failed")
    try:
        raise RuntimeError("nothing to hide")
    except RuntimeError:
        logger.error("plain", exc_info=sys.exc_info())
    logger.handle(
        logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "stack", (), None,
            sinfo=f"Stack (most recent call last):\n  agent {SECRET}",
        )
    )  # fmt: skip

    text = out.getvalue()
    assert "RuntimeError: agent said ***" in text
    assert "RuntimeError: nothing to hide" in text
    assert "  agent ***" in text
    assert SECRET not in text


def test_the_formatter_hides_secrets_added_later() -> None:
    formatter = RedactingFormatter("%(message)s", [SECRET])
    formatter.add("later-secret")
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "%s and %s", (SECRET, "later-secret"), None
    )
    assert formatter.format(record) == "*** and ***"
