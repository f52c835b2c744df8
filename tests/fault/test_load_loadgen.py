"""The load client reports every outcome it claims to (the fault tests' assertions rest on it).

Each case is an in-process listener that misbehaves in one way; no server runs.
"""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from fault import loadgen


class Misbehaving:
    """A loopback listener whose accepting thread treats each client with ``how``."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        if how != "silent":  # silent: connections wait in the backlog, never accepted
            self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                line = conn.recv(4096)
                if self.how == "wrong":
                    conn.sendall(b"not the line\n")
                elif self.how == "half":
                    conn.sendall(line[:3])
                elif self.how == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    conn.sendall(line)

    def close(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("how, outcome", [("echo", "ok"), ("wrong", "short"), ("half", "short"),
                                          ("reset", "reset"), ("silent", "timeout")])
def test_each_outcome_is_reported(how, outcome):
    server = Misbehaving(how)
    try:
        summary = loadgen.run(server.address, count=6, concurrency=3, timeout=0.5)
    finally:
        server.close()
    assert summary.total == 6
    assert summary.counts == {outcome: 6}, summary.describe()
    assert all(r.source[0] in loadgen.SOURCES and r.source[1] for r in summary.requests)


def test_refused_and_duration_bound():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused, and the port stays ours
    try:
        summary = loadgen.run(closed.getsockname(), duration=0.3, concurrency=2)
    finally:
        closed.close()
    assert summary.total > 10 and summary.counts == {"refused": summary.total}
    assert summary.elapsed < 1.0
