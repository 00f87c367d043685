"""The clients' states and the seed's rules, with no I/O.

A *client* is a game, named by its title. Who is paused and blocked comes
from the input files (or the API); who is active and who was lost to a
network error comes from the connections. Everything else follows from
those, as the seed "Server_Manager" computes it:

* available: every client known (seen connected since the files were
  created, or listed in any file);
* deactivated: ``(available - active) | (available & blocked)``, the seed's
  formula exactly.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable
from typing import Final

__all__ = ["ClientStates", "StatusLists"]


@dataclasses.dataclass(frozen=True, slots=True)
class StatusLists:
    """Every list at one moment, each sorted (as the files hold them)."""

    available: tuple[str, ...]
    active: tuple[str, ...]
    paused: tuple[str, ...]
    blocked: tuple[str, ...]
    deactivated: tuple[str, ...]
    connection_error: tuple[str, ...]

    def state_of(self, client: str) -> list[str]:
        """The states ``client`` is in (``[]``: unknown)."""
        return [name for name in _STATES if client in getattr(self, name)]

    def states(self) -> dict[str, list[str]]:
        """Every available client's states (:meth:`state_of` of each, at once).

        In time linear in the lists' lengths, where a :meth:`state_of` per
        client would take their square.
        """
        found: dict[str, list[str]] = {client: [] for client in self.available}
        for name in _STATES:
            for client in getattr(self, name):
                found[client].append(name)
        return found


_STATES: Final = (
    "available",
    "active",
    "paused",
    "blocked",
    "deactivated",
    "connection_error",
)


class ClientStates:
    """Who is connected, paused, blocked, lost; the lists that follow.

    Several connections may carry one title: it is active while one of
    them is. A connection lost without a close handshake (a network error)
    puts its title in ``connection_error`` when no other connection of that
    title remains; connecting again takes it out.
    """

    def __init__(self, known: Iterable[str] = (), *, max_known: int = 10_000) -> None:
        self.max_known = max_known
        """How many clients are remembered beyond those connected or listed:
        past it, the one seen least recently is forgotten (a game picks its
        title: new titles must not grow memory and the files for ever)."""
        self._known: dict[str, None] = dict.fromkeys(known)
        self._connections: collections.Counter[str] = collections.Counter()
        self.paused: frozenset[str] = frozenset()
        self.blocked: frozenset[str] = frozenset()
        self._network_errors: set[str] = set()

    # --- what happens to connections ---------------------------------------

    def connected(self, client: str) -> None:
        """A game named ``client`` connected (its first frame named it)."""
        self._connections[client] += 1
        self._known.pop(client, None)
        self._known[client] = None  # seen last: forgotten last
        self._network_errors.discard(client)
        self._forget_some()

    def _kept(self, client: str) -> bool:
        return (
            client in self._connections
            or client in self.paused
            or client in self.blocked
        )

    def _forget_some(self) -> None:
        """Forget the clients seen least recently, past :attr:`max_known`.

        Those connected or listed (paused, blocked) are kept (moved to the
        end of the line); each is looked at once at most per call. A client
        forgotten leaves ``connection_error`` too.
        """
        extra = len(self._known) - self.max_known
        looked = 0
        while extra > 0 and looked < len(self._known):
            client = next(iter(self._known))
            del self._known[client]
            looked += 1
            if self._kept(client):
                self._known[client] = None
            else:
                self._network_errors.discard(client)
                extra -= 1

    def disconnected(self, client: str, *, clean: bool) -> None:
        """A connection of ``client`` ended; ``clean``: after a close handshake."""
        if client not in self._connections:
            return
        if self._connections[client] <= 1:
            del self._connections[client]
            if not clean:
                self._network_errors.add(client)
        else:
            self._connections[client] -= 1

    def known(self) -> int:
        """How many clients are remembered (see :attr:`max_known`)."""
        return len(self._known)

    def is_active(self, client: str) -> bool:
        """Whether a connection of ``client`` is open."""
        return client in self._connections

    # --- what an admin (or a file) decides ---------------------------------

    def set_paused(self, clients: Iterable[str]) -> None:
        """The paused list, as the file (or the API) now says."""
        self.paused = frozenset(clients)

    def set_blocked(self, clients: Iterable[str]) -> None:
        """The blocked list, as the file (or the API) now says."""
        self.blocked = frozenset(clients)

    def remember(self, clients: Iterable[str], *, network_errors: bool = False) -> None:
        """Know ``clients`` (listed in a file at start: the last run's).

        ``network_errors``: they were lost to a network error and stay in
        ``connection_error`` until they connect again.
        """
        for client in clients:
            self._known.setdefault(client, None)
            if network_errors and client not in self._connections:
                self._network_errors.add(client)
        self._forget_some()

    def forget_network_error(self, client: str) -> None:
        """Take ``client`` out of ``connection_error`` (an admin cleared it)."""
        self._network_errors.discard(client)

    # --- the lists ---------------------------------------------------------

    def lists(self) -> StatusLists:
        """Every list now; ``deactivated`` by the seed's formula."""
        active = set(self._connections)
        available = (
            self._known.keys()
            | active
            | self.paused
            | self.blocked
            | self._network_errors
        )
        deactivated = (available - active) | (available & self.blocked)
        return StatusLists(
            available=tuple(sorted(available)),
            active=tuple(sorted(active)),
            paused=tuple(sorted(self.paused)),
            blocked=tuple(sorted(self.blocked)),
            deactivated=tuple(sorted(deactivated)),
            connection_error=tuple(sorted(self._network_errors)),
        )
