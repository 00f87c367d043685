"""Shield and time a connection reader's sends without a cancel scope each."""

from __future__ import annotations

import trio

__all__ = ["ReaderGuard"]


class ReaderGuard:
    """Keeps a reader task's sends whole and bounded, for one connection.

    The reader runs in :attr:`scope`. Once :meth:`activate` is called, the
    scope is shielded for good, so nothing from outside can cut one of the
    reader's sends short (no half frame on the wire) and no send pays for
    switching a shield on and off. The guard's task, :meth:`run`, started
    then in the connection's nursery beside the reader, stands in for what
    the shield holds back:

    * cancellation from outside reaches :meth:`run`, which passes it on to
      the reader at once if the reader is not sending (it waits for a frame),
      or else right after the send in progress (:meth:`sent` does it), still
      timing that send;
    * a send still in progress ``timeout`` seconds after it began cancels
      the reader's scope, and :attr:`timed_out` becomes true.

    Once active, the reader brackets each send with :meth:`sending` and
    :meth:`sent` (a counter, a clock read and a few attribute writes), and
    calls :meth:`close` when it stops reading. The task wakes about once per
    ``timeout`` while sends happen and parks once a whole period passed
    without one, so an idle connection costs no wake-ups. Until then (most
    connections send a frame or two, then idle or close), the scope is an
    ordinary one and costs no task.
    """

    __slots__ = (
        "_final_watch",
        "_sends",
        "_started",
        "_stopping",
        "_wake",
        "active",
        "early_sends",
        "scope",
        "timed_out",
        "timeout",
    )

    def __init__(self, timeout: float) -> None:
        self.scope = trio.CancelScope()
        """The reader's scope: enter it around the read loop."""
        self.active = False
        """Whether :meth:`activate` was called."""
        self.early_sends = 0
        """Sends the reader made before :meth:`activate` (its own count)."""
        self.timeout = timeout
        self.timed_out = False
        """Whether a send outlasted ``timeout`` (the scope is cancelled)."""
        self._stopping = False
        self._sends = 0
        self._started: float | None = None  # while a send is in progress
        self._wake: trio.Event | None = None  # while run() is parked
        self._final_watch: trio.CancelScope | None = None

    def activate(self, nursery: trio.Nursery) -> None:
        """Shield the reader's scope and start guarding it (in the reader).

        Cancellation from outside that the reader has not seen yet is passed
        on by the task as soon as it starts.
        """
        self.active = True
        self.scope.shield = True
        nursery.start_soon(self.run, name="neuro_api.server.ReaderGuard.run")

    def sending(self) -> None:
        """A send begins (call it in the reader, right before the send)."""
        self._sends += 1
        self._started = trio.current_time()
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    def sent(self) -> None:
        """The send ended, however it ended (call it in a ``finally``)."""
        self._started = None
        if self._stopping:
            self.scope.cancel()

    def close(self) -> None:
        """The reader stopped: a watch of its last send ends at once."""
        if self._final_watch is not None:
            self._final_watch.cancel()

    async def run(self) -> None:
        """Time the sends and pass outside cancellation on, until cancelled."""
        seen = -1
        try:
            while True:
                started = self._started
                if started is not None:
                    if await self._watch(started):
                        return
                elif self._sends != seen:  # sends happened lately: look again
                    seen = self._sends
                    await trio.sleep(self.timeout)
                else:
                    wake = self._wake = trio.Event()
                    await wake.wait()
        except trio.Cancelled:
            self._stopping = True
            started = self._started
            if started is None:
                self.scope.cancel()
            else:  # sent() passes the cancellation on; bound the send still
                with trio.CancelScope(shield=True) as self._final_watch:
                    await self._watch(started)
            raise

    async def _watch(self, started: float) -> bool:
        """Sleep to the send's deadline; cancel the reader if it is still on."""
        send = self._sends
        await trio.sleep_until(started + self.timeout)
        if self._started is not None and self._sends == send:
            self.timed_out = True
            self.scope.cancel()
            return True
        return False
