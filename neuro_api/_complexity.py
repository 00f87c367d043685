"""How much work validating a value can take, from the schema alone.

Validation visits every place in a value (the value, each property, each
item) and evaluates there every subschema that applies *in place*: the
schema's own keywords, those of its ``allOf``/``anyOf``/``oneOf``/``not``/
``if``/``then``/``else``/``dependentSchemas``/``dependencies`` branches,
and the targets of its references. Their child keywords (``properties``,
``items`` ...) then apply at the next places. The size of a schema does not
bound that work:

* in place: a 2 KB schema whose references double at each step
  (``allOf: [{$ref: next}, {$ref: next}]``) asks for 2**20 evaluations at
  one place, and a reference back to itself at the same place never ends;
* in depth: ``L = allOf: [M0 ... M7]`` where each ``Mi`` sends property
  ``x`` back to ``L`` is 860 bytes, and a value nested ``d`` levels deep
  under ``x`` is checked against ``L`` 8**d times at its deepest place.

Both validators hold the interpreter while they work, so a thread does not
help. A schema whose every value costs too much (in place) is refused at
registration; one whose cost grows with the value's depth is kept with its
cost by depth (:func:`analyse`), and each value's work is added up before
it is checked (:meth:`Complexity.work`), so that a recursive schema still
serves values of a sensible depth and refuses the rest unchecked.

The bound worked out here is :math:`B(s, d)`, the most subschemas checked
at one place ``d`` levels below a place where ``s`` is checked, over every
path of keys to it: ``B(s, 0)`` is the size of ``s``'s in-place closure, and
``B(s, d)`` the largest, over one key (a property name, an index, or any
other), of the sum of ``B(c, d - 1)`` over the child subschemas ``c`` that
the closure applies to that key. It is worked out level by level until it
passes :data:`PROFILE_CAP` (deeper values cost too much), drops to zero
(no deeper place is checked), or repeats an earlier level (it stays bounded
for ever: a tree).
Where a keyword's effect depends on the value (``patternProperties``,
``additionalProperties``, ``items`` after ``prefixItems``), it is assumed to
apply: the bound is never below the real count. References are resolved the
way the validators resolve them (``referencing``, with ``$id`` and percent-
encoded pointers); one that does not resolve is refused, never counted as
nothing, and a dynamic reference counts every anchor it could reach.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any, Final

import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema_specifications import REGISTRY as SPECIFICATIONS

from neuro_api._gil import share

__all__ = [
    "MAX_DEPTH_STEPS",
    "MAX_NODES",
    "MAX_PLACE_COST",
    "PROFILE_CAP",
    "UNRESOLVED",
    "Complexity",
    "analyse",
]

MAX_PLACE_COST: Final = 256
"""Subschemas one place in a value may be checked against."""
MAX_DEPTH_STEPS: Final = 256
"""Levels of a value worked out before a bound that neither ends nor
repeats is refused."""
PROFILE_CAP: Final = 1_000_000
"""Subschemas at one place past which deeper places are not worked out."""
MAX_NODES: Final = 200_000
"""Schema objects (and meta-schema objects reached by reference) analysed."""
_MAX_WORK: Final = 4_000_000
"""Steps of the depth analysis, all levels together."""

_IN_PLACE_LISTS: Final = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE: Final = ("not", "if", "then", "else")
_IN_PLACE_MAPS: Final = ("dependentSchemas", "dependencies")
_IN_PLACE_ONE_OR_LIST: Final = ("extends",)  # draft 3
_IN_PLACE_SCHEMAS_IN_LIST: Final = ("disallow", "type")  # draft 3
_REFS: Final = ("$ref", "$dynamicRef", "$recursiveRef")
_OBJECT_ALWAYS: Final = ("unevaluatedProperties",)
_ARRAY_ALWAYS: Final = ("additionalItems", "contains", "unevaluatedItems")

_KEYWORDS: Final = frozenset(
    (
        *_IN_PLACE_LISTS,
        *_IN_PLACE_ONE,
        *_IN_PLACE_MAPS,
        *_IN_PLACE_ONE_OR_LIST,
        "disallow",
        *_REFS,
        *_OBJECT_ALWAYS,
        *_ARRAY_ALWAYS,
        "patternProperties",
        "additionalProperties",
        "properties",
        "items",
        "prefixItems",
        "propertyNames",
    )
)
"""Keywords that apply subschemas (``type`` too, in draft 3, with a list)."""

_OTHER_PROPERTY: Final = ("p",)
"""Key of a property no ``properties`` names."""
_OTHER_ITEM: Final = ("i",)
"""Key of an item after every ``prefixItems`` (or list ``items``) entry."""
_PROPERTY_NAME: Final = ("k",)
"""Key of a property's name (checked by ``propertyNames``)."""

