"""max_child_lifetime: a child leaves after that many seconds, as at max_requests, and is replaced."""

from __future__ import annotations

import http.client
import time

import pytest

from support import procs
from support.clients import connect, read_line


def one_http_child(serve, *options: str):
    """A one-child HTTP server, its child's pid, and a way to open a connection to it."""
    server = serve("--app", "http_load_apps:hello", "--max_servers", "1", *options)
    (child,) = server.wait_children(1)
    host, port = server.addr
    return server, child, lambda: http.client.HTTPConnection(host, port, timeout=10)


def hello(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.read() == b"Hello, world!\n"
    return response


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
    server, first, connect_http = one_http_child(serve, "--max_child_lifetime", "1", "--max_requests", "0")
    conn = connect_http()
    deadline = time.monotonic() + 5
    closing = None
    while time.monotonic() < deadline:
        response = hello(conn)
        if response.getheader("Connection") == "close":
            closing = response
            break
    conn.close()
    assert closing is not None, "no response said Connection: close within 5 s of a 1 s lifetime"
    procs.wait_until(lambda: server.children() and first not in server.children(), 10,
                     message="the child replaced")


def test_a_draining_http_child_is_replaced_while_its_idle_connections_linger(serve):
    """The replacement is forked when the drain starts, not when the last keep-alive connection goes."""
    server, first, connect_http = one_http_child(serve, "--max_requests", "2", "--keepalive_timeout", "5")
    idle = connect_http()
    hello(idle)  # request 1 (counted at accept); now idle
    busy = connect_http()
    assert hello(busy).getheader("Connection") == "close"
    # The first child still holds the idle connection (for up to keepalive_timeout), and a new one serves.
    procs.wait_until(lambda: len(server.children()) == 2 and first in server.children(), 4,
                     message="a replacement beside the draining child")
    idle.close()
    busy.close()
    procs.wait_until(lambda: first not in server.children(), 10, message="the drained child gone")
