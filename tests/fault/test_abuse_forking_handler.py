"""Abuse: a handler that forks a process which outlives the server (issue 15 item 5).

A process forked from a child used to inherit the listening sockets, so after
the server stopped the kernel kept queueing connections on the port that
nobody would accept, and a restart failed with "address already in use".
The child now registers an at-fork handler (in the child only: CPython runs
it in every fork of the process that registered it, and the parent forks
all the children) that closes, in whatever the handler forks, the listeners,
the accept lock and the server's signal handlers.

The handler forks a process that sleeps for 60 s.  While it lives: it holds
no listening socket and no accept-lock file, and its TERM disposition is the
default; the server stops with exit 0, the port then refuses connections, and
a new server binds the same port.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from support import procs
from support.clients import connect, talk

SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def listening_inodes(pid: int) -> set[str]:
    """socket:[inode] of every socket pid holds."""
    return {target for target in procs.fd_targets(pid) if target.startswith("socket:")}


def test_a_process_forked_by_a_handler_does_not_keep_the_port(serve):
    server = serve("--handler", "fault_abuse_handlers:Forker", "--max_servers", "1", "--serialize", "flock")
    port = server.addresses[0].port
    listeners = listening_inodes(server.pid)
    grandchild = int(talk(server.addr, b"fork\n"))
    try:
        assert procs.alive(grandchild)
        held = procs.fd_targets(grandchild)
        caught = int(procs.status_field(grandchild, "SigCgt"), 16)
        print(f"\n[forking handler] grandchild {grandchild} fds {sorted(held)}; SigCgt {caught:#x}")
        assert not listening_inodes(grandchild) & listeners
        assert not any("netserver-lock" in target for target in held)
        assert not caught & SIGTERM_BIT
        server.signal(signal.SIGTERM)
        assert server.wait_exit(15) == 0
        assert procs.alive(grandchild), "the forked process outlives the server"
        with pytest.raises(ConnectionRefusedError):
            connect(("127.0.0.1", port)).close()
        started = time.monotonic()
        again = serve("--max_servers", "1", port=f"127.0.0.1:{port}")
        assert talk(again.addr, b"quit\n").startswith(b"Welcome")
        print(f"[forking handler] restarted on port {port} in {time.monotonic() - started:.2f} s")
    finally:
        try:
            os.kill(grandchild, signal.SIGKILL)
        except ProcessLookupError:
            pass
        procs.wait_until(lambda: not procs.alive(grandchild), 5, message="the forked process to die")
        procs.reap_strays()
