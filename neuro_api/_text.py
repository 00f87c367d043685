"""Text a game supplied, made safe for a log line or a terminal.

A game title, a context message, an action name: all chosen by whoever
connects. Written raw, a newline forges a log line, ANSI escapes recolour or
clear the operator's terminal, a bidi override reorders what is shown, and a
lone surrogate (valid in a JSON string, not in UTF-8) makes printing fail.
:func:`printable` escapes all of those, so one value stays one visible run of
text. JSON output (the HTTP API, the event stream) needs none of this: JSON
escapes control characters itself.
"""

from __future__ import annotations

from typing import Final

__all__ = ["printable"]


def _escape(code: int) -> str:
    names = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
    if code in names:
        return names[code]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_UNSAFE: Final = (
    *range(0x20),  # C0 controls: newline, ESC ...
    0x7F,
    *range(0x80, 0xA0),  # C1 controls (0x9b is a one-byte CSI)
    0x061C,  # arabic letter mark
    0x200E,
    0x200F,  # left-to-right / right-to-left marks
    *range(0x202A, 0x202F),  # bidi embeddings and overrides
    *range(0x2066, 0x206A),  # bidi isolates
    0x2028,
    0x2029,  # line and paragraph separators
    *range(0xD800, 0xE000),  # lone surrogates
)
_TABLE: Final = {code: _escape(code) for code in _UNSAFE}


def printable(text: str) -> str:
    r"""``text`` with control, bidi and surrogate characters escaped (``\x1b``).

    Backslashes are left alone: the result is for reading, not for parsing
    back.
    """
    return text.translate(_TABLE)
