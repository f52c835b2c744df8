"""max_child_lifetime: a child leaves after that many seconds, as at max_requests, and is replaced."""

from __future__ import annotations

import http.client
import time

import pytest

from support import procs
from support.clients import connect, read_line


@pytest.mark.parametrize("personality", ["PreForkSimple", "PreFork"])
def test_idle_line_children_are_replaced_after_their_lifetime(serve, personality):
    server = serve("--server_type", personality, "--max_servers", "2", "--min_servers", "2",
                   "--max_child_lifetime", "1") if personality == "PreFork" else \
        serve("--max_servers", "2", "--max_child_lifetime", "1")
    first = set(server.wait_children(2))
    procs.wait_until(lambda: not first & set(server.children()) and len(server.children()) == 2, 10,
                     message="both first children replaced")
    with connect(server.addr, timeout=5) as sock:
        assert read_line(sock).startswith(b"Welcome")  # the replacements serve


def test_a_busy_http_child_drains_at_its_lifetime(serve):
    server = serve("--app", "http_load_apps:hello", "--max_servers", "1", "--max_child_lifetime", "1",
                   "--max_requests", "0")
    (first,) = server.wait_children(1)
    host, port = server.addr
    conn = http.client.HTTPConnection(host, port, timeout=10)
    deadline = time.monotonic() + 5
    closing = None
    while time.monotonic() < deadline:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.read() == b"Hello, world!\n"
        if response.getheader("Connection") == "close":
            closing = response
            break
    conn.close()
    assert closing is not None, "no response said Connection: close within 5 s of a 1 s lifetime"
    procs.wait_until(lambda: server.children() and first not in server.children(), 10,
                     message="the child replaced")
