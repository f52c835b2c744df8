"""The supervisor's seams as a user and an operator see them: the scoreboard read by the
parent, the pool size as runtime state (TTIN/TTOU), signals that must not kill, and the
accept lock rebuilt as start-up built it after a failed HUP re-exec."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import HANDLERS
from support import needs_root, procs
from support.clients import connect, read_line, talk
from support.rawhttp import Wire, get


def read_board(server, marks) -> dict[int, list[str]]:
    board = marks / "board"
    board.unlink(missing_ok=True)
    server.signal(signal.SIGUSR2)
    procs.wait_until(lambda: board.exists() and board.read_text().endswith("\n"), 5, message="the board dump")
    return {int(row.split()[0]): row.split()[1:] for row in board.read_text().splitlines()}


def test_the_parent_sees_each_child_idle_or_busy_with_its_client(serve, marks):
    server = serve("--handler", "prefork_handlers:BoardDump", "--max_servers", "3", env={"MARK_DIR": str(marks)})
    kids = server.wait_children(3)
    assert {pid: row[:2] for pid, row in read_board(server, marks).items()} == \
        {pid: ["server", "idle"] for pid in kids}
    with connect(server.addr, timeout=10) as held:
        held.sendall(b"sleep 3\n")
        port = held.getsockname()[1]
        busy = procs.wait_until(lambda: [pid for pid, row in read_board(server, marks).items() if row[1] == "busy"],
                                5, message="a busy slot")
        assert len(busy) == 1
        assert read_board(server, marks)[busy[0]][2:] == ["1", f"127.0.0.1:{port}"]
        assert int(read_line(held)) == busy[0]
    procs.wait_until(lambda: read_board(server, marks)[busy[0]][1] == "idle", 5, message="the slot back to idle")
    assert read_board(server, marks)[busy[0]] == ["server", "idle", "1", "-"]


def test_an_http_childs_slot_is_busy_during_each_request_and_idle_between_them(serve, marks):
    """A multiplexing HTTP child writes idle once its round of requests is done, not after each
    request: the slot still reads idle between two requests of a keep-alive connection, busy with
    that client during one, and counts every request."""
    server = serve("--max_servers", "1", "--max_requests", "0", script=str(HANDLERS / "http_board.py"),
                   env={"MARK_DIR": str(marks)})
    (kid,) = server.wait_children(1)
    with Wire(server.addr, timeout=10) as wire:
        port = wire.sock.getsockname()[1]
        for _ in range(3):
            wire.send(get("/", host="x"))
            assert wire.read_reply().body == b"Hello, world!\n"
        procs.wait_until(lambda: read_board(server, marks)[kid][1] == "idle", 5, message="the slot idle")
        assert read_board(server, marks)[kid] == ["server", "idle", "3", "-"]
        wire.send(get("/sleep", host="x"))
        procs.wait_until(lambda: read_board(server, marks)[kid][1] == "busy", 5, message="the slot busy")
        assert read_board(server, marks)[kid][2:] == ["4", f"127.0.0.1:{port}"]
        assert wire.read_reply().body == b"Hello, world!\n"
        procs.wait_until(lambda: read_board(server, marks)[kid][1] == "idle", 5, message="the slot idle again")
        assert read_board(server, marks)[kid] == ["server", "idle", "4", "-"]


def test_a_child_whose_ready_pipe_closes_is_replaced_before_it_is_reaped(serve, marks):
    """The kernel closes a dying child's files before it becomes a zombie: the parent forks the
    replacement at that end of file rather than after SIGCHLD and the reap."""
    server = serve("--handler", "prefork_handlers:ClosesReadyPipe", "--max_servers", "2",
                   env={"MARK_DIR": str(marks)})
    kids = set(server.wait_children(2))
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(b"exit-slowly\n")
        lingering = int(read_line(sock))
        assert lingering in kids
        # The lingering child is still alive for 3 s: the pool has a third member meanwhile.
        procs.wait_until(lambda: len(server.children()) == 3 and lingering in server.children(), 2.5,
                         message="a replacement beside the child whose pipe closed")
    procs.wait_until(lambda: lingering not in server.children() and len(server.children()) == 2, 10,
                     message="the lingering child reaped, the pool back to 2")


def test_a_child_closes_each_of_the_parents_descriptors_once(serve, marks):
    """A second close of a descriptor fails (EBADF): an OSError made and dropped in every child's
    boot, and a hazard once the number is reused.  The signal pipe was closed twice."""
    server = serve("--handler", "prefork_handlers:NotesFailedCloses", "--max_servers", "2",
                   env={"MARK_DIR": str(marks)})
    kids = server.wait_children(2)
    os.kill(kids[0], signal.SIGKILL)  # a replacement, forked by a parent that has run a while
    procs.wait_until(lambda: len(set(server.children()) - set(kids)) == 1, 10, message="a replacement child")
    assert talk(server.addr, b"hello\n").strip().isdigit()
    procs.wait_until(lambda: (marks / "init").exists() and len((marks / "init").read_text().splitlines()) >= 3, 5,
                     message="three children booted")
    failed = marks / "close-failed"
    assert not failed.exists(), failed.read_text()


def test_ttin_and_ttou_move_the_pool_by_one_and_hup_restores_it(serve):
    server = serve("--max_servers", "2")
    server.wait_children(2)
    server.signal(signal.SIGTTIN)
    procs.wait_until(lambda: len(server.children()) == 3, 5, message="a third child")
    assert "Received SIGTTIN: pool size 3 (max_servers 2; a HUP restores it)" in server.log()
    for _ in range(3):
        server.signal(signal.SIGTTOU)
        time.sleep(0.3)
    procs.wait_until(lambda: len(server.children()) == 1, 5, message="one child left")
    assert "Received SIGTTOU: pool size 1" in server.log()
    assert "pool size stays at 1" in server.log()
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: "Ready: READY" in server.log().split("Re-exec server during HUP")[-1], 15,
                     message="the restart")
    procs.wait_until(lambda: len(server.children()) == 2, 10, message="the configured two children")


@pytest.mark.parametrize("server_type", ["PreForkSimple", "Single"])
def test_operator_signals_are_logged_and_ignored_by_parent_and_children(serve, tmp_path, server_type):
    pid_file = tmp_path / "s.pid"
    extra = ["--max_servers", "2"] if server_type == "PreForkSimple" else []
    server = serve("--server_type", server_type, "--pid_file", str(pid_file), *extra)
    kids = server.wait_children(2) if server_type == "PreForkSimple" else []
    names = ["SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGALRM"] + (["SIGTTIN", "SIGTTOU"] if server_type == "Single" else [])
    for name in names:
        for pid in [server.pid, *kids]:
            os.kill(pid, getattr(signal, name))
        procs.wait_until(lambda name=name: f"Received {name}: ignored" in server.log(), 5, message=name)
    assert procs.alive(server.pid) and pid_file.exists()
    assert sorted(server.children()) == sorted(kids)
    assert b"Welcome" in talk(server.addr, b"quit\n")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    assert not pid_file.exists()


def test_a_system_stop_signal_stops_gracefully_and_removes_the_pid_file(serve, tmp_path):
    pid_file = tmp_path / "s.pid"
    server = serve("--max_servers", "2", "--pid_file", str(pid_file))
    server.signal(signal.SIGPWR)
    assert server.wait_exit(10) == 0
    assert "Received SIGPWR: stopping as for SIGTERM" in server.log()
    assert not pid_file.exists()


def _semaphore_owners() -> dict[int, int]:
    out = subprocess.run(["ipcs", "-s", "-c"], capture_output=True, text=True, timeout=10).stdout
    owners = {}
    for line in out.splitlines():
        words = line.split()
        if words and words[0].isdigit():
            owners[int(words[0])] = words[4]  # semid perms cuid cgid uid gid
    return owners


@needs_root
def test_a_failed_hup_exec_rebuilds_the_semaphore_for_the_childrens_user(serve, nstest, tmp_path):
    python = tmp_path / "python3"
    shutil.copy2(os.path.realpath(sys.executable), python)
    env = {"NETSERVER_TEST_PYTHON": str(python), "PYTHONHOME": sys.base_prefix}
    before = set(_semaphore_owners())
    # The server runs on a private copy of the interpreter, so the handler can make its exec fail.
    serve.command = lambda args, script=None: [str(python), "-m", "netserver", *args]
    server = serve("--handler", "prefork_handlers:ExecFails", "--max_servers", "2", "--serialize", "semaphore",
                   "--user", "nstest", env=env)
    server.wait_children(2)
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: "keeping the running server" in server.log(), 15, message="the failed exec")
    assert "Serialization restarted" in server.log()
    new = {semid: uid for semid, uid in _semaphore_owners().items() if semid not in before}
    assert new and set(new.values()) == {"nstest"}, new
    for pid in server.children():  # the new lock is the one replacements use: they must boot and serve
        os.kill(pid, signal.SIGKILL)
    procs.wait_until(lambda: len(server.children()) == 2 and all(procs.wchan(p) for p in server.children()), 10,
                     message="replacements on the rebuilt lock")
    served = {int(talk(server.addr, b"\n")) for _ in range(6)}
    assert served <= set(server.children()) and served
    assert "failed to boot" not in server.log()


def _title(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().rstrip(b"\0").decode()


@pytest.mark.skipif(importlib.util.find_spec("setproctitle") is None, reason="setproctitle is not installed")
def test_ps_names_the_parent_and_each_child_with_the_handler(serve):
    server = serve("--handler", "echo:Pid", "--max_servers", "2")
    kids = server.wait_children(2)
    assert _title(server.pid) == "netserver: parent [echo:Pid]"
    assert {_title(pid) for pid in kids} == {"netserver: child [echo:Pid]"}
    named = serve("--max_servers", "1", "--proc_name", "billing")
    (child,) = named.wait_children(1)
    assert (_title(named.pid), _title(child)) == ("netserver: parent [billing]", "netserver: child [billing]")
    os.kill(child, signal.SIGKILL)  # a respawned child is titled as the first ones were
    (again,) = named.wait_children(1, exclude=(child,))
    assert _title(again) == "netserver: child [billing]"
    forking = serve("--server_type", "Fork", "--handler", "echo:Echo")
    with connect(forking.addr, timeout=10) as sock:
        sock.sendall(b"hi\n")
        assert read_line(sock) == b"hi\n"
        (connection,) = forking.wait_children(1)
        assert _title(connection) == "netserver: connection [echo:Echo]"
    assert _title(forking.pid) == "netserver: parent [echo:Echo]"
