"""ReaderGuard on its own: a simulated reader, outside cancellation, time.

A "send" here is a sleep between ``sending()`` and ``sent()`` inside the
guard's scope, activated (shielded) from the start, as the server's reader
does around a real write once its guard is active.
"""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from neuro_api.server._reader_guard import ReaderGuard

pytestmark = pytest.mark.timeout(10)

TIMEOUT = 10.0


class Reader:
    """Runs in the guard's scope: waits ("reads") or "sends" for a while."""

    def __init__(self, guard: ReaderGuard) -> None:
        self.guard = guard
        self.sends_done = 0
        self.ended_at: float | None = None
        self.cancelled_in_send = False

    async def send(self, seconds: float) -> None:
        self.guard.sending()
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            self.cancelled_in_send = True
            raise
        finally:
            self.guard.sent()
        self.sends_done += 1

    async def run(self, *sends: float | tuple[float, float]) -> None:
        """Send for each of ``sends`` seconds (or ``(gap, seconds)``)."""
        with self.guard.scope:
            for send in sends:
                gap, seconds = send if isinstance(send, tuple) else (0, send)
                await trio.sleep(gap)
                await self.send(seconds)
            await trio.sleep(math.inf)  # wait for a frame that never comes
        self.ended_at = trio.current_time()
        self.guard.close()


async def _serve(
    reader: Reader, outer: trio.CancelScope, *sends: float | tuple[float, float]
) -> None:
    with outer:
        async with trio.open_nursery() as nursery:
            reader.guard.activate(nursery)
            try:
                await reader.run(*sends)
            finally:
                nursery.cancel_scope.cancel()


async def play(
    *sends: float | tuple[float, float], cancel_at: float | None = None
) -> Reader:
    """Run a guarded reader through ``sends``; cancel from outside at ``cancel_at``.

    Returns once the reader stopped (on the autojump clock, a hang fails at
    once).
    """
    reader = Reader(ReaderGuard(TIMEOUT))
    outer = trio.CancelScope()
    with trio.fail_after(5000):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve, reader, outer, *sends)
            if cancel_at is not None:
                await trio.sleep(cancel_at)
                outer.cancel()
    return reader


async def test_outside_cancellation_reaches_a_waiting_reader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reader = await play(0.5, cancel_at=1)
    assert reader.sends_done == 1
    assert reader.ended_at == pytest.approx(1)
    assert not reader.guard.timed_out


async def test_a_send_in_progress_finishes_before_the_reader_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reader = await play(3.0, cancel_at=1)  # mid-send
    assert reader.sends_done == 1
    assert not reader.cancelled_in_send
    assert reader.ended_at == pytest.approx(3)
    assert not reader.guard.timed_out


async def test_a_send_that_never_ends_is_cut_at_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reader = await play(0.1, 1.0, math.inf)
    assert reader.sends_done == 2
    assert reader.cancelled_in_send
    assert reader.guard.timed_out
    assert reader.ended_at == pytest.approx(1.1 + TIMEOUT)


async def test_cancelled_mid_send_the_send_is_still_cut_at_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reader = await play(math.inf, cancel_at=1)
    assert reader.cancelled_in_send
    assert reader.guard.timed_out
    assert reader.ended_at == pytest.approx(TIMEOUT)


async def test_sends_spread_out_never_time_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A reader that sends now and then, each send quick, is never cut."""
    quick = TIMEOUT - 0.5
    gaps = (0, 1, TIMEOUT - 1, TIMEOUT, TIMEOUT + 1, 5 * TIMEOUT, 0.5)
    reader = await play(*((gap, quick) for gap in gaps), cancel_at=1000)
    assert reader.sends_done == 7
    assert not reader.guard.timed_out
    assert not reader.cancelled_in_send
    assert reader.ended_at == pytest.approx(1000)
