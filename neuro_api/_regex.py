r"""Regular expressions from games: matched in bounded time, expanded within bounds.

A schema's ``pattern`` and ``patternProperties`` are regular expressions the
game wrote, and Python's ``re`` backtracks: ``^(a+)+$`` against ``"a" * 40 +
"!"`` runs for minutes and holds the event loop. So no game's regex is ever
run by ``re``:

* :func:`search` matches with jsonschema-rs's linear-time engine (Rust's
  ``regex``: no backtracking, time proportional to the text), the engine of
  the fast validator too, so both validators agree on every pattern.
* A pattern that engine does not take (backreferences and lookaround, which
  need backtracking, or Python-only syntax such as ``\Z``) is matched by the
  ``regex`` package instead: at most 20 ms per match, with the interpreter
  released meanwhile (jsonschema-rs holds it while it works, so only linear
  work is left to it). Running out of time counts as no match. Such a
  pattern is compiled only if its program stays small (``(a{1000}){1001}``
  would take 0.4 s and hundreds of MiB to compile).
* :func:`generation_cost` bounds what ``rstr.xeger`` would build from a
  pattern before it is asked to (``((a+)+)+`` would be a million
  characters; a class of every Unicode character is a million-item list per
  character drawn).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import jsonschema_rs
import regex

from neuro_api import _steps
from neuro_api._cache import sized_cache

# The parser rstr.xeger expands (``sre_parse`` is deprecated under that name).
sre_parse: Any = importlib.import_module("re._parser")

__all__ = [
    "FALLBACK_PROGRAM",
    "FALLBACK_TIMEOUT",
    "MAX_PATTERN",
    "PATTERN_OPTIONS",
    "SafeRe",
    "compiles",
    "generation_cost",
    "linear",
    "pattern_problem",
    "search",
]

LOGGER: Final = logging.getLogger("neuro_api.schema")

_SIZE_LIMIT: Final = 1 << 20
"""Bytes a compiled pattern may take in Rust's engine."""
FALLBACK_TIMEOUT: Final = 0.02
"""Seconds one match may take with the ``regex`` package."""
MAX_PATTERN: Final = 16 << 10
"""Longest pattern taken, in bytes of UTF-8 (real ones are far shorter): a
longer one is refused, so every pattern in use fits the matcher cache and is
compiled once."""
FALLBACK_PROGRAM: Final = 10_000
"""Largest program (items, repeats expanded) the ``regex`` package compiles."""

PATTERN_OPTIONS: Final = jsonschema_rs.RegexOptions(
    size_limit=_SIZE_LIMIT, dfa_size_limit=_SIZE_LIMIT
)
"""What every jsonschema-rs validator of the package is built with: the
linear-time engine only."""

_XEGER_REPEAT: Final = 100
"""rstr.xeger repeats ``*`` and ``+`` (and any larger count) at most this often."""
_PRINTABLE: Final = 100
"""Size of the alphabets xeger draws ``.`` and negated classes from."""


def _rust(pattern: str) -> Callable[[str], bool] | None:
    try:
        validator = jsonschema_rs.validator_for(
            {"pattern": pattern}, pattern_options=PATTERN_OPTIONS
        )
    except Exception:  # backtracking features, Python-only syntax, too large
        return None
    return validator.is_valid


def _fallback_compiled(pattern: str) -> Any:
    """The ``regex`` package's compiled pattern, or ``None`` if not a fit."""
    size = program_size(pattern)
    if size is None or size > FALLBACK_PROGRAM:
        return None
    try:
        return regex.compile(pattern, cache_pattern=False)
    except Exception:  # not a regex at all
        return None


@sized_cache(max_total=1 << 20, max_entry=MAX_PATTERN, max_entries=256)
def _matcher(pattern: bytes) -> Callable[[str], bool]:
    text = pattern.decode("utf-8", "surrogatepass")
    rust = _rust(text)
    if rust is not None:
        return rust
    compiled = _fallback_compiled(text)
    if compiled is None:
        LOGGER.debug("pattern %r cannot be used; it matches nothing", text[:100])
        return lambda _: False

    def search(value: str) -> bool:
        budget = _steps.current()
        timeout = FALLBACK_TIMEOUT
        if budget is not None:
            timeout = min(timeout, max(budget.regex_seconds, 0.001))
        started = time.monotonic()
        try:
            found = compiled.search(value, timeout=timeout, concurrent=True)
        except TimeoutError:
            LOGGER.debug("pattern %r ran out of time; no match", text[:100])
            found = None
        if budget is not None:
            # A question matching many strings spends its budget once.
            budget.spent_on_regex(time.monotonic() - started)
        return found is not None

    return search


def linear(pattern: str) -> bool:
    """Whether Rust's linear-time engine takes ``pattern`` (no fallback)."""
    return _matcher_is_rust(pattern.encode("utf-8", "surrogatepass"))


@sized_cache(max_total=1 << 20, max_entry=MAX_PATTERN, max_entries=1024)
def _matcher_is_rust(pattern: bytes) -> bool:
    return _rust(pattern.decode("utf-8", "surrogatepass")) is not None


def pattern_problem(pattern: str) -> str | None:
    """Why no engine here takes ``pattern`` (``None``: one does)."""
    length = len(pattern.encode("utf-8", "surrogatepass"))
    if length > MAX_PATTERN:
        return f"is too long ({length:,} bytes; at most {MAX_PATTERN:,})"
    if _rust(pattern) is not None:
        return None
    size = program_size(pattern)
    if size is not None and size > FALLBACK_PROGRAM:
        return (
            f"is too large to use (about {size} parts once its repeats are "
            f"expanded; at most {FALLBACK_PROGRAM})"
        )
    if _fallback_compiled(pattern) is None:
        return "is not a regex"
    return None


def compiles(pattern: str) -> bool:
    """Whether some engine here takes ``pattern`` (Rust's, or ``regex`` if small)."""
    return pattern_problem(pattern) is None


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


def program_size(pattern: str) -> int | None:
    """An estimate of the size of ``pattern``'s compiled program.

    Items, with every counted repeat expanded (``a{1000}`` is 1,000; an
    unbounded one counts its body once). ``None`` when Python's parser does
    not take it.
    """
    try:
        parsed = sre_parse.parse(pattern)
        return int(_size(list(parsed)))
    except (Exception, RecursionError):
        return None


def _size(items: list[Any]) -> int:
    total = 0
    for op, value in items:
        name = op.name
        if name in {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}:
            low, high, sub = value
            times = max(low, 1) if high == sre_parse.MAXREPEAT else max(high, 1)
            total += times * _size(list(sub))
        elif name in {"SUBPATTERN", "ASSERT", "ASSERT_NOT", "ATOMIC_GROUP"}:
            total += 1 + _size(list(value[-1]))
        elif name == "BRANCH":
            total += 1 + sum(_size(list(b)) for b in value[1])
        elif name == "GROUPREF_EXISTS":
            total += 1 + sum(_size(list(b)) for b in value[1:] if b is not None)
        else:
            total += 1
        if total > 1 << 40:  # enough to refuse; keep the numbers small
            break
    return total


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
