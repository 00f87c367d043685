"""The public names of ``neuro_api.server`` stay importable and in order."""

from __future__ import annotations
import __future__

import importlib
import inspect
import itertools
import re
from types import ModuleType
from typing import Any

import pytest

import neuro_api.server
from neuro_api import command
from neuro_api.command import Action
from neuro_api.server import check_action_names_type, deserialize_actions

# The names the upstream SDK's ``neuro_api.server`` offered, plus the engines.
ISSUE_NAMES = [
    "ContextData",
    "ActionSchema",
    "RegisterActionsData",
    "UnregisterActionsData",
    "ForceActionsData",
    "ActionResultData",
    "deserialize_actions",
    "check_action_names_type",
    "AbstractNeuroServerClient",
    "AbstractHandlerNeuroServerClient",
    "AbstractRecordingNeuroServerClient",
    "BaseTrioNeuroServerClient",
    "TrioNeuroServerClient",
    "AbstractTrioNeuroServer",
    "RandomNeuroServer",
    "ConsoleInteractiveNeuroServer",
]

CLIENT_CHAIN = [
    "AbstractNeuroServerClient",
    "AbstractHandlerNeuroServerClient",
    "AbstractRecordingNeuroServerClient",
    "BaseTrioNeuroServerClient",
    "TrioNeuroServerClient",
]

ENGINES = ["RandomNeuroServer", "ConsoleInteractiveNeuroServer"]


def _public(module: ModuleType) -> set[str]:
    """Names a user sees in the module (not submodules, not __future__),
    including those it imports lazily on first access."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not isinstance(value, __future__._Feature)
    }


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_issue_name_importable(name: str) -> None:
    module = importlib.import_module("neuro_api.server")
    assert hasattr(module, name), f"neuro_api.server.{name} is missing"
    assert name in module.__all__
    namespace: dict[str, Any] = {}
    exec(f"from neuro_api.server import {name}", namespace)
    assert namespace[name] is getattr(module, name)


def test_all_is_complete() -> None:
    assert set(neuro_api.server.__all__) == _public(neuro_api.server)


def test_star_import_gives_every_issue_name() -> None:
    namespace: dict[str, Any] = {}
    exec("from neuro_api.server import *", namespace)
    assert set(ISSUE_NAMES) <= namespace.keys()


def test_client_class_hierarchy() -> None:
    classes = [getattr(neuro_api.server, name) for name in CLIENT_CHAIN]
    for parent, child in itertools.pairwise(classes):
        assert issubclass(child, parent), f"{child.__name__} < {parent.__name__}"
    # The order of the layers is the method resolution order.
    mro = classes[-1].__mro__
    assert [mro.index(cls) for cls in reversed(classes)] == sorted(
        mro.index(cls) for cls in classes
    )
    for cls in classes[:3]:
        assert inspect.isabstract(cls), cls.__name__
    assert not inspect.isabstract(neuro_api.server.TrioNeuroServerClient)


@pytest.mark.parametrize("name", ENGINES)
def test_engines_are_servers(name: str) -> None:
    engine = getattr(neuro_api.server, name)
    assert issubclass(engine, neuro_api.server.AbstractTrioNeuroServer)
    assert not inspect.isabstract(engine)


def test_abstract_server_needs_the_two_decisions() -> None:
    server_cls = neuro_api.server.AbstractTrioNeuroServer
    assert inspect.isabstract(server_cls)
    assert server_cls.__abstractmethods__ == {"add_context", "choose_force_action"}


def test_typed_dicts_are_the_command_ones() -> None:
    for name in [
        "ContextData",
        "ActionSchema",
        "RegisterActionsData",
        "UnregisterActionsData",
        "ForceActionsData",
        "ActionResultData",
    ]:
        assert getattr(neuro_api.server, name) is getattr(command, name)


# --- deserialize_actions ----------------------------------------------------


def test_deserialize_actions_valid() -> None:
    schema = {"type": "object", "properties": {"cell": {"type": "integer"}}}
    actions = deserialize_actions(
        {
            "actions": [
                {"name": "play", "description": "Play a cell", "schema": schema},
                {"name": "pass", "description": "Skip"},
            ]
        }
    )
    assert actions == [
        Action("play", "Play a cell", schema),
        Action("pass", "Skip"),
    ]
    assert all(isinstance(action, Action) for action in actions)


def test_deserialize_actions_empty_list() -> None:
    assert deserialize_actions({"actions": []}) == []


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "actions"),
        ({"actions": None}, "actions"),
        ({"actions": "play"}, "actions"),
        ({"actions": [5]}, "actions[0]"),
        ({"actions": [{"name": "play"}]}, "description"),
        ({"actions": [{"description": "no name"}]}, "name"),
        ({"actions": [{"name": 1, "description": "x"}]}, "name"),
        ({"actions": [{"name": "a", "description": "x", "schema": "{}"}]}, "schema"),
        (
            {"actions": [{"name": "a", "description": "x"}, {"name": "b"}]},
            "actions[1]",
        ),
    ],
)
def test_deserialize_actions_malformed(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        deserialize_actions(data)


@pytest.mark.parametrize(
    "action",
    [
        {"name": "play", "description": "x", "schema": {"type": "string"}},
        {"name": "", "description": "empty name"},
        {"name": "p", "description": "x", "schema": {"type": "object", "required": 1}},
    ],
)
def test_deserialize_actions_error_severity_action(action: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        deserialize_actions({"actions": [action]})


def test_deserialize_actions_tolerates_warnings() -> None:
    actions = deserialize_actions(
        {
            "actions": [
                {
                    "name": "Play",
                    "description": "",
                    "schema": {"type": "object", "title": "t"},
                }
            ]
        }
    )
    assert [action.name for action in actions] == ["Play"]


def test_deserialize_actions_not_json_data() -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        deserialize_actions({"actions": [{"name": "a", "description": object()}]})


# --- check_action_names_type ---------------------------------------------------


@pytest.mark.parametrize("names", [[], ["play"], ["play", "pass", ""]])
def test_check_action_names_type_valid(names: list[str]) -> None:
    check_action_names_type(names)


@pytest.mark.parametrize(
    "names",
    ["play", ("play",), None, {"play": 1}, ["play", 1], [None], [["play"]]],
)
def test_check_action_names_type_invalid(names: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        check_action_names_type(names)
