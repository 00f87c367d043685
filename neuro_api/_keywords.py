"""Where a JSON schema holds keywords, as opposed to data.

Property names, ``enum`` values, defaults and examples are data: a property
named ``title`` or a ``const`` object with a ``pattern`` key is not a
keyword. Shared by the registration checks and the validators.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from neuro_api._gil import share

__all__ = ["NAME_CHARS", "UNSUPPORTED_KEYWORDS", "find_keywords", "find_patterns"]

UNSUPPORTED_KEYWORDS: Final = frozenset(
    {
        "$anchor", "$comment", "$defs", "$dynamicAnchor", "$dynamicRef", "$id",
        "$ref", "$schema", "$vocabulary", "additionalProperties", "allOf",
        "anyOf", "contentEncoding", "contentMediaType", "contentSchema",
        "dependentRequired", "dependentSchemas", "deprecated", "description",
        "else", "if", "maxProperties", "minProperties", "multipleOf", "not",
        "oneOf", "patternProperties", "readOnly", "then", "title",
        "unevaluatedItems", "unevaluatedProperties", "writeOnly",
    }
)  # fmt: skip
"""Keywords the spec says Neuro "probably does not support well"."""

NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
"""Characters an action name may use."""

# Where JSON Schema (2020-12 and older drafts) holds subschemas. Anything not
# listed - enum, const, default, examples, required ... - holds data, so a
# "title" inside it is not a keyword.
_SCHEMA_VALUED: Final = frozenset(
    {
        "additionalItems", "additionalProperties", "contains", "contentSchema",
        "else", "if", "items", "not", "propertyNames", "then",
        "unevaluatedItems", "unevaluatedProperties",
    }
)  # fmt: skip
_SCHEMA_LISTS: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
_SCHEMA_MAPS: Final = frozenset(
    {
        "$defs",
        "definitions",
        "dependencies",  # draft 7: values are schemas or name lists
        "dependentSchemas",
        "patternProperties",
        "properties",
    }
)


def _pointer(parent: str, key: str | int) -> str:
    token = str(key).replace("~", "~0").replace("/", "~1")
    return f"{parent}/{token}"


def find_keywords(
    schema: Mapping[str, Any], _at: str = ""
) -> Iterator[tuple[str, str]]:
    """Yield ``(keyword, json_pointer)`` for every keyword in keyword position.

    Property names, enum values, defaults and other data are not keywords:
    ``{"properties": {"title": {...}}}`` yields ``properties`` and the
    keywords inside the ``title`` property's schema, never ``title``.
    """
    for key, _, here in _walk(schema, _at):
        yield key, here


def find_patterns(schema: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield ``(regex, json_pointer)`` for every regular expression in ``schema``.

    The values of ``pattern`` and the keys of ``patternProperties``.
    """
    for key, value, here in _walk(schema, ""):
        if key == "pattern" and isinstance(value, str):
            yield value, here
        elif key == "patternProperties" and isinstance(value, Mapping):
            for regex in value:
                if isinstance(regex, str):
                    yield regex, _pointer(here, regex)


def _walk(schema: Mapping[str, Any], at: str) -> Iterator[tuple[str, Any, str]]:
    for key, value in schema.items():
        share()
        here = _pointer(at, key)
        yield key, value, here
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            for name, sub in value.items():
                if isinstance(sub, Mapping):
                    yield from _walk(sub, _pointer(here, name))
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for index, sub in enumerate(value):
                if isinstance(sub, Mapping):
                    yield from _walk(sub, _pointer(here, index))
        elif key in _SCHEMA_VALUED and isinstance(value, Mapping):
            yield from _walk(value, here)
