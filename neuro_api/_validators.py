"""Cached JSON-Schema validators, shared by validation and generation.

Two validators per schema: ``jsonschema`` (the reference, with readable
errors) and ``jsonschema-rs`` (about 35 times faster) for the yes/no
question asked on every round trip. :func:`is_valid` asks the fast one and
lets the reference decide when it says no. The fast one's yes is trusted
only where the two are known to agree: a schema with ``multipleOf`` is
always checked by the reference, because the two do its floating-point
arithmetic differently (``0.3`` is a multiple of ``0.1`` for one, not the
other).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema_rs
import orjson
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for


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


@functools.lru_cache(maxsize=1024)
def _validator_for_text(text: bytes) -> Validator:
    schema = orjson.loads(text)
    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema_exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise SchemaError(f"{exc.message} (at {where})") from None
    validator: Validator = cls(schema)
    return validator


def get_validator(schema: Mapping[str, Any]) -> Validator:
    """Return the cached validator of ``schema`` (built on first use).

    Raises :class:`SchemaError` if the schema itself is invalid (that is
    re-checked each call, as exceptions are not cached). Schemas are keyed by
    their canonical JSON, so equal schemas share one validator; the cache
    holds the 1024 most recently used.
    """
    return _validator_for_text(canonical(schema))


@functools.lru_cache(maxsize=1024)
def _fast_for_text(text: bytes) -> Callable[[Any], bool] | None:
    try:
        return jsonschema_rs.validator_for(orjson.loads(text)).is_valid
    except Exception:  # a schema it cannot compile (exotic regex ...)
        return None


@functools.lru_cache(maxsize=1024)
def _check_for_text(text: bytes) -> Callable[[Any], bool]:
    reference = _validator_for_text(text).is_valid
    fast = None if b'"multipleOf"' in text else _fast_for_text(text)
    if fast is None:
        return lambda value: bool(reference(value))
    return lambda value: fast(value) or bool(reference(value))


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