_Key = tuple[Any, ...]
UNRESOLVED: Final = (
    "a reference cannot be resolved within the schema (references are never fetched): "
)
"""How a problem of a reference that does not resolve begins."""


class _Refused(Exception):
    """Why the schema is refused (the message is the problem)."""


# --- the schema graph ------------------------------------------------------------


class _Node:
    """One schema object: what applies in place, and what applies to children."""

    __slots__ = ("array", "choices", "cost", "in_place", "keyed", "obj")

    def __init__(self) -> None:
        self.in_place: list[int] = []
        self.choices: list[tuple[int, ...]] = []
        """Dynamic references: one of each group applies, which depends on
        the value's path (so the most costly one is counted)."""
        self.obj: list[int] = []
        """Applies to every property: patterns, unevaluated."""
        self.array: list[int] = []
        """Applies to every item: items (a schema), contains ..."""
        self.keyed: dict[_Key, list[int]] = {}
        """Applies to one key only (a named property, an index, a name)."""
        self.cost = 0
        """Size of the in-place closure (0: not worked out yet)."""

    def held(self) -> list[int]:
        """Every node this one may check in place (choices included)."""
        return self.in_place + [n for group in self.choices for n in group]


_LEAF: Final = -1
"""A boolean schema (or anything not an object): checked once, no children."""


