"""Random data that validates against an action's schema.

Written for what action schemas use (types, enum/const, properties/required,
items, lengths, bounds, simple formats, ``pattern`` via ``rstr``, local
``$ref``, the combinators); microseconds per value, which keeps the random
engine's round trips cheap. Keywords it does not steer by (``not``,
``if``/``then``, ``dependentRequired`` ...) are honoured by checking: every
value of such a schema is validated against the whole schema and regenerated
if it fails. A schema made only of keywords the plan meets by construction is
*exact* (see ``_exact``): its values are valid as drawn and not checked again.

Each schema is *planned* once: everything that depends on the schema alone
(bounds, property lists, sub-plans, its validator) is worked out and cached,
and what is left per value is a few calls of the random generator. The plan
makes exactly the draws, in the same order, that walking the schema would,
so a seeded generator gives the same values either way.

Generation is bounded, since a game writes the schema: every value drawn is
charged against a budget of JSON bytes (``max_size``, 64 KiB by default) before
it is built, so ``{"minLength": 10000000}`` or nested ``minItems`` fail at
once instead of building megabytes, and an optional time limit is checked as
it goes. Patterns are expanded only when :func:`neuro_api._regex.generation_cost`
says the expansion is small. Numbers stay finite, and integers within 64 bits
when the schema allows it.

(hypothesis-jsonschema 0.23 was the obvious library for this, but it crashes
on object schemas with current hypothesis releases.)
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Final

import orjson
import rstr

from neuro_api._cache import sized_cache
from neuro_api._gil import share
from neuro_api._keywords import find_patterns
from neuro_api._regex import generation_cost, linear
from neuro_api._sizes import least_size
from neuro_api._steps import reference_steps
from neuro_api._validators import canonical, validity_check

__all__ = [
    "DEFAULT_MAX_SIZE",
    "NOT_QUICK",
    "GenerationError",
    "GenerationLimitError",
    "encode_data",
    "generate_data",
    "try_quickly",
]

DEFAULT_MAX_SIZE: Final = 64 << 10
"""Default budget of one generated value, in bytes of JSON."""

_WORDS: Final = (
    "apple", "banana", "castle", "dragon", "ember", "forest", "glade",
    "harbor", "island", "jungle", "knight", "lantern", "meadow", "nebula",
    "ocean", "pebble", "quartz", "river", "summit", "thunder",
)  # fmt: skip
_FORMATS: Final = {
    "date-time": lambda rng: (
        f"2026-{rng.randint(1, 12):02d}-"
        f"{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
    ),
    "date": lambda rng: f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    "time": lambda rng: f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
    "email": lambda rng: f"{rng.choice(_WORDS)}@example.com",
    "uri": lambda rng: f"https://example.com/{rng.choice(_WORDS)}",
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "ipv4": lambda rng: ".".join(str(rng.randint(1, 254)) for _ in range(4)),
}
_SIMPLE_TYPES: Final = ("string", "integer", "number", "boolean")
_MAX_DEPTH: Final = 8
_PATTERN_DRAWS: Final = 50
_PATTERN_WORK: Final = 20_000
"""Most work (characters and class expansions) one pattern draw may take."""
_INT64: Final = (-(1 << 63), (1 << 63) - 1)
_NUMBER_SIZE: Final = 8
"""Bytes charged for a number (most are shorter; the budget is a bound)."""


class GenerationError(ValueError):
    """No value satisfying the schema could be found."""


class GenerationLimitError(GenerationError):
    """Valid data would take more than the size or time allowed."""


class _Unsupported(Exception):
    """The generator cannot handle this schema (this draw, at least)."""


class _OverBudget(Exception):
    """A draw went over the size budget (another may not)."""


class _OutOfTime(Exception):
    """The time limit passed: no more draws."""


class _Context:
    __slots__ = ("deadline", "left", "rng", "root", "ticks")

    def __init__(
        self,
        rng: random.Random,
        root: Mapping[str, Any],
        left: int = DEFAULT_MAX_SIZE,
        deadline: float = math.inf,
    ) -> None:
        self.rng = rng
        self.root = root
        self.left = left
        """Bytes of JSON this draw may still produce."""
        self.deadline = deadline
        """``time.monotonic()`` past which drawing stops."""
        self.ticks = 1
        """Charges until the clock is looked at again (the first one does)."""


_PLAN_NODES: ContextVar[list[int]] = ContextVar("neuro_api_plan_nodes")
"""Schema objects planned so far by the current plan or draw."""
MAX_PLAN_NODES: Final = 2_000
"""Most schema objects one plan (and one draw) may plan: ``anyOf`` branches
are planned with the rest of their schema, so nested ones multiply."""


def _count_plan_node() -> None:
    counter = _PLAN_NODES.get(None)
    if counter is None:
        return
    counter[0] += 1
    if counter[0] > MAX_PLAN_NODES:
        raise GenerationError(
            f"the schema is too large to plan (over {MAX_PLAN_NODES} parts)"
        )


def _charge(ctx: _Context, size: int) -> None:
    """Spend ``size`` bytes of the budget; raise when it or the time ran out.

    Called before a value is built wherever its size is known in advance
    (strings, arrays, objects), so an oversized value is never built.
    """
    ctx.left -= size
    if ctx.left < 0:
        raise _OverBudget
    # The clock every few charges: between two looks at most that many
    # values are built, each within the byte budget.
    ctx.ticks -= 1
    if ctx.ticks <= 0:
        ctx.ticks = _CHARGES_PER_LOOK
        share()
        if time.monotonic() > ctx.deadline:
            raise _OutOfTime


_CHARGES_PER_LOOK: Final = 16


_Draw = Callable[[_Context], Any]
"""A planned (sub)schema: draws one value from ``ctx.rng``."""

# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------
#
# ``_plan_*`` functions do the schema-only work and return a draw function.
# Whatever they raise (an empty range, too deep, an odd keyword value) is
# raised *before* the schema's first draw, where walking the schema would
# raise it too; so ``_compile`` turns a failed plan into a draw that plans
# again, and raises, when it is reached. Draw functions consume the random
# generator exactly as the schema walk did: keep it that way, the tests pin
# seeded values.


def _compile(schema: Any, depth: int) -> _Draw:
    """Plan ``schema`` (at nesting ``depth``); never raises."""
    try:
        return _plan(schema, depth)
    except Exception:
        return functools.partial(_plan_when_drawn, schema, depth)


def _plan_when_drawn(schema: Any, depth: int, ctx: _Context) -> Any:
    return _plan(schema, depth)(ctx)


def _compile_merged(base: Mapping[str, Any], extra: Any, depth: int) -> _Draw:
    """Plan ``_merge(base, extra)``; a merge that fails raises when drawn."""
    try:
        merged = _merge(base, extra)
    except Exception:
        return functools.partial(_merge_when_drawn, base, extra, depth)
    return _compile(merged, depth)


def _merge_when_drawn(
    base: Mapping[str, Any], extra: Any, depth: int, ctx: _Context
) -> Any:
    return _plan(_merge(base, extra), depth)(ctx)


def _plan(schema: Any, depth: int) -> _Draw:
    _count_plan_node()
    if schema is True:
        schema = {}
    if schema is False or depth > _MAX_DEPTH:
        raise _Unsupported("false schema or too deep")
    ref = schema.get("$ref")
    if isinstance(ref, str):
        # Resolved when drawn: references may recurse, and the depth limit
        # is what ends a recursive draw.
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return functools.partial(_draw_ref, ref, rest, depth)
    if "const" in schema:
        return functools.partial(_draw_const, schema["const"])
    if "enum" in schema:
        choices = schema["enum"]
        if not choices:
            raise GenerationError("empty enum")
        if any(isinstance(choice, dict | list) for choice in choices):
            return functools.partial(_draw_enum, choices)
        return functools.partial(_draw_choice, choices)  # nothing to copy
    for combinator in ("allOf", "anyOf", "oneOf"):
        branches = schema.get(combinator)
        if isinstance(branches, list) and branches:
            rest = {k: v for k, v in schema.items() if k != combinator}
            if combinator == "allOf":
                for branch in branches:
                    rest = _merge(rest, branch)
                return _compile(rest, depth + 1)
            options = [_compile_merged(rest, b, depth + 1) for b in branches]
            return functools.partial(_draw_option, options)
    kinds = _kinds(schema)
    if isinstance(kinds, str):
        return _plan_kind(kinds, schema, depth)
    plans = {str(kind): _compile_kind(str(kind), schema, depth) for kind in kinds}
    return functools.partial(_draw_kind, kinds, plans)


def _kinds(schema: Mapping[str, Any]) -> str | list[Any] | tuple[str, ...]:
    """The schema's type, or the types one is drawn from."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared
    if isinstance(declared, list) and declared:
        # Prefer a concrete value over null when there is a choice.
        return [t for t in declared if t != "null"] or declared
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if {"minLength", "maxLength", "pattern", "format"} & schema.keys():
        return "string"
    if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & schema.keys():
        return "number"
    return _SIMPLE_TYPES


