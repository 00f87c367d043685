"""Actions as events of a ``libcomponent`` component (upstream's ``neuro_api.event``).

:class:`AbstractNeuroAPIComponent` is the upstream package ``neuro-api``
4.0.0's game client built on `libcomponent
<https://pypi.org/project/libcomponent/>`_: each action Neuro performs is
raised as the event ``neuro_<action name>``, and handlers are registered per
action. It needs the optional extra ``component``::

    pip install "trio-neuro-api[component]"

:class:`neuro_api.trio_ws.TrioNeuroAPIComponent` is the same on a
trio-websocket connection. New code does not need libcomponent:
:meth:`neuro_api.api.AbstractNeuroAPI.add_action` binds a handler per action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

try:
    from libcomponent.component import Component, Event
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "neuro_api.event needs libcomponent: pip install 'trio-neuro-api[component]'"
    ) from exc

from neuro_api.api import AbstractNeuroAPI, NeuroAction, NeuroStartupData
from neuro_api.command import Action

__all__ = ["AbstractNeuroAPIComponent"]

ResultHandler = Callable[[NeuroAction], Awaitable[tuple[bool, str | None]]]
"""``async def handler(action) -> (success, message)``: performs one action."""


class AbstractNeuroAPIComponent(Component, AbstractNeuroAPI):
    """A game client whose actions are events of a libcomponent component.

    Register actions with their handlers through
    :meth:`register_neuro_actions` (the handler returns ``(success,
    message)`` and the result is sent for it) or
    :meth:`register_neuro_actions_raw_handler` (the handler gets the
    :class:`~libcomponent.component.Event` and must send the result itself).
    :meth:`handle_action` raises the event ``neuro_<name>``; an action with
    no handler raises :class:`ValueError` after failing the action, so
    Neuro is never left waiting.
    """

    def __init__(self, component_name: str, game_title: str) -> None:
        Component.__init__(self, component_name)
        AbstractNeuroAPI.__init__(self, game_title)

    def _send_result_wrapper(
        self, handler: ResultHandler
    ) -> Callable[[Event[NeuroAction]], Awaitable[None]]:
        async def wrapper(event: Event[NeuroAction]) -> None:
            action = event.data
            success, message = await handler(action)
            await self.send_action_result(action.id_, success, message)

        return wrapper

    async def register_neuro_actions_raw_handler(
        self,
        action_handlers: Iterable[
            tuple[Action, Callable[[Event[NeuroAction]], Awaitable[object]]]
        ],
    ) -> None:
        """Register actions, each with a handler of its ``neuro_<name>`` event."""
        handlers = tuple(action_handlers)
        self.register_handlers(
            {f"neuro_{action.name}": handler for action, handler in handlers}
        )
        await self.register_actions([action for action, _ in handlers])

    async def register_neuro_actions(
        self, action_handlers: Iterable[tuple[Action, ResultHandler]]
    ) -> None:
        """Register actions, each with a handler returning ``(success, message)``."""
        await self.register_neuro_actions_raw_handler(
            (action, self._send_result_wrapper(handler))
            for action, handler in action_handlers
        )

    async def register_temporary_actions_group(
        self, grouped_action_handlers: Iterable[tuple[Action, ResultHandler]]
    ) -> tuple[str, ...]:
        """Register actions that all go away once any one of them succeeds.

        Returns the group's action names.
        """
        group = tuple(grouped_action_handlers)
        names = tuple(action.name for action, _ in group)

        def once(handler: ResultHandler) -> ResultHandler:
            async def wrapper(action: NeuroAction) -> tuple[bool, str | None]:
                success, message = await handler(action)
                if success:
                    await self.unregister_actions(names)
                    for name in names:
                        self.unregister_handler_type(f"neuro_{name}")
                return success, message

            return wrapper

        await self.register_neuro_actions(
            (action, once(handler)) for action, handler in group
        )
        return names

    async def register_temporary_actions(
        self, action_handlers: Iterable[tuple[Action, ResultHandler]]
    ) -> None:
        """Register actions that each go away once they succeed."""

        def once(handler: ResultHandler) -> ResultHandler:
            async def wrapper(action: NeuroAction) -> tuple[bool, str | None]:
                success, message = await handler(action)
                if success:
                    await self.unregister_actions([action.name])
                    self.unregister_handler_type(f"neuro_{action.name}")
                return success, message

            return wrapper

        await self.register_neuro_actions(
            (action, once(handler)) for action, handler in action_handlers
        )

    async def handle_startup_acknowledgement(
        self, startup_ack: NeuroStartupData
    ) -> None:
        """Stored as :class:`AbstractNeuroAPI` does, then raised as an event.

        The event is ``neuro_startup_acknowledgement``.
        """
        await super().handle_startup_acknowledgement(startup_ack)
        await self.raise_event(Event("neuro_startup_acknowledgement", startup_ack))

    async def handle_action(self, action: NeuroAction) -> None:
        """Raise the event ``neuro_<name>``.

        Without a handler for it, the action fails (Neuro gets a result
        saying so) and :class:`ValueError` is raised, as upstream raised it.
        """
        event_name = f"neuro_{action.name}"
        if not self.has_handler(event_name):
            await self.send_action_result(
                action.id_, False, f"The game cannot perform {action.name!r} now."
            )
            raise ValueError(
                f"Received neuro action with no handler registered: {action}"
            )
        await self.raise_event(Event(event_name, action))