class _Graph:
    def __init__(self, schema: Mapping[str, Any], dialect: str) -> None:
        specification = referencing.jsonschema.specification_with(
            dialect, default=referencing.jsonschema.DRAFT202012
        )
        resource = specification.create_resource(schema)
        registry: referencing.Registry[Any] = SPECIFICATIONS  # the meta-schemas
        self.resolver = registry.resolver_with_root(resource)
        self.specification = specification
        self.nodes: list[_Node] = []
        self.index: dict[int, int] = {}
        self._keep: list[Any] = []  # ids stay unique while the graph lives
        self._pending: list[tuple[int, Mapping[str, Any], Any]] = []
        self._dynamic: dict[str, list[tuple[Mapping[str, Any], Any]]] | None = None
        self.root = self._add(schema, self.resolver)
        while self._pending:
            number, contents, resolver = self._pending.pop()
            self._link(number, contents, resolver)

    def _add(self, contents: Any, resolver: Any) -> int:
        share()
        if not isinstance(contents, dict):
            return _LEAF
        known = self.index.get(id(contents))
        if known is not None:
            return known
        if len(self.nodes) >= MAX_NODES:
            raise _Refused(f"it has more than {MAX_NODES:,} subschemas to analyse")
        number = len(self.nodes)
        self.nodes.append(_Node())
        self.index[id(contents)] = number
        self._keep.append(contents)
        self._pending.append((number, contents, self._within(contents, resolver)))
        return number

    def _within(self, contents: Mapping[str, Any], resolver: Any) -> Any:
        """The resolver inside ``contents`` (a new base URI if it has an id)."""
        if "$id" not in contents and "id" not in contents:
            return resolver  # the same base: skip referencing's work
        return resolver.in_subresource(self.specification.create_resource(contents))

    def _dynamic_anchors(self) -> dict[str, list[tuple[Mapping[str, Any], Any]]]:
        """Every ``$dynamicAnchor`` / ``$recursiveAnchor`` of the schema itself.

        Found once, when the first dynamic reference is met: anchors in
        ``$defs`` count too (they are in scope without being checked).
        """
        if self._dynamic is not None:
            return self._dynamic
        self._dynamic = {}
        stack: list[tuple[Any, Any]] = [(self._keep[0], self.resolver)]
        seen: set[int] = set()
        while stack:
            contents, resolver = stack.pop()
            if not isinstance(contents, Mapping) or id(contents) in seen:
                continue
            seen.add(id(contents))
            if len(seen) > MAX_NODES:
                raise _Refused(f"it has more than {MAX_NODES:,} subschemas to analyse")
            resolver = self._within(contents, resolver)
            anchor = contents.get("$dynamicAnchor")
            if isinstance(anchor, str):
                self._dynamic.setdefault(anchor, []).append((contents, resolver))
            if contents.get("$recursiveAnchor") is True:
                self._dynamic.setdefault("", []).append((contents, resolver))
            stack.extend((child, resolver) for child in _all_children(contents))
        return self._dynamic

    def _resolve(self, keyword: str, ref: str, resolver: Any) -> list[int]:
        """What ``ref`` may resolve to: one node, or for a dynamic one, several.

        Raises :class:`_Refused` when it resolves to nothing.
        """
        targets: list[int] = []
        try:
            resolved = resolver.lookup(ref)
        except referencing.exceptions.Unresolvable as exc:
            if keyword == "$ref":
                raise _Refused(f"{UNRESOLVED}{exc}") from None
        else:
            targets.append(self._add(resolved.contents, resolved.resolver))
        if keyword != "$ref":
            # Resolved against the dynamic scope when checking: any anchor of
            # that name may be the target (any recursive anchor, for
            # $recursiveRef).
            name = "" if keyword == "$recursiveRef" else ref.partition("#")[2]
            for contents, where in self._dynamic_anchors().get(name, ()):
                targets.append(self._add(contents, where))
            if not targets:
                raise _Refused(f"{UNRESOLVED}{ref!r}")
        return sorted(set(targets))

    def _link(self, number: int, schema: Mapping[str, Any], resolver: Any) -> None:
        if _KEYWORDS.isdisjoint(schema) and not isinstance(schema.get("type"), list):
            return  # a leaf: most schema objects (milliseconds per thousand)
        node = self.nodes[number]
        add = self._add
        for keyword in _IN_PLACE_LISTS:
            branches = schema.get(keyword)
            if isinstance(branches, list):
                node.in_place.extend(add(b, resolver) for b in branches)
        for keyword in _IN_PLACE_ONE:
            if keyword in schema:
                node.in_place.append(add(schema[keyword], resolver))
        for keyword in _IN_PLACE_MAPS:
            branches = schema.get(keyword)
            if isinstance(branches, Mapping):
                node.in_place.extend(
                    add(b, resolver)
                    for b in branches.values()
                    if isinstance(b, Mapping)
                )
        for keyword in _IN_PLACE_ONE_OR_LIST:
            value = schema.get(keyword)
            for branch in value if isinstance(value, list) else [value]:
                if isinstance(branch, Mapping):
                    node.in_place.append(add(branch, resolver))
        for keyword in _IN_PLACE_SCHEMAS_IN_LIST:
            value = schema.get(keyword)
            if isinstance(value, list):
                node.in_place.extend(
                    add(b, resolver) for b in value if isinstance(b, Mapping)
                )
        for keyword in _REFS:
            ref = schema.get(keyword)
            if isinstance(ref, str):
                targets = self._resolve(keyword, ref, resolver)
                if len(targets) == 1:
                    node.in_place.append(targets[0])
                else:
                    node.choices.append(tuple(targets))
            elif keyword == "$recursiveRef" and ref is not None:
                raise _Refused(f"{UNRESOLVED}{ref!r}")
        self._link_children(node, schema, resolver)

    def _link_children(
        self, node: _Node, schema: Mapping[str, Any], resolver: Any
    ) -> None:
        add = self._add
        for keyword in _OBJECT_ALWAYS:
            if keyword in schema:
                node.obj.append(add(schema[keyword], resolver))
        patterns = schema.get("patternProperties")
        if isinstance(patterns, Mapping):
            node.obj.extend(add(p, resolver) for p in patterns.values())
        other = []
        if "additionalProperties" in schema:
            other.append(add(schema["additionalProperties"], resolver))
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            for name, subschema in properties.items():
                node.keyed[("p", name)] = [add(subschema, resolver)]
        if other:
            node.keyed[_OTHER_PROPERTY] = other
        for keyword in _ARRAY_ALWAYS:
            if keyword in schema:
                node.array.append(add(schema[keyword], resolver))
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(items, list):
            prefix = items  # drafts before 2020-12: a list of items is a prefix
        elif items is not None:
            node.array.append(add(items, resolver))
        if isinstance(prefix, list):
            for position, subschema in enumerate(prefix):
                node.keyed[("i", position)] = [add(subschema, resolver)]
        if "propertyNames" in schema:
            node.keyed[_PROPERTY_NAME] = [add(schema["propertyNames"], resolver)]