def _compile_kind(kind: str, schema: Mapping[str, Any], depth: int) -> _Draw:
    try:
        return _plan_kind(kind, schema, depth)
    except Exception:
        return functools.partial(_plan_kind_when_drawn, kind, schema, depth)


def _plan_kind_when_drawn(
    kind: str, schema: Mapping[str, Any], depth: int, ctx: _Context
) -> Any:
    return _plan_kind(kind, schema, depth)(ctx)


def _plan_kind(kind: str, schema: Mapping[str, Any], depth: int) -> _Draw:
    if kind == "object":
        return _plan_object(schema, depth)
    if kind == "array":
        return _plan_array(schema, depth)
    if kind == "string":
        return _plan_string(schema)
    if kind == "integer":
        return _plan_integer(schema)
    if kind == "number":
        return _plan_number(schema)
    if kind == "boolean":
        return _draw_boolean
    if kind == "null":
        return _draw_null
    raise _Unsupported(f"type {kind!r}")


def _draw_ref(ref: str, rest: dict[str, Any], depth: int, ctx: _Context) -> Any:
    return _plan(_merge(_resolve(ref, ctx.root), rest), depth + 1)(ctx)


def _draw_const(value: Any, ctx: _Context) -> Any:
    _charge(ctx, _size_of(value))
    return _fresh(value)


