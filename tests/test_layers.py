"""The package's floors: what may import what (docs: architecture page).

Every ``import`` in the package is read (module level, in functions, under
``TYPE_CHECKING``, and ``importlib.import_module`` with a literal name), so
a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import neuro_api
import neuro_api.app
import neuro_api.server

ROOT = Path(neuro_api.__file__).parent
PARTS = (
    "supervisor",
    "manager",
    "server",
    "control",
    "capability",
    "status",
    "calls",
    "realtime",
    "voice",
    "dashboard",
    "app",
)
"""Subpackages; every top-level module is part of ``core``."""
MAY_IMPORT: dict[str, set[str]] = {
    "core": {"core"},
    "supervisor": {"core"},
    "manager": {"core"},
    "server": {"core", "manager"},
    "control": {"core", "server"},
    "capability": {"core", "supervisor", "manager", "server", "control"},
    "status": {"core", "server", "control", "capability"},
    "calls": {"core", "supervisor", "manager", "server", "control", "capability"},
    "realtime": {"core", "server", "control", "capability"},
    "dashboard": {"core", "server", "control", "capability"},
    # A capability on top of others: their public classes, found with
    # Setup.capability, never their private modules.
    "voice": {
        "core",
        "manager",
        "server",
        "control",
        "capability",
        "status",
        "calls",
        "realtime",
    },
    "app": {
        "core",
        "supervisor",
        "manager",
        "server",
        "control",
        "capability",
        "status",
        "calls",
        "realtime",
        "voice",
        "dashboard",
    },
}
"""The floors, bottom up; ``app`` is the composition root on top."""
EXCEPTIONS = {
    ("neuro_api.server.__main__", "neuro_api.app"):
        "python -m neuro_api.server is the entry point into the app's CLI",
    ("neuro_api.server", "neuro_api.app"):
        "the deprecated aliases neuro_api.server.NeuroProcess and ProcessInfo, "
        "imported only when used",
}  # fmt: skip


def part_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in PARTS:
        return parts[1]
    return "core"


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT.parent).with_suffix("")
    names = list(relative.parts)
    if names[-1] == "__init__":
        names.pop()
    return ".".join(names)


def imports(path: Path) -> Iterator[str]:
    """Every ``neuro_api`` module ``path`` imports, by any means."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def edges() -> Iterator[tuple[str, str]]:
    for path in sorted(ROOT.rglob("*.py")):
        source = module_name(path)
        for target in imports(path):
            if target == "neuro_api" or target.startswith("neuro_api."):
                yield source, target


def test_every_kind_of_import_is_seen() -> None:
    found = set(edges())
    assert ("neuro_api.control._status", "neuro_api.server") in found  # from
    assert ("neuro_api.app._builtins", "neuro_api.app._process") in found  # typing
    assert ("neuro_api.server", "neuro_api.app") in found  # import_module
    assert ("neuro_api.app._builtins", "neuro_api.capability") in found


def test_each_part_imports_only_the_floors_below() -> None:
    wrong = []
    for source, target in edges():
        if (source, target) in EXCEPTIONS:
            continue
        here, there = part_of(source), part_of(target)
        if there != here and there not in MAY_IMPORT[here]:
            wrong.append(f"{source} imports {target}")
    assert wrong == []


def test_server_does_not_import_control_and_parts_make_no_cycle() -> None:
    graph: dict[str, set[str]] = {part: set() for part in MAY_IMPORT}
    for source, target in edges():
        if (source, target) in EXCEPTIONS:
            continue
        if part_of(source) != part_of(target):
            graph[part_of(source)].add(part_of(target))
    assert "control" not in graph["server"]
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a cycle


def test_the_exceptions_are_real_and_lazy() -> None:
    found = set(edges())
    for edge in EXCEPTIONS:
        assert edge in found, f"stale exception {edge}: remove it"
    # Importing the server imports neither the app, nor the control plane,
    # nor the web framework.
    code = (
        "import sys, neuro_api.server; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('neuro_api.app', 'neuro_api.control', 'quart', "
        "'hypercorn'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_moved_names_still_work_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="moved to neuro_api.app.NeuroProcess"):
        moved = neuro_api.server.NeuroProcess
    assert moved is neuro_api.app.NeuroProcess
    with pytest.warns(DeprecationWarning, match="neuro_api.app.ProcessInfo"):
        assert neuro_api.server.ProcessInfo is neuro_api.app.ProcessInfo
