"""What the caller heard, from Twilio's marks: the barge-in's truncation."""

from __future__ import annotations

from neuro_api.voice._playback import BYTES_PER_MS, Playback, Truncation


def sent(playback: Playback, item: str, index: int, size: int) -> str:
    """The mark name of a chunk that got one."""
    name = playback.sent(item, index, size)
    assert name is not None
    return name


def test_marks_say_what_was_heard_and_the_cut_never_passes_it() -> None:
    playback = Playback()
    names = [sent(playback, "item_a", 0, 1600) for _ in range(5)]  # 5 x 200 ms
    assert len(playback._marks) == 5
    assert playback.marked(names[0])
    assert playback.marked(names[1])
    assert playback.heard_bytes == 3200
    # The caller speaks: 400 ms were heard of 1,000 sent.
    assert playback.interrupt() == [Truncation("item_a", 0, 400)]
    assert not playback.playing
    # Twilio returns the pending marks because of the clear: not played.
    for name in names[2:]:
        assert not playback.marked(name)
    assert playback.stale_marks == 3
    assert playback.heard_bytes == 3200
    assert playback.interrupt() == []  # nothing is playing now


def test_nothing_heard_is_a_cut_at_zero() -> None:
    playback = Playback()
    playback.sent("item", 1, 8000)
    assert playback.interrupt() == [Truncation("item", 1, 0)]


def test_a_new_generation_counts_after_a_clear() -> None:
    playback = Playback()
    old = sent(playback, "a", 0, 800)
    playback.interrupt()
    new = sent(playback, "b", 0, 800)
    assert old != new
    assert not playback.marked(old)  # returned by the clear
    assert playback.marked(new)
    assert playback.heard_bytes == 800
    assert not playback.playing


def test_two_items_queued_each_cut_at_what_was_heard() -> None:
    playback = Playback()
    first = sent(playback, "a", 0, 1600)
    playback.sent("a", 0, 1600)
    playback.sent("b", 0, 1600)
    assert playback.marked(first)
    assert playback.interrupt() == [Truncation("a", 0, 200), Truncation("b", 0, 0)]


def test_items_fully_played_are_forgotten() -> None:
    playback = Playback()
    for n in range(100):
        assert playback.marked(sent(playback, f"item{n}", 0, 160))
    assert playback._items == {}
    assert playback.heard_bytes == 100 * 160


def test_pending_marks_are_bounded_and_merged() -> None:
    playback = Playback(max_pending=3)
    names = [playback.sent("a", 0, 160) for _ in range(10)]
    assert names[3:] == [None] * 7  # merged into the third mark
    assert len(playback._marks) == 3
    assert names[0] is not None
    assert playback.marked(names[0])
    assert playback.interrupt() == [Truncation("a", 0, 160 // BYTES_PER_MS)]
    # Played to the end: the last mark stands for everything after it.
    playback = Playback(max_pending=3)
    names = [playback.sent("a", 0, 160) for _ in range(10)]
    for name in names[:3]:
        assert name is not None
        assert playback.marked(name)
    assert playback.heard_bytes == 1600


def test_marks_out_of_order_or_unknown_are_ignored() -> None:
    playback = Playback()
    first = sent(playback, "a", 0, 160)
    second = sent(playback, "a", 0, 160)
    assert not playback.marked("nonsense")
    assert not playback.marked(second)  # Twilio returns them in order
    assert playback.marked(first)
    assert playback.heard_bytes == 160


def test_a_new_item_per_chunk_stays_bounded_while_marks_are_full() -> None:
    # An API that sends each chunk as a new item, and a Twilio that returns
    # no marks: neither the marks nor the items grow past max_pending.
    playback = Playback(max_pending=3)
    for n in range(100):
        playback.sent(f"item{n}", 0, 160)
    assert len(playback._marks) == 3
    assert len(playback._items) == 3
    assert playback.untracked_bytes == 97 * 160
    assert [cut.item_id for cut in playback.interrupt()] == ["item0", "item1", "item2"]


def test_two_items_taking_turns_stay_bounded_while_marks_are_full() -> None:
    playback = Playback(max_pending=3)
    for n in range(100):
        playback.sent("ab"[n % 2], 0, 160)
    assert len(playback._marks) == 3
    assert {cut.audio_end_ms for cut in playback.interrupt()} == {0}