def _draw_enum(choices: Any, ctx: _Context) -> Any:
    choice = ctx.rng.choice(choices)
    _charge(ctx, _size_of(choice))
    return _fresh(choice)


def _draw_choice(choices: Any, ctx: _Context) -> Any:
    choice = ctx.rng.choice(choices)
    _charge(ctx, _size_of(choice))
    return choice


def _size_of(value: Any) -> int:
    """Bytes of ``value`` as JSON (strings approximately: escapes not counted)."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, dict | list):
        try:
            return len(orjson.dumps(value))
        except TypeError:
            return len(encode_data(value))
    return _NUMBER_SIZE


def _fresh(value: Any) -> Any:
    """A container from the cached plan is copied: callers may change it."""
    if isinstance(value, dict | list):
        return copy.deepcopy(value)
    return value


def _draw_option(options: list[_Draw], ctx: _Context) -> Any:
    return ctx.rng.choice(options)(ctx)


def _draw_kind(
    kinds: list[Any] | tuple[str, ...], plans: dict[str, _Draw], ctx: _Context
) -> Any:
    return plans[str(ctx.rng.choice(kinds))](ctx)


def _draw_boolean(ctx: _Context) -> bool:
    _charge(ctx, 5)
    return ctx.rng.random() < 0.5


def _draw_null(ctx: _Context) -> None:
    _charge(ctx, 4)


# --- strings ---------------------------------------------------------------


def _plan_string(schema: Mapping[str, Any]) -> _Draw:
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        low = int(schema.get("minLength", 0))
        high = int(schema.get("maxLength", 1 << 30))
        cost = generation_cost(pattern)
        if cost is None or cost > _PATTERN_WORK:
            raise _Unsupported(f"pattern {pattern[:100]!r} is too large to expand")
        return functools.partial(_draw_pattern, pattern, low, high)
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return functools.partial(_draw_format, _FORMATS[fmt])
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", max(low, 12)))
    if low > high:
        raise GenerationError(f"minLength {low} > maxLength {high}")
    return functools.partial(_draw_words, low, min(high, low + 16))


def _draw_pattern(pattern: str, low: int, high: int, ctx: _Context) -> str:
    # JSON Schema patterns are unanchored searches; xeger's output matches
    # the pattern itself, so it always satisfies the search.
    xeger = rstr.Rstr(ctx.rng).xeger
    # xeger repeats + and * up to 100 times; draw until the length fits.
    for _ in range(_PATTERN_DRAWS):
        try:
            text = str(xeger(pattern))
        except Exception as exc:  # an exotic regex sre cannot expand
            raise _Unsupported(f"pattern {pattern[:100]!r}: {exc}") from exc
        _charge(ctx, 0)  # the time limit, between draws
        if low <= len(text) <= high:
            _charge(ctx, len(text) + 2)
            return text
    raise _Unsupported(f"pattern {pattern!r} within length {low}..{high}")


def _draw_format(make: Callable[[random.Random], Any], ctx: _Context) -> str:
    text = str(make(ctx.rng))
    _charge(ctx, len(text) + 2)
    return text


def _draw_words(low: int, high: int, ctx: _Context) -> str:
    rng = ctx.rng
    target = rng.randint(low, high)
    _charge(ctx, target + 2)
    # Joined once: added to a string one by one, a megabyte of words took a
    # minute (each addition may copy the text), past any time limit.
    words = [rng.choice(_WORDS)]
    length = len(words[0])
    while length < target:
        words.append(rng.choice(_WORDS))
        length += 1 + len(words[-1])
    return "_".join(words)[:target]


# --- numbers ---------------------------------------------------------------


def _bounds(schema: Mapping[str, Any], default_span: float) -> tuple[float, float]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    ex_low = schema.get("exclusiveMinimum")
    ex_high = schema.get("exclusiveMaximum")
    lows = [v for v in (low,) if isinstance(v, int | float)]
    highs = [v for v in (high,) if isinstance(v, int | float)]
    if isinstance(ex_low, int | float) and not isinstance(ex_low, bool):
        lows.append(ex_low)
    if isinstance(ex_high, int | float) and not isinstance(ex_high, bool):
        highs.append(ex_high)
    lo = max(lows) if lows else None
    hi = min(highs) if highs else None
    if lo is None and hi is None:
        return 0.0, default_span
    if lo is None:
        assert hi is not None
        return hi - default_span, hi
    if hi is None:
        return lo, lo + default_span
    return lo, hi


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _integer_range(schema: Mapping[str, Any], step: float = 1) -> tuple[int, int]:
    """Range of ``k`` such that ``k * step`` meets every bound of ``schema``.

    Raises :class:`GenerationError` for an empty range, and for bounds that
    do not fit the step in floating point (``multipleOf: 5e-324``).
    """
    try:
        return _integer_range_of(schema, step)
    except (OverflowError, ValueError) as exc:  # inf or nan on the way
        raise GenerationError(
            f"bounds out of range for multipleOf {step:g}: {exc}"
        ) from None


def _integer_range_of(schema: Mapping[str, Any], step: float) -> tuple[int, int]:
    lows: list[int] = []
    highs: list[int] = []
    if (low := _number(schema.get("minimum"))) is not None:
        lows.append(math.ceil(low / step))
    if (low := _number(schema.get("exclusiveMinimum"))) is not None:
        lows.append(math.floor(low / step) + 1)
    if (high := _number(schema.get("maximum"))) is not None:
        highs.append(math.floor(high / step))
    if (high := _number(schema.get("exclusiveMaximum"))) is not None:
        highs.append(math.ceil(high / step) - 1)
    span = max(1, int(min(100 / step, 1e6)))
    first = max(lows) if lows else (min(highs) - span if highs else 0)
    last = min(highs) if highs else first + span
    if first > last:
        if step == 1:
            raise GenerationError(f"empty integer range [{first}, {last}]")
        raise GenerationError(f"no multiple of {step:g} within the bounds")
    return first, last


def _prefer_int64(first: int, last: int, whole: int) -> tuple[int, int]:
    """``[first, last]`` cut to the multipliers whose value fits in 64 bits.

    Games parse numbers in C#, JavaScript, Lua...; a value beyond 64 bits is
    only drawn when the schema allows nothing else.
    """
    low = max(first, -(-_INT64[0] // whole))
    high = min(last, _INT64[1] // whole)
    return (low, high) if low <= high else (first, last)


def _plan_integer(schema: Mapping[str, Any]) -> _Draw:
    step = _number(schema.get("multipleOf"))
    if step is not None and step <= 0:
        raise GenerationError(f"multipleOf {step} is not positive")
    if step is not None and not float(step).is_integer():
        # An integer multiple of a fraction: multiples of the least common
        # integer multiple would do, but it is rare; let checking decide.
        return functools.partial(_draw_rounded, _plan_number(schema))
    whole = int(step or 1)
    first, last = _prefer_int64(*_integer_range(schema, whole), whole)
    # randrange(a, b + 1) is what randint(a, b) calls: the same draws.
    if whole == 1:
        return functools.partial(_draw_integer, first, last + 1)
    return functools.partial(_draw_integer_multiple, first, last + 1, whole)


def _draw_rounded(number: _Draw, ctx: _Context) -> int:
    value: float = number(ctx)
    return round(value)


def _draw_integer(first: int, stop: int, ctx: _Context) -> int:
    _charge(ctx, _NUMBER_SIZE)
    return ctx.rng.randrange(first, stop)


def _draw_integer_multiple(first: int, stop: int, whole: int, ctx: _Context) -> int:
    _charge(ctx, _NUMBER_SIZE)
    return ctx.rng.randrange(first, stop) * whole


def _plan_number(schema: Mapping[str, Any]) -> _Draw:
    step = _number(schema.get("multipleOf"))
    if step is not None:
        if step <= 0:
            raise GenerationError(f"multipleOf {step} is not positive")
        first, last = _integer_range(schema, step)
        # Round away float noise (0.1 * 3 = 0.30000000000000004), which
        # would fail the multipleOf check.
        decimals = max(0, -math.floor(math.log10(step))) + 6
        return functools.partial(_draw_multiple, first, last, step, decimals)
    lo, hi = _bounds(schema, 100.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise GenerationError(f"number bounds out of range: [{lo}, {hi}]")
    if lo > hi:
        raise GenerationError(f"empty number range [{lo}, {hi}]")
    return functools.partial(_draw_number, lo, hi)


def _draw_multiple(
    first: int, last: int, step: float, decimals: int, ctx: _Context
) -> float:
    _charge(ctx, _NUMBER_SIZE)
    try:
        value = round(ctx.rng.randint(first, last) * step, decimals)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise _Unsupported(f"a multiple of {step:g} out of float range")
    return value


def _draw_number(lo: float, hi: float, ctx: _Context) -> float:
    _charge(ctx, _NUMBER_SIZE)
    # Not uniform(lo, hi): hi - lo overflows when the bounds span most of
    # the float range.
    share = ctx.rng.random()
    span = hi - lo
    if math.isfinite(span):
        value = round(lo + span * share, 3)  # what uniform(lo, hi) draws
    else:
        value = round(lo * (1 - share) + hi * share, 3)
    # Rounding or an exclusive bound may push it out; the midpoint is safe.
    if not lo < value < hi:
        value = lo / 2 + hi / 2
    return value


# --- arrays and objects --------------------------------------------------------


def _plan_array(schema: Mapping[str, Any], depth: int) -> _Draw:
    prefix = schema.get("prefixItems")
    items = schema.get("items")
    if isinstance(items, list):  # draft 4-2019 tuple form
        prefix, items = items, schema.get("additionalItems")
    low = int(schema.get("minItems", 0))
    high = int(schema.get("maxItems", max(low, 4)))
    if low > high:
        raise GenerationError(f"minItems {low} > maxItems {high}")
    prefix_plans = (
        [_compile(sub, depth + 1) for sub in prefix] if isinstance(prefix, list) else []
    )
    item_plan = _compile(items if isinstance(items, Mapping) else {}, depth + 1)
    unique = bool(schema.get("uniqueItems"))
    return functools.partial(
        _draw_array, low, min(high, low + 4), prefix_plans, item_plan, unique
    )


def _draw_array(
    low: int,
    high: int,
    prefix_plans: list[_Draw],
    item_plan: _Draw,
    unique: bool,
    ctx: _Context,
) -> list[Any]:
    count = ctx.rng.randint(low, high)
    _charge(ctx, 2 + count)  # brackets and commas; the items charge their own
    out = [plan(ctx) for plan in prefix_plans[:count]]
    tries = 0
    while len(out) < count:
        value = item_plan(ctx)
        tries += 1
        if unique and value in out:
            if tries > 20 * count:
                raise _Unsupported("uniqueItems")
            continue
        out.append(value)
    return out


def _plan_object(schema: Mapping[str, Any], depth: int) -> _Draw:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = [name for name in schema.get("required", ()) if isinstance(name, str)]
    optional = [name for name in properties if name not in required]
    plans: dict[str, _Draw] = {}
    for name in (*required, *optional):
        sub = properties.get(name, {})
        plans[name] = _compile(sub if isinstance(sub, Mapping) else {}, depth + 1)
    if not optional and len(required) >= _min_properties(schema, default=0):
        # Every property required (what actions mostly declare): no draws
        # but the values'.
        return functools.partial(
            _draw_fixed_object, tuple(plans.items()), required, _keys_size(required)
        )
    return functools.partial(_draw_object, schema, required, optional, plans)


def _keys_size(names: list[str]) -> int:
    """Bytes of an object's braces, keys, colons and commas."""
    return 2 + sum(len(name) + 4 for name in names)


