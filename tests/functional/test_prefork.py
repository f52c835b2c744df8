"""PreForkSimple: the pool, serialization, stopping, restarting, privileges."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from support import needs_root, procs
from support.clients import connect, read_all, read_line, talk

ACCEPT_WAIT = "do_epoll_wait"


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def pid_of(address, payload: bytes = b"\n") -> int:
    return int(talk(address, payload).strip())


def test_pool_has_exactly_max_servers_children_in_accept(serve):
    server = serve("--max_servers", "5")
    kids = server.wait_children(5)
    procs.wait_until(lambda: all(procs.wchan(pid) == ACCEPT_WAIT for pid in kids), 5, message="children in accept")
    assert len(server.children()) == 5


def test_killed_child_is_replaced_at_once(serve):
    server = serve("--max_servers", "3", "--check_for_dead", "3600")
    kids = server.wait_children(3)
    os.kill(kids[0], signal.SIGKILL)
    started = time.monotonic()
    new = server.wait_children(3, timeout=2, exclude=(kids[0],))
    assert time.monotonic() - started < 1.0
    assert kids[0] not in new
    assert not procs.children_of(server.pid, include_zombies=True)[3:]


def test_children_recycle_after_max_requests(serve):
    server = serve("--handler", "echo:Pid", "--max_servers", "1", "--max_requests", "2")
    pids = [pid_of(server.addr) for _ in range(6)]
    assert len(set(pids)) == 3 and pids[0] == pids[1] and pids[2] == pids[3]
    server.wait_children(1)


def test_max_requests_zero_is_unlimited(serve):
    server = serve("--handler", "echo:Pid", "--max_servers", "1", "--max_requests", "0")
    assert len({pid_of(server.addr) for _ in range(30)}) == 1


def test_boot_failures_stop_the_server_with_status_3(serve):
    result = serve.run("--handler", "crash_on_boot:CrashOnBoot", "--max_servers", "10", "--port", "127.0.0.1:0")
    assert result.returncode == 3, result.stderr
    assert b"failed to boot 10 times in a row" in result.stderr
    assert b"exit status 7" in result.stderr


def test_boot_failures_back_off(serve, tmp_path):
    log = tmp_path / "boot.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "netserver", "--handler", "crash_on_boot:CrashOnBoot", "--max_servers", "1",
         "--port", "127.0.0.1:0", "--log_file", str(log)],
        env=__import__("conftest").server_env(), start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        procs.wait_until(lambda: log.exists() and log.read_text().count("failed to boot") >= 4, 10,
                         message="four boot failures")
        text = log.read_text()
        assert "next try in 0.1 s" in text and "next try in 0.2 s" in text and "next try in 0.8 s" in text
        assert procs.alive(process.pid)
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_after_a_boot_failure_children_are_forked_one_at_a_time(serve, tmp_path):
    # A pool forks in one burst; once children fail to boot, each backoff round probes with one.
    log = tmp_path / "boot.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "netserver", "--handler", "crash_on_boot:CrashOnBoot", "--max_servers", "5",
         "--port", "127.0.0.1:0", "--log_file", str(log), "--log_level", "4"],
        env=__import__("conftest").server_env(), start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        procs.wait_until(lambda: log.exists() and log.read_text().count("failed to boot") >= 7, 20,
                         message="seven boot failures")
        events = [("fork" if "Child Preforked" in line else "fail") for line in log.read_text().splitlines()
                  if "Child Preforked" in line or "failed to boot" in line]
        assert events[:5] == ["fork"] * 5  # the first burst
        after_first_failure = events[events.index("fail"):]
        assert ["fork", "fork"] not in [after_first_failure[i:i + 2] for i in range(len(after_first_failure))]
    finally:
        process.terminate()
        process.wait(10)


def test_dequeue_children_run_beside_the_pool(serve, marks):
    server = serve("--handler", "prefork_handlers:Dequeue", "--max_servers", "2", "--check_for_dequeue", "0.2",
                   "--max_dequeue", "1", env={"MARK_DIR": str(marks)})
    procs.wait_until(lambda: len(lines(marks / "dequeue")) >= 3, 10, message="three dequeue runs")
    assert all(line.endswith(" dequeue") for line in lines(marks / "dequeue"))
    assert server.pid not in {int(line.split()[0]) for line in lines(marks / "dequeue")}
    server.wait_children(2)


def test_run_dequeue_the_seed_name_also_works(serve, marks):
    serve("--handler", "prefork_handlers:SeedDequeue", "--max_servers", "1", "--check_for_dequeue", "0.2",
          env={"MARK_DIR": str(marks)})
    procs.wait_until(lambda: lines(marks / "dequeue"), 10, message="a run_dequeue run")


def test_check_for_dequeue_without_an_override_exits_2(serve):
    result = serve.run("--check_for_dequeue", "1", "--port", "127.0.0.1:0")
    assert result.returncode == 2
    assert b"check_for_dequeue" in result.stderr and b"dequeue()" in result.stderr


def _sample_accepting(server, kids, seconds: float) -> list[int]:
    counts = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts.append(sum(1 for pid in kids if procs.wchan(pid) == ACCEPT_WAIT))
        time.sleep(0.002)
    return counts


@pytest.mark.parametrize("kind", ["flock", "semaphore", "pipe", "none"])
def test_serialization_admits_one_child_to_the_accept_path(serve, kind):
    server = serve("--max_servers", "8", "--serialize", kind, "--port", "127.0.0.1:0", "--port", "[::1]:0", port=None)
    kids = server.wait_children(8)
    procs.wait_until(lambda: any(procs.wchan(pid) == ACCEPT_WAIT for pid in kids), 5, message="a child in accept")
    counts = _sample_accepting(server, kids, 2.0)
    if kind == "none":
        assert max(counts) > 1  # the negative control: without a lock every child waits in accept
    else:
        assert max(counts) == 1
    for address in server.addresses:
        assert talk(address.tuple, b"quit\n").startswith(b"Welcome")


@pytest.mark.parametrize("kind", ["flock", "semaphore", "pipe"])
def test_killing_the_lock_holder_does_not_wedge_the_server(serve, kind):
    server = serve("--max_servers", "4", "--serialize", kind, "--handler", "echo:Pid", "--port", "127.0.0.1:0",
                   "--port", "127.0.0.1:0", port=None)
    kids = server.wait_children(4)
    holder = procs.wait_until(lambda: next((p for p in kids if procs.wchan(p) == ACCEPT_WAIT), None), 5,
                              message="the lock holder")
    os.kill(holder, signal.SIGKILL)
    started = time.monotonic()
    for address in server.addresses:
        assert pid_of(address.tuple) != holder
    assert time.monotonic() - started < 1.0


def test_term_lets_requests_finish_and_refuses_new_connections(serve, marks):
    server = serve("--handler", "prefork_handlers:Hooks", "--max_servers", "2", "--graceful_timeout", "10",
                   env={"MARK_DIR": str(marks)})
    kids = server.wait_children(2)
    with connect(server.addr, timeout=10) as busy:
        busy.sendall(b"sleep 1.5\n")
        time.sleep(0.3)
        stopped_at = time.monotonic()
        server.signal(signal.SIGTERM)
        procs.wait_until(lambda: _refused(server.addr), 1.0, message="new connections to be refused")
        assert int(read_line(busy).strip()) in kids
    assert server.wait_exit(5) == 0
    assert time.monotonic() - stopped_at < 1.5 + 1.0
    assert len(lines(marks / "finish")) == 2


def _refused(address) -> bool:
    try:
        connect(address, timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


def test_graceful_timeout_kills_what_is_still_running(serve):
    server = serve("--handler", "echo:Sleepy", "--max_servers", "1", "--graceful_timeout", "1")
    server.wait_children(1)
    with connect(server.addr, timeout=10) as busy:
        busy.sendall(b"30\n")
        time.sleep(0.3)
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait_exit(5) == 0
        assert 0.9 < time.monotonic() - started < 2.5
        assert read_all(busy) == b""


def test_child_on_term_runs_child_finish_hook_and_exits_mid_request(serve, marks):
    server = serve("--handler", "prefork_handlers:Hooks", "--max_servers", "1", env={"MARK_DIR": str(marks)})
    (child,) = server.wait_children(1)
    with connect(server.addr, timeout=10) as busy:
        busy.sendall(b"sleep 30\n")
        time.sleep(0.3)
        os.kill(child, signal.SIGTERM)
        assert read_all(busy) == b""
    procs.wait_until(lambda: lines(marks / "finish"), 5, message="child_finish_hook")
    assert lines(marks / "finish")[0].split()[0] == str(child)
    server.wait_children(1, exclude=(child,))


def test_hup_with_a_broken_conf_file_keeps_the_old_server(serve, tmp_path):
    conf = tmp_path / "server.conf"
    conf.write_text("max_servers 2\nlog_level 2\n")
    server = serve("--conf_file", str(conf), "--handler", "echo:Pid")
    kids = server.wait_children(2)
    conf.write_text("max_servers 2\nlog_level lots\n")
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: "HUP refused" in server.log(), 15, message="the refusal")
    assert f"log_level: 'lots' is not a whole number ({conf}:2)" in server.log()
    assert server.children() == kids
    assert pid_of(server.addr) in kids


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_hup_to_a_port_another_program_holds_is_refused_and_the_old_server_serves_on(serve, tmp_path):
    # The re-exec hands the children to the new image: an image that cannot bind would end the
    # whole server, so the check binds the ports the running server does not hold first.
    conf = tmp_path / "server.conf"
    conf.write_text(f"port 127.0.0.1:{_free_port()}\nmax_servers 2\nlog_level 2\n")
    server = serve("--conf_file", str(conf), "--handler", "echo:Pid", port=None)
    kids = server.wait_children(2)
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken = squatter.getsockname()[1]
        conf.write_text(f"port 127.0.0.1:{taken}\nmax_servers 2\nlog_level 2\n")
        server.signal(signal.SIGHUP)
        procs.wait_until(lambda: "HUP refused" in server.log(), 15, message="the refusal")
    assert f"cannot bind 127.0.0.1:{taken}: address already in use" in server.log()
    assert "Re-exec" not in server.log()
    assert server.children() == kids
    assert pid_of(server.addr) in kids


def _refused_hup(serve, tmp_path, port: str, new_port: str):
    """A one-child server on ``port``, HUPed with ``new_port`` in its conf file: (server, children) once refused."""
    conf = tmp_path / "server.conf"
    conf.write_text(f"port {port}\nmax_servers 1\n")
    server = serve("--conf_file", str(conf), "--handler", "echo:Pid", port=None)
    kids = server.wait_children(1)
    conf.write_text(f"port {new_port}\nmax_servers 1\n")
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: "HUP refused" in server.log(), 15, message="the refusal")
    return server, kids


@pytest.mark.parametrize("where, reason", [
    ("long", "the path is longer than a unix socket's 107 bytes"),
    ("/proc/netserver-test.sock", "cannot bind unix:/proc/netserver-test.sock"),
])
def test_hup_to_a_unix_socket_that_cannot_be_made_is_refused(serve, tmp_path, where, reason):
    if where == "long":
        folder = tmp_path / ("d" * 60)
        folder.mkdir()
        where = str(folder / ("s" * 60 + ".sock"))
    server, kids = _refused_hup(serve, tmp_path, f"127.0.0.1:{_free_port()}", f"{where}|unix")
    assert reason in server.log() and server.children() == kids
    assert pid_of(server.addr) in kids


def test_hup_that_moves_a_port_to_another_host_is_refused_saying_why(serve, tmp_path):
    port = _free_port()
    server, kids = _refused_hup(serve, tmp_path, f"127.0.0.1:{port}", f"0.0.0.0:{port}")
    assert f"cannot bind 0.0.0.0:{port}: address already in use, by this server under another address" \
        in server.log()
    assert server.children() == kids


def test_hup_to_a_log_file_that_cannot_be_opened_is_refused(serve, tmp_path):
    log = tmp_path / "first.log"
    conf = tmp_path / "server.conf"
    port = _free_port()
    conf.write_text(f"port 127.0.0.1:{port}\nmax_servers 1\nlog_level 2\nlog_file {log}\n")
    server = serve("--conf_file", str(conf), "--handler", "echo:Pid", port=None, log_file=False)
    kids = server.wait_children(1)
    (tmp_path / "a-folder.log").mkdir()
    conf.write_text(f"port 127.0.0.1:{port}\nmax_servers 1\nlog_level 2\nlog_file {tmp_path / 'a-folder.log'}\n")
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: "HUP refused" in log.read_text(), 15, message="the refusal")
    assert f"log_file: cannot open '{tmp_path / 'a-folder.log'}' ({conf}:4): Is a directory" in log.read_text()
    assert server.children() == kids
    assert pid_of(server.addr) in kids


def test_a_restart_that_fails_in_the_new_image_says_why_in_the_log(serve):
    server = serve("--handler", "prefork_handlers:FailsOnceRestarted", "--max_servers", "2")
    kids = server.wait_children(2)
    server.signal(signal.SIGHUP)
    assert server.wait_exit(15) == 1
    assert "The restart failed and the server stops: the licence server is unreachable" in server.log()
    procs.wait_until(lambda: not any(procs.alive(pid) for pid in kids), 5, message="the old children to leave")


def test_the_unix_socket_file_is_removed_at_the_stop_after_a_hup(serve, tmp_path):
    path = tmp_path / "s.sock"
    server = serve("--handler", "echo:Pid", "--max_servers", "1", "--port", f"{path}|unix", port=None)
    (child,) = server.wait_children(1)
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: "Reassociated" in server.log(), 15, message="the re-exec")
    server.wait_children(1, timeout=15, exclude=(child,))
    assert path.exists()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    assert not path.exists()


def test_perls_pool_hooks_run_where_net_server_runs_them(serve, marks):
    server = serve("--handler", "prefork_handlers:PerlHooks", "--max_servers", "2", env={"MARK_DIR": str(marks)})
    kids = server.wait_children(2)
    os.kill(kids[0], signal.SIGKILL)
    server.wait_children(2, exclude=(kids[0],))
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: server.log().count("starting! pid") == 2, 15, message="the re-exec")
    server.wait_children(2, timeout=15, exclude=kids)
    server.signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0
    hooks = [line.split(None, 1) for line in lines(marks / "hooks")]
    parent = [what for pid, what in hooks if int(pid) == server.pid]
    assert parent[:3] == ["run_n_children_hook 2", "pre_fork_hook", "pre_fork_hook"]
    assert f"delete_child_hook {kids[0]}" in parent and "idle_loop_hook" in parent
    assert "restart_open_hook" in parent  # in the new image: the same pid
    # The stop: the parent's first hook before any child finishes, the cleanup after the last.
    stop = [what for _, what in hooks[[what for _, what in hooks].index("pre_server_close_hook"):]]
    assert stop[0] == "pre_server_close_hook" and stop[-1] == "post_child_cleanup_hook"
    assert stop.count("child_finish_hook") >= 2
    assert "write_to_log_hook is a Net::Server hook that netserver never calls: records go to log_file" in server.log()


def test_a_unix_port_a_hup_drops_loses_its_socket_file(serve, tmp_path):
    path = tmp_path / "dropped.sock"
    conf = tmp_path / "server.conf"
    conf.write_text(f"port 127.0.0.1:{_free_port()}\nport {path}|unix\nmax_servers 1\n")
    server = serve("--conf_file", str(conf), "--handler", "echo:Pid", port=None)
    (child,) = server.wait_children(1)
    assert path.exists()
    conf.write_text(conf.read_text().replace(f"port {path}|unix\n", ""))
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: server.log().count("starting! pid") == 2, 15, message="the re-exec")
    server.wait_children(1, timeout=15, exclude=(child,))
    assert not path.exists()
    # The previous generation's child may take a connection until it has been told to leave:
    # ask once it is gone.
    procs.wait_until(lambda: child not in server.children(), 15, message="the previous generation gone")
    assert pid_of(server.addr) != child


def test_hup_storm_leaves_exactly_max_servers(serve):
    server = serve("--max_servers", "3", "--handler", "echo:Pid")
    for _ in range(10):
        server.signal(signal.SIGHUP)
        time.sleep(0.05)
    procs.wait_until(lambda: "Re-exec server during HUP" in server.log(), 20, message="a restart")
    time.sleep(1.0)
    procs.wait_until(lambda: len(server.children()) == 3 and server.log().rstrip().endswith(
        ("previous generation", "tcp:" + f"127.0.0.1:{server.addresses[0].port}")), 30, message="a settled pool")
    assert pid_of(server.addr) in server.children()


def test_leave_children_open_on_hup_0_terms_children_before_the_exec(serve, marks):
    server = serve("--handler", "prefork_handlers:Hooks", "--max_servers", "1", "--leave_children_open_on_hup", "0",
                   env={"MARK_DIR": str(marks)})
    (child,) = server.wait_children(1)
    with connect(server.addr, timeout=10) as busy:
        busy.sendall(b"sleep 30\n")
        time.sleep(0.3)
        server.signal(signal.SIGHUP)
        assert read_all(busy) == b""  # TERMed mid-request, as Net::Server does
    server.wait_children(1, timeout=15, exclude=(child,))
    procs.wait_until(lambda: child not in procs.children_of(server.pid, include_zombies=True), 10,
                     message="the TERMed child to be reaped by the new image")


def test_parent_killed_takes_every_child_with_it(serve):
    server = serve("--max_servers", "4", "--serialize", "flock", "--port", "127.0.0.1:0", "--port", "127.0.0.1:0",
                   port=None)
    kids = server.wait_children(4)
    os.kill(server.pid, signal.SIGKILL)
    procs.wait_until(lambda: not any(procs.alive(pid) for pid in kids), 2, message="the children to leave")
    for address in server.addresses:
        assert _refused(address.tuple)


def test_sig_passthrough_forwards_to_children(serve, marks):
    server = serve("--handler", "prefork_handlers:Hooks", "--max_servers", "2", "--sig_passthrough", "USR1",
                   env={"MARK_DIR": str(marks)})
    kids = server.wait_children(2)
    procs.wait_until(lambda: len(lines(marks / "init")) == 2, 5, message="child_init_hook")
    server.signal(signal.SIGUSR1)
    procs.wait_until(lambda: sorted(int(x.split()[0]) for x in lines(marks / "usr1")) == kids, 5,
                     message="USR1 in every child")
    assert procs.alive(server.pid)


def test_stopped_parent_kills_no_child(serve):
    server = serve("--max_servers", "2", "--check_for_dead", "0.5", "--handler", "echo:Pid")
    kids = server.wait_children(2)
    server.signal(signal.SIGSTOP)
    try:
        assert pid_of(server.addr) in kids  # children serve while the parent is stopped
        time.sleep(2)
    finally:
        server.signal(signal.SIGCONT)
    time.sleep(1)
    assert server.children() == kids


def test_user_thread_before_fork_is_named_in_a_warning(serve, marks):
    server = serve("--handler", "prefork_handlers:Threaded", "--max_servers", "1", env={"MARK_DIR": str(marks)})
    server.wait_children(1)
    assert "Forking while other threads run (user-poller)" in server.log()
    assert procs.status_field(server.pid, "Threads") == "2"


@needs_root
def test_children_drop_privileges_and_the_parent_keeps_them(serve, nstest):
    test_user = nstest
    server = serve("--handler", "echo:Identity", "--max_servers", "2", "--user", test_user.pw_name)
    uid, gid, groups = talk(server.addr, b"").split()
    assert (int(uid), int(gid)) == (test_user.pw_uid, test_user.pw_gid)
    for child in server.wait_children(2):
        assert procs.status_field(child, "Uid").split() == [str(test_user.pw_uid)] * 4
        assert procs.status_field(child, "Gid").split() == [str(test_user.pw_gid)] * 4
        assert procs.status_field(child, "CapEff") == "0000000000000000"
    assert procs.status_field(server.pid, "Uid").split()[0] == "0"


def test_ready_line_waits_for_every_child(serve):
    server = serve("--max_servers", "6")
    assert len(server.children()) == 6


def test_hup_keeps_the_pid_file_lock_and_skips_a_new_port_that_cannot_bind(serve, tmp_path):
    pid_file = tmp_path / "p.pid"
    conf = tmp_path / "s.conf"
    conf.write_text("max_servers 2\nport 127.0.0.1:0\n")
    server = serve("--conf_file", str(conf), "--pid_file", str(pid_file), port=None)
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    with held:
        conf.write_text(f"max_servers 2\nport 127.0.0.1:0\nport 127.0.0.1:{held.getsockname()[1]}\n")
        kids = server.wait_children(2)
        server.signal(signal.SIGHUP)
        procs.wait_until(lambda: "Skipping a port added by the restart" in server.log(), 20, message="the skip")
        server.wait_children(2, timeout=15, exclude=kids)
    assert procs.alive(server.pid)
    assert talk(server.addr, b"quit\n").startswith(b"Welcome")
    assert pid_file.read_text() == f"{server.pid}\n"
    again = serve.run("--pid_file", str(pid_file), "--port", "127.0.0.1:0")
    assert again.returncode == 1 and b"already running" in again.stderr


@needs_root
def test_children_chroot_and_the_parent_does_not(serve, tmp_path):
    jail = tmp_path / "jail"
    jail.mkdir()
    (jail / "inside-the-jail").write_text("")
    server = serve("--handler", "echo:ListRoot", "--max_servers", "1", "--chroot", str(jail))
    assert talk(server.addr, b"") == b"inside-the-jail\n"
    assert os.readlink(f"/proc/{server.pid}/root") == "/"
    (child,) = server.wait_children(1)
    assert os.readlink(f"/proc/{child}/root") == str(jail)


def test_parent_fd_count_is_stable_across_restarts(serve):
    server = serve("--max_servers", "2")
    server.wait_children(2)
    counts = [procs.fd_count(server.pid)]
    for restart_number in range(1, 4):
        kids = server.children()
        server.signal(signal.SIGHUP)
        procs.wait_until(lambda n=restart_number: server.log().count("Re-exec server during HUP") == n, 20,
                         message="the restart")
        server.wait_children(2, timeout=20, exclude=kids)
        procs.wait_until(lambda k=kids: not any(pid in procs.children_of(server.pid, include_zombies=True) for pid in k),
                         20, message="the old generation to be reaped")
        counts.append(procs.fd_count(server.pid))
    assert counts == [counts[0]] * 4, counts


def test_done_hook_ends_a_child_after_the_connection(serve, marks):
    server = serve("--handler", "prefork_handlers:DoneAfterBye", "--max_servers", "1", env={"MARK_DIR": str(marks)})
    first = pid_of(server.addr, b"hello\n")
    assert pid_of(server.addr, b"bye\n") == first
    procs.wait_until(lambda: not procs.alive(first), 5, message="the child to leave after done()")
    assert pid_of(server.addr, b"hello\n") != first
