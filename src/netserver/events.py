"""The parent's one wait: a selector for fds and a heap of timers.

Every parent loop (Single, the supervisor of the forking personalities)
waits here and nowhere else: the signal wakeup fd, the children's status
pipes and the HUP check's output are watched fds; check_for_dead,
dequeue, boot backoff, the graceful-stop deadline and the check's time
limit are timers.  Nothing sleeps outside ``run_once``, and since PEP 475
an interrupted ``select`` is retried, so a signal reaches the loop only
through the wakeup fd.

Timers are one heap of (deadline, sequence, Timer) on the monotonic clock;
a cancelled timer stays in the heap, marked, until its turn comes (cheaper
than removing it, and the heap stays small).
"""

from __future__ import annotations

import heapq
import select
import time
from collections.abc import Callable

Callback = Callable[[], None]


class Timer:
    """A pending call; ``cancel()`` makes it never run; ``fired`` once it has run."""

    __slots__ = ("deadline", "callback", "cancelled", "fired")

    def __init__(self, deadline: float, callback: Callback) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    """Watch fds, run timers.  Nothing process-wide until the first ``watch``.

    ``watch(fd, callback)``: call ``callback()`` whenever fd is readable.
    ``call_later(delay, callback)`` / ``call_at(deadline, callback)``: a
    one-shot Timer; ``call_every(interval, callback)``: a periodic one.
    ``run_once(max_wait)``: wait for the first fd or timer (at most
    ``max_wait`` seconds, None for no limit), then run what is due.
    ``close()`` drops the epoll set and every timer.
    """

    def __init__(self) -> None:
        # epoll itself rather than the selectors module: a new child throws the parent's
        # loop away, and closing one epoll object is all that costs it (selectors' close
        # walks its map in Python, in every child, at every fork).
        self._epoll: select.epoll | None = None
        self._callbacks: dict[int, Callback] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._sequence = 0

    def fileno(self) -> int:
        return self._epoll.fileno() if self._epoll is not None else -1

    def watch(self, fd: int, callback: Callback) -> None:
        if self._epoll is None:
            self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def unwatch(self, fd: int) -> None:
        if self._callbacks.pop(fd, None) is not None and self._epoll is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass  # already closed: the kernel dropped it from the set

    def call_at(self, deadline: float, callback: Callback) -> Timer:
        timer = Timer(deadline, callback)
        self._sequence += 1
        heapq.heappush(self._timers, (deadline, self._sequence, timer))
        return timer

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return self.call_at(time.monotonic() + delay, callback)

    def call_every(self, interval: float, callback: Callback) -> None:
        """Call ``callback()`` every ``interval`` seconds, from ``interval`` on, for as long as the loop runs.

        The next call is scheduled before this one runs, so a callback that
        raises does not stop the series.
        """
        def tick() -> None:
            self.call_later(interval, tick)
            callback()

        self.call_later(interval, tick)

    def _next_deadline(self) -> float | None:
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def run_once(self, max_wait: float | None = None) -> None:
        deadline = self._next_deadline()
        wait = max_wait
        if deadline is not None:
            until = max(0.0, deadline - time.monotonic())
            wait = until if wait is None else min(wait, until)
        if self._epoll is None:
            self._epoll = select.epoll()
        for fd, _ in self._epoll.poll(-1 if wait is None else wait):
            callback = self._callbacks.get(fd)
            if callback is not None:  # an earlier callback of this round may have unwatched it
                callback()
        self.run_due()

    def run_due(self) -> None:
        """Run every timer whose deadline has passed, in deadline order."""
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, timer = heapq.heappop(timers)
            if not timer.cancelled:
                timer.fired = True
                timer.callback()

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        self._callbacks = {}
        self._timers = []
