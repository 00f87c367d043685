"""How engine hooks take ``priority``: decided once per class, from their signature.

The reference page of ``neuro_api.server`` (and code written for neuro-api
4.0.0) implements ``choose_force_action(self, game_title, state, query,
ephemeral_context, actions)``: five arguments, no ``priority``. Ours add
``priority`` as a sixth. A hook gets ``priority`` positionally when it has
room for it there (``*args`` included), by keyword when it has a
keyword-only ``priority`` (or ``**kwargs`` and a parameter so named), and
not at all otherwise. Looking once when the class is made costs nothing per
force.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final, Literal

__all__ = ["KEYWORD", "POSITIONAL", "PriorityStyle", "priority_style", "takes_priority"]

POSITIONAL: Final = "positional"
KEYWORD: Final = "keyword"
PriorityStyle = Literal["positional", "keyword"] | None
"""How to pass ``priority`` to a hook: positionally, by keyword, or not."""

_POSITIONAL_KINDS = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
)


def priority_style(hook: Callable[..., Any], arguments: int) -> PriorityStyle:
    """How ``hook`` (a function defined in a class) takes ``priority``.

    ``arguments`` counts the arguments before ``priority``, ``self``
    included. A signature that cannot be read (a C function) is assumed to
    take it positionally, as the hooks of this package do.
    """
    try:
        parameters = list(inspect.signature(hook).parameters.values())
    except (TypeError, ValueError):
        return POSITIONAL
    positional = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return POSITIONAL
        if parameter.kind in _POSITIONAL_KINDS:
            positional += 1
            if positional > arguments:
                return POSITIONAL
        elif (
            parameter.kind is inspect.Parameter.KEYWORD_ONLY
            and parameter.name == "priority"
        ):
            return KEYWORD
    return None


def takes_priority(hook: Callable[..., Any], arguments: int) -> bool:
    """Whether ``hook`` takes ``priority`` at all (see :func:`priority_style`)."""
    return priority_style(hook, arguments) is not None
