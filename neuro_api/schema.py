"""Action schemas: registration checks, fast validation, random valid data.

* :func:`check_action` returns the diagnostics of one registered action (name
  rules, description, schema shape, JSON-Schema meta-validation, keywords
  Neuro probably does not support).
* :func:`validate_action_data` checks the JSON *string* Neuro sends in an
  ``action`` against the action's schema. Validators are built once per
  schema and cached, so a call costs microseconds, not a schema re-check.
* :func:`generate_data` makes random data that validates against a schema,
  for engines that answer forces on their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

import orjson
from jsonschema import exceptions as jsonschema_exceptions

from neuro_api._cache import sized_cache
from neuro_api._generate import (
    DEFAULT_MAX_SIZE,
    GenerationError,
    GenerationLimitError,
    encode_data,
    generate_data,
)
from neuro_api._keywords import NAME_CHARS, UNSUPPORTED_KEYWORDS, find_keywords
from neuro_api._sizes import least_size
from neuro_api._steps import CheckTooCostly, reference_steps
from neuro_api._validators import (
    MAX_CHECK_WORK,
    TOO_COMPLEX,
    SchemaError,
    depth_limited,
    get_validator,
    is_valid,
    schema_problem_kind,
    steps_to_check,
    too_costly_to_check,
)
from neuro_api.command import Action
from neuro_api.diagnostics import Diagnostic, diagnose

__all__ = [
    "DEFAULT_MAX_SIZE",
    "UNKNOWN_KEYWORDS",
    "UNSUPPORTED_KEYWORDS",
    "GenerationError",
    "GenerationLimitError",
    "SchemaError",
    "ValidationResult",
    "check_action",
    "encode_data",
    "find_keywords",
    "generate_data",
    "get_validator",
    "least_size",
    "validate_action_data",
]


UNKNOWN_KEYWORDS: Final = frozenset({"uniqueItems"})
"""Keywords whose support the spec calls unknown."""


def _keyword_list(hits: list[tuple[str, str]]) -> str:
    return ", ".join(f"{keyword} (at {pointer})" for keyword, pointer in hits)


def _check_name(name: str, game: str | None) -> list[Diagnostic]:
    if not name:
        return [diagnose("action.name-empty", game=game, subject=name)]
    found: list[Diagnostic] = []
    if name != name.lower():
        found.append(
            diagnose("action.name-not-lowercase", game=game, subject=name, name=name)
        )
    lower = name.lower()
    # Most names are fine: one C-speed test first (set difference), the
    # sorted list only for a name that has something to report.
    bad = sorted(set(lower) - NAME_CHARS) if not NAME_CHARS.issuperset(lower) else []
    if bad:
        chars = ", ".join(repr(c) for c in bad)
        found.append(
            diagnose(
                "action.name-invalid-chars",
                game=game,
                subject=name,
                name=name,
                chars=chars,
            )
        )
    return found


_Finding = tuple[str, tuple[tuple[str, str], ...]]
"""A diagnostic id and its template parameters, independent of the action."""


@sized_cache(max_total=8 << 20, max_entry=1 << 20)
def _schema_findings(text: bytes) -> tuple[_Finding, ...]:
    """What is wrong with one schema (by its JSON text), computed once.

    Games register the same schemas on every (re)connect; the checks below
    (meta-validation, the keyword walk) depend on the schema alone.
    """
    schema = orjson.loads(text)
    if not schema:
        return (("action.schema-empty", ()),)
    found: list[_Finding] = []
    if schema.get("type") != "object":
        shown = orjson.dumps(schema["type"]).decode() if "type" in schema else "missing"
        found.append(("action.schema-type-not-object", (("type", shown),)))
    try:
        problem = schema_problem_kind(schema)
    except SchemaError as exc:
        problem = ("invalid", str(exc))
    if problem is not None:
        kind, detail = problem
        if kind == TOO_COMPLEX:
            found.append(("action.schema-too-complex", (("detail", detail),)))
        else:
            found.append(("action.schema-invalid", (("detail", detail),)))
    else:
        depth = depth_limited(schema)
        if depth is not None:
            found.append(("action.schema-depth-limited", (("depth", str(depth)),)))
    hits = list(find_keywords(schema))
    unsupported = [hit for hit in hits if hit[0] in UNSUPPORTED_KEYWORDS]
    if unsupported:
        keywords = _keyword_list(unsupported)
        found.append(("action.schema-unsupported-keywords", (("keywords", keywords),)))
    unknown = [hit for hit in hits if hit[0] in UNKNOWN_KEYWORDS]
    if unknown:
        keywords = _keyword_list(unknown)
        found.append(("action.schema-unknown-keywords", (("keywords", keywords),)))
    found.append(("least-size", (("size", str(least_size(schema))),)))
    return tuple(found)


def _check_schema(
    name: str, schema: Mapping[str, Any], game: str | None, max_generated_size: int
) -> list[Diagnostic]:
    try:
        # Not canonical(): keep the game's key order, so keywords are listed
        # as written.
        text = orjson.dumps(schema)
    except TypeError as exc:  # too deep to encode: nothing else is checkable
        detail = f"schema cannot be encoded: {exc}"
        findings: tuple[_Finding, ...] = (
            ("action.schema-invalid", (("detail", detail),)),
        )
    else:
        findings = _schema_findings(text)
    found = []
    for id_, params in findings:
        shown: dict[str, Any] = dict(params)
        kind = id_
        if id_ == "least-size":
            size = int(shown["size"])
            if size <= max_generated_size:
                continue
            kind = "action.schema-unanswerable"
            shown = {"size": size, "limit": max_generated_size}
        found.append(diagnose(kind, game=game, subject=name, name=name, **shown))
    return found


def check_action(
    action: Action,
    *,
    game: str | None = None,
    max_generated_size: int = DEFAULT_MAX_SIZE,
) -> list[Diagnostic]:
    """Return every diagnostic about one action, in a stable order.

    An empty list means the action is exactly as the spec wants it. Errors
    (``severity == "error"``) mean Neuro cannot use the action as sent.
    ``max_generated_size`` is the server's budget for generated data (see
    :func:`generate_data`): a schema whose valid data cannot be that small
    gets a warning (``action.schema-unanswerable``).
    """
    found = _check_name(action.name, game)
    if not action.description.strip():
        found.append(
            diagnose(
                "action.description-missing",
                game=game,
                subject=action.name,
                name=action.name,
            )
        )
    if action.schema is not None:
        found.extend(
            _check_schema(action.name, action.schema, game, max_generated_size)
        )
    return found


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ValidationResult:
    """Outcome of :func:`validate_action_data`.

    ``value`` is the parsed data when ``ok``; ``reason`` is a sentence fit to
    send back to Neuro in a failing result when not.
    """

    ok: bool
    value: Any = None
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def _error_path(error: jsonschema_exceptions.ValidationError) -> str:
    path = "".join(
        f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
    )
    return f"data{path}"


def validate_action_data(
    schema: Mapping[str, Any] | None, data: str | None
) -> ValidationResult:
    """Check the ``data`` string of an ``action`` against the action's schema.

    An action without a schema (or with ``{}``) accepts any JSON value, or no
    data. With a schema, missing data (``None``, not the JSON text ``"null"``)
    is treated as ``{}`` (an object schema
    with no required properties accepts it). Invalid JSON, a wrong type and
    off-schema values each give a readable :attr:`ValidationResult.reason`.
    So does data too costly to check against this schema (nested deeper
    than its references allow, or over the reference validator's step
    budget; see :doc:`/limits`): the work is bounded whatever the schema.
    Raises :class:`SchemaError` only if the schema itself is invalid (or too
    costly to check any data against).
    """
    if data is None:
        value: Any = None
    else:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            return ValidationResult(
                False, reason=f"Action data is not valid JSON: {_clip(str(exc), 200)}"
            )
    if not schema:
        return ValidationResult(True, value)
    if data is None:
        value = {}  # no data at all stands for an empty object; "null" does not
    if too_costly_to_check(schema, value):
        return ValidationResult(
            False,
            value,
            reason=(
                "Invalid action data: nested too deep for this action's schema, "
                f"checking it would take over {MAX_CHECK_WORK:,} steps"
            ),
        )
    errors: list[Any] = []
    cut = False
    try:
        if is_valid(schema, value):
            return ValidationResult(True, value)
        validator = get_validator(schema)
        # The first problems are enough to say what is wrong; all of them
        # could be a megabyte of data's worth of work.
        with reference_steps(steps_to_check(schema, value)):
            for error in validator.iter_errors(value):
                errors.append(error)
                if len(errors) == _MAX_ERRORS:
                    break
    except CheckTooCostly:
        cut = True
        if not errors:
            return ValidationResult(
                False,
                value,
                reason=(
                    "Invalid action data: checking it against this action's "
                    f"schema takes over {steps_to_check(schema, value):,} steps"
                ),
            )
    except SchemaError:
        raise
    except Exception as exc:  # RecursionError, an unresolvable reference ...
        # Registration refuses such schemas; one made by hand may still be.
        raise SchemaError(f"the schema cannot be used to check data: {exc!r}") from None
    errors.sort(key=lambda e: list(e.absolute_path))
    if not errors:
        return ValidationResult(True, value)
    first = errors[0]
    at_least = "at least " if cut or len(errors) == _MAX_ERRORS else ""
    more = (
        f" (and {at_least}{len(errors) - 1} more problems)" if len(errors) > 1 else ""
    )
    # jsonschema's messages quote the offending value whole: a 1 MB string
    # must not come back to Neuro (or into a log) whole.
    problem = _clip(first.message, _MAX_REASON)
    return ValidationResult(
        False,
        value,
        reason=f"Invalid action data: {_error_path(first)}: {problem}{more}",
    )


_MAX_ERRORS: Final = 100
"""Problems collected to describe invalid data (the count says "100 more")."""
_MAX_REASON: Final = 300
"""Longest problem text quoted in a validation reason, in characters."""


def _clip(text: str, limit: int) -> str:
    """Cut the middle out of a long text; its end often says what was wrong."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    cut = len(text) - limit
    return f"{text[: limit - tail]} [... {cut} characters ...] {text[-tail:]}"
