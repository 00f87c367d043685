"""Random data that validates against an action's schema.

Written for what action schemas use (types, enum/const, properties/required,
items, lengths, bounds, simple formats, ``pattern`` via ``rstr``, local
``$ref``, the combinators); microseconds per value, which keeps the random
engine's round trips cheap. Keywords it does not steer by (``not``,
``if``/``then``, ``dependentRequired`` ...) are honoured by checking: every
value is validated against the whole schema and regenerated if it fails.

(hypothesis-jsonschema 0.23 was the obvious library for this, but it crashes
on object schemas with current hypothesis releases.)
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping
from typing import Any, Final

import rstr

from neuro_api._validators import get_validator, is_valid

__all__ = ["GenerationError", "generate_data"]

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


class GenerationError(ValueError):
    """No value satisfying the schema could be found."""


class _Unsupported(Exception):
    """The fast generator cannot handle this schema; use the fallback."""


def _infer_type(schema: Mapping[str, Any], rng: random.Random) -> str:
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared
    if isinstance(declared, list) and declared:
        # Prefer a concrete value over null when there is a choice.
        concrete = [t for t in declared if t != "null"] or declared
        return str(rng.choice(concrete))
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if {"minLength", "maxLength", "pattern", "format"} & schema.keys():
        return "string"
    if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & schema.keys():
        return "number"
    return rng.choice(_SIMPLE_TYPES)


def _gen_string(schema: Mapping[str, Any], rng: random.Random) -> str:
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        # JSON Schema patterns are unanchored searches; xeger's output
        # matches the pattern itself, so it always satisfies the search.
        low = int(schema.get("minLength", 0))
        high = int(schema.get("maxLength", 1 << 30))
        xeger = rstr.Rstr(rng).xeger
        # xeger repeats + and * up to 100 times; draw until the length fits.
        for _ in range(_PATTERN_DRAWS):
            try:
                text = str(xeger(pattern))
            except Exception as exc:  # an exotic regex sre cannot expand
                raise _Unsupported(f"pattern {pattern!r}: {exc}") from exc
            if low <= len(text) <= high:
                return text
        raise _Unsupported(f"pattern {pattern!r} within length {low}..{high}")
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return str(_FORMATS[fmt](rng))
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", max(low, 12)))
    if low > high:
        raise GenerationError(f"minLength {low} > maxLength {high}")
    target = rng.randint(low, min(high, low + 16))
    text = rng.choice(_WORDS)
    while len(text) < target:
        text += "_" + rng.choice(_WORDS)
    if len(text) > target:
        text = text[:target]
    return text


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
    """Range of ``k`` such that ``k * step`` meets every bound of ``schema``."""
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
    span = max(1, int(100 / step))
    first = max(lows) if lows else (min(highs) - span if highs else 0)
    last = min(highs) if highs else first + span
    if first > last:
        if step == 1:
            raise GenerationError(f"empty integer range [{first}, {last}]")
        raise GenerationError(f"no multiple of {step:g} within the bounds")
    return first, last


def _gen_integer(schema: Mapping[str, Any], rng: random.Random) -> int:
    step = _number(schema.get("multipleOf"))
    if step is not None and step <= 0:
        raise GenerationError(f"multipleOf {step} is not positive")
    if step is not None and not float(step).is_integer():
        # An integer multiple of a fraction: multiples of the least common
        # integer multiple would do, but it is rare; let checking decide.
        value = _gen_number(schema, rng)
        return round(value)
    whole = int(step or 1)
    first, last = _integer_range(schema, whole)
    return rng.randint(first, last) * whole


def _gen_number(schema: Mapping[str, Any], rng: random.Random) -> float | int:
    step = _number(schema.get("multipleOf"))
    if step is not None:
        if step <= 0:
            raise GenerationError(f"multipleOf {step} is not positive")
        first, last = _integer_range(schema, step)
        # Round away float noise (0.1 * 3 = 0.30000000000000004), which
        # would fail the multipleOf check.
        decimals = max(0, -math.floor(math.log10(step))) + 6
        return round(rng.randint(first, last) * step, decimals)
    lo, hi = _bounds(schema, 100.0)
    if lo > hi:
        raise GenerationError(f"empty number range [{lo}, {hi}]")
    value = round(rng.uniform(lo, hi), 3)
    # Rounding or an exclusive bound may push it out; the midpoint is safe.
    if not lo < value < hi:
        value = (lo + hi) / 2
    return value


def _gen_array(schema: Mapping[str, Any], ctx: _Context, depth: int) -> list[Any]:
    rng = ctx.rng
    prefix = schema.get("prefixItems")
    items = schema.get("items")
    if isinstance(items, list):  # draft 4-2019 tuple form
        prefix, items = items, schema.get("additionalItems")
    low = int(schema.get("minItems", 0))
    high = int(schema.get("maxItems", max(low, 4)))
    if low > high:
        raise GenerationError(f"minItems {low} > maxItems {high}")
    count = rng.randint(low, min(high, low + 4))
    out: list[Any] = []
    if isinstance(prefix, list):
        out.extend(_gen(sub, ctx, depth + 1) for sub in prefix[:count])
    item_schema: Mapping[str, Any] = items if isinstance(items, Mapping) else {}
    unique = bool(schema.get("uniqueItems"))
    tries = 0
    while len(out) < count:
        value = _gen(item_schema, ctx, depth + 1)
        tries += 1
        if unique and value in out:
            if tries > 20 * count:
                raise _Unsupported("uniqueItems")
            continue
        out.append(value)
    return out


def _gen_object(schema: Mapping[str, Any], ctx: _Context, depth: int) -> dict[str, Any]:
    rng = ctx.rng
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = [name for name in schema.get("required", ()) if isinstance(name, str)]
    names = list(required)
    optional = [name for name in properties if name not in required]
    names.extend(name for name in optional if rng.random() < 0.5)
    min_props = int(schema.get("minProperties", 0))
    for name in optional:
        if len(names) >= min_props:
            break
        if name not in names:
            names.append(name)
    if len(names) < min_props:
        raise _Unsupported("minProperties")
    out: dict[str, Any] = {}
    for name in names:
        sub = properties.get(name, {})
        out[name] = _gen(sub if isinstance(sub, Mapping) else {}, ctx, depth + 1)
    return out


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if key == "properties" and isinstance(value, Mapping):
            merged["properties"] = {**merged.get("properties", {}), **value}
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


class _Context:
    __slots__ = ("rng", "root")

    def __init__(self, rng: random.Random, root: Mapping[str, Any]) -> None:
        self.rng = rng
        self.root = root


def _gen(schema: Mapping[str, Any] | bool, ctx: _Context, depth: int) -> Any:
    rng = ctx.rng
    if schema is True:
        schema = {}
    if schema is False or depth > _MAX_DEPTH:
        raise _Unsupported("false schema or too deep")
    ref = schema.get("$ref")
    if isinstance(ref, str):
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return _gen(_merge(_resolve(ref, ctx.root), rest), ctx, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        choices = schema["enum"]
        if not choices:
            raise GenerationError("empty enum")
        return rng.choice(choices)
    for combinator in ("allOf", "anyOf", "oneOf"):
        branches = schema.get(combinator)
        if isinstance(branches, list) and branches:
            rest = {k: v for k, v in schema.items() if k != combinator}
            if combinator == "allOf":
                for branch in branches:
                    rest = _merge(rest, branch)
            else:
                rest = _merge(rest, rng.choice(branches))
            return _gen(rest, ctx, depth + 1)
    kind = _infer_type(schema, rng)
    if kind == "object":
        return _gen_object(schema, ctx, depth)
    if kind == "array":
        return _gen_array(schema, ctx, depth)
    if kind == "string":
        return _gen_string(schema, rng)
    if kind == "integer":
        return _gen_integer(schema, rng)
    if kind == "number":
        return _gen_number(schema, rng)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    raise _Unsupported(f"type {kind!r}")


def generate_data(
    schema: Mapping[str, Any] | None,
    *,
    rng: random.Random | None = None,
    attempts: int = 10,
) -> Any:
    """Return a random value that validates against ``schema``.

    ``None`` (or ``{}``) means the action takes no data, and ``None`` is
    returned. Every value is checked with the schema's cached validator and
    regenerated if it fails, up to ``attempts`` times. Raises
    :class:`GenerationError` if no valid value was found (an unsatisfiable or
    exotic schema), and :class:`~neuro_api.schema.SchemaError` for an invalid
    one.
    """
    if not schema:
        return None
    ctx = _Context(rng or random.Random(), schema)
    get_validator(schema)  # raises SchemaError for an invalid schema
    reason = "no attempt produced a valid value"
    for _ in range(attempts):
        try:
            value = _gen(schema, ctx, 0)
        except (_Unsupported, GenerationError) as exc:
            # Random choices (depth, uniqueness, a long draw) may fail where
            # the next attempt succeeds; an impossible schema fails them all.
            reason = str(exc)
            continue
        if is_valid(schema, value):
            return value
    raise GenerationError(f"cannot generate data for this schema: {reason}")
