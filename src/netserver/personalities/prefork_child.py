"""The child side of PreForkSimple: boot, the accept loop, leaving.

Kept apart from the parent's supervision so each side reads on its own.  A
child blocks signals across the fork (the parent did), resets the parent's
handlers and wakeup pipe, closes every fd only the parent needs, opens its own
accept-lock description, chroots and drops privileges, sets its parent-death
signal and checks that the parent is still the one it was forked from; only
then does it unblock signals and run user code.

An idle child waits in epoll on its non-blocking listeners, its wakeup fd
and the parent-death pipe, so HUP or the parent's death ends it promptly.
Signal handlers only record, except while a request runs: TERM then
abandons it (Net::Server's behaviour, which admins rely on) and HUP closes
the child's listener fds at once so a stopping server refuses new
connections.  Nothing ever interrupts the accept itself, so no accepted
connection is dropped by a signal.
"""

from __future__ import annotations

import os
import select
import signal

from .. import daemon, serialize
from ..server import StopServer
from ..signals import restore


class PreForkChild:
    """Mixin for PreForkSimple: everything that runs in a child process."""

    _hup = False
    _parent_gone = False

    def run_child(self, kind: str, ready_write: int) -> int:
        """Everything a child does; its caller ends in os._exit."""
        self.is_child = True
        self.is_dequeue = kind == "dequeue"
        self.signals.reset_in_child()
        for fd in (*self._parent_fds, *self.ready_fds):
            try:
                os.close(fd)
            except OSError:
                pass
        self._parent_fds = set()
        self.ready_fds = []
        self.selector = None
        self.children.clear()
        if self.pid_file is not None:
            self.pid_file.close_in_child()
        if self.is_dequeue:
            self.lock.close_in_child()
        else:
            self.lock.child_init()
        daemon.drop_privileges(self.identity, self.options.chroot)
        daemon.set_parent_death_signal(signal.SIGHUP)
        if os.getppid() != self.parent_pid:
            return 0
        self.signals.install((signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT), self.on_child_signal)
        self.lock.wakeup_fd = self.signals.read_fd
        self.isolate_forks()  # a process a handler forks gets no listener, lock or handler of ours
        restore(set())
        try:
            self.child_init_hook()
            if self.is_dequeue:
                self.dequeue()
            else:
                os.write(ready_write, b"R")
                self.child_loop()
        except StopServer:
            pass
        finally:
            self.close_listeners()
            self.child_finish_hook()
        return 0

    def on_child_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self._hup = True
            if self._in_request:
                self.close_listeners()  # refuse new connections now; the kernel keeps the parent's
        elif signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            self._stop_requested = True
            if self._in_request:
                raise StopServer(signum)

    def _child_flags(self) -> bool:
        for signum in self.signals.take():
            if signum == signal.SIGHUP:
                self._hup = True
            elif signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                self._stop_requested = True
        return self._hup or self._stop_requested or self._parent_gone

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
        while not limit or self.requests < limit:
            # Flags set by the Python-level handler; a signal not yet seen here
            # leaves a byte in the wakeup fd, which ends the poll below at once.
            if self._hup or self._stop_requested or self._parent_gone:
                break
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
                    events = poller.poll()
                    if any(fd == death for fd, _ in events):
                        self._parent_gone = True
                        lock.parent_gone()
                    if any(fd == wakeup for fd, _ in events) and self._child_flags() or self._parent_gone:
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
                self.run_client_connection(client)
                if self.done():
                    break
        poller.close()

    # ------------------------------------------------------------ dequeue
    def dequeue(self) -> None:
        """Body of a dequeue child; the default runs run_dequeue() (the seed's name)."""
        self.run_dequeue()

    def run_dequeue(self) -> None:
        raise NotImplementedError("override dequeue() or run_dequeue() to use check_for_dequeue")
