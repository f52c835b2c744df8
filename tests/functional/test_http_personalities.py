"""HTTP on every personality: the same WSGI application behind Single, PreForkSimple, PreFork, Fork and INET.

Each gets two requests on one keep-alive connection and a third that closes
it, read with http.client; INET gets them over an accepted socket on fd 0
(as inetd passes it) and over a pipe pair.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys

import pytest

from conftest import server_env
from support.rawhttp import Wire, get

APP = "http_load_apps:hello"


def two_then_close(host: str, port: int) -> list[tuple[int, bytes, str | None]]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    answers = []
    for headers in ({}, {}, {"Connection": "close"}):
        conn.request("GET", "/", headers=headers)
        response = conn.getresponse()
        answers.append((response.status, response.read(), response.getheader("Connection")))
    conn.close()
    return answers


@pytest.mark.parametrize("personality", ["Single", "PreForkSimple", "PreFork", "Fork"])
def test_a_wsgi_app_on_every_listening_personality(serve, personality):
    server = serve("--app", APP, "--server_type", personality)
    host, port = server.addr
    answers = two_then_close(host, port)
    assert answers == [(200, b"Hello, world!\n", None), (200, b"Hello, world!\n", None),
                       (200, b"Hello, world!\n", "close")]
    assert f"(type {personality})" in server.log()


def inet(stdin, stdout) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "netserver", "--server_type", "INET", "--app", APP],
                            stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=server_env(),
                            start_new_session=True)


REQUESTS = (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


def test_inet_serves_http_on_an_accepted_socket():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        conn, _ = listener.accept()
    with conn:
        process = inet(conn, conn)
    with client:
        client.sendall(REQUESTS)
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    assert process.wait(10) == 0, process.stderr.read()
    process.stderr.close()
    assert data.count(b"HTTP/1.1 200 OK") == 2 and data.endswith(b"Hello, world!\n")
    assert data.count(b"Connection: close") == 1


def test_inet_serves_http_on_a_pipe_pair():
    read_in, write_in = os.pipe()
    read_out, write_out = os.pipe()
    process = inet(read_in, write_out)
    os.close(read_in)
    os.close(write_out)
    os.write(write_in, REQUESTS)
    data = b""
    while chunk := os.read(read_out, 65536):
        data += chunk
    os.close(write_in)
    os.close(read_out)
    assert process.wait(10) == 0, process.stderr.read()
    process.stderr.close()
    assert data.count(b"HTTP/1.1 200 OK") == 2 and data.count(b"Hello, world!\n") == 2


def test_keepalive_connections_opened_one_after_another_are_spread_over_the_children(serve):
    """The kernel tends to wake the same idle child for each new connection; a child holding more
    than four connections over its least-loaded sibling leaves the next one to it, so 48
    connections made one at a time end up within a few of each other on 4 children (the rule of
    "twice the sibling's count and four" left 6 against 17)."""
    from support import procs

    server = serve("--app", APP, "--max_servers", "4", "--max_requests", "0")
    kids = server.wait_children(4)
    held = []
    try:
        for _ in range(48):
            wire = Wire(server.addr, timeout=10)
            held.append(wire)
            wire.send(get("/", host="x"))
            assert wire.read_reply().body == b"Hello, world!\n"

        def per_child() -> list[int]:
            return sorted(sum(target.startswith("socket:") for target in procs.fd_targets(pid)) - 1
                          for pid in kids)  # less the listener

        procs.wait_until(lambda: sum(per_child()) == 48, 5, message="48 connections held")
        counts = per_child()
        assert counts[-1] - counts[0] <= 7, counts
    finally:
        for wire in held:
            wire.close()
