"""Cached JSON-Schema validators, shared by validation and generation.

Two validators per schema: ``jsonschema`` (the reference, with readable
errors) and ``jsonschema-rs`` (about 35 times faster) for the yes/no
question asked on every round trip. :func:`is_valid` asks the fast one and
lets the reference decide when it says no. The fast one's yes is trusted
only where the two are known to agree: a schema with ``multipleOf`` is
always checked by the reference, because the two do its floating-point
arithmetic differently (``0.3`` is a multiple of ``0.1`` for one, not the
other).

Schemas come from games, so neither validator may do anything a schema
asks beyond validating:

* No network: a ``$ref`` to ``http://...`` is never fetched (both libraries
  would, by default; the reference even on the event loop). References
  resolve within the schema and the bundled meta-schemas only;
  :func:`schema_problem` reports one that does not.
* No backtracking regex: the reference validator's ``pattern``,
  ``patternProperties``, ``additionalProperties`` and
  ``unevaluatedProperties`` match with :mod:`neuro_api._regex` (linear
  time), never with ``re``.
* Meta-validation by jsonschema-rs (a megabyte of schema in about 20 ms;
  the reference took 12 s).
* Bounded work: schemas whose checking work no value can bound are refused
  (:mod:`neuro_api._complexity`), a value too costly for its schema is not
  checked (:func:`too_costly_to_check`), and the reference validator stops
  after a budget of steps per question (:mod:`neuro_api._steps`).
"""

from __future__ import annotations

import dis
import functools
import itertools
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import jsonschema_rs
import orjson
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema import validators as jsonschema_validators
from jsonschema.protocols import Validator
from jsonschema_specifications import REGISTRY as SPECIFICATIONS

from neuro_api._cache import sized_cache
from neuro_api._complexity import UNRESOLVED, Complexity, analyse
from neuro_api._keywords import find_patterns
from neuro_api._regex import PATTERN_OPTIONS, SafeRe, pattern_problem
from neuro_api._steps import CheckTooCostly, counted, reference_steps, steps_for

__all__ = [
    "INVALID",
    "MAX_CHECK_WORK",
    "TOO_COMPLEX",
    "SchemaError",
    "canonical",
    "depth_limited",
    "get_validator",
    "is_valid",
    "safe_validator_class",
    "schema_problem",
    "schema_problem_kind",
    "steps_to_check",
    "too_costly_to_check",
    "validity_check",
]

# Every cache here holds at most this much schema text, and no schema longer
# than _ENTRY_BYTES (see neuro_api._cache).
_CACHE_BYTES: Final = 8 << 20
_ENTRY_BYTES: Final = 256 << 10


class SchemaError(ValueError):
    """A schema that is not a valid JSON schema (meta-validation failed)."""


def canonical(schema: Mapping[str, Any]) -> bytes:
    """Return the schema's canonical JSON (sorted keys): the cache key.

    Raises :class:`SchemaError` for a schema orjson cannot write (nested
    deeper than 255 levels), which no real action needs.
    """
    try:
        return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise SchemaError(f"schema cannot be encoded: {exc}") from None


# --- drafts ------------------------------------------------------------------

_DRAFTS: Final[tuple[type[Validator], ...]] = (
    jsonschema_validators.Draft3Validator,
    jsonschema_validators.Draft4Validator,
    jsonschema_validators.Draft6Validator,
    jsonschema_validators.Draft7Validator,
    jsonschema_validators.Draft201909Validator,
    jsonschema_validators.Draft202012Validator,
)
_LATEST: Final = jsonschema_validators.Draft202012Validator
_RUST_DRAFTS: Final = frozenset(_DRAFTS[1:])  # jsonschema-rs has no draft 3


def _normal_uri(uri: str) -> str:
    return urlsplit(uri).geturl().rstrip("#")


def _id_of(schema: Mapping[str, Any]) -> str:
    return str(schema.get("$id", schema.get("id", "")))


_BY_URI: Final = {_normal_uri(_id_of(cls.META_SCHEMA)): cls for cls in _DRAFTS}


def _draft(schema: Mapping[str, Any]) -> type[Validator] | None:
    """The draft ``$schema`` names; ``None`` for a URI that names none."""
    uri = schema.get("$schema")
    if uri is None:
        return _LATEST
    if not isinstance(uri, str):
        return None
    return _BY_URI.get(_normal_uri(uri))


