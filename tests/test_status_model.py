"""The client states and the seed's rules (no I/O)."""

from __future__ import annotations

from neuro_api.status import ClientStates


def test_the_seeds_formula_for_deactivated() -> None:
    states = ClientStates(known=["Old Game"])
    states.connected("Tic Tac Toe")
    states.connected("Chess")
    states.set_blocked(["Chess", "Never Seen"])
    lists = states.lists()
    assert lists.available == ("Chess", "Never Seen", "Old Game", "Tic Tac Toe")
    assert lists.active == ("Chess", "Tic Tac Toe")
    # (available - active) | (available & blocked)
    assert lists.deactivated == ("Chess", "Never Seen", "Old Game")


def test_transitions_of_one_client() -> None:
    states = ClientStates()
    assert states.lists().state_of("G") == []
    states.connected("G")  # Available -> Active
    assert states.lists().state_of("G") == ["available", "active"]
    states.set_paused(["G"])  # Active -> Paused
    assert states.lists().state_of("G") == ["available", "active", "paused"]
    states.set_paused([])  # Paused -> Active
    states.disconnected("G", clean=True)  # Active -> Deactivated
    assert states.lists().state_of("G") == ["available", "deactivated"]
    states.connected("G")
    states.disconnected("G", clean=False)  # Active -> Connection_Error
    assert states.lists().state_of("G") == [
        "available",
        "deactivated",
        "connection_error",
    ]
    states.connected("G")  # Connection_Error -> Active
    assert states.lists().state_of("G") == ["available", "active"]


def test_a_title_is_active_while_one_of_its_connections_is() -> None:
    states = ClientStates()
    states.connected("G")
    states.connected("G")
    states.disconnected("G", clean=False)
    assert states.is_active("G")
    assert states.lists().connection_error == ()  # another one is still up
    states.disconnected("G", clean=True)
    assert not states.is_active("G")
    assert states.lists().connection_error == ()


def test_blocked_then_unblocked_leaves_the_blocked_list() -> None:
    states = ClientStates()
    states.connected("G")
    states.set_blocked(["G"])
    assert "G" in states.lists().deactivated  # blocked, even while active
    states.set_blocked([])
    lists = states.lists()
    assert lists.blocked == ()
    assert "G" not in lists.deactivated
    states.forget_network_error("G")  # nothing to forget: no error
    assert lists.state_of("G") == ["available", "active"]


def test_new_titles_do_not_grow_memory_for_ever() -> None:
    # The worst input: a game that reconnects with a new title each time,
    # dropping the connection (a network error) every time.
    states = ClientStates(max_known=100)
    states.set_blocked(["Blocked"])
    states.connected("Still Here")
    for n in range(1000):
        states.connected(f"title {n}")
        states.disconnected(f"title {n}", clean=False)
    lists = states.lists()
    assert states.known() == 100
    assert len(lists.connection_error) <= 100
    assert "Still Here" in lists.active  # connected: never forgotten
    assert "Blocked" in lists.available  # listed: never forgotten
    assert "title 999" in lists.connection_error  # the newest are kept
    assert "title 0" not in lists.available


def test_the_last_runs_lists_are_remembered() -> None:
    states = ClientStates()
    states.remember(["Was Active"])
    states.remember(["Lost"], network_errors=True)
    lists = states.lists()
    assert lists.deactivated == ("Lost", "Was Active")
    assert lists.connection_error == ("Lost",)
    states.connected("Lost")
    assert states.lists().connection_error == ()


def test_a_disconnect_never_seen_connected_is_ignored() -> None:
    states = ClientStates()
    states.disconnected("Ghost", clean=False)
    assert states.lists().available == ()


def test_every_clients_states_at_once_are_each_ones() -> None:
    states = ClientStates()
    states.connected("On")
    states.connected("Lost")
    states.disconnected("Lost", clean=False)
    states.set_paused(["On", "Later"])
    states.set_blocked(["On", "Bad"])
    lists = states.lists()
    assert lists.states() == {c: lists.state_of(c) for c in lists.available}
    assert lists.states()["On"] == [
        "available",
        "active",
        "paused",
        "blocked",
        "deactivated",
    ]
