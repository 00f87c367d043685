"""Runtime checks of plain dicts against ``TypedDict`` definitions.

The helpers :mod:`neuro_api.command` exports under the names of the upstream
package ``neuro-api`` 4.0.0 (``check_typed_dict`` and the
``convert_parameterized_generic*`` functions), with the same results and
error messages, written for this package. They check one level: a value's
outer type (``list`` for ``list[str]``, ``dict`` for a nested ``TypedDict``,
either member for ``str | int``, one of the values for a ``Literal``), not
what is inside it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, Required, TypeVar, get_args, get_origin

__all__ = [
    "check_typed_dict",
    "convert_parameterized_generic",
    "convert_parameterized_generic_nonunion",
    "convert_parameterized_generic_union_items",
]

T = TypeVar("T")

_WRAPPERS: tuple[Any, ...] = (NotRequired, Required, typing.Annotated)


def convert_parameterized_generic_nonunion(generic: Any) -> Any:
    """The runtime class a (non-union) annotation stands for.

    ``list[str]`` gives ``list``, ``NotRequired[X]``, ``Required[X]`` and
    ``Optional``-free wrappers give what ``X`` gives, a ``TypedDict`` gives
    ``dict``; anything else is returned as it is.
    """
    if isinstance(generic, types.GenericAlias):
        return generic.__origin__
    if get_origin(generic) in _WRAPPERS:
        return convert_parameterized_generic_nonunion(get_args(generic)[0])
    if typing.is_typeddict(generic):
        return dict
    return generic


def convert_parameterized_generic_union_items(generic: Any) -> Any:
    """The classes of a union's members as a tuple; anything else unchanged."""
    if isinstance(generic, types.UnionType) or get_origin(generic) is typing.Union:
        return tuple(
            convert_parameterized_generic_nonunion(g) for g in get_args(generic)
        )
    return generic


def convert_parameterized_generic(generic: Any) -> Any:
    """What ``isinstance`` can test for an annotation: a class or a tuple of them."""
    return convert_parameterized_generic_union_items(
        convert_parameterized_generic_nonunion(generic)
    )


def _optional(annotation: Any) -> bool:
    return get_origin(annotation) is NotRequired


def _matches(value: object, annotation: Any) -> bool:
    expected = convert_parameterized_generic(annotation)
    if get_origin(expected) is Literal:
        return value in get_args(expected)
    if expected is Any or expected is object:
        return True
    if expected is float:  # JSON numbers: an int is a valid float
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected)


def check_typed_dict(data: Mapping[str, object], typed_dict: type[T]) -> T:
    """``data`` as a ``typed_dict``, after checking its keys and their types.

    Raises :class:`ValueError` for keys the ``TypedDict`` does not declare
    (``"Following extra keys were found: ..."``) or for a required key that
    is missing (``"'id' is missing (type <class 'str'>)"``), and
    :class:`TypeError` for a value of the wrong type (``None`` included,
    also for a ``NotRequired`` key: leave such a key out instead). A
    ``NameError`` from an annotation that does not resolve propagates.
    """
    if not typing.is_typeddict(typed_dict):
        raise TypeError(f"{typed_dict!r} is not a TypedDict")
    annotations = typing.get_type_hints(typed_dict, include_extras=True)
    extra = [key for key in data if key not in annotations]
    if extra:
        raise ValueError(
            f"Following extra keys were found: {', '.join(map(repr, extra))}"
        )
    plain_hints = typing.get_type_hints(typed_dict)
    for key, annotation in annotations.items():
        plain = plain_hints[key]
        if key not in data:
            if _optional(annotation) or key not in _required_keys(typed_dict):
                continue
            raise ValueError(f"{key!r} is missing (type {plain!r})")
        if not _matches(data[key], plain):
            raise TypeError(f"{data[key]!r} (key {key!r}) is not instance of {plain!r}")
    return typed_dict(**data)


def _required_keys(typed_dict: type[Any]) -> frozenset[str]:
    keys: frozenset[str] = typed_dict.__required_keys__
    return keys