def _for_rust(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` as jsonschema-rs may see it (a shallow copy).

    An unknown ``$schema`` would make it fetch that URI as a meta-schema;
    like the reference, it validates such a schema as the latest draft.
    """
    if isinstance(schema.get("$schema"), str) and _draft(schema) is None:
        return {k: v for k, v in schema.items() if k != "$schema"}
    return dict(schema)


def _rust_validator(schema: Mapping[str, Any]) -> Any:
    """Compile ``schema`` with jsonschema-rs: offline, bounded regexes.

    Raises whatever jsonschema-rs raises for a schema it cannot compile.
    """
    return jsonschema_rs.validator_for(
        _for_rust(schema),
        offline=True,
        validate_formats=False,
        pattern_options=PATTERN_OPTIONS,
    )


# --- the reference validator, without re ------------------------------------


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _regex_calls(code: types.CodeType) -> Iterator[str]:
    """Attributes a function reads off the global ``re`` (``search`` ...)."""
    instructions = list(dis.get_instructions(code))
    for here, following in itertools.pairwise(instructions):
        if here.opname == "LOAD_GLOBAL" and here.argval == "re":
            yield str(following.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _regex_calls(const)


def _without_re(
    function: types.FunctionType, done: dict[types.FunctionType, types.FunctionType]
) -> types.FunctionType:
    """``function``, or a copy whose global ``re`` is :class:`SafeRe`.

    jsonschema's keyword functions call ``re.search`` themselves or through
    helpers of their module (``find_additional_properties`` ...). A copy is
    made of each function that does, directly or through such a helper, with
    the same code and a globals mapping of its own in which ``re`` (and each
    such helper) is replaced; jsonschema itself is not changed.
    """
    if function in done:
        return done[function]
    module_globals = function.__globals__
    helpers = {
        name: value
        for name in set(_code_names(function.__code__))
        if isinstance(value := module_globals.get(name), types.FunctionType)
        and value.__module__.startswith("jsonschema")
    }
    uses_re = "re" in set(_code_names(function.__code__))
    new_globals = dict(module_globals)
    copy = types.FunctionType(
        function.__code__,
        new_globals,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    done[function] = copy  # before the helpers: they may be recursive
    changed = uses_re
    for name, helper in helpers.items():
        safe = _without_re(helper, done)
        if safe is not helper:
            new_globals[name] = safe
            changed = True
    if not changed:
        done[function] = function
        return function
    if uses_re:
        new_globals["re"] = SafeRe
    return copy


@functools.cache
def safe_validator_class(cls: type[Validator]) -> type[Validator]:
    """``cls`` with every keyword that matches a regex matching in linear time.

    Every keyword also counts its evaluations against the step budget
    (:mod:`neuro_api._steps`). Remote references are refused: instances get
    the bundled meta-schemas as their only registry (see
    :func:`get_validator`).
    """
    done: dict[types.FunctionType, types.FunctionType] = {}
    replaced = {}
    for keyword, function in cls.VALIDATORS.items():
        safe = function
        if isinstance(function, types.FunctionType):
            safe = _without_re(function, done)
        replaced[keyword] = counted(safe)
    safe_class: type[Validator] = jsonschema_validators.extend(  # type: ignore[no-untyped-call]
        cls, replaced
    )
    return safe_class


def regex_calls_of(cls: type[Validator]) -> set[str]:
    """Names looked up on ``re`` by the keywords of ``cls`` (for tests)."""
    found: set[str] = set()
    for function in cls.VALIDATORS.values():
        if isinstance(function, types.FunctionType):
            found.update(_reachable_regex_calls(function, set()))
    return found


def _reachable_regex_calls(
    function: types.FunctionType, seen: set[types.FunctionType]
) -> Iterator[str]:
    if function in seen:
        return
    seen.add(function)
    yield from _regex_calls(function.__code__)
    for name in set(_code_names(function.__code__)):
        helper = function.__globals__.get(name)
        if isinstance(helper, types.FunctionType) and helper.__module__.startswith(
            "jsonschema"
        ):
            yield from _reachable_regex_calls(helper, seen)


# --- checking a schema ---------------------------------------------------------


@functools.cache
def _meta_validator(cls: type[Validator]) -> Any:
    """jsonschema-rs checking schemas against ``cls``'s meta-schema.

    Formats are not asserted (jsonschema-rs would for drafts 4 to 7, and
    refuse a pattern only Python writes): patterns are checked by
    :func:`_pattern_problem` for every draft alike.
    """
    meta = SPECIFICATIONS.contents(_id_of(cls.META_SCHEMA))
    return jsonschema_rs.validator_for(meta, validate_formats=False, offline=True)


def _pattern_problem(schema: Mapping[str, Any]) -> str | None:
    for pattern, where in find_patterns(schema):
        why = pattern_problem(pattern)
        if why is not None:
            return f"{pattern[:100]!r} {why} (at {where.lstrip('/')})"
    return None


def _meta_problem(schema: Mapping[str, Any]) -> str | None:
    cls = _draft(schema) or _LATEST
    if cls in _RUST_DRAFTS:
        for error in _meta_validator(cls).iter_errors(_for_rust(schema)):
            where = "/".join(str(p) for p in error.instance_path) or "(root)"
            return f"{error.message} (at {where})"
        return _pattern_problem(schema)
    # Draft 3, which only the reference knows (and which nobody writes now).
    try:
        cls.check_schema(dict(schema))
    except jsonschema_exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return f"{exc.message} (at {where})"
    return None


def _reference_problem(schema: Mapping[str, Any]) -> str | None:
    """Why jsonschema-rs cannot compile ``schema`` when that means it is broken.

    A reference that does not resolve within the schema is reported; a
    pattern its linear-time engine does not take (backreferences, or
    ``a{,3}`` written for Python) is not a problem: the reference validator
    matches it (see :mod:`neuro_api._regex`).
    """
    if (_draft(schema) or _LATEST) not in _RUST_DRAFTS:
        return None
    try:
        _rust_validator(schema)
    except jsonschema_rs.ValidationError as exc:
        if isinstance(exc.kind, jsonschema_rs.ValidationErrorKind.Referencing):
            return (
                "a reference cannot be resolved within the schema (references "
                f"are never fetched): {exc.message}"
            )
    except jsonschema_rs.ReferencingError as exc:
        return (
            "a reference cannot be resolved within the schema (references "
            f"are never fetched): {exc}"
        )
    return None


INVALID: Final = "invalid"
"""Kind of problem: not a valid JSON schema (or a reference that does not
resolve within it)."""
TOO_COMPLEX: Final = "too-complex"
"""Kind of problem: valid, but checking a value could take too long."""


@sized_cache(_CACHE_BYTES, _ENTRY_BYTES)
def _complexity_for_text(text: bytes) -> Complexity:
    schema = orjson.loads(text)
    return analyse(schema, _id_of((_draft(schema) or _LATEST).META_SCHEMA))


@sized_cache(_CACHE_BYTES, _ENTRY_BYTES)
def _problem_for_text(text: bytes) -> tuple[str, str] | None:
    schema = orjson.loads(text)
    problem = _meta_problem(schema)
    if problem is not None:
        return INVALID, problem
    problem = _complexity_for_text(text).problem
    if problem is not None:
        kind = INVALID if problem.startswith(UNRESOLVED) else TOO_COMPLEX
        return kind, problem
    problem = _reference_problem(schema)
    return None if problem is None else (INVALID, problem)


MAX_CHECK_WORK: Final = 200_000
"""Most subschema checks one value may take, where a schema's work grows
with the value's depth (see :mod:`neuro_api._complexity`): milliseconds for
jsonschema-rs, a fraction of a second for the reference validator."""


def _usable_complexity(text: bytes) -> Complexity:
    problem = _problem_for_text(text)
    if problem is not None:
        raise SchemaError(problem[1])
    return _complexity_for_text(text)


def depth_limited(schema: Mapping[str, Any]) -> int | None:
    """The depth from which places in data cost ``schema`` more and more.

    ``None`` for nearly every schema: only one whose references apply to the
    same part of a value again and again, multiplying with each level, has
    one; data deep enough past it is refused unchecked
    (:func:`too_costly_to_check`). Raises :class:`SchemaError` if the schema
    itself is invalid.
    """
    return _usable_complexity(canonical(schema)).depth_limited


def steps_to_check(schema: Mapping[str, Any], value: Any) -> int:
    """The reference validator's step budget for checking ``value``.

    Grows with the value's size and the schema's cost per place (see
    :mod:`neuro_api._steps`). Raises :class:`SchemaError` if the schema
    itself is invalid.
    """
    return steps_for(value, _usable_complexity(canonical(schema)).place_cost)


def too_costly_to_check(schema: Mapping[str, Any], value: Any) -> bool:
    """Whether checking ``value`` would take more than :data:`MAX_CHECK_WORK`.

    Always ``False`` for a schema without :func:`depth_limited`; else the
    value is walked once. Raises :class:`SchemaError` if the schema itself is
    invalid.
    """
    complexity = _usable_complexity(canonical(schema))
    return complexity.work(value, MAX_CHECK_WORK) is None


def schema_problem_kind(schema: Mapping[str, Any]) -> tuple[str, str] | None:
    """What is wrong with ``schema`` and why (see :func:`schema_problem`), or ``None``.

    The kind is :data:`INVALID` or :data:`TOO_COMPLEX`.
    """
    return _problem_for_text(canonical(schema))


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` is not a usable JSON schema, or ``None``.

    Meta-validation against its draft (``$schema``; the latest when absent
    or unknown), validation work a value could cause (see
    :mod:`neuro_api._complexity`) and references that do not resolve within
    the schema.
    Raises :class:`SchemaError` only for a schema too deep to encode.
    """
    found = schema_problem_kind(schema)
    return None if found is None else found[1]


# --- validators -----------------------------------------------------------------


@sized_cache(_CACHE_BYTES, _ENTRY_BYTES)
def _validator_for_text(text: bytes) -> Validator:
    problem = _problem_for_text(text)
    if problem is not None:
        raise SchemaError(problem[1])
    schema = orjson.loads(text)
    cls = safe_validator_class(_draft(schema) or _LATEST)
    validator: Validator = cls(schema, registry=SPECIFICATIONS)
    return validator


def get_validator(schema: Mapping[str, Any]) -> Validator:
    """Return the cached reference validator of ``schema`` (built on first use).

    Raises :class:`SchemaError` if the schema itself is invalid (that is
    re-checked each call, as exceptions are not cached). Schemas are keyed by
    their canonical JSON, so equal schemas share one validator; the cache
    holds up to 8 MiB of schema text, and none longer than 256 KiB.
    """
    return _validator_for_text(canonical(schema))


@sized_cache(_CACHE_BYTES, _ENTRY_BYTES)
def _fast_for_text(text: bytes) -> Callable[[Any], bool] | None:
    try:
        return _rust_validator(orjson.loads(text)).is_valid  # type: ignore[no-any-return]
    except Exception:  # a schema it cannot compile (a Python-only regex ...)
        return None


@sized_cache(_CACHE_BYTES, _ENTRY_BYTES)
def _check_for_text(text: bytes) -> Callable[[Any], bool]:
    reference = _validator_for_text(text).is_valid
    fast = None if b'"multipleOf"' in text else _fast_for_text(text)
    profile = _complexity_for_text(text)

    def check(value: Any) -> bool:
        if profile.profile and profile.work(value, MAX_CHECK_WORK) is None:
            return False  # too costly to check (too deep for this schema)
        if fast is not None and fast(value):
            return True
        try:
            with reference_steps(steps_for(value, profile.place_cost)):
                return bool(reference(value))
        except CheckTooCostly:
            # The fast validator said no (or is not trusted here), and the
            # reference cannot say yes in time.
            return False

    return check


def validity_check(schema: Mapping[str, Any]) -> Callable[[Any], bool]:
    """Return the cached yes/no check of ``schema``: what :func:`is_valid` asks.

    For callers that check many values against one schema: the schema is
    encoded and looked up once, not per value. Raises :class:`SchemaError`
    if the schema itself is invalid.
    """
    return _check_for_text(canonical(schema))


def is_valid(schema: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` validates against ``schema``, fast.

    Raises :class:`SchemaError` if the schema itself is invalid.
    """
    return _check_for_text(canonical(schema))(value)
