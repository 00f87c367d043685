"""Layer 3: the action registry of one game connection."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence

from neuro_api.command import (
    Action,
    NeuroMessage,
    RegisterActions,
    ReregisterAll,
    UnregisterActions,
)
from neuro_api.diagnostics import Diagnostic, Severity, diagnose
from neuro_api.server._budget import footprint, schema_footprint
from neuro_api.server._checks import check_actions
from neuro_api.server._handler import AbstractHandlerNeuroServerClient, split_actions

__all__ = ["AbstractRecordingNeuroServerClient"]


def _size(action: Action) -> int:
    """What an action takes in memory: its name, description and schema."""
    # footprint((name, description, schema)) without the walk: a 3-tuple is
    # 56 + 3 * 8 bytes, and the schema's part is remembered.
    name, description = action.name, action.description
    if type(name) is not str or type(description) is not str:
        return footprint((name, description, action.schema))
    return (80 + sys.getsizeof(name) + sys.getsizeof(description)) + schema_footprint(
        action.schema
    )


class AbstractRecordingNeuroServerClient(AbstractHandlerNeuroServerClient):
    """Keeps the game's registered actions, checking each registration.

    An action with an error-severity diagnostic (e.g. a schema that is not a
    JSON schema, or an empty name) is not registered: Neuro could not use it.
    Re-registering a name is ignored, as in production, with a diagnostic
    saying whether the new one was identical or conflicting. At most
    ``config.max_actions`` actions are kept per game; further registrations
    are refused with ``action.limit`` (a game cannot grow the server without
    bound).
    """

    # Names registered when Neuro asked for all actions again (set only
    # then: a connection's instance dict stays small).
    _awaited: set[str] | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._actions: dict[str, Action] = {}

    @property
    def actions(self) -> Mapping[str, Action]:
        """The registered actions by name (a read-only view)."""
        return self._actions

    def get_action(self, name: str) -> Action | None:
        """Return the registered action ``name``, if any."""
        return self._actions.get(name)

    def lookup_actions(
        self, names: Iterable[str]
    ) -> tuple[dict[str, Action], list[str]]:
        """As the layer below does, with the registry's own lookup.

        No call of :meth:`get_action` per name (a force looks up every name
        it lists), unless a subclass overrides :meth:`get_action`: then that
        is asked, as it would be below.
        """
        if type(self).get_action is not AbstractRecordingNeuroServerClient.get_action:
            return super().lookup_actions(names)
        return split_actions(names, self._actions.get)

    def registered_names(self) -> Sequence[str]:
        """Names of every registered action, in registration order."""
        return list(self._actions)

    def clear_actions(self) -> None:
        """Forget every registered action."""
        removed = list(self._actions)
        self._release(self._actions.values())
        self._actions.clear()
        self._awaited = None
        if removed:
            self.on_registry_changed((), removed)

    def on_registry_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        """Called after names were registered or removed (default: nothing)."""

    def find_collisions(self, names: Sequence[str]) -> Mapping[str, str]:
        """Map names also registered by another game on this character to it.

        The default knows no other games; a client bound to a server asks it.
        """
        return {}

    async def send_reregister_all(self) -> None:
        """Ask the game to register all its actions again, and expect it.

        The game answers with ``actions/register`` frames naming actions it
        already has registered (PROPOSALS.md asks it to): each of those is
        accepted once without a duplicate diagnostic, replacing the old
        definition if it changed, since it is the game's current one.
        """
        self._awaited = set(self._actions)
        await super().send_reregister_all()

    async def inject(self, message: NeuroMessage) -> None:
        """Send a Neuro message as is; an injected reregister is awaited too.

        Injecting ``actions/reregister_all`` has the effect of
        :meth:`send_reregister_all`: the game's answer is not reported as
        duplicate registrations.
        """
        if isinstance(message, ReregisterAll):
            self._awaited = set(self._actions)
        await super().inject(message)

    def _reserve(self, action: Action) -> str | None:
        """Account for ``action`` in the memory budget; why not, if it is full."""
        return self.memory_budget().reserve(self, _size(action))

    def _release(self, actions: Iterable[Action]) -> None:
        budget = self.memory_budget()
        for action in actions:
            budget.release(self, _size(action))

    def _checked(self, action: Action, found: list[Diagnostic]) -> bool:
        """Report an action's diagnostics; whether it may be registered."""
        for diagnostic in found:
            self.report(diagnostic)
        if any(d.severity is Severity.ERROR for d in found):
            self.report(
                diagnose(
                    "action.rejected",
                    game=self.game_title,
                    subject=action.name,
                    detail=f"{action.name!r} has the errors above",
                )
            )
            return False
        return True

    async def handle_actions_register(self, message: RegisterActions) -> None:
        """Check and register each action; see the class docstring."""
        game = message.game
        for problem in message.rejected:
            self.report(diagnose("action.rejected", game=game, detail=str(problem)))
        if not message.actions and not message.rejected:
            self.report(diagnose("action.register-empty", game=game))
        added: list[str] = []
        refused: list[str] = []
        over_budget: list[tuple[str, str]] = []
        limit = self.config.max_actions
        awaited = self._awaited if self._awaited is not None else set()
        fresh = [
            a
            for a in message.actions
            if a.name not in self._actions or a.name in awaited
        ]
        checks = dict(
            zip(
                map(id, fresh),
                await check_actions(
                    fresh,
                    game=game,
                    max_generated_size=self.config.max_generated_size,
                ),
                strict=True,
            )
        )
        for action in message.actions:
            existing = self._actions.get(action.name)
            if existing is not None and action.name in awaited:
                # Answering our reregister request: expected, not a duplicate.
                awaited.discard(action.name)
                if existing != action and self._checked(action, checks[id(action)]):
                    self._release((existing,))
                    why = self._reserve(action)
                    if why is None:
                        self._actions[action.name] = action  # the game's current one
                    else:
                        self._reserve(existing)  # kept as it was
                        over_budget.append((action.name, why))
                continue
            if existing is not None:
                id_ = (
                    "action.duplicate-identical"
                    if existing == action
                    else "action.duplicate-conflicting"
                )
                self.report(
                    diagnose(id_, game=game, subject=action.name, name=action.name)
                )
                continue
            if not self._checked(action, checks[id(action)]):
                continue
            if len(self._actions) >= limit:
                refused.append(action.name)
                continue
            why = self._reserve(action)
            if why is not None:
                over_budget.append((action.name, why))
                continue
            self._actions[action.name] = action
            added.append(action.name)
        if refused:
            shown = ", ".join(refused[:5]) + (", ..." if len(refused) > 5 else "")
            self.report(
                diagnose(
                    "action.limit",
                    game=game,
                    count=len(refused),
                    names=shown,
                    limit=limit,
                )
            )
        if over_budget:
            names = [name for name, _ in over_budget]
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            self.report(
                diagnose(
                    "action.memory-limit",
                    game=game,
                    count=len(names),
                    names=shown,
                    reason=over_budget[-1][1],
                )
            )
        if added:
            self.on_registry_changed(added, ())
        for name, other in self.find_collisions(added).items():
            self.report(
                diagnose(
                    "action.name-collision",
                    game=game,
                    subject=name,
                    name=name,
                    other=other,
                )
            )

    async def handle_actions_unregister(self, message: UnregisterActions) -> None:
        """Remove actions; cancels the active force if none of its remain."""
        names = message.action_names
        if not names:
            self.report(diagnose("action.unregister-empty", game=message.game))
            return
        unknown = [name for name in names if name not in self._actions]
        if unknown:
            self.report(
                diagnose(
                    "action.unregister-unknown",
                    game=message.game,
                    names=", ".join(unknown),
                )
            )
        gone = [self._actions.pop(name, None) for name in names]
        self._release(action for action in gone if action is not None)
        removed = [action.name for action in gone if action is not None]
        if self._awaited:
            self._awaited.difference_update(removed)
        if removed:
            self.on_registry_changed((), removed)
        self.forget_actions(names)
