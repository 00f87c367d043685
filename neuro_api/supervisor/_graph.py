"""Start order: dependencies first, ties broken by the order services were added."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["start_order"]


def _find_cycle(remaining: Mapping[str, Sequence[str]]) -> list[str]:
    """A dependency cycle among ``remaining``, as ``[a, b, ..., a]``.

    Each of ``remaining`` waits for another of them, so walking from any one
    of them must come back to a service already seen.
    """
    path: list[str] = []
    node = next(iter(remaining))
    while node not in path:
        path.append(node)
        node = next(dep for dep in remaining[node] if dep in remaining)
    return [*path[path.index(node) :], node]


def start_order(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """Order the names of ``graph`` (name -> its dependencies) for starting.

    Each comes after all its dependencies; among those ready to start, the
    earliest in ``graph``'s order goes first.

    Raises ValueError naming an unknown dependency, or the services of a
    dependency cycle (``a -> b -> a``).
    """
    for name, deps in graph.items():
        for dep in deps:
            if dep not in graph:
                msg = f"service {name!r} depends on unknown service {dep!r}"
                raise ValueError(msg)
    order: list[str] = []
    placed: set[str] = set()
    remaining = dict(graph)
    while remaining:
        ready = next(
            (name for name, deps in remaining.items() if placed.issuperset(deps)),
            None,
        )
        if ready is None:
            cycle = " -> ".join(repr(name) for name in _find_cycle(remaining))
            msg = f"dependency cycle between services: {cycle}"
            raise ValueError(msg)
        order.append(ready)
        placed.add(ready)
        del remaining[ready]
    return order
