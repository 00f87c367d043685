"""How small valid data for a schema can be: a lower bound, from the schema alone.

Used at registration to tell a game that nothing can answer an action within
the server's generation budget (``{"type": "string", "minLength": 10000000}``
needs ten megabytes, however it is drawn). The bound is conservative: where
the schema leaves room (a ``pattern``, a ``not``, a reference deeper than
the walk goes) it assumes the smallest value, so a schema is never reported
unless its data really cannot be smaller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import orjson

from neuro_api._numbers import whole_number

__all__ = ["least_size"]

_MAX_DEPTH: Final = 32
_MAX_VISITS: Final = 100_000
"""Schema objects looked at per call: references can make a small schema a
huge (or infinite) tree, and past this the walk assumes the smallest."""
_TYPE_LEAST: Final = {
    "null": 4,
    "boolean": 4,  # true
    "integer": 1,
    "number": 1,
    "string": 2,  # ""
    "array": 2,  # []
    "object": 2,  # {}
}


def least_size(schema: Any) -> int:
    """A lower bound of the JSON size, in bytes, of any value valid for ``schema``.

    Never more than the real minimum; often less. Huge bounds stay exact
    integers (a ``minItems`` of 10**12 is not capped).
    """
    return _Walk(schema).least(schema, 0)


def _number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return max(0, math.ceil(value))


def _encoded(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return 0


class _Walk:
    """One walk of one schema, counting the schema objects it looks at."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.visits = 0
        # Each schema object's bound, worked out once: references make a
        # small schema a huge (or endless) tree of the same few objects.
        self.known: dict[int, int] = {}
        self.open: set[int] = set()

    def least(self, schema: Any, depth: int) -> int:
        self.visits += 1
        if (
            not isinstance(schema, Mapping)
            or depth > _MAX_DEPTH
            or self.visits > _MAX_VISITS
            or id(schema) in self.open  # a reference cycle: no bound from it
        ):
            # true, false (no value at all: not a size problem), too deep,
            # or too much work: assume the smallest.
            return 0
        key = id(schema)
        known = self.known.get(key)
        if known is not None:
            return known
        self.open.add(key)
        try:
            bound = self._least(schema, depth)
        finally:
            self.open.discard(key)
        self.known[key] = bound
        return bound

    def _least(self, schema: Mapping[str, Any], depth: int) -> int:
        bounds = [self._here(schema, depth)]
        ref = schema.get("$ref")
        if isinstance(ref, str):
            bounds.append(self.least(_resolve(ref, self.root), depth + 1))
        branches = schema.get("allOf")
        if isinstance(branches, list):
            bounds.extend(self.least(branch, depth + 1) for branch in branches)
        for combinator in ("anyOf", "oneOf"):
            branches = schema.get(combinator)
            if isinstance(branches, list) and branches:
                bounds.append(min(self.least(b, depth + 1) for b in branches))
        return max(bounds)

    def _here(self, schema: Mapping[str, Any], depth: int) -> int:
        """The bound from this schema object's own keywords (no combinators)."""
        if "const" in schema:
            return _encoded(schema["const"])
        choices = schema.get("enum")
        if isinstance(choices, list) and choices:
            return min(_encoded(choice) for choice in choices)
        declared = schema.get("type")
        if isinstance(declared, str):
            kinds = [declared]
        elif isinstance(declared, list) and declared:
            kinds = [kind for kind in declared if isinstance(kind, str)]
        else:
            return 0  # any type: it could be a one-digit number
        return min((self._kind(kind, schema, depth) for kind in kinds), default=0)

    def _kind(self, kind: str, schema: Mapping[str, Any], depth: int) -> int:
        if kind == "string":
            return 2 + (_number(schema.get("minLength")) or 0)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "object":
            return self._object(schema, depth)
        return _TYPE_LEAST.get(kind, 0)

    def _array(self, schema: Mapping[str, Any], depth: int) -> int:
        count = _number(schema.get("minItems")) or 0
        if not count:
            return 2
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft 4-2019 tuple form
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        sizes = [self.least(sub, depth + 1) for sub in prefix[:count]]
        item = self.least(items, depth + 1) if len(sizes) < count else 0
        rest = count - len(sizes)
        # Brackets, commas between the items, and at least one byte per item.
        return 2 + (count - 1) + sum(max(1, s) for s in sizes) + rest * max(1, item)

    def _object(self, schema: Mapping[str, Any], depth: int) -> int:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            properties = {}
        required = schema.get("required")
        names = (
            list(dict.fromkeys(n for n in required if isinstance(n, str)))
            if isinstance(required, list)
            else []
        )
        count = max(len(names), _number(schema.get("minProperties")) or 0)
        if not count:
            return 2
        total = 2 + (count - 1)
        for name in names:  # "name":value
            value = self.least(properties.get(name), depth + 1)
            total += _encoded(name) + 1 + max(1, value)
        # Properties beyond the required ones: "":0 at least.
        return total + (count - len(names)) * 4


def _resolve(ref: str, root: Any) -> Any:
    """The schema a local reference (``#/$defs/x``) points to, else ``None``."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node = root
    for raw in ref[2:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif (
            isinstance(node, list)
            and (key == "0" or not key.startswith("0"))  # RFC 6901: no "01"
            and (index := whole_number(key, at_most=len(node) - 1)) is not None
        ):
            node = node[index]
        else:
            return None
    return node
