"""Abuse: the parent is killed with SIGKILL (reliability.md B6).

Two listeners, so the accept lock is in use: one child waits in accept, the
other three wait on the lock (asserted before the kill, so both kinds of
idle child are covered).  After ``kill -9`` of the parent, within 2 s: every
child is gone, both ports refuse, no SysV semaphore is left and no lock file
was ever visible in $TMPDIR.

Semaphores are counted in a private IPC namespace that the server is started
in (``unshare(CLONE_NEWIPC)`` before exec) and that this test keeps alive by
holding its /proc/PID/ns/ipc file: the namespace holds only this server's
semaphores, so concurrent tests cannot disturb the count, and a semaphore
left behind would still be there after every process of the server has gone.
Reading the list while the server runs (one semaphore for ``semaphore``,
none for ``flock``) is the control that the reader sees that namespace.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

import pytest

from support import needs_root, procs
from support.clients import connect, read_line

ACCEPT_WAIT = "do_epoll_wait"
LOCK_WAIT = {"flock": "lock", "semaphore": "sem"}
CLONE_NEWIPC = 0x08000000
LIMIT = 2.0

_libc = ctypes.CDLL(None, use_errno=True)


def private_ipc_namespace() -> None:
    """preexec_fn: the server gets an IPC namespace of its own."""
    if _libc.unshare(CLONE_NEWIPC) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWIPC)")


def semaphores_in(ns_fd: int) -> list[str]:
    """The semids in the IPC namespace that ns_fd refers to (/proc/sysvipc/sem read from inside)."""
    result = subprocess.run(["nsenter", f"--ipc=/proc/self/fd/{ns_fd}", "cat", "/proc/sysvipc/sem"],
                            pass_fds=(ns_fd,), capture_output=True, text=True, timeout=10, check=True)
    return [line.split()[1] for line in result.stdout.splitlines()[1:] if line.strip()]


def refused(address) -> bool:
    try:
        connect(address, timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def idle_states(kids: list[int], kind: str) -> dict[int, str] | None:
    """wchan of each child when exactly one waits in accept and every other one on the lock."""
    states = {pid: procs.wchan(pid) for pid in kids}
    in_accept = [pid for pid, wchan in states.items() if wchan == ACCEPT_WAIT]
    on_lock = [pid for pid, wchan in states.items() if wchan != ACCEPT_WAIT and LOCK_WAIT[kind] in wchan]
    return states if len(in_accept) == 1 and len(on_lock) == len(kids) - 1 else None


def lock_files_of(pid: int, folder: str) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(folder + "/"):
            found.append(target)
    return found


@needs_root
@pytest.mark.parametrize("as_user", [False, True], ids=["same-user", "user-nstest"])
@pytest.mark.parametrize("kind", ["flock", "semaphore"])
def test_parent_killed_leaves_no_child_port_semaphore_or_lock_file(serve, tmp_path, nstest, kind, as_user):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    user = ["--user", "nstest"] if as_user else []
    server = serve("--max_servers", "4", "--serialize", kind, *user, "--port", "127.0.0.1:0", "--port", "127.0.0.1:0",
                   port=None, env={"TMPDIR": str(tmpdir)}, preexec=private_ipc_namespace)
    ns_fd = os.open(f"/proc/{server.pid}/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert os.fstat(ns_fd).st_ino != os.stat("/proc/self/ns/ipc").st_ino, "the server shares our IPC namespace"
        kids = server.wait_children(4)
        # Controls: one child idle in accept, three waiting for the lock; both ports serve;
        # the namespace reader sees the server's semaphore; the lock file lived in $TMPDIR.
        states = procs.wait_until(lambda: idle_states(kids, kind), 5, message="one child in accept, three on the lock")
        for address in server.addresses:
            with connect(address.tuple) as client:
                assert read_line(client).startswith(b"Welcome")
        assert len(semaphores_in(ns_fd)) == (1 if kind == "semaphore" else 0)
        if kind == "flock":
            held = lock_files_of(kids[0], str(tmpdir))
            assert len(held) == 1 and held[0].endswith("/accept.lock (deleted)"), held
        assert os.listdir(tmpdir) == []
        if as_user:
            assert all(procs.status_field(pid, "Uid").split() == [str(nstest.pw_uid)] * 4 for pid in kids)

        os.kill(server.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        procs.wait_until(lambda: not any(procs.alive(pid) for pid in kids), LIMIT,
                         message=f"the children {kids} (wchan {states}) to leave")
        children_gone = time.monotonic() - killed_at
        procs.wait_until(lambda: all(refused(a.tuple) for a in server.addresses), LIMIT - children_gone,
                         message="both ports to refuse")
        ports_refused = time.monotonic() - killed_at
        procs.wait_until(lambda: semaphores_in(ns_fd) == [], max(0.1, LIMIT - ports_refused),
                         message="the semaphore to be removed")
        semaphore_gone = time.monotonic() - killed_at
        assert os.listdir(tmpdir) == []
        procs.reap_strays()
    finally:
        os.close(ns_fd)
    print(f"\n[abuse parent killed] {kind} {'--user nstest' if as_user else 'root'}: children gone "
          f"{children_gone * 1000:.0f} ms, ports refuse {ports_refused * 1000:.0f} ms, "
          f"no semaphore {semaphore_gone * 1000:.0f} ms after kill -9")
    assert semaphore_gone < LIMIT


@needs_root
def test_control_the_namespace_reader_sees_a_semaphore_left_behind():
    """Negative control for the semaphore count: a process that exits without IPC_RMID leaves one."""
    creator = subprocess.Popen([sys.executable, "-c", "import ctypes, sys; sys.stdin.read();"
                                "sys.exit(ctypes.CDLL(None).semget(0, 1, 0o1600) < 0)"],
                               stdin=subprocess.PIPE, preexec_fn=private_ipc_namespace)
    ns_fd = os.open(f"/proc/{creator.pid}/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
    try:
        creator.communicate(b"", timeout=10)
        assert creator.returncode == 0
        assert len(semaphores_in(ns_fd)) == 1
    finally:
        os.close(ns_fd)


def test_parent_killed_ends_a_busy_childs_idle_connection(serve):
    """A child inside a connection waits in recv, not in epoll, so it cannot see the death pipe:
    the parent-death signal (HUP) reaches it, and it ends the connection at its idle point."""
    server = serve("--max_servers", "1", "--port", "127.0.0.1:0")
    kid = server.wait_children(1)[0]
    with connect(server.addresses[0].tuple) as client:
        assert read_line(client).startswith(b"Welcome")
        client.sendall(b"hello\r\n")
        assert b"hello" in read_line(client)
        procs.wait_until(lambda: procs.wchan(kid) != ACCEPT_WAIT, 5, message="the child to wait in the connection")
        os.kill(server.pid, signal.SIGKILL)
        client.settimeout(LIMIT)
        assert client.recv(100) == b"", "the connection stayed open after the parent died"
    procs.wait_until(lambda: not procs.alive(kid), LIMIT, message=f"the child {kid} to leave")
    procs.reap_strays()
