"""The parent's table of its own children.

Reaping never uses a blind ``waitpid(-1)``: that would also steal the exit
status of processes a user hook started with ``subprocess`` (whose
``wait()`` would then fail).  ``waitid(P_ALL, WNOWAIT)`` names an exited
child without reaping it; if it is ours it is reaped by pid, so one exit
costs two system calls however large the pool.  If the exited process is
not ours it stays for its owner, and ours are then asked one pid at a time.
A child whose exit a user's ``wait()`` took is noticed only by the full
sweep (``reap(full=True)``), which the periodic check and the stop use.
A parent must only ever signal pids it forked itself (Apache's
CVE-2007-3304 let children plant pids for the root parent to kill).
"""

from __future__ import annotations

import os
import signal
import time


class Child:
    """One forked child.  ``kind`` is 'server', 'dequeue', 'connection' (Fork: one
    client) or 'old' (a previous generation).

    ``slot`` is its scoreboard slot (-1: none); ``leaving`` is set when it
    said it takes no more work, so its replacement can be forked before it exits;
    ``link`` is the parent's end of its child_communication socket, if any.
    """

    __slots__ = ("pid", "kind", "ready_fd", "booted", "started", "slot", "leaving", "link")

    def __init__(self, pid: int, kind: str, ready_fd: int = -1, booted: bool = False, slot: int = -1) -> None:
        self.pid = pid
        self.kind = kind
        self.ready_fd = ready_fd
        self.booted = booted
        self.started = time.monotonic()
        self.slot = slot
        self.leaving = False
        self.link = None  # the parent's end of child_communication's socketpair (talk.ChildSocket)

    def __repr__(self) -> str:
        return f"<Child {self.pid} {self.kind}{' booted' if self.booted else ''}>"


def describe_status(status: int | None) -> str:
    if status is None:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = str(os.WTERMSIG(status))
        return f"killed by {name}"
    return f"exit status {os.WEXITSTATUS(status)}"


class ChildTable:
    """pid -> Child, with reaping and signalling limited to those pids."""

    def __init__(self) -> None:
        self.by_pid: dict[int, Child] = {}

    def __len__(self) -> int:
        return len(self.by_pid)

    def __iter__(self):
        return iter(list(self.by_pid.values()))

    def add(self, child: Child) -> None:
        self.by_pid[child.pid] = child

    def count(self, *kinds: str) -> int:
        return sum(1 for child in self.by_pid.values() if child.kind in kinds)

    def serving(self) -> int:
        """Server children that have not said they are leaving: the pool's real size."""
        return sum(1 for child in self.by_pid.values() if child.kind == "server" and not child.leaving)

    def pids(self, *kinds: str) -> list[int]:
        return [pid for pid, child in self.by_pid.items() if not kinds or child.kind in kinds]

    def reap(self, full: bool = False) -> list[tuple[Child, int | None]]:
        """Collect the children of ours that have exited; ``full`` asks about every pid."""
        if full:
            return self._reap_each()
        gone = []
        while self.by_pid:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break  # no children at all: ours were reaped elsewhere, and are forgotten below
            if info is None or info.si_pid == 0:
                return gone  # nobody has exited
            child = self.by_pid.get(info.si_pid)
            if child is None:
                break  # not ours: leave it to its owner and ask about ours by pid
            waited, status = os.waitpid(child.pid, os.WNOHANG)
            if not waited:
                break
            del self.by_pid[child.pid]
            gone.append((child, status))
        return gone + self._reap_each()

    def _reap_each(self) -> list[tuple[Child, int | None]]:
        gone = []
        for pid, child in list(self.by_pid.items()):
            try:
                waited, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                waited, status = pid, None  # reaped elsewhere; it is gone all the same
            if waited:
                del self.by_pid[pid]
                gone.append((child, status))
        return gone

    def signal(self, signum: int, *kinds: str) -> None:
        for pid in self.pids(*kinds):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
