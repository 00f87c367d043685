"""Guard the public names: what users import must not vanish or drift."""

from __future__ import annotations

import enum
import importlib
import re
from types import ModuleType

import pytest

from neuro_api import command

PUBLIC_MODULES = [
    "neuro_api.api",
    "neuro_api.command",
    "neuro_api.control",
    "neuro_api.diagnostics",
    "neuro_api.manager",
    "neuro_api.manager.tunnels",
    "neuro_api.schema",
    "neuro_api.server",
    "neuro_api.settings",
    "neuro_api.supervisor",
    "neuro_api.trio_ws",
]

# Names the upstream SDK's users import from its ``command`` module.
UPSTREAM_NAMES = [
    "Action",
    "ActionResultData",
    "ActionSchema",
    "ContextData",
    "ForceActionsData",
    "ForcePriority",
    "RegisterActionsData",
    "UnregisterActionsData",
    "actions_force_command",
    "actions_register_command",
    "actions_result_command",
    "actions_unregister_command",
    "context_command",
    "shutdown_ready_command",
    "startup_command",
]


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _isort_key(name: str) -> tuple[int, list[str | int]]:
    """Order ``__all__`` the way ruff's RUF022 does ("isort-style").

    SCREAMING_CASE constants first, then CamelCase classes, then the rest;
    numbers inside a name compare by value.
    """
    if name.isupper() and len(name) > 1:
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    parts = re.split(r"(\d+)", name)
    return group, [int(part) if part.isdigit() else part for part in parts]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_names_exist(name: str) -> None:
    module = _module(name)
    missing = [attr for attr in module.__all__ if not hasattr(module, attr)]
    assert missing == []


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_without_duplicates(name: str) -> None:
    names = list(_module(name).__all__)
    assert names == sorted(names, key=_isort_key)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", UPSTREAM_NAMES)
def test_upstream_names_importable_from_command(name: str) -> None:
    assert name in command.__all__
    assert getattr(command, name) is not None


@pytest.mark.parametrize("name", [n for n in UPSTREAM_NAMES if n.endswith("_command")])
def test_upstream_builders_are_callable(name: str) -> None:
    assert callable(getattr(command, name))


def test_action_is_a_namedtuple() -> None:
    assert issubclass(command.Action, tuple)
    assert command.Action._fields == ("name", "description", "schema")
    action = command.Action("jump", "Jump once")
    assert action.schema is None
    name, description, schema = action
    assert (name, description, schema) == ("jump", "Jump once", None)


def test_force_priority_values() -> None:
    assert issubclass(command.ForcePriority, enum.Enum)
    assert [p.value for p in command.ForcePriority] == [
        "low",
        "medium",
        "high",
        "critical",
    ]
    assert command.ForcePriority("critical") is command.ForcePriority.CRITICAL
