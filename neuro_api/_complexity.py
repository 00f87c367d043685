"""How much work validating a value can take, from the schema alone.

Validation visits every place in a value (the value, each property, each
item) and evaluates there every subschema that applies *in place*: the
schema's own keywords, and those of its ``allOf``/``anyOf``/``oneOf``/
``not``/``if``/``then``/``else``/``dependentSchemas`` branches and
``$ref``/``$dynamicRef`` targets. Children are the next places. The size of
a schema does not bound that work: a 2 KB schema whose in-place references
double at each step (``allOf: [{$ref: next}, {$ref: next}]``) asks for 2**20
evaluations at one place, and a reference back to itself at the same place
never ends (Python's validator dies of recursion). Both validators hold the
interpreter while they work, so a thread does not help: such schemas are
refused at registration instead (:func:`complexity_problem`).

References that go deeper into the value (``properties: {child: {$ref: #}}``,
a tree) are fine: they are bounded by the value's own depth.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

__all__ = ["MAX_PLACE_COST", "complexity_problem"]

MAX_PLACE_COST: Final = 64
"""Subschemas one place in a value may be checked against."""

_IN_PLACE_LISTS: Final = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE: Final = ("not", "if", "then", "else")
_IN_PLACE_MAPS: Final = ("dependentSchemas",)
_REFS: Final = ("$ref", "$dynamicRef", "$recursiveRef")
_CHILD_ONE: Final = (
    "items",
    "additionalItems",
    "additionalProperties",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contains",
    "propertyNames",
    "contentSchema",
)
_CHILD_LISTS: Final = ("prefixItems", "items")
_CHILD_MAPS: Final = ("properties", "patternProperties", "$defs", "definitions")


class _Cycle(Exception):
    """A reference leads back to where it started, at the same place."""


class _Walk:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.costs: dict[int, int] = {}
        self.open: set[int] = set()
        self.anchors: dict[str, Any] = {}
        for node in _subschemas(root):
            for key in ("$anchor", "$dynamicAnchor"):
                name = node.get(key)
                if isinstance(name, str):
                    self.anchors.setdefault(name, node)

    def resolve(self, ref: str) -> Any:
        if ref == "#":
            return self.root
        if ref.startswith("#/"):
            node: Any = self.root
            for raw in ref[2:].split("/"):
                key = raw.replace("~1", "/").replace("~0", "~")
                if isinstance(node, Mapping) and key in node:
                    node = node[key]
                elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                    node = node[int(key)]
                else:
                    return None
            return node
        if ref.startswith("#"):
            return self.anchors.get(ref[1:])
        return None  # not local: refused elsewhere (never fetched)

    def cost(self, node: Any) -> int:
        """Evaluations at one place for ``node`` (capped past the limit)."""
        if not isinstance(node, Mapping):
            return 1
        key = id(node)
        known = self.costs.get(key)
        if known is not None:
            return known
        if key in self.open:
            raise _Cycle
        self.open.add(key)
        try:
            total = 1
            for child in _in_place(node, self):
                total += self.cost(child)
                if total > MAX_PLACE_COST:
                    break
        finally:
            self.open.discard(key)
        self.costs[key] = total
        return total


def _in_place(node: Mapping[str, Any], walk: _Walk) -> Iterator[Any]:
    for keyword in _IN_PLACE_LISTS:
        branches = node.get(keyword)
        if isinstance(branches, list):
            yield from branches
    for keyword in _IN_PLACE_ONE:
        if keyword in node:
            yield node[keyword]
    for keyword in _IN_PLACE_MAPS:
        branches = node.get(keyword)
        if isinstance(branches, Mapping):
            yield from branches.values()
    for keyword in _REFS:
        ref = node.get(keyword)
        if isinstance(ref, str):
            target = walk.resolve(ref)
            if target is not None:
                yield target


def _subschemas(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every schema object in ``node``, each once (iteratively: no recursion)."""
    stack = [node]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if not isinstance(current, Mapping) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for keyword in (*_IN_PLACE_ONE, *_CHILD_ONE):
            if keyword in current:
                stack.append(current[keyword])
        for keyword in (*_IN_PLACE_LISTS, *_CHILD_LISTS):
            value = current.get(keyword)
            if isinstance(value, list):
                stack.extend(value)
        for keyword in (*_IN_PLACE_MAPS, *_CHILD_MAPS):
            value = current.get(keyword)
            if isinstance(value, Mapping):
                stack.extend(value.values())


def complexity_problem(schema: Mapping[str, Any]) -> str | None:
    """Why validating a value against ``schema`` could take too long, or ``None``.

    Linear in the schema's size (each subschema's cost is worked out once).
    """
    walk = _Walk(schema)
    try:
        for node in _subschemas(schema):
            cost = walk.cost(node)
            if cost > MAX_PLACE_COST:
                return (
                    f"one place in a value would be checked against more than "
                    f"{MAX_PLACE_COST} subschemas (through allOf, anyOf, oneOf, not, "
                    "if/then/else or references)"
                )
    except _Cycle:
        return (
            "a reference leads back to itself without going deeper into the "
            "value, so checking a value would never end"
        )
    except RecursionError:
        return "references are nested too deep to check"
    return None
