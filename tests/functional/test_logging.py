"""What the log says: hooks' lines, denied clients, addresses, the daemon's pid (issue 9: 5, 11, 13, 14)."""

from __future__ import annotations

import math
import os
import re
import signal
import time

from support import procs
from support.clients import connect, read_all, talk

# --- post_configure_hook's lines (issue 9 item 5) ---------------------------------------------

def test_post_configure_hook_lines_reach_the_log_file_not_the_terminal(serve, tmp_path):
    server = serve("--handler", "logging_handlers:HookLogs", "--max_servers", "1")
    log = server.log()
    assert "warning: warning from post_configure_hook" in log
    assert "notice: notice from post_configure_hook" in log
    assert log.index("post_configure_hook") < log.index("starting!")
    assert "post_configure_hook" not in (tmp_path / "stderr1").read_text()


def check_mode_leaves_nothing(serve, tmp_path, *args, env=None):
    log_file, pid_file = tmp_path / "check.log", tmp_path / "check.pid"
    result = serve.run("--handler", "logging_handlers:HookLogs", "--log_file", str(log_file),
                       "--pid_file", str(pid_file), "--port", "127.0.0.1:0", *args, env=env)
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert "warning: warning from post_configure_hook" in err
    assert "notice: notice from post_configure_hook" in err  # at log_level (2), not the start-up default (1)
    assert "configuration OK" in err
    assert not log_file.exists() and not pid_file.exists()
    assert sorted(os.listdir(tmp_path)) == []


def test_check_config_sends_the_hook_lines_to_stderr_and_creates_nothing(serve, tmp_path):
    check_mode_leaves_nothing(serve, tmp_path, "--check_config")


def test_the_hup_check_sends_the_hook_lines_to_stderr_and_creates_nothing(serve, tmp_path):
    check_mode_leaves_nothing(serve, tmp_path, env={"NETSERVER_CHECK": "1"})


# --- denied clients (issue 9 item 11) -----------------------------------------------------------

DENIED = re.compile(r"notice: Denied connection from 127\.0\.0\.1:(\d+): (.*)$", re.M)
LEFT_OUT = re.compile(r"notice: (\d+) more denied connections were not logged \(at most 5 lines a second\)$", re.M)


def test_denied_clients_are_logged_with_the_rule_and_a_scan_is_rate_limited(serve):
    server = serve("--cidr_allow", "10.0.0.0/8", "--max_servers", "3")
    started = time.monotonic()
    for _ in range(60):
        assert talk(server.addr, b"") == b""  # denied: closed at once; the next starts after it
    elapsed = time.monotonic() - started
    procs.wait_until(lambda: len(DENIED.findall(server.log())) >= 5, 10, message="the first denials logged")
    burst = DENIED.findall(server.log())
    print(f"\n60 denied in {elapsed:.2f} s: {len(burst)} lines logged")
    assert {rule for _, rule in burst} == {"no allow or cidr_allow rule matched"}
    assert len(burst) <= 5 * (math.ceil(elapsed) + 1)
    time.sleep(1.1)  # a new second: the next denial carries the count of those left out
    with connect(server.addr) as sock:
        port = sock.getsockname()[1]
        assert read_all(sock) == b""
    procs.wait_until(lambda: f"127.0.0.1:{port}:" in server.log(), 10, message="the last denial logged")
    log = server.log()
    logged, left_out = len(DENIED.findall(log)), sum(int(n) for n in LEFT_OUT.findall(log))
    assert left_out > 0 and logged + left_out == 61, (logged, left_out)
    assert log.rstrip().endswith(f"Denied connection from 127.0.0.1:{port}: no allow or cidr_allow rule matched")


def test_a_deny_rule_and_the_allow_deny_hook_are_named(serve, tmp_path):
    server = serve("--cidr_deny", "127.0.0.0/8", "--cidr_allow", "0.0.0.0/0", "--max_servers", "1")
    assert talk(server.addr, b"") == b""
    procs.wait_until(lambda: DENIED.search(server.log()), 10, message="the denial logged")
    assert DENIED.search(server.log()).group(2) == "cidr_deny 127.0.0.0/8"
    hooked = serve("--handler", "logging_handlers:DenyAll", "--max_servers", "1")
    assert talk(hooked.addr, b"") == b""
    procs.wait_until(lambda: DENIED.search(hooked.log()), 10, message="the hook's denial logged")
    assert DENIED.search(hooked.log()).group(2) == "allow_deny_hook"


# --- addresses (issue 9 item 13) -----------------------------------------------------------------

def test_logs_show_addresses_as_port_values(serve, tmp_path):
    path = str(tmp_path / "s.sock")
    server = serve("--port", "127.0.0.1:0", "--port", "[::1]:0", "--port", f"unix:{path}", "--log_level", "3",
                   "--max_servers", "1", port=None)
    tcp, v6, _ = server.addresses
    talk(v6.tuple, b"quit\n")
    talk(path, b"quit\n")
    procs.wait_until(lambda: server.log().count("CONNECT") == 2, 10, message="two CONNECT lines")
    log = server.log()
    assert f"Bound to 127.0.0.1:{tcp.port}\n" in log
    assert f"Bound to [::1]:{v6.port}\n" in log
    assert f"Bound to unix:{path}\n" in log
    assert re.search(rf'CONNECT TCP Peer: "\[::1\]:\d+" Local: "\[::1\]:{v6.port}"', log)
    assert f'CONNECT UNIX Peer: "unix:{path}" Local: "unix:{path}"' in log
    assert "tcp::" not in log.split("Ready: READY")[0] and f"{path}:0" not in log.split("Ready: READY")[0]
    # The READY line keeps its machine-read form (conftest.parse_ready split it above).
    assert f"tcp:::1:{v6.port} unix:{path}:0" in log


# --- the daemon's pid (issue 9 item 14) ----------------------------------------------------------

def test_background_logs_the_daemons_pid_at_start(serve, tmp_path):
    pid_file, log = tmp_path / "daemon.pid", tmp_path / "daemon.log"
    result = serve.run("--background", "--pid_file", str(pid_file), "--log_file", str(log),
                       "--port", "127.0.0.1:0", "--max_servers", "1")
    assert result.returncode == 0, result.stderr
    daemon_pid = int(pid_file.read_text())
    try:
        started = re.findall(r"\[(\d+)\] notice: \S+ \(type PreForkSimple\) starting! pid\((\d+)\)", log.read_text())
        assert started == [(str(daemon_pid), str(daemon_pid))]
    finally:
        os.kill(daemon_pid, signal.SIGTERM)
        procs.wait_until(lambda: not procs.alive(daemon_pid), 10, message="the daemon to stop")
        procs.reap_strays()