def _min_properties(schema: Mapping[str, Any], *, default: int) -> int:
    try:
        return int(schema.get("minProperties", 0))
    except (TypeError, ValueError):  # raised when drawn, by _draw_object
        return default


def _draw_fixed_object(
    plans: tuple[tuple[str, _Draw], ...], names: list[str], size: int, ctx: _Context
) -> dict[str, Any]:
    _charge(ctx, size)
    if len(plans) == len(names):
        return {name: plan(ctx) for name, plan in plans}
    # A name required twice is drawn twice (the second value is kept).
    by_name = dict(plans)
    return {name: by_name[name](ctx) for name in names}


def _draw_object(
    schema: Mapping[str, Any],
    required: list[str],
    optional: list[str],
    plans: dict[str, _Draw],
    ctx: _Context,
) -> dict[str, Any]:
    rng = ctx.rng
    names = list(required)
    names.extend(name for name in optional if rng.random() < 0.5)
    min_props = int(schema.get("minProperties", 0))
    for name in optional:
        if len(names) >= min_props:
            break
        if name not in names:
            names.append(name)
    if len(names) < min_props:
        raise _Unsupported("minProperties")
    _charge(ctx, _keys_size(names))
    return {name: plans[name](ctx) for name in names}


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """One schema with the constraints of both (for ``allOf`` branches).

    A property both define gets both definitions merged too, so
    ``{"minimum": 5}`` and ``{"maximum": 7}`` on one property both hold. A
    keyword both set takes ``extra``'s value; the drawn value is validated
    against the real schema anyway.
    """
    merged = dict(base)
    for key, value in extra.items():
        if key == "properties" and isinstance(value, Mapping):
            properties = dict(merged.get("properties", {}))
            for name, sub in value.items():
                known = properties.get(name)
                if isinstance(known, Mapping) and isinstance(sub, Mapping):
                    properties[name] = _merge(known, sub)
                else:
                    properties[name] = sub
            merged["properties"] = properties
        elif key == "required" and isinstance(value, list):
            merged["required"] = [*merged.get("required", []), *value]
        else:
            merged[key] = value
    return merged


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not ref.startswith("#"):
        raise _Unsupported(f"remote $ref {ref!r}")
    node: Any = root
    for raw in ref[1:].split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or key not in node:
            raise _Unsupported(f"unresolvable $ref {ref!r}")
        node = node[key]
    if not isinstance(node, Mapping):
        raise _Unsupported(f"$ref {ref!r} is not a schema")
    return node


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


