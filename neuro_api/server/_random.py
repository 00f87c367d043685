"""The random engine: answers every force at once with schema-valid data."""

from __future__ import annotations

import logging
import random
from typing import Final

import orjson
import trio

from neuro_api.command import Action, ForcePriority
from neuro_api.schema import GenerationError, SchemaError, generate_data
from neuro_api.server._base import AbstractTrioNeuroServer
from neuro_api.server._config import ServerConfig

__all__ = ["RandomNeuroServer"]

LOGGER: Final = logging.getLogger("neuro_api.server.random")


class RandomNeuroServer(AbstractTrioNeuroServer):
    """A Randy-like engine: picks a forced action at random, with valid data.

    ``delay`` seconds pass before each answer. With ``unforced_interval`` set,
    every that many seconds (on average) it also performs a random registered
    action of a random game, unforced. ``seed`` makes its choices repeatable.
    Failures are retried by the server's rules; the engine just picks again.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        delay: float = 0.0,
        unforced_interval: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(config)
        if delay < 0:
            raise ValueError(f"delay: must be >= 0, got {delay!r}")
        if unforced_interval is not None and unforced_interval <= 0:
            raise ValueError(
                f"unforced_interval: must be > 0, got {unforced_interval!r}"
            )
        self.delay = delay
        self.unforced_interval = unforced_interval
        self.rng = random.Random(seed)

    def add_context(
        self, game_title: str, message: str, reply_if_not_busy: bool
    ) -> None:
        """Log context (the random engine does not read it)."""
        LOGGER.debug("[%s] context: %s", game_title, message)

    def make_data(self, action: Action) -> str | None:
        """Return valid random data for ``action`` as a JSON string (or None).

        An action whose schema cannot be satisfied gets ``{}``, which the game
        will refuse with a failing result (and that is worth seeing).
        """
        try:
            value = generate_data(action.schema, rng=self.rng)
        except (GenerationError, SchemaError) as exc:
            LOGGER.warning("no valid data for %r: %s", action.name, exc)
            return "{}"
        return None if value is None else orjson.dumps(value).decode()

    def choose_force_action_now(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None] | None:
        """Answer at once unless a ``delay`` is configured."""
        return None if self.delay else self.pick(actions)

    async def choose_force_action(
        self,
        game_title: str,
        state: str | None,
        query: str,
        ephemeral_context: bool,
        actions: tuple[Action, ...],
        priority: ForcePriority,
    ) -> tuple[str, str | None]:
        """Pick a random forced action and random valid data for it."""
        if self.delay:
            await trio.sleep(self.delay)
        return self.pick(actions)

    def pick(self, actions: tuple[Action, ...]) -> tuple[str, str | None]:
        """One of ``actions`` at random, with valid random data for it."""
        action = self.rng.choice(actions)
        return action.name, self.make_data(action)

    async def background(self) -> None:
        """Act unforced now and then, if ``unforced_interval`` is set."""
        if self.unforced_interval is not None:
            await self._act_unforced(self.unforced_interval)

    async def _act_unforced(self, interval: float) -> None:
        while True:
            await trio.sleep(self.rng.expovariate(1 / interval))
            ready = [c for c in self.games() if c.actions and c.active_force is None]
            if not ready:
                continue
            client = self.rng.choice(ready)
            action = self.rng.choice(list(client.actions.values()))
            LOGGER.info("acting unforced: %s on %s", action.name, client.game_title)
            client.start_action(action.name, self.make_data(action))
