"""Graceful stop with requests in flight (reliability.md C2, C3, C4).

Four requests are in flight when the parent gets TERM (graceful_timeout 2 s):
two shorter than the timeout must complete, two longer must be cut at the
timeout, the server must exit 0 within graceful_timeout + 1 s, and new
connects must be refused within 1 s of the TERM.
"""

from __future__ import annotations

import selectors
import signal
import time

from support import procs
from support.clients import connect

GRACEFUL = 2.0
SHORT_MS = (500, 1500)
LONG_MS = (8000, 8000)


def refused(address, timeout: float = 0.5) -> bool:
    """True when a connect is refused (or reset) right now."""
    try:
        connect(address, timeout=timeout).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


def test_term_completes_short_requests_cuts_long_ones_and_refuses_new_connects(serve, tmp_path):
    book = tmp_path / "journal"
    server = serve("--handler", "fault_load_handlers:Journal", "--max_servers", "4", "--max_requests", "0",
                   "--graceful_timeout", str(GRACEFUL), env={"FAULT_LOAD_JOURNAL": str(book)})
    kids = server.wait_children(4)
    lines = [b"short-%d %d\n" % (ms, ms) for ms in SHORT_MS]
    lines += [b"long-%d %d\n" % (n, ms) for n, ms in enumerate(LONG_MS)]
    socks = [connect(server.addr, timeout=15) for _ in lines]
    selector = selectors.DefaultSelector()
    try:
        for index, (sock, line) in enumerate(zip(socks, lines, strict=True)):
            sock.sendall(line)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
        # Every request is in a child before the TERM: the checks below cannot pass vacuously.
        procs.wait_until(lambda: book.exists() and book.read_text().count("A ") == len(lines), 5,
                         message="four requests accepted")
        assert not refused(server.addr)  # negative control for the refusal probe

        server.signal(signal.SIGTERM)
        termed = time.monotonic()
        answers: dict[int, bytes] = {}
        ended: dict[int, float] = {}
        refused_after = None
        while len(ended) < len(lines) and time.monotonic() - termed < GRACEFUL + 3:
            if refused_after is None and refused(server.addr, timeout=0.2):
                refused_after = time.monotonic() - termed
            for key, _ in selector.select(0.01):
                index, sock = key.data, key.fileobj
                try:
                    chunk = sock.recv(4096)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    chunk = b""
                answers[index] = answers.get(index, b"") + chunk
                if not chunk or answers[index].endswith(b"\n"):
                    ended[index] = time.monotonic() - termed
                    selector.unregister(sock)
        status = server.wait_exit(max(0.1, GRACEFUL + 1 - (time.monotonic() - termed)))
        exited = time.monotonic() - termed
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    print(f"\ngraceful stop: refused after {refused_after}; answers at "
          f"{ {lines[i].split()[0].decode(): round(t, 2) for i, t in sorted(ended.items())} }; exit {exited:.2f} s")

    assert refused_after is not None and refused_after < 1.0, refused_after
    for index in range(len(SHORT_MS)):
        assert answers.get(index) == lines[index], (lines[index], answers.get(index))
        assert ended[index] < GRACEFUL
    for index in range(len(SHORT_MS), len(lines)):
        assert answers.get(index, b"") == b"", answers.get(index)  # cut, not answered
        assert GRACEFUL - 0.2 < ended[index] < GRACEFUL + 0.8, ended
    assert status == 0
    assert exited < GRACEFUL + 1.0
    assert not [pid for pid in kids if procs.alive(pid)]