# --- exact plans ---------------------------------------------------------------
#
# Most action schemas are made of keywords the plan steers by completely: an
# integer between bounds, a string enum, an object with every property
# required. Their draws are valid by construction, so checking them would
# only cost time. ``_exact`` recognises that subset, conservatively: any
# keyword it does not know, or a value it does not expect, means "check".

_ANNOTATIONS: Final = frozenset(
    {"title", "description", "$comment", "default", "examples"}
)
_EXACT_KEYS: Final[Mapping[str, frozenset[str]]] = {
    kind: _ANNOTATIONS | keys
    for kind, keys in {
        "integer": {"type", "minimum", "maximum"},
        "number": {"type", "minimum", "maximum"},
        "string": {"type", "minLength", "maxLength"},
        "boolean": {"type"},
        "null": {"type"},
        "array": {"type", "items", "minItems", "maxItems"},
        "object": {"type", "properties", "required", "additionalProperties"},
        "enum": {"type", "enum"},
        "const": {"const"},
    }.items()
}
_FINITE: Final = 1e15  # bounds beyond this may round or overflow when drawn


def _exact(schema: Any, depth: int) -> bool:
    """Whether every value ``schema``'s plan draws is valid, by construction."""
    if type(schema) is not dict or depth > _MAX_DEPTH:
        return False
    if "const" in schema:
        kind = "const"
    elif "enum" in schema:
        kind = "enum"
    else:
        declared = schema.get("type")
        if declared is None and "properties" in schema:
            declared = "object"
        if type(declared) is not str or declared not in _EXACT_KEYS:
            return False
        kind = declared
    if not _EXACT_KEYS[kind].issuperset(schema):
        return False
    if kind in ("integer", "number"):
        low = schema.get("minimum", -_FINITE)
        high = schema.get("maximum", _FINITE)
        return (
            type(low) in (int, float)
            and type(high) in (int, float)
            and -_FINITE <= low <= high <= _FINITE
            and (kind == "number" or math.ceil(low) <= math.floor(high))
        )
    if kind in ("string", "array"):
        prefix = "Length" if kind == "string" else "Items"
        low = schema.get(f"min{prefix}", 0)
        high = schema.get(f"max{prefix}", low)
        if type(low) is not int or type(high) is not int or not 0 <= low <= high:
            return False
        return kind == "string" or _exact(schema.get("items"), depth + 1)
    if kind == "object":
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        return (
            type(properties) is dict
            and type(required) is list
            and all(type(name) is str for name in required)
            and type(schema.get("additionalProperties", False)) is bool
            and len(set(required)) == len(required) == len(properties)
            and set(required) == properties.keys()
            and all(_exact(sub, depth + 1) for sub in properties.values())
        )
    if kind == "enum":
        choices = schema["enum"]
        if type(choices) is not list or not choices:
            return False
        if "type" in schema:  # the plan ignores it: every choice must fit
            return schema["type"] == "string" and all(type(c) is str for c in choices)
        return all(_plain(choice) for choice in choices)
    if kind == "const":
        return _plain(schema["const"])
    return kind in {"boolean", "null"}


