"""The child side of the pre-forking personalities: the accept loop, dequeue.

The supervisor boots a child (signals, fds, lock, privileges, parent-death
signal, ``child_init_hook``) and then calls ``child_main``.  An idle child
waits in epoll on its non-blocking listeners, its wakeup fd and the
parent-death pipe, so HUP or the parent's death ends it promptly.  Signal
handlers only record, except while a request runs: TERM then abandons it
(Net::Server's behaviour, which admins rely on) and HUP closes the child's
listener fds at once so a stopping server refuses new connections.
Nothing ever interrupts the accept itself, so no accepted connection is
dropped by a signal.

The loop asks one question before each accept: ``self.draining`` (a stop,
HUP, the parent's death, max_requests, ``done()``), and reports through
``self.status`` (the scoreboard slot): idle, busy with whom.
"""

from __future__ import annotations

import os
import select
import signal
import time

from .. import serialize, status


class PreForkChild:
    """Mixin for the pre-forking personalities: everything that runs in a child process."""

    def child_main(self, kind: str, ready_write: int, client: object = None) -> None:
        if self.is_dequeue:
            self.dequeue()
            return
        os.write(ready_write, status.READY)  # the parent marks our slot idle when it reads this
        self._ready_write = ready_write
        try:
            self.child_loop()
        finally:
            self.announce_leaving()

    _ready_write = -1

    def announce_leaving(self) -> None:
        """Tell the parent, once, that this child takes no more work: it forks the replacement now.

        A child that drains for a while (an HTTP child letting its keep-alive
        connections finish) says so when it starts, so the pool is not short
        of a child for the length of the drain.
        """
        if self._ready_write < 0:
            return
        try:
            os.write(self._ready_write, status.LEAVING)
        except OSError:
            pass  # the parent is gone
        self._ready_write = -1

    def _child_flags(self) -> None:
        # The wakeup fd carries every signal (a user's USR1 too): only ours end the loop.
        for signum in self.signals.take():
            if signum == signal.SIGHUP:
                self.draining = True
            elif signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                self.draining = self._stop_requested = True

    def child_loop(self) -> None:
        exclusive = select.EPOLLEXCLUSIVE if self.lock.name == "none" else 0
        poller = select.epoll()
        by_fd = {}
        for listener in self.listeners:
            listener.sock.setblocking(False)
            poller.register(listener.fileno(), select.EPOLLIN | exclusive)
            by_fd[listener.fileno()] = listener
        wakeup, death = self.signals.read_fd, self._death_read
        poller.register(wakeup, select.EPOLLIN)
        poller.register(death, select.EPOLLIN)
        limit = self.options.max_requests
        lock = self.lock
        report = self.status
        retire_at = self.retire_at()
        while not self.draining:
            # Flags are set by the Python-level handler; a signal not yet seen
            # there leaves a byte in the wakeup fd, which ends the poll at once.
            try:
                if not lock.acquire():
                    self._child_flags()  # drain the wakeup fd so the next acquire can block
                    continue
            except serialize.LockGone:
                break
            # The lock covers the wait only: it is released as soon as a
            # listener is readable, so the next holder wakes while this child
            # accepts.  If it then finds the queue empty (it lost the race),
            # its non-blocking accept says so and it goes back to the lock.
            ready = None
            try:
                while ready is None:
                    wait = -1.0 if retire_at is None else max(0.0, retire_at - time.monotonic())
                    events = poller.poll(wait)
                    if not events and retire_at is not None and time.monotonic() >= retire_at:
                        self.draining = True  # max_child_lifetime, reached while idle
                        break
                    if any(fd == death for fd, _ in events):
                        self.draining = True
                        lock.parent_gone()
                        break
                    if any(fd == wakeup for fd, _ in events):
                        self._child_flags()
                        if self.draining:
                            break
                    for fd, _ in events:
                        ready = by_fd.get(fd)
                        if ready is not None:
                            break
            finally:
                lock.release()
            if ready is None:
                continue
            client = self.accept_from(ready)
            if client is not None:
                report.busy(client.peeraddr, client.peerport)
                self.run_client_connection(client)
                report.idle()
                if (limit and self.requests >= limit) or self.done():
                    self.draining = True
                if retire_at is not None and time.monotonic() >= retire_at:
                    self.draining = True  # max_child_lifetime
        poller.close()

    def retire_at(self) -> float | None:
        """When max_child_lifetime ends this child (monotonic), or None: no limit."""
        lifetime = getattr(self.options, "max_child_lifetime", 0.0)
        return time.monotonic() + lifetime if lifetime else None

    # ------------------------------------------------------------ dequeue
    def dequeue(self) -> None:
        """Body of a dequeue child; the default runs run_dequeue() (the seed's name)."""
        self.run_dequeue()

    def run_dequeue(self) -> None:
        raise NotImplementedError("override dequeue() or run_dequeue() to use check_for_dequeue")
