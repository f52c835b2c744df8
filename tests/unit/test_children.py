"""ChildTable reaps its own children, and never a process it did not fork."""

import os
import time

import pytest

from netserver.children import Child, ChildTable


def exited_child(code: int) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    # Wait until it is a zombie, without reaping it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return pid
        time.sleep(0.01)
    pytest.fail(f"child {pid} did not exit")


def test_reap_collects_ours_and_leaves_a_foreign_exit_to_its_owner():
    table = ChildTable()
    foreign = exited_child(7)  # a user's subprocess, say: exited first
    ours = exited_child(3)
    table.add(Child(ours, "server"))
    try:
        gone = table.reap()
        assert [(child.pid, os.WEXITSTATUS(status)) for child, status in gone] == [(ours, 3)]
        assert len(table) == 0
    finally:
        pid, status = os.waitpid(foreign, 0)  # still there for its owner
    assert pid == foreign and os.WEXITSTATUS(status) == 7


def test_reap_collects_several_at_once_and_leaves_the_running():
    table = ChildTable()
    done = [exited_child(0), exited_child(1)]
    read_fd, write_fd = os.pipe()
    running = os.fork()
    if running == 0:
        os.read(read_fd, 1)
        os._exit(0)
    for pid in (*done, running):
        table.add(Child(pid, "server"))
    try:
        assert sorted(child.pid for child, _ in table.reap()) == sorted(done)
        assert table.pids() == [running]
        assert table.reap() == []
    finally:
        os.write(write_fd, b"x")
        os.close(read_fd)
        os.close(write_fd)
        os.waitpid(running, 0)


def test_a_child_reaped_elsewhere_is_forgotten():
    table = ChildTable()
    pid = exited_child(0)
    os.waitpid(pid, 0)  # a user hook called wait()
    table.add(Child(pid, "server"))
    assert [(child.pid, status) for child, status in table.reap()] == [(pid, None)]


def test_the_full_sweep_forgets_a_child_reaped_elsewhere_while_others_run():
    table = ChildTable()
    read_fd, write_fd = os.pipe()
    running = os.fork()
    if running == 0:
        os.read(read_fd, 1)
        os._exit(0)
    gone = exited_child(0)
    os.waitpid(gone, 0)  # a user hook's wait() took its exit
    table.add(Child(gone, "server"))
    table.add(Child(running, "server"))
    try:
        table.reap()  # the fast path sees nobody exited
        assert [(child.pid, status) for child, status in table.reap(full=True)] == [(gone, None)]
        assert table.pids() == [running]
    finally:
        os.write(write_fd, b"x")
        os.close(read_fd)
        os.close(write_fd)
        os.waitpid(running, 0)