def _plain(value: Any) -> bool:
    """A JSON scalar equal to itself (no NaN), which enum and const compare."""
    if type(value) is float:
        return math.isfinite(value)
    return value is None or type(value) in (str, int, bool)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


class _Plan:
    __slots__ = ("check", "draw", "least", "root", "slow")

    def __init__(
        self,
        root: Mapping[str, Any],
        draw: _Draw,
        check: Callable[[Any], bool] | None,
        least: int,
    ) -> None:
        self.root = root
        """The schema the plan was made from (a private copy, when cached)."""
        self.draw = draw
        self.check = check
        """The schema's validity check; None when every draw is valid (exact)."""
        self.least = least
        """No valid value is smaller than this many bytes (see neuro_api._sizes)."""
        self.slow = False
        """A quick attempt ran out of room or time (see :func:`try_quickly`)."""


def _make_plan(root: Mapping[str, Any]) -> _Plan:
    check = validity_check(root)  # raises SchemaError for an invalid schema
    exact = _exact(root, 0)
    token = _PLAN_NODES.set([0])
    try:
        draw = _compile(root, 0)
    finally:
        _PLAN_NODES.reset(token)
    plan = _Plan(root, draw, None if exact else check, least_size(root))
    # A pattern only the regex package matches (backreferences ...) makes
    # each check slow; the package lets other threads run, not the caller.
    plan.slow = any(not linear(pattern) for pattern, _ in find_patterns(root))
    return plan