def _all_children(schema: Mapping[str, Any]) -> Iterator[Any]:
    """Every value that may hold a subschema (for finding anchors)."""
    for value in schema.values():
        if isinstance(value, Mapping):
            yield value
            yield from value.values()
        elif isinstance(value, list):
            yield from value


# --- the analysis ------------------------------------------------------------------


def _costs(graph: _Graph) -> None:
    """Size of each node's in-place closure; refuse a cycle or a bomb.

    Iterative (a long chain of references must not exhaust the stack).
    """
    nodes = graph.nodes
    opened: set[int] = set()
    for start in range(len(nodes)):
        if nodes[start].cost:
            continue
        stack: list[tuple[int, int]] = [(start, 0)]
        opened.add(start)
        while stack:
            number, position = stack[-1]
            node = nodes[number]
            held = node.held()
            if position < len(held):
                stack[-1] = (number, position + 1)
                child = held[position]
                if child == _LEAF or nodes[child].cost:
                    continue
                if child in opened:
                    raise _Refused(
                        "a reference leads back to itself without going deeper "
                        "into the value, so checking a value would never end"
                    )
                opened.add(child)
                stack.append((child, 0))
                continue
            stack.pop()
            opened.discard(number)
            total = 1
            for child in node.in_place:
                total += 1 if child == _LEAF else nodes[child].cost
            for group in node.choices:
                total += max(1 if c == _LEAF else nodes[c].cost for c in group)
            if total > MAX_PLACE_COST:
                raise _Refused(
                    f"one place in a value would be checked against more than "
                    f"{MAX_PLACE_COST} subschemas (through allOf, anyOf, oneOf, "
                    "not, if/then/else, dependencies or references)"
                )
            node.cost = total


class _Sums:
    """For one node at one level: subschemas checked under each key, summed."""

    __slots__ = ("array", "keyed", "obj")

    def __init__(self) -> None:
        self.obj = 0
        self.array = 0
        self.keyed: dict[_Key, int] = {}

    def default(self, key: _Key) -> int:
        if key == _PROPERTY_NAME:
            return 0
        return self.obj if key[0] == "p" else self.array

    def add(self, other: _Sums) -> int:
        """Add ``other`` key by key; return the keys handled (work done)."""
        keys = self.keyed.keys() | other.keyed.keys()
        for key in keys:
            self.keyed[key] = self.keyed.get(key, self.default(key)) + other.keyed.get(
                key, other.default(key)
            )
        self.obj += other.obj
        self.array += other.array
        return len(keys)

    def most(self) -> int:
        return max(self.obj, self.array, *self.keyed.values())

    @staticmethod
    def largest(choices: list[_Sums]) -> tuple[_Sums, int]:
        """Key by key, the most of ``choices``; and the keys handled."""
        result = _Sums()
        keys: set[_Key] = set()
        for choice in choices:
            keys.update(choice.keyed)
        for key in keys:
            result.keyed[key] = max(c.keyed.get(key, c.default(key)) for c in choices)
        result.obj = max(c.obj for c in choices)
        result.array = max(c.array for c in choices)
        return result, len(keys) * len(choices)


