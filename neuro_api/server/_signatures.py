"""Which engine hooks take ``priority``: decided once per class, from its signature.

The reference page of ``neuro_api.server`` (and code written for neuro-api
4.0.0) implements ``choose_force_action(self, game_title, state, query,
ephemeral_context, actions)``: five arguments, no ``priority``. Ours add
``priority`` as a sixth. A hook is called with ``priority`` when it can take
it: it has a parameter named ``priority``, ``*args``, or room for that many
positional arguments. Looking once when the class is made costs nothing per
force.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["takes_priority"]

_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
)


def takes_priority(hook: Callable[..., Any], arguments: int) -> bool:
    """Whether ``hook`` (a function defined in a class) takes ``priority``.

    ``arguments`` counts the arguments before ``priority``, ``self``
    included. A signature that cannot be read (a C function) is assumed to
    take it, as the hooks of this package do.
    """
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.name == "priority":
            return True
        if parameter.kind in _POSITIONAL:
            positional += 1
    return positional > arguments
