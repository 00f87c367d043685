"""Whole numbers read from text someone else wrote (a query, a pointer, input).

``str.isdigit`` is true for ``"²"`` and other Unicode digits that ``int()``
refuses, and ``int()`` refuses more than 4,300 digits (Python's guard
against quadratic conversions): a check with ``isdigit`` followed by
``int()`` raises on such text instead of saying no. :func:`whole_number`
says no.
"""

from __future__ import annotations

__all__ = ["whole_number"]


def whole_number(text: str, *, at_most: int) -> int | None:
    """``text`` as a whole number from 0 to ``at_most``, else None.

    ASCII digits only (no sign, no spaces, no ``_``), and no more of them
    than ``at_most`` has, so the conversion is cheap whatever ``text`` is.
    """
    if not text.isascii() or not text.isdigit() or len(text) > len(str(at_most)):
        return None
    value = int(text)
    return value if value <= at_most else None
