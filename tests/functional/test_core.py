"""Daemon mode, syslog, reverse lookups, user options, scripts that call run()."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from conftest import HANDLERS, read_ready, server_env
from support import needs_root, procs
from support.clients import talk


def test_background_launcher_returns_once_ready_and_the_daemon_serves(serve, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    log = tmp_path / "daemon.log"
    result = serve.run("--background", "--pid_file", str(pid_file), "--log_file", str(log),
                       "--port", "127.0.0.1:0", "--max_servers", "2", "--log_level", "3")
    assert result.returncode == 0, result.stderr
    daemon_pid = int(pid_file.read_text())
    try:
        assert procs.alive(daemon_pid)
        assert os.getsid(daemon_pid) != os.getsid(0)  # a session of its own
        port = int(log.read_text().split("Ready: READY")[1].split()[1].rsplit(":", 1)[1])
        assert talk(("127.0.0.1", port), b"quit\n").startswith(b"Welcome")  # accepting already
        with open(f"/proc/{daemon_pid}/fd/0", "rb"):
            assert os.readlink(f"/proc/{daemon_pid}/fd/0") == "/dev/null"
    finally:
        os.kill(daemon_pid, signal.SIGTERM)
        procs.wait_until(lambda: not procs.alive(daemon_pid), 10, message="the daemon to stop")
        procs.reap_strays()
    assert not pid_file.exists()


def test_background_start_failure_is_reported_by_the_launcher(serve, tmp_path):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    with held:
        result = serve.run("--background", "--port", f"127.0.0.1:{held.getsockname()[1]}")
    assert result.returncode == 1
    assert b"in use" in result.stderr


def test_background_boot_failure_exits_3_through_the_launcher(serve):
    result = serve.run("--background", "--handler", "crash_on_boot:CrashOnBoot", "--max_servers", "10",
                       "--port", "127.0.0.1:0")
    assert result.returncode == 3
    procs.reap_strays()


def test_syslog_lines_reach_the_configured_socket(serve, tmp_path):
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(path)
        sink.settimeout(10)
        serve("--server_type", "Single", "--log_file", "syslog", "--syslog_logsock", path, "--syslog_ident", "mysrv",
              "--syslog_facility", "local3")
        first = sink.recv(4096).decode()
    # <PRI>: local3 (19) * 8 + notice (5) = 157
    assert first.startswith("<157>mysrv[") and "starting! pid(" in first


def test_a_syslog_socket_that_appears_later_gets_the_lines(serve, tmp_path):
    # As openlog(3): no syslogd at start-up (or one restarting across a HUP) is not an error.
    path = str(tmp_path / "log.sock")
    server = serve("--server_type", "Single", "--log_file", "syslog", "--syslog_logsock", path, "--log_level", "3")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(path)
        sink.settimeout(10)
        talk(server.addr, b"quit\r\n")
        assert "CONNECT TCP Peer:" in sink.recv(4096).decode()


def test_bad_syslog_facility_is_refused(serve):
    result = serve.run("--log_file", "syslog", "--syslog_facility", "nosuch", "--port", "127.0.0.1:0")
    assert result.returncode == 2 and b"syslog_facility: 'nosuch' is not one of" in result.stderr


def test_reverse_lookups_use_only_forward_confirmed_names(serve):
    server = serve("--handler", "core_handlers:Named", "--reverse_lookups", "--port", "127.0.0.1:0",
                   "--port", "[::1]:0", port=None)
    v4, v6 = server.addresses
    assert talk(v4.tuple, b"") == b"good.example.com\n"
    assert talk(v6.tuple, b"") == b"::1\n"  # the PTR name does not resolve back: not trusted


def test_host_name_allow_rules_need_confirmation(serve):
    server = serve("--handler", "core_handlers:Named", "--reverse_lookups", "--allow", r".*\.example\.com",
                   "--port", "127.0.0.1:0", "--port", "[::1]:0", port=None)
    v4, v6 = server.addresses
    assert talk(v4.tuple, b"") == b"good.example.com\n"
    assert talk(v6.tuple, b"") == b""  # liar.example.com would match the rule; it is not confirmed


def test_a_subclass_declares_its_own_option(serve, tmp_path):
    server = serve("--handler", "core_handlers:Counted", "--max_servers", "1", "--greeting_count", "3")
    assert talk(server.addr, b"") == b"hi\nhi\nhi\n"
    conf = tmp_path / "c.conf"
    conf.write_text("greeting-count: 11\n")
    result = serve.run("--handler", "core_handlers:Counted", "--conf_file", str(conf))
    assert result.returncode == 2
    assert result.stderr.decode().strip() == f"netserver: greeting_count: '11' must be at most 10 ({conf}:1)"
    assert b"greeting_count" in serve.run("--handler", "core_handlers:Counted", "--help").stdout


def test_a_script_calling_run_reads_the_command_line_and_exits_with_the_status(tmp_path):
    script = str(HANDLERS / "standalone.py")
    bad = subprocess.run([sys.executable, script, "--max_servers", "2"], env=server_env(), capture_output=True,
                         timeout=30)
    assert bad.returncode == 2
    assert bad.stderr.decode().strip() == "standalone.py: max_servers: is not valid for Single (command line)"
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen([sys.executable, script, "--ready_fd", str(write_fd)], env=server_env(),
                               pass_fds=(write_fd,), stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(write_fd)
    try:
        line = read_ready(read_fd, 20)
        port = int(line.split()[2].rsplit(":", 1)[1])
        assert talk(("127.0.0.1", port), b"") == b"hello from a script\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        os.close(read_fd)
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_client_bytes_in_log_lines_are_escaped(serve):
    server = serve("--handler", "core_handlers:Chatty")
    assert talk(server.addr, b"red \x1b[31m text\rforged line\n") == b"logged\n"
    line = next(line for line in server.log().splitlines() if "client said" in line)
    assert "\\x1b[31m" in line and "\\x0d" in line or "\\r" in line
    assert "\x1b" not in server.log()


@needs_root
def test_single_drops_privileges_after_binding(serve, nstest):
    user = nstest
    server = serve("--server_type", "Single", "--user", "nstest", "--handler", "echo:Identity")
    uid, gid, _ = talk(server.addr, b"").split()
    assert (int(uid), int(gid)) == (user.pw_uid, user.pw_gid)
    assert procs.status_field(server.pid, "Uid").split() == [str(user.pw_uid)] * 4


def test_systemd_socket_activation_is_adopted_and_hidden_from_children(serve, tmp_path):
    port_file = tmp_path / "port"
    server = serve(str(port_file), "--max_servers", "2", "--port", "PORT", "--handler", "echo:ListenEnv",
                   script=str(HANDLERS / "systemd_wrapper.py"), port=None)
    port, inode = map(int, port_file.read_text().split())
    assert server.addresses[0].port == port
    assert f"socket:[{inode}]" in procs.fd_targets(server.pid)
    # /proc/PID/environ shows the environment at exec; ask a child what it sees now
    assert talk(("127.0.0.1", port), b"") == b"[None, None, None]\n"