class _Depth:
    """``B(n, d)`` level by level (see the module docstring)."""

    def __init__(self, graph: _Graph) -> None:
        self.nodes = graph.nodes
        self.root = graph.root
        self.work = 0
        self.parents: dict[int, list[int]] = {}
        for number, node in enumerate(self.nodes):
            for child in node.held():
                if child != _LEAF:
                    self.parents.setdefault(child, []).append(number)
        # B(n, d - 1) of the nodes where it is not 0. Once 0 it stays 0 (no
        # place checked d levels down: none further down either).
        self.bound = {n: node.cost for n, node in enumerate(self.nodes)}
        self.bound[_LEAF] = 1  # true/false: checked once, no children

    def profile(self) -> tuple[tuple[int, ...], int | None]:
        """``B(root, d)`` for ``d`` = 0, 1, ... and where it starts repeating.

        Returns ``(values, start)``: with ``start`` set, the values from
        ``start`` on repeat for ever (a tree, or a place the value cannot
        go below when the last value is 0); with ``start`` ``None``, the
        last value passed :data:`PROFILE_CAP` (or :data:`MAX_DEPTH_STEPS`
        levels were worked out): deeper places cost too much. Raises
        :class:`_Refused` if the analysis itself grows too large.
        """
        values = [self.bound[self.root]]
        seen = {self._state(): 0}
        for level in range(1, MAX_DEPTH_STEPS + 1):
            self.bound = self._next_level()
            if self.work > _MAX_WORK:
                raise _Refused("its references are too involved to analyse")
            deepest = self.bound.get(self.root, 0)
            if deepest > PROFILE_CAP:
                return tuple(values), None
            if not deepest:
                return (*values, 0), level
            state = self._state()
            if state in seen:
                return tuple(values), seen[state]
            seen[state] = level
            values.append(deepest)
        return tuple(values), None

    def _state(self) -> bytes:
        text = repr(sorted(self.bound.items())).encode()
        return hashlib.blake2b(text, digest_size=16).digest()

    def _next_level(self) -> dict[int, int]:
        nodes, bound = self.nodes, self.bound
        self.work += len(bound)
        alive = {n for n in bound if n != _LEAF and _reaches(nodes[n], bound)}
        stack = list(alive)
        while stack:  # and what holds them in place
            for parent in self.parents.get(stack.pop(), ()):
                if parent in bound and parent not in alive:
                    alive.add(parent)
                    stack.append(parent)
        sums: dict[int, _Sums] = {}
        fresh: dict[int, int] = {}
        for number in _in_place_order(nodes, alive):
            share()
            node = nodes[number]
            own = _Sums()
            own.obj = sum(bound.get(c, 0) for c in node.obj)
            own.array = sum(bound.get(c, 0) for c in node.array)
            for key, children in node.keyed.items():
                if key != _OTHER_PROPERTY:
                    own.keyed[key] = own.default(key) + sum(
                        bound.get(c, 0) for c in children
                    )
            own.obj += sum(bound.get(c, 0) for c in node.keyed.get(_OTHER_PROPERTY, ()))
            self.work += 1 + len(node.keyed)
            for child in node.in_place:
                if child in alive:
                    self.work += own.add(sums[child])
            for group in node.choices:
                choices = [sums[c] for c in group if c in alive]
                if choices:
                    largest, work = _Sums.largest(choices)
                    self.work += work + own.add(largest)
            sums[number] = own
            most = min(own.most(), PROFILE_CAP + 1)
            if most:
                fresh[number] = most
        return fresh


