"""PreFork: the pool follows the load between min_servers and max_servers (issue 11, first slice)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from support import procs
from support.clients import connect, read_line, talk

BAND = ("--server_type", "PreFork", "--handler", "echo:Echo", "--min_servers", "2", "--max_servers", "6",
        "--min_spare_servers", "1", "--max_spare_servers", "2", "--check_for_waiting", "0.3",
        "--min_child_ttl", "0")


def _hold(server, count: int) -> list:
    held = []
    for index in range(count):
        sock = connect(server.addr, timeout=10)
        sock.sendall(b"%d\n" % index)
        held.append(sock)
    return held


def test_max_servers_2_starts_with_consistent_derived_defaults(serve):
    server = serve("--server_type", "PreFork", "--max_servers", "2")
    assert len(server.wait_children(2)) == 2
    assert b"Welcome" in talk(server.addr, b"quit\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--min_servers", "8", "--max_servers", "4"],
     "min_servers: '8' is more than max_servers (4, command line); change one of the two (command line)"),
    (["--max_spare_servers", "60"],
     "max_spare_servers: '60' must be less than max_servers (50, default); change one of the two (command line)"),
    (["--min_spare_servers", "5", "--max_spare_servers", "3"],
     "min_spare_servers: '5' is more than max_spare_servers (3, command line); change one of the two"),
])
def test_an_inconsistent_explicit_pool_exits_2_naming_both(serve, args, message):
    result = serve.run("--server_type", "PreFork", "--port", "127.0.0.1:0", *args)
    assert result.returncode == 2
    assert message in result.stderr.decode()


def test_held_connections_grow_the_pool_to_max_servers_and_it_shrinks_back(serve):
    server = serve(*BAND)
    server.wait_children(2)
    held = _hold(server, 4)
    try:
        for sock in held:
            assert read_line(sock)  # each is answered: a child per connection, the pool grew
        procs.wait_until(lambda: len(server.children()) >= 5, 5, message="a spare beside 4 busy children")
        held += _hold(server, 6)  # 10 connections for at most 6 children
        peak = 0
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            peak = max(peak, len(server.children()))
            time.sleep(0.02)
        assert peak == 6
    finally:
        for sock in held:
            sock.close()
    procs.wait_until(lambda: len(server.children()) <= 3, 10, message="the pool back in its band")
    assert talk(server.addr, b"after\n") == b"after\n"


def test_a_burst_never_shows_more_than_max_servers_children(serve):
    server = serve("--server_type", "PreFork", "--handler", "echo:Sleepy", "--min_servers", "1", "--max_servers", "4",
                   "--min_spare_servers", "1", "--max_spare_servers", "2", "--check_for_waiting", "0.2",
                   "--min_child_ttl", "0", "--max_requests", "20")
    server.wait_children(1)
    failures, peak, done = [], [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], len(server.children()))
            time.sleep(0.005)

    def client(index):
        try:
            if not talk(server.addr, b"0.05\n", timeout=30).startswith(b"done "):  # holds a child 50 ms
                failures.append(index)
        except OSError as error:
            failures.append((index, error))

    watcher = threading.Thread(target=sample)
    watcher.start()
    clients = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(30)
    done.set()
    watcher.join(5)
    assert not failures
    assert peak[0] == 4  # it grew to the ceiling, and never past it


def test_ttin_and_ttou_move_min_and_max_servers(serve):
    server = serve(*BAND)
    server.wait_children(2)
    server.signal(signal.SIGTTIN)
    procs.wait_until(lambda: "Received SIGTTIN: min_servers 3, max_servers 7 (configured 2 and 6" in server.log(), 5,
                     message="the TTIN line")
    procs.wait_until(lambda: len(server.children()) == 3, 5, message="a third child")
    for expected in ("min_servers 2, max_servers 6", "min_servers 1, max_servers 5"):
        server.signal(signal.SIGTTOU)  # one at a time: two pending TTOUs would be delivered as one
        procs.wait_until(lambda expected=expected: f"Received SIGTTOU: {expected}" in server.log(), 5,
                         message=expected)
    assert talk(server.addr, b"x\n") == b"x\n"


def test_a_child_killed_while_busy_is_replaced(serve):
    server = serve(*BAND)
    server.wait_children(2)
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(b"hello\n")
        assert read_line(sock) == b"hello\n"
        busy = [pid for pid in server.children() if procs.wchan(pid) != "do_epoll_wait"]
        assert busy
        os.kill(busy[0], signal.SIGKILL)
        procs.wait_until(lambda: busy[0] not in server.children() and len(server.children()) >= 2, 5,
                         message="a replacement")
    assert talk(server.addr, b"again\n") == b"again\n"


def test_connections_waiting_in_the_queue_grow_the_pool_even_without_spares(serve):
    # min_spare_servers 0: no spare is ever wanted, so only the accept queue's depth (read by
    # the parent at each pool check) can make the pool grow; Net::Server's would stay at 1.
    server = serve("--server_type", "PreFork", "--handler", "echo:Echo", "--min_servers", "1", "--max_servers", "12",
                   "--min_spare_servers", "0", "--max_spare_servers", "0", "--min_child_ttl", "0")
    server.wait_children(1)
    started = time.monotonic()
    held = _hold(server, 12)
    try:
        for sock in held:
            assert read_line(sock)  # every one has a child of its own
        took = time.monotonic() - started
        assert len(server.children()) == 12
    finally:
        for sock in held:
            sock.close()
    assert took < 5, took
    assert talk(server.addr, b"after\n") == b"after\n"
