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