def _reaches(node: _Node, bound: Mapping[int, int]) -> bool:
    """Whether a child of ``node`` is checked one level further down."""
    if any(c in bound for c in node.obj) or any(c in bound for c in node.array):
        return True
    return any(c in bound for listed in node.keyed.values() for c in listed)


def _in_place_order(nodes: list[_Node], alive: set[int]) -> list[int]:
    """``alive``, each node after the alive nodes it holds in place."""
    order: list[int] = []
    done: set[int] = set()
    for start in alive:
        if start in done:
            continue
        done.add(start)
        stack = [(start, 0)]
        while stack:
            number, position = stack[-1]
            children = nodes[number].held()
            if position < len(children):
                stack[-1] = (number, position + 1)
                child = children[position]
                if child in alive and child not in done:
                    done.add(child)
                    stack.append((child, 0))
                continue
            stack.pop()
            order.append(number)
    return order


@dataclasses.dataclass(frozen=True, slots=True)
class Complexity:
    """What :func:`analyse` found about one schema."""

    problem: str | None = None
    """Why no value can be checked against it in bounded time."""
    profile: tuple[int, ...] = ()
    """Subschemas checked at one place, by the place's depth in the value,
    when that grows past :data:`MAX_PLACE_COST` with depth (empty: it never
    does, and every value's work is bounded by its size)."""
    repeats_from: int | None = None
    """Where :attr:`profile` repeats from (``None``: deeper than the profile
    costs too much)."""
    place_cost: int = 1
    """The most subschemas checked at one place of any value (at most
    :data:`MAX_PLACE_COST` without a :attr:`profile`)."""

    @property
    def depth_limited(self) -> int | None:
        """The first depth whose places pass :data:`MAX_PLACE_COST`, if any."""
        for depth, cost in enumerate(self.profile):
            if cost > MAX_PLACE_COST:
                return depth
        return len(self.profile) if self.profile else None

    def work(self, value: Any, limit: int) -> int | None:
        """About how many subschemas checking ``value`` takes, if at most ``limit``.

        ``None`` when it is more (counting stops there). Without a profile,
        0: the work is bounded by the value's size.
        """
        profile = self.profile
        if not profile:
            return 0
        start, size = self.repeats_from, len(profile)
        total = 0
        stack = [(value, 0)]
        while stack:
            item, depth = stack.pop()
            if depth < size:
                total += profile[depth]
            elif start is None:
                return None
            else:
                total += profile[start + (depth - start) % (size - start)]
            if total > limit:
                return None
            if isinstance(item, dict):
                stack.extend((child, depth + 1) for child in item.values())
            elif isinstance(item, list):
                stack.extend((child, depth + 1) for child in item)
        return total


def analyse(schema: Mapping[str, Any], dialect: str) -> Complexity:
    """Bound the work of checking values against ``schema``.

    ``dialect`` is the URI of the draft ``schema`` is checked under (its
    references resolve as that draft says). A problem in place (every value
    costs too much, or a reference never resolves) is a
    :attr:`Complexity.problem`; work that grows with the value's depth is a
    :attr:`Complexity.profile`, so that each value's work can be told
    before it is checked (:meth:`Complexity.work`) and shallow values still
    are. Bounded work itself: at most :data:`MAX_NODES` subschemas and a
    few million steps, else a problem.
    """
    try:
        graph = _Graph(schema, dialect)
        _costs(graph)
        values, start = _Depth(graph).profile()
    except _Refused as exc:
        return Complexity(str(exc))
    most = min(max(values), PROFILE_CAP)
    if start is not None and most <= MAX_PLACE_COST:
        # Bounded at every depth, by the in-place limit.
        return Complexity(place_cost=most)
    return Complexity(None, values, start, most)