@sized_cache(max_total=8 << 20, max_entry=256 << 10)
def _plan_for_text(text: bytes) -> _Plan:
    # Planned from a private copy, so a caller changing its schema later
    # cannot change a cached plan. Exceptions (SchemaError) are not cached.
    return _make_plan(orjson.loads(text))


_RECENT_PLANS: dict[int, tuple[Mapping[str, Any], bytes, _Plan]] = {}
"""Plans by the id of the schema object last planned, with its JSON text:
the random engine asks again and again about the same few registered
schemas, and comparing a text is cheaper than a cache lookup and a deep
comparison. The entry keeps its schema alive, so its id is not reused: only
small schemas are kept, so what it holds stays small after their games
left. Emptied when full: the cache behind it refills it at once."""
_RECENT_PLANS_MAX: Final = 256
_RECENT_PLAN_BYTES: Final = 4096


def _plan_for(schema: Mapping[str, Any], max_text: float = math.inf) -> _Plan | None:
    """The plan of ``schema``; ``None`` if its JSON is longer than ``max_text``."""
    # Keyed by the schema's JSON as written: equal schemas share a plan, and
    # the key order stays part of the key, since it orders the draws. A
    # schema changed in place has another text, so it is planned again.
    try:
        text = orjson.dumps(schema)
    except TypeError:
        canonical(schema)  # raises the SchemaError validation would raise
        raise
    recent = _RECENT_PLANS.get(id(schema))
    if recent is not None and recent[0] is schema and recent[1] == text:
        return recent[2]
    if len(text) > max_text:
        return None
    plan = _plan_for_text(text)
    if plan.root != schema:
        # The JSON text hides a difference (a tuple is written as a list):
        # plan this very schema, uncached, so it is drawn from as written.
        return _make_plan(schema)
    if len(text) <= _RECENT_PLAN_BYTES:
        if len(_RECENT_PLANS) >= _RECENT_PLANS_MAX:
            _RECENT_PLANS.clear()  # refilled from the cache below; thread-safe
        _RECENT_PLANS[id(schema)] = (schema, text, plan)
    return plan


