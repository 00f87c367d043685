r"""Regular expressions from games: matched in bounded time, expanded within bounds.

A schema's ``pattern`` and ``patternProperties`` are regular expressions the
game wrote, and Python's ``re`` backtracks: ``^(a+)+$`` against ``"a" * 40 +
"!"`` runs for minutes and holds the event loop. So no game's regex is ever
run by ``re``:

* :func:`search` matches with jsonschema-rs (Rust's ``regex`` engine, linear
  in the text; ``fancy-regex`` only for backreferences and lookaround, with a
  backtracking limit). That is also the engine of the fast validator, so both
  validators agree on every pattern. A pattern it cannot compile (Python-only
  syntax such as ``\Z``) is matched by the ``regex`` package under a time
  limit instead; running out of time counts as no match.
* :func:`generation_cost` bounds what ``rstr.xeger`` would build from a
  pattern before it is asked to (``((a+)+)+`` would be a million
  characters; a class of every Unicode character is a million-item list per
  character drawn).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, Final

import jsonschema_rs
import regex

from neuro_api._cache import sized_cache

# The parser rstr.xeger expands (``sre_parse`` is deprecated under that name).
sre_parse: Any = importlib.import_module("re._parser")

__all__ = [
    "BACKTRACK_LIMIT",
    "FALLBACK_TIMEOUT",
    "PATTERN_OPTIONS",
    "SafeRe",
    "compiles",
    "generation_cost",
    "search",
]

LOGGER: Final = logging.getLogger("neuro_api.schema")

BACKTRACK_LIMIT: Final = 100_000
"""Backtracking steps ``fancy-regex`` may take for one match (about 3 ms);
beyond it the pattern counts as not matching."""
_SIZE_LIMIT: Final = 4 << 20
"""Bytes a compiled pattern may take (``a{1000}{1000}`` would take more)."""
FALLBACK_TIMEOUT: Final = 0.02
"""Seconds one match may take with the ``regex`` package (only for patterns
the Rust engines cannot compile)."""

PATTERN_OPTIONS: Final = jsonschema_rs.FancyRegexOptions(
    backtrack_limit=BACKTRACK_LIMIT,
    size_limit=_SIZE_LIMIT,
    dfa_size_limit=_SIZE_LIMIT,
)
"""What every jsonschema-rs validator of the package is built with."""

_XEGER_REPEAT: Final = 100
"""rstr.xeger repeats ``*`` and ``+`` (and any larger count) at most this often."""
_PRINTABLE: Final = 100
"""Size of the alphabets xeger draws ``.`` and negated classes from."""


@sized_cache(max_total=1 << 20, max_entry=4096)
def _matcher(pattern: bytes) -> Callable[[str], bool]:
    text = pattern.decode("utf-8", "surrogatepass")
    try:
        validator = jsonschema_rs.validator_for(
            {"pattern": text}, pattern_options=PATTERN_OPTIONS
        )
    except Exception:  # not a pattern Rust's engines know (\Z, a{,3} ...)
        return _fallback(text)
    return validator.is_valid


def _fallback(pattern: str) -> Callable[[str], bool]:
    try:
        compiled = regex.compile(pattern)
    except Exception:  # not a regex at all: it matches nothing
        LOGGER.debug("pattern %r cannot be compiled; it matches nothing", pattern)
        return lambda text: False

    def search(text: str) -> bool:
        try:
            return compiled.search(text, timeout=FALLBACK_TIMEOUT) is not None
        except TimeoutError:
            LOGGER.debug("pattern %r ran out of time; counted as no match", pattern)
            return False

    return search


def compiles(pattern: str) -> bool:
    """Whether some engine here understands ``pattern`` (Rust's or ``regex``)."""
    try:
        jsonschema_rs.validator_for(
            {"pattern": pattern}, pattern_options=PATTERN_OPTIONS
        )
    except Exception:
        try:
            regex.compile(pattern)
        except Exception:
            return False
    return True


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text``, in bounded time.

    JSON Schema patterns are unanchored searches, as here. Never raises for
    a bad pattern (it matches nothing).
    """
    return _matcher(pattern.encode("utf-8", "surrogatepass"))(text)


class SafeRe:
    """The part of the ``re`` module that jsonschema's keywords use.

    jsonschema calls ``re.search(pattern, instance)`` for ``pattern``,
    ``patternProperties`` and the keywords that look at which properties
    those matched; :mod:`neuro_api._validators` gives its reference validator
    copies of those keyword functions that call this instead.
    """

    @staticmethod
    def search(pattern: str, string: str, flags: int = 0) -> bool | None:
        """``True`` for a match, ``None`` for none (``flags`` must be 0)."""
        if flags:
            raise ValueError("flags are not supported")
        return True if search(pattern, string) else None


def generation_cost(pattern: str) -> int | None:
    """An upper bound of the work ``rstr.xeger`` does for ``pattern``.

    Counts the characters it could produce plus the size of every character
    class it expands per character drawn. ``None`` when the pattern cannot
    be parsed as a Python regex (xeger could not expand it either).
    """
    try:
        parsed = sre_parse.parse(pattern)
        return int(_cost(list(parsed), {}))
    except (Exception, RecursionError):
        return None


def _cost(items: list[Any], groups: dict[int, int]) -> int:
    total = 0
    for op, value in items:
        name = op.name
        if name in {"LITERAL", "NOT_LITERAL", "ANY"}:
            total += 1 if name == "LITERAL" else _PRINTABLE
        elif name == "IN":
            total += sum(_class_cost(o, v) for o, v in value)
        elif name in {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}:
            low, high, sub = value
            times = max(low, min(high, _XEGER_REPEAT))
            total += times * _cost(list(sub), groups)
        elif name == "SUBPATTERN":
            group, sub = value[0], value[-1]
            inner = _cost(list(sub), groups)
            if group is not None:
                groups[group] = inner
            total += inner
        elif name == "BRANCH":
            total += max((_cost(list(b), groups) for b in value[1]), default=0)
        elif name in {"ASSERT", "ATOMIC_GROUP"}:
            total += _cost(list(value[-1]), groups)
        elif name == "GROUPREF":
            total += groups.get(value, 0)
        elif name == "GROUPREF_EXISTS":
            total += max(_cost(list(b), groups) for b in value[1:] if b is not None)
        # AT, ASSERT_NOT and the rest produce nothing.
    return total


def _class_cost(op: Any, value: Any) -> int:
    name = op.name
    if name == "RANGE":
        low, high = value
        return max(0, int(high) - int(low) + 1)
    if name in {"CATEGORY", "NEGATE"}:
        return _PRINTABLE
    return 1
