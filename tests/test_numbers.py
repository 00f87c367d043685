"""Whole numbers read from someone else's text (``neuro_api._numbers``)."""

from __future__ import annotations

import pytest

from neuro_api._numbers import whole_number
from neuro_api.command import Action
from neuro_api.server._console import _pick


@pytest.mark.parametrize(
    ("text", "at_most", "number"),
    [
        ("0", 50, 0),
        ("50", 50, 50),
        ("007", 500, 7),
        ("51", 50, None),
        ("100", 50, None),  # more digits than 50 has
        ("", 50, None),
        ("-1", 50, None),
        ("+1", 50, None),
        (" 1", 50, None),
        ("1_0", 50, None),
        ("\u00b2", 50, None),  # isdigit() says yes; int() raises
        ("\u0661", 50, None),  # an Arabic-Indic one: int() takes it, we do not
        ("9" * 5000, 10**9, None),  # int() raises beyond 4,300 digits
    ],
)
def test_whole_numbers(text: str, at_most: int, number: int | None) -> None:
    assert whole_number(text, at_most=at_most) == number


def test_the_console_picks_by_number_or_name() -> None:
    actions = [Action("a", "A"), Action("\u00b2", "Two")]
    assert _pick(actions, "2") is actions[1]
    assert _pick(actions, "\u00b2") is actions[1]  # a name, not a number
    assert _pick(actions, "3") is None
    assert _pick(actions, "0") is None
    assert _pick(actions, "9" * 5000) is None