def generate_data(
    schema: Mapping[str, Any] | None,
    *,
    rng: random.Random | None = None,
    attempts: int = 10,
    max_size: int = DEFAULT_MAX_SIZE,
    timeout: float | None = None,
) -> Any:
    """Return a random value that validates against ``schema``.

    ``None`` (or ``{}``) means the action takes no data, and ``None`` is
    returned. Every value is checked with the schema's cached validator and
    regenerated if it fails, up to ``attempts`` times; values of schemas
    made only of keywords the generator meets by construction (bounded
    integers and numbers, string lengths, enums, objects with every property
    required ...) are valid as drawn and not checked again.

    Each value may take at most ``max_size`` bytes of JSON (roughly: string
    escapes are not counted), and all attempts together at most ``timeout``
    seconds (``None``: no limit); what is too big is not built. Raises
    :class:`GenerationLimitError` when no value fitted within those limits,
    :class:`GenerationError` if no valid value was found otherwise (an
    unsatisfiable or exotic schema), and
    :class:`~neuro_api.schema.SchemaError` for an invalid schema.
    """
    if not schema:
        return None
    plan = _plan_for(schema)
    assert plan is not None
    return _generate(plan, rng, attempts, max_size, timeout)


_NOT_QUICK: Final = object()


def try_quickly(
    schema: Mapping[str, Any] | None,
    rng: random.Random,
    max_size: int,
    timeout: float,
) -> Any:
    """:func:`generate_data` within small limits, or :data:`NOT_QUICK`.

    For callers on an event loop that move slow work to a thread: a schema
    whose data does not fit ``max_size`` bytes and ``timeout`` seconds gets
    ``NOT_QUICK`` (and is not tried again here: its cached plan remembers),
    and should be generated elsewhere with the real limits. Raises what
    :func:`generate_data` raises otherwise. A schema longer than
    ``max_size`` is not even planned here (planning takes time too).
    """
    if not schema:
        return None
    plan = _plan_for(schema, max_text=max_size)
    if plan is None or plan.slow:
        return _NOT_QUICK
    if plan.check is None:  # valid as drawn: nothing to check, no step budget
        try:
            return _generate(plan, rng, 10, max_size, timeout)
        except GenerationLimitError:
            plan.slow = True
            return _NOT_QUICK
    # Checking drawn values takes time too: the reference validator gets a
    # few milliseconds' worth of steps for all the attempts together.
    with reference_steps(QUICK_STEPS) as steps:
        try:
            return _generate(plan, rng, 10, max_size, timeout)
        except GenerationLimitError:
            plan.slow = True
            return _NOT_QUICK
        except GenerationError:
            if not steps.exhausted:
                raise
            plan.slow = True
            return _NOT_QUICK


QUICK_STEPS: Final = 2_000
"""Reference-validator steps :func:`try_quickly` allows, all attempts
together (see :mod:`neuro_api._steps`)."""
NOT_QUICK: Final = _NOT_QUICK
"""What :func:`try_quickly` returns for data it leaves to a slower path."""


def _generate(
    plan: _Plan,
    rng: random.Random | None,
    attempts: int,
    max_size: int,
    timeout: float | None,
) -> Any:
    if plan.least > max_size:
        raise GenerationLimitError(
            f"valid data needs at least {plan.least} bytes, more than {max_size}"
        )
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    ctx = _Context(rng or random.Random(), plan.root, max_size, deadline)
    # Parts planned when drawn (references, failed plans) count too.
    token = _PLAN_NODES.set([0])
    try:
        return _attempts(plan, ctx, attempts, max_size, timeout)
    finally:
        _PLAN_NODES.reset(token)


def _attempts(
    plan: _Plan, ctx: _Context, attempts: int, max_size: int, timeout: float | None
) -> Any:
    reason = "no attempt produced a valid value"
    over_budget = False
    for _ in range(attempts):
        ctx.left = max_size
        try:
            value = plan.draw(ctx)
        except _OverBudget:
            # Sizes are drawn at random: a smaller draw may still fit.
            over_budget = True
            continue
        except _OutOfTime:
            raise GenerationLimitError(f"no valid data within {timeout:g} s") from None
        except (_Unsupported, GenerationError) as exc:
            # Random choices (depth, uniqueness, a long draw) may fail where
            # the next attempt succeeds; an impossible schema fails them all.
            reason = str(exc)
            continue
        if plan.check is None or plan.check(value):
            return value
    if over_budget:
        raise GenerationLimitError(f"valid data needs more than {max_size} bytes")
    raise GenerationError(f"cannot generate data for this schema: {reason}")


def encode_data(value: Any) -> str:
    """``value`` as JSON text, as an ``action``'s ``data`` carries it.

    orjson, except for integers beyond 64 bits, which only the standard
    library writes. The generator makes only finite numbers (orjson would
    write NaN as ``null``).
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
