"""Abuse: the child holding the accept lock is killed with SIGKILL (reliability.md B2).

With two listeners every serialization strategy is in use: exactly one
child (the holder) waits in epoll_wait on the listeners, the others wait on
the lock itself (flock, semop, or poll on the token pipe).  The holder is
stopped first: the negative control shows that, while it holds the lock, a
queued connection is served by nobody, so the timing below really measures
how long the lock stays lost.  Then it is killed, and both queued
connections (one per listener) must be served by another child within 1 s.
Each strategy runs three times, each time on a fresh server.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from support import procs
from support.clients import connect, read_line

ACCEPT_WAIT = "do_epoll_wait"
#: Substring of the wchan of a child waiting for the lock, per strategy.
LOCK_WAIT = {"flock": "lock", "semaphore": "sem", "pipe": "poll"}
RECOVERY_LIMIT = 1.0
STALL_PROBE = 1.0


def lock_states(kids: list[int]) -> dict[int, str]:
    return {pid: procs.wchan(pid) for pid in kids}


def settled_holder(kids: list[int], kind: str) -> int | None:
    """The one child in accept, when every other child waits on the lock."""
    states = lock_states(kids)
    holders = [pid for pid, wchan in states.items() if wchan == ACCEPT_WAIT]
    waiters = [pid for pid, wchan in states.items() if LOCK_WAIT[kind] in wchan and wchan != ACCEPT_WAIT]
    if len(holders) == 1 and len(waiters) == len(kids) - 1:
        return holders[0]
    return None


def ask(address) -> socket.socket:
    """Connect and send the one line echo:Pid waits for; the answer comes later."""
    sock = connect(address, timeout=5)
    sock.sendall(b"ping\n")
    return sock


def answered_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except TimeoutError:
        return False
    finally:
        sock.settimeout(5)


@pytest.mark.parametrize("run", [1, 2, 3])
@pytest.mark.parametrize("kind", ["flock", "semaphore", "pipe"])
def test_killing_the_stopped_lock_holder_frees_the_lock_within_1s(serve, kind, run):
    server = serve("--max_servers", "4", "--serialize", kind, "--handler", "echo:Pid",
                   "--port", "127.0.0.1:0", "--port", "127.0.0.1:0", port=None)
    kids = server.wait_children(4)
    holder = procs.wait_until(lambda: settled_holder(kids, kind), 5,
                              message=f"one child in accept and three waiting on the {kind} lock")
    os.kill(holder, signal.SIGSTOP)
    pending = [ask(address.tuple) for address in server.addresses]
    try:
        # Negative control: a holder that does not let go wedges both listeners.
        assert not answered_within(pending[0], STALL_PROBE), "served although the lock holder was stopped"
        assert not answered_within(pending[1], 0.01)
        os.kill(holder, signal.SIGKILL)
        killed_at = time.monotonic()
        served_by = []
        for sock in pending:
            served_by.append(int(read_line(sock).strip()))
        recovery = time.monotonic() - killed_at
    finally:
        for sock in pending:
            sock.close()
    print(f"\n[abuse lock holder] {kind} run {run}: served {recovery * 1000:.1f} ms after kill -9 of {holder}")
    # An old child or the holder's replacement, which may win the freed lock first.
    assert holder not in served_by and set(served_by) <= set(server.children())
    assert recovery < RECOVERY_LIMIT, f"{kind}: the lock stayed lost {recovery:.3f} s"
    server.wait_children(4, exclude=(holder,))
    assert procs.wait_until(lambda: settled_holder(server.children(), kind), 5,
                            message="a settled pool after the kill")
