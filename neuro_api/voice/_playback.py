"""What the caller has heard of Neuro's voice, told by Twilio's marks.

The model's audio reaches Twilio faster than it plays; Twilio queues it.
After each chunk the bridge sends a ``mark``; Twilio sends the mark back
once the audio queued before it has played. So the marks that came back
say how much of each audio item the caller really heard, and that, never
what was sent, is what a barge-in truncates the item to
(``conversation.item.truncate``'s ``audio_end_ms``).

μ-law at 8 kHz is 8 bytes per millisecond. After a ``clear`` Twilio
returns every pending mark at once: those marks were not played, so each
clear starts a new generation and marks of older ones are ignored.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Final

__all__ = ["BYTES_PER_MS", "MAX_PENDING_MARKS", "Playback", "Truncation"]

BYTES_PER_MS: Final = 8
"""μ-law, 8,000 samples a second, one byte each."""
MAX_PENDING_MARKS: Final = 4096
"""Marks waiting for Twilio at most (some 80 s of audio in 20 ms chunks);
beyond, chunks are merged into the last mark (see :meth:`Playback.sent`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Truncation:
    """A ``conversation.item.truncate`` to send: what the caller heard of an item."""

    item_id: str
    content_index: int
    audio_end_ms: int


@dataclasses.dataclass(slots=True)
class _Item:
    content_index: int
    sent: int = 0
    played: int = 0


@dataclasses.dataclass(slots=True)
class _Mark:
    name: str
    item_id: str
    end: int
    """Bytes of the item sent when this mark was."""


class Playback:
    """The model's audio items sent to Twilio and how much of each was played.

    Memory is bounded: at most :data:`MAX_PENDING_MARKS` marks wait, and
    items are forgotten once all their audio has played (or was cleared).
    """

    def __init__(self, *, max_pending: int = MAX_PENDING_MARKS) -> None:
        self.generation = 0
        self.max_pending = max_pending
        self._marks: collections.deque[_Mark] = collections.deque()
        self._items: dict[str, _Item] = {}
        self._count = 0
        self.heard_bytes = 0
        """Bytes of model audio the caller heard in all (marks returned)."""
        self.stale_marks = 0
        """Marks returned that were cleared or unknown (ignored)."""
        self.untracked_bytes = 0
        """Bytes of items begun while the marks were full (see :meth:`sent`)."""

    @property
    def playing(self) -> bool:
        """Whether audio sent to Twilio may still be playing (marks pending)."""
        return bool(self._marks)

    def sent(self, item_id: str, content_index: int, size: int) -> str | None:
        """Note ``size`` bytes of ``item_id`` sent; the mark to send after them.

        None when :attr:`max_pending` marks already wait: the chunk is then
        counted in the last mark of the same item (when Twilio returns it,
        that much has played), so memory stays bounded however long the
        answer and however stalled Twilio is.
        """
        full = len(self._marks) >= self.max_pending
        item = self._items.get(item_id)
        if item is None:
            if full:
                # A new item while Twilio has not returned max_pending marks:
                # not tracked (no mark, no entry), or an API sending a new
                # item id with each chunk would grow both without bound.
                # A barge-in then does not truncate it (nothing is known of
                # what was heard of it).
                self.untracked_bytes += size
                return None
            item = self._items[item_id] = _Item(content_index)
        item.sent += size
        if full:
            if self._marks[-1].item_id == item_id:
                self._marks[-1].end = item.sent
            # Else no mark: what is heard of this chunk stays unknown, so a
            # cut counts it unheard (never past what was heard), and items
            # taking turns cannot add marks past max_pending either.
            return None
        self._count += 1
        name = f"{self.generation}.{self._count}"
        self._marks.append(_Mark(name, item_id, item.sent))
        return name

    def marked(self, name: str) -> bool:
        """Twilio returned mark ``name``: the audio before it has played.

        False for a mark of an older generation (returned by a ``clear``:
        never played) or an unknown one; nothing changes then.
        """
        if not self._marks or self._marks[0].name != name:
            # Twilio returns marks in order; one out of order is stale.
            self.stale_marks += 1
            return False
        mark = self._marks.popleft()
        item = self._items.get(mark.item_id)
        if item is not None:
            self.heard_bytes += max(0, mark.end - item.played)
            item.played = max(item.played, mark.end)
        self._forget_played()
        return True

    def _forget_played(self) -> None:
        waiting = {mark.item_id for mark in self._marks}
        for item_id in [i for i in self._items if i not in waiting]:
            del self._items[item_id]

    def interrupt(self) -> list[Truncation]:
        """The caller spoke over the audio: what to truncate, and forget it.

        One :class:`Truncation` per item whose audio was still queued, at
        the milliseconds heard of it (never more than was sent: the API
        refuses an ``audio_end_ms`` past the item's audio). The pending
        marks become stale (a new generation): send Twilio a ``clear``.
        Empty when nothing was playing.
        """
        if not self._marks:
            return []
        cuts = []
        for item_id in dict.fromkeys(mark.item_id for mark in self._marks):
            item = self._items[item_id]
            heard = min(item.played, item.sent)
            cuts.append(Truncation(item_id, item.content_index, heard // BYTES_PER_MS))
        self._marks.clear()
        self._items.clear()
        self.generation += 1
        return cuts
