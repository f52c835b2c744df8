"""Hostile HTTP clients (reliability.md row 20): each costs only its own connection.

One child (``max_servers 1``) holds every connection, so a client that could
make the child wait would delay everyone.  The figures are printed; the
assertions are generous bounds that tell "the child waited for the hostile
client" (seconds: timeout_header is 15 s here) from "it did not" (milliseconds).
"""

from __future__ import annotations

import socket
import statistics
import time

import pytest

from conftest import HANDLERS

APP = "http_load_apps:route"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def timed_request(address, request: bytes = REQUEST) -> float:
    started = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"Hello, world!\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    return time.monotonic() - started


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


@pytest.fixture
def one_child(serve):
    server = serve("--app", APP, "--max_servers", "1", "--max_requests", "0", "--timeout_header", "15")
    server.wait_children(1)
    return server


def test_half_a_head_does_not_delay_the_next_client(one_child):
    with socket.create_connection(one_child.addr, timeout=10) as stalled:
        stalled.sendall(b"GET / HTTP/1.1\r\nHo")  # and nothing more
        time.sleep(0.1)
        took = timed_request(one_child.addr)
    print(f"\nsecond client served in {took * 1000:.1f} ms beside a half-sent head")
    assert took < 1.0


def test_200_clients_dribbling_headers_cost_an_honest_client_little(one_child):
    baseline = [timed_request(one_child.addr) for _ in range(300)]
    dribblers = [socket.create_connection(one_child.addr, timeout=10) for _ in range(200)]
    try:
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40
        loaded: list[float] = []
        sent = 0
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            if sent < len(head):
                for sock in dribblers:
                    sock.send(head[sent:sent + 1])  # one byte per client per round, about a byte a second
                sent += 1
            round_end = time.monotonic() + 1.0
            while time.monotonic() < round_end:
                loaded.append(timed_request(one_child.addr))
    finally:
        for sock in dribblers:
            sock.close()
    before, during = p99(baseline), p99(loaded)
    print(f"\nhonest client p99 {before * 1000:.2f} ms alone, {during * 1000:.2f} ms beside 200 dribblers "
          f"({len(loaded)} requests)")
    assert len(loaded) >= 100
    assert during <= max(2 * before, before + 0.005), (before, during)


def test_a_client_that_never_reads_its_response_stalls_no_one(one_child):
    with socket.create_connection(one_child.addr, timeout=10) as lazy:
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")  # 10 MiB it never reads
        time.sleep(0.3)
        took = [timed_request(one_child.addr) for _ in range(20)]
    print(f"\nbeside a client not reading 10 MiB: slowest of 20 requests {max(took) * 1000:.1f} ms")
    assert max(took) < 1.0


def test_control_one_connection_per_child_is_seen_waiting(serve):
    """Negative control: with max_connections 1 the child does wait for the half-sent head."""
    server = serve("--app", APP, "--max_servers", "1", "--max_requests", "0", "--max_connections", "1",
                   "--timeout_header", "1.5")
    server.wait_children(1)
    with socket.create_connection(server.addr, timeout=10) as stalled:
        stalled.sendall(b"GET / HTTP/1.1\r\nHo")
        time.sleep(0.1)
        took = timed_request(server.addr)
        assert b" 408 " in stalled.recv(4096)
    print(f"\ncontrol: second client waited {took:.2f} s behind a half-sent head")
    assert took >= 1.0


def test_a_response_nobody_reads_is_abandoned_after_timeout_and_the_child_goes_on(serve):
    server = serve("--app", APP, "--max_servers", "1", "--max_requests", "0", "--timeout", "1", "--log_level", "3")
    server.wait_children(1)
    child = server.children()[0]
    with socket.create_connection(server.addr, timeout=10) as lazy:
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 10
        while "abandoned" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "HTTP response to 127.0.0.1 abandoned after" in server.log()
        assert timed_request(server.addr) < 1.0
    assert server.children() == [child]  # the same child: nothing crashed


def test_a_failing_hook_costs_its_connection_not_the_child(serve):
    server = serve("--max_servers", "1", "--max_requests", "0", script=str(HANDLERS / "http_fragile.py"))
    server.wait_children(1)
    child = server.children()[0]
    with socket.create_connection(server.addr, timeout=10) as doomed:
        doomed.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        assert doomed.recv(65536) == b""  # closed, with nothing sent
    assert timed_request(server.addr) < 1.0
    assert "HTTP connection from 127.0.0.1 failed; closing it" in server.log()
    assert "the environ hook failed on purpose" in server.log()
    assert server.children() == [child]


@pytest.mark.parametrize("per_child", ["1000", "1"], ids=["multiplexing", "one-connection"])
def test_a_file_sent_to_a_slow_reader_arrives_whole(serve, per_child):
    pattern = bytes(range(256)) * 16384  # what http_load_apps.big_file sends

    server = serve("--app", "http_load_apps:big_file", "--max_servers", "1", "--max_connections", per_child)
    server.wait_children(1)
    with socket.create_connection(server.addr, timeout=10) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := slow.recv(65536):
            data += chunk
            if len(data) < 1 << 20:
                time.sleep(0.002)  # the first MiB slowly: the server meets a full socket and resumes
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(pattern) in head and b"chunked" not in head, head
    assert body == pattern
