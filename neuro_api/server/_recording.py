"""Layer 3: the action registry of one game connection."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from neuro_api.command import (
    Action,
    NeuroMessage,
    ReregisterAll,
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

    :attr:`actions` maps names to the registered actions, as upstream's
    does. Actions from the game's frames are checked: one with an
    error-severity diagnostic (e.g. a schema that is not a JSON schema, or
    an empty name) is not registered, since Neuro could not use it.
    Re-registering a name is ignored, as in production, with a diagnostic
    saying whether the new one was identical or conflicting. At most
    ``config.max_actions`` actions are kept per game, within the memory
    budget; further registrations are refused with ``action.limit`` or
    ``action.memory-limit`` (a game cannot grow the server without bound).
    """

    # Names registered when Neuro asked for all actions again (set only
    # then: a connection's instance dict stays small).
    _awaited: set[str] | None = None

    # Whether a subclass replaced register_action / unregister_action:
    # then frames from the game go through them (after the checks), as
    # upstream's do. Decided once per class.
    _own_register = False
    _own_unregister = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        base = AbstractRecordingNeuroServerClient
        cls._own_register = cls.register_action is not base.register_action
        cls._own_unregister = cls.unregister_action is not base.unregister_action

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.actions: dict[str, Action] = {}
        """The registered actions by name."""
        # What each action holds of the memory budget, as reserved (an
        # action put into ``actions`` directly holds nothing).
        self._sizes: dict[str, int] = {}

    def get_action(self, action_name: str) -> Action | None:
        """Return the registered action ``action_name``, if any."""
        return self.actions.get(action_name)

    def has_action(self, action_name: str) -> bool:
        """Whether ``action_name`` is registered."""
        return action_name in self.actions

    def get_action_names(self) -> frozenset[str]:
        """Names of every registered action."""
        return frozenset(self.actions)

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
        return split_actions(names, self.actions.get)

    def registered_names(self) -> Sequence[str]:
        """Names of every registered action, in registration order."""
        return list(self.actions)

    def clear_registered_actions(self) -> None:
        """Forget every registered action."""
        removed = list(self.actions)
        self.memory_budget().release(self, sum(self._sizes.values()))
        self.actions.clear()
        self._sizes.clear()
        self._awaited = None
        if removed:
            self.on_registry_changed((), removed)

    def register_action(self, action: Action) -> None:
        """Register ``action`` as it is, replacing one of the same name.

        For code that registers actions itself: no schema checks (frames
        from the game get those), but the memory budget holds; an action
        over it is refused with an ``action.memory-limit`` diagnostic.
        """
        new = action.name not in self.actions
        why = self._store(action)
        if why is not None:
            self.report(
                diagnose(
                    "action.memory-limit",
                    game=self.game_title,
                    count=1,
                    names=action.name,
                    reason=why,
                )
            )
        elif new:
            self.on_registry_changed((action.name,), ())

    def unregister_action(self, action_name: str) -> None:
        """Forget ``action_name``; an unknown name is logged as a warning.

        A force none of whose actions remain is cancelled, as when the game
        unregisters them.
        """
        if self._remove(action_name) is None:
            self.log_warning(
                f"Attempted to unregister non-existent action: {action_name}"
            )
            return
        self.on_registry_changed((), (action_name,))
        self.forget_actions((action_name,))

    def _store(self, action: Action) -> str | None:
        """Keep ``action`` within the memory budget; why not, if it is full.

        An action it replaces gives its share back first, and keeps its
        place if the new one does not fit.
        """
        budget = self.memory_budget()
        name = action.name
        old = self._sizes.pop(name, 0)
        budget.release(self, old)
        size = _size(action)
        why = budget.reserve(self, size)
        if why is not None:
            if old:
                budget.reserve(self, old)
                self._sizes[name] = old
            return why
        self.actions[name] = action
        self._sizes[name] = size
        return None

    def _remove(self, name: str) -> Action | None:
        action = self.actions.pop(name, None)
        self.memory_budget().release(self, self._sizes.pop(name, 0))
        if self._awaited:
            self._awaited.discard(name)
        return action

    def on_registry_changed(self, added: Sequence[str], removed: Sequence[str]) -> None:
        """Called after names were registered or removed (default: nothing)."""

    def find_collisions(self, names: Sequence[str]) -> Mapping[str, str]:
        """Map names also registered by another game on this character to it.

        The default knows no other games; a client bound to a server asks it.
        """
        return {}

    async def send_reregister_all_command(self) -> None:
        """Ask the game to register all its actions again, and expect it.

        The game answers with ``actions/register`` frames naming actions it
        already has registered (PROPOSALS.md asks it to): each of those is
        accepted once without a duplicate diagnostic, replacing the old
        definition if it changed, since it is the game's current one.
        """
        self._awaited = set(self.actions)
        await super().send_reregister_all_command()

    async def inject(self, message: NeuroMessage) -> None:
        """Send a Neuro message as is; an injected reregister is awaited too.

        Injecting ``actions/reregister_all`` has the effect of
        :meth:`send_reregister_all_command`: the game's answer is not reported as
        duplicate registrations.
        """
        if isinstance(message, ReregisterAll):
            self._awaited = set(self.actions)
        await super().inject(message)

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

    async def handle_actions_register(
        self, game_title: str, actions: list[Action]
    ) -> None:
        """Check and register each action; see the class docstring."""
        self.check_game_title(game_title)
        game = game_title
        added: list[str] = []
        refused: list[str] = []
        over_budget: list[tuple[str, str]] = []
        limit = self.config.max_actions
        awaited = self._awaited if self._awaited is not None else set()
        fresh = [a for a in actions if a.name not in self.actions or a.name in awaited]
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
        own = self._own_register
        hooked: list[str] = []  # registered by a subclass's register_action
        for action in actions:
            existing = self.actions.get(action.name)
            found = checks.get(id(action))
            if found is None and existing is None:
                continue  # a duplicate when it came, removed meanwhile
            if existing is not None and action.name in awaited:
                # Answering our reregister request: expected, not a duplicate.
                awaited.discard(action.name)
                if existing != action and self._checked(action, found or []):
                    # The game's current one, or the old one kept if it
                    # does not fit.
                    if own:
                        self.register_action(action)
                        continue  # replaced: not new, no collision to tell
                    why = self._store(action)
                    if why is not None:
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
            if not self._checked(action, found or []):
                continue
            if len(self.actions) >= limit:
                refused.append(action.name)
                continue
            if own:
                # A subclass's register_action (upstream's hook) stores it.
                self.register_action(action)
                if self.get_action(action.name) is not None:
                    hooked.append(action.name)
                continue
            why = self._store(action)
            if why is not None:
                over_budget.append((action.name, why))
                continue
            added.append(action.name)
        self._report_registered(game, added, refused, over_budget, hooked)

    def _report_registered(
        self,
        game: str,
        added: list[str],
        refused: list[str],
        over_budget: list[tuple[str, str]],
        hooked: Sequence[str] = (),
    ) -> None:
        """After a registration: what was refused, what collides."""
        limit = self.config.max_actions
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
        for name, other in self.find_collisions([*added, *hooked]).items():
            self.report(
                diagnose(
                    "action.name-collision",
                    game=game,
                    subject=name,
                    name=name,
                    other=other,
                )
            )

    async def handle_actions_unregister(
        self, game_title: str, action_names: list[str]
    ) -> None:
        """Remove actions; cancels the active force if none of its remain."""
        self.check_game_title(game_title)
        if not action_names:
            self.report(diagnose("action.unregister-empty", game=game_title))
            return
        unknown = [name for name in action_names if name not in self.actions]
        if unknown:
            self.report(
                diagnose(
                    "action.unregister-unknown",
                    game=game_title,
                    names=", ".join(unknown),
                )
            )
        if self._own_unregister:
            # A subclass's unregister_action (upstream's hook) removes them.
            for name in dict.fromkeys(action_names):
                if name in self.actions:
                    self.unregister_action(name)
            self.forget_actions(action_names)
            return
        removed = [name for name in action_names if self._remove(name) is not None]
        if removed:
            self.on_registry_changed((), removed)
        self.forget_actions(action_names)
