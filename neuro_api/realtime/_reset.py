"""Undoing what a lease changed, before its connection serves anyone else.

A lease may leave answers still due (a response asked for and not created
yet, a session update, an audio clear), a response running, audio in the
input buffer, items in the conversation and session fields changed.
:func:`undo` waits for what is due, then cancels, clears, deletes and sets
back, reading the API's answers as the pool's own holder of the
connection; an error about its own requests raises (the pool then closes
the connection instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from neuro_api.realtime._connection import RESET_PREFIX, Link, RealtimeConnection
from neuro_api.realtime._errors import RealtimeAPIError

__all__ = ["RESET_KEYS", "undo"]

RESET_KEYS: Final = (
    "instructions",
    "tools",
    "tool_choice",
    "output_modalities",
    "max_output_tokens",
    "audio",
    "truncation",
)
"""What a reset sets back to the session's first state (when present)."""


async def undo(conn: Link, holder: RealtimeConnection) -> None:
    """What the last lease changed, undone (raises when the API refuses)."""
    # Answers still due to the last lease would reach the next holder
    # (a response asked for would even start under it): wait for them
    # (or their refusals), then undo what they did.
    await _until(holder, lambda: not conn.awaiting)
    if conn.open_responses:
        for response_id in list(conn.open_responses):
            if response_id in conn.cancelled:
                continue  # its holder asked already: wait for its end
            await holder.send(
                {
                    "type": "response.cancel",
                    "event_id": RESET_PREFIX + "cancel",
                    "response_id": response_id,
                }
            )
        await _until(
            holder,
            lambda: not conn.open_responses,
            tolerated={RESET_PREFIX + "cancel"},
        )
    if conn.audio_sent:
        await holder.send(
            {"type": "input_audio_buffer.clear", "event_id": RESET_PREFIX + "audio"}
        )
        await _until(holder, lambda: not conn.clearing)
    if conn.items:
        for item_id in list(conn.items):
            await holder.send(
                {
                    "type": "conversation.item.delete",
                    "event_id": f"{RESET_PREFIX}delete_{item_id}"[:100],
                    "item_id": item_id,
                }
            )
        await _until(
            holder,
            lambda: not conn.items,
            tolerated_prefix=RESET_PREFIX + "delete_",
        )
    if conn.session_changed:
        initial = conn.initial_session or {}
        session: dict[str, Any] = {"type": "realtime"}
        session.update(
            (key, initial[key]) for key in RESET_KEYS if initial.get(key) is not None
        )
        # Every field the lease set, back to its first value (null too).
        session.update((key, initial.get(key)) for key in conn.session_keys)
        await holder.send(
            {
                "type": "session.update",
                "event_id": RESET_PREFIX + "session",
                "session": session,
            }
        )
        await _until(holder, lambda: not conn.updating)


async def _until(
    conn: RealtimeConnection,
    done: Callable[[], bool],
    *,
    tolerated: frozenset[str] | set[str] = frozenset(),
    tolerated_prefix: str | None = None,
) -> None:
    """Read events until ``done()``; an error about our own request raises.

    Errors for the events named ``tolerated`` (by event id, or prefix) are
    expected races (the response had just ended, the item was gone), and
    so are errors about what the last lease sent (a refused request).
    """
    while not done():
        event = await conn.receive()
        if event["type"] != "error":
            continue
        error = event.get("error")
        error = error if isinstance(error, dict) else {}
        about = error.get("event_id")
        if about in tolerated:
            continue
        if isinstance(about, str) and not about.startswith(RESET_PREFIX):
            continue
        if (
            tolerated_prefix
            and isinstance(about, str)
            and about.startswith(tolerated_prefix)
        ):
            conn.link.items.pop(about.removeprefix(tolerated_prefix), None)
            continue
        raise RealtimeAPIError(error)
