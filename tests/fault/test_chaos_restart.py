"""Chaos around HUP (issue 15 items 2-4): a stop during the check, a new generation that boots
slowly or not at all, and a pid_file that changes across the restart."""

from __future__ import annotations

import signal
import time

import pytest

from support import procs
from support.clients import talk


def _check_process(server) -> int | None:
    for pid in procs.children_of(server.pid):
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if b"NETSERVER_CHECK=1" in handle.read().split(b"\0"):
                    return pid
        except OSError:
            pass
    return None


@pytest.mark.parametrize("server_type", ["PreForkSimple", "Single"])
def test_term_during_the_hup_check_cancels_it_and_exits_0(serve, server_type):
    extra = ["--max_servers", "2"] if server_type == "PreForkSimple" else []
    server = serve("--server_type", server_type, "--handler", "chaos_handlers:Pid", *extra,
                   env={"SLOW_CHECK_SECONDS": "4"})
    server.signal(signal.SIGHUP)
    check = procs.wait_until(lambda: _check_process(server), 5, message="the check subprocess")
    time.sleep(0.3)  # it is importing the handler, which takes 4 s under the check
    stopped = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    took = time.monotonic() - stopped
    print(f"\n[chaos TERM during check] {server_type}: exit 0 {took * 1000:.0f} ms after TERM; check gone")
    assert took < 3
    assert not procs.alive(check)
    log = server.log()
    assert "the pending restart is cancelled" in log
    assert "Traceback" not in log and "Re-exec" not in log


def _pids_served(server, count: int = 4) -> set[int]:
    return {int(talk(server.addr, b"", timeout=3)) for _ in range(count)}


def test_a_slow_booting_new_generation_never_leaves_the_pool_empty(serve, tmp_path):
    flag = tmp_path / "boot"
    server = serve("--handler", "chaos_handlers:SlowBoot", "--max_servers", "2", env={"BOOT_FLAG": str(flag)})
    old = set(server.wait_children(2))
    flag.write_text("7")  # longer than the 5 s after which the old generation used to be sent away
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: "Re-exec server during HUP" in server.log(), 10, message="the re-exec")
    deadline = time.monotonic() + 6.5
    served = 0
    while time.monotonic() < deadline:  # the new children are still in child_init_hook
        assert _pids_served(server, 2) <= old
        served += 2
        time.sleep(0.25)
    procs.wait_until(lambda: not (set(server.children()) & old), 15, message="the old generation to leave")
    assert not (_pids_served(server) & old)
    print(f"\n[chaos slow boot] {served} of {served} connections served by the old generation during a 7 s boot")


def test_a_new_generation_that_cannot_boot_leaves_the_old_one_serving(serve, tmp_path):
    flag = tmp_path / "boot"
    server = serve("--handler", "chaos_handlers:SlowBoot", "--max_servers", "2", env={"BOOT_FLAG": str(flag)})
    old = set(server.wait_children(2))
    flag.write_text("fail")
    server.signal(signal.SIGHUP)
    # Seven failures in a row take over 6 s of backoff: past the 5 s after which the old
    # generation used to be sent away whatever the new one's state.
    procs.wait_until(lambda: server.log().count("failed to boot") >= 7, 20, message="boot failures")
    hupped = server.log().count("failed to boot")
    assert _pids_served(server) <= old
    print(f"\n[chaos no boot] after {hupped} boot failures the old generation still serves")
    assert procs.alive(server.pid)
    flag.write_text("")  # fixed: the next probe boots, the rest follow, the old ones leave
    procs.wait_until(lambda: not (set(server.children()) & old) and len(server.children()) == 2, 20,
                     message="the new generation to take over")
    assert not (_pids_served(server) & old)


def test_a_pid_file_moved_across_a_hup_is_moved_not_dropped(serve, tmp_path):
    first, second = tmp_path / "a.pid", tmp_path / "b.pid"
    conf = tmp_path / "s.conf"
    conf.write_text(f"pid_file {first}\nmax_servers 2\n")
    server = serve("--conf_file", str(conf))
    assert first.read_text() == f"{server.pid}\n"
    conf.write_text(f"pid_file {second}\nmax_servers 2\n")
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: second.exists() and not first.exists(), 15, message="the pid file to move")
    assert second.read_text() == f"{server.pid}\n"
    assert f"pid_file moved from {first} to {second}" in server.log()
    again = serve.run("--conf_file", str(conf), "--port", "127.0.0.1:0")
    assert again.returncode == 1 and b"already running" in again.stderr
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    assert not first.exists() and not second.exists()


def test_a_pid_file_move_that_cannot_lock_keeps_the_old_file(serve, tmp_path):
    first, second = tmp_path / "a.pid", tmp_path / "b.pid"
    other = serve("--pid_file", str(second), "--max_servers", "1")  # someone else holds b.pid
    conf = tmp_path / "s.conf"
    conf.write_text(f"pid_file {first}\nmax_servers 2\n")
    server = serve("--conf_file", str(conf))
    conf.write_text(f"pid_file {second}\nmax_servers 2\n")
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: "pid_file stays" in server.log(), 15, message="the refused move")
    assert first.read_text() == f"{server.pid}\n" and second.read_text() == f"{other.pid}\n"
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    assert not first.exists() and second.exists()


@pytest.mark.parametrize("server_type", ["PreForkSimple", "PreFork"])
def test_term_while_the_new_generation_boots_exits_0(serve, tmp_path, server_type):
    # A stop while the new generation boots: the parent once announced readiness on its closed
    # listeners when a child reported ready after the stop began (exit 1, seen in 3 of 8 runs of
    # the pid file tests with two CPU hogs beside them; this test covers the same path, not that race).
    flag = tmp_path / "boot"
    server = serve("--server_type", server_type, "--handler", "chaos_handlers:SlowBoot", "--max_servers", "3",
                   env={"BOOT_FLAG": str(flag)})
    server.wait_children(3)
    flag.write_text("0.5")
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: server.log().count("starting! pid") == 2, 10, message="the re-exec")
    server.signal(signal.SIGTERM)  # the new children are in child_init_hook: they report ready after it
    assert server.wait_exit(10) == 0
    assert "Traceback" not in (tmp_path / "stderr1").read_text()
