"""Fork: one child per connection, at most max_servers, the rest queued in the kernel."""

from __future__ import annotations

import signal
import threading

from support import needs_root, procs
from support.clients import connect, read_line, talk


def test_five_held_connections_with_max_servers_3_never_show_more_than_3_children(serve):
    server = serve("--server_type", "Fork", "--max_servers", "3", "--handler", "echo:Echo")
    most, watching = [0], threading.Event()

    def watch():
        while not watching.is_set():
            most[0] = max(most[0], len(server.children()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    clients = [connect(server.addr, timeout=10) for _ in range(5)]
    try:
        for sock in clients[:3]:
            sock.sendall(b"first\n")
            assert read_line(sock) == b"first\n"
        server.wait_children(3)
        for sock in clients[3:]:
            sock.settimeout(0.5)
            sock.sendall(b"waiting\n")
        for sock in clients[3:]:
            try:
                assert sock.recv(100) == b"", "a fourth client was served while three children ran"
            except TimeoutError:
                pass  # queued in the kernel, as it should be
        assert len(server.children()) == 3
        clients[0].close()  # a slot frees: the next queued client is served at once
        clients[3].settimeout(5)
        assert read_line(clients[3]) == b"waiting\n"
        clients[1].close()
        clients[4].settimeout(5)
        assert read_line(clients[4]) == b"waiting\n"
    finally:
        watching.set()
        watcher.join(5)
        for sock in clients:
            sock.close()
    assert most[0] <= 3, most[0]
    procs.wait_until(lambda: not server.children(), 10, message="the connection children to leave")


def test_each_connection_is_its_own_child_and_the_parent_reads_nothing(serve):
    server = serve("--server_type", "Fork", "--handler", "echo:Pid", "--log_level", "3")
    pids = set()
    for _ in range(3):
        with connect(server.addr) as sock:
            pids.add(int(read_line(sock).strip()))
    assert len(pids) == 3 and server.pid not in pids
    log = server.log()
    # The CONNECT line is logged by get_client_info, which runs in the child only.
    assert all(f"[{pid}] info: CONNECT TCP" in log for pid in pids)
    assert f"[{server.pid}] info: CONNECT" not in log


def test_ttin_and_ttou_move_the_ceiling(serve):
    server = serve("--server_type", "Fork", "--max_servers", "1", "--handler", "echo:Echo")
    server.signal(signal.SIGTTIN)
    procs.wait_until(lambda: "max_servers 2" in server.log(), 5, message="the TTIN line")
    with connect(server.addr, timeout=5) as first, connect(server.addr, timeout=5) as second:
        for sock in (first, second):
            sock.sendall(b"x\n")
            assert read_line(sock) == b"x\n"  # two at once: the ceiling is 2
    server.signal(signal.SIGTTOU)
    procs.wait_until(lambda: "Received SIGTTOU: max_servers 1" in server.log(), 5, message="the TTOU line")
    assert talk(server.addr, b"y\n") == b"y\n"


def test_a_child_that_crashes_is_logged_and_serving_goes_on(serve):
    server = serve("--server_type", "Fork", "--handler", "fork_handlers:ExitAbnormally")
    assert talk(server.addr, b"die\n") == b""
    procs.wait_until(lambda: "exited abnormally: exit status 7" in server.log(), 5, message="the abnormal exit line")
    assert talk(server.addr, b"live\n") == b"live\n"


@needs_root
def test_the_connection_child_drops_privileges_and_the_parent_keeps_them(serve, nstest):
    server = serve("--server_type", "Fork", "--handler", "echo:Identity", "--user", nstest.pw_name)
    uid, gid, _ = talk(server.addr, b"").split()
    assert (int(uid), int(gid)) == (nstest.pw_uid, nstest.pw_gid)
    assert procs.status_field(server.pid, "Uid").split()[0] == "0"


def test_the_parent_runs_pre_accept_hook_then_pre_fork_hook_for_each_connection(serve, marks):
    server = serve("--server_type", "Fork", "--handler", "fork_handlers:CountsAccepts", env={"MARK_DIR": str(marks)})
    for n in range(3):
        assert talk(server.addr, b"%d\n" % n) == b"%d\n" % n
    hooks = [line.split() for line in (marks / "hooks").read_text().splitlines()]
    assert {int(pid) for pid, _ in hooks} == {server.pid}
    order = [what for _, what in hooks]
    # Before every accept, including the one that finds the queue empty and ends the wake-up.
    assert order.count("pre_fork_hook") == 3
    assert all(order[i - 1] == "pre_accept_hook" for i, what in enumerate(order) if what == "pre_fork_hook")
