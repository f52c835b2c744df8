"""INET: one connection on stdin/stdout, under real superservers and harnesses.

The behaviour suite runs INET under tests/support/inetd.py (an accepted
socket as fd 0 and 1, the way inetd does it); here: systemd's own
superserver, a pipe pair, the per-connection stop table, the refusals,
and the example unit files.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import procs
from support.clients import connect, free_port, read_all, read_line

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests" / "handlers")]))
INET = [sys.executable, "-m", "netserver", "--server_type", "INET"]


def run_on_pipes(*args: str, data: bytes = b"", timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run([*INET, *args], input=data, capture_output=True, env=ENV, timeout=timeout)


class Served:
    """One INET process serving one real TCP connection, as inetd starts it."""

    def __init__(self, *args: str) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.client = connect(listener.getsockname(), timeout=8)
            conn, _ = listener.accept()
        with conn:
            self.process = subprocess.Popen([*INET, *args], stdin=conn, stdout=conn, stderr=subprocess.PIPE, env=ENV,
                                            start_new_session=True)

    def close(self) -> None:
        self.client.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise
        finally:
            self.process.stderr.close()


@pytest.fixture
def served():
    made = []

    def make(*args: str) -> Served:
        made.append(Served(*args))
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed (apt-get install -y systemd)")
def test_under_systemd_socket_activate_in_inetd_mode(tmp_path):
    port = free_port()
    log = tmp_path / "inet.log"
    # It passes on no environment of its own accord: -E names what the server needs.
    process = subprocess.Popen(["systemd-socket-activate", "--inetd", "-a", "-E", "PYTHONPATH", "-l",
                                f"127.0.0.1:{port}", *INET,
                                "--handler", "echo:Info", "--log_file", str(log), "--log_level", "3"],
                               env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        ready, _, _ = select.select([process.stderr], [], [], 10)
        assert ready and b"Listening on" in process.stderr.readline()
        for _ in range(2):  # two connections: two processes
            with connect(("127.0.0.1", port)) as sock:
                proto, peer, peerport, local, localport, host = read_line(sock).split()
                assert (proto, peer, local, int(localport)) == (b"tcp", b"127.0.0.1", b"127.0.0.1", port)
                assert int(peerport) == sock.getsockname()[1] and host == peer
                sock.sendall(b"bye\n")
                assert read_all(sock) == b""
        procs.wait_until(lambda: log.read_text().count("Server closing!") == 2, 10, message="both processes")
        assert log.read_text().count("CONNECT TCP Peer") == 2
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
        process.stderr.close()


def test_an_accepted_socket_on_fd_0_is_the_client_and_stdout_never_reaches_it(served):
    one = served("--handler", "fork_handlers:Printer", "--log_level", "4")
    one.client.sendall(b"only this\n")
    assert read_all(one.client) == b"only this\n"
    assert one.process.wait(10) == 0
    log = one.process.stderr.read().decode()
    assert "CONNECT TCP Peer" in log  # stderr is the log here: it is not the connection


def test_a_pipe_pair_is_served_with_the_same_client_contract():
    result = run_on_pipes("--handler", "echo:Echo", "--log_level", "3", data=b"one\ntwo\n")
    assert result.returncode == 0 and result.stdout == b"one\ntwo\n"  # nothing of the log on stdout
    assert b"Server closing!" in result.stderr
    info = run_on_pipes("--handler", "echo:Info", data=b"x\n")
    assert info.stdout == b"pipe  0  0 \n"  # no peer on a pipe: empty names, as for a unix socket


def test_a_pipe_pair_keeps_the_line_limit_and_the_timeout():
    long = run_on_pipes("--handler", "echo:Echo", "--max_line_length", "10", data=b"x" * 100 + b"\n")
    assert long.stdout == b"" and b"line longer than 10 bytes" in long.stderr
    read_end, write_end = os.pipe()  # kept open and silent: the client neither writes nor goes away
    try:
        with subprocess.Popen([*INET, "--handler", "echo:Echo", "--timeout", "0.5"], stdin=read_end,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV) as silent:
            os.close(read_end)
            started = time.monotonic()
            _, err = silent.communicate(timeout=10)
            assert silent.returncode == 0 and 0.4 < time.monotonic() - started < 5
            assert b"Timed out waiting for" in err
    finally:
        os.close(write_end)


def test_term_ends_an_idle_connection_at_once_and_int_abandons_a_request(served):
    idle = served("--handler", "echo:Persistent")
    idle.client.sendall(b"hi\n")
    assert read_line(idle.client) == b"hi\n"
    stopped = time.monotonic()
    idle.process.send_signal(signal.SIGTERM)
    assert read_all(idle.client) == b"" and time.monotonic() - stopped < 3
    assert idle.process.wait(5) == 0
    busy = served("--handler", "echo:Persistent")
    busy.client.sendall(b"slow\n")
    time.sleep(0.4)
    stopped = time.monotonic()
    busy.process.send_signal(signal.SIGINT)
    try:
        assert read_all(busy.client) == b""
    except ConnectionResetError:
        pass  # abandoned with the request unread
    assert time.monotonic() - stopped < 1.4 and busy.process.wait(5) == 0
    assert b"finish hook ran" in busy.process.stderr.read()


def test_term_lets_a_request_in_flight_finish_and_hup_ends_the_connection_without_a_reexec(served):
    busy = served("--handler", "echo:Persistent")
    busy.client.sendall(b"slow\n")
    time.sleep(0.4)
    busy.process.send_signal(signal.SIGTERM)
    assert read_line(busy.client) == b"done\n" and read_all(busy.client) == b""
    idle = served("--handler", "echo:Persistent")
    idle.client.sendall(b"hi\n")
    assert read_line(idle.client) == b"hi\n"
    idle.process.send_signal(signal.SIGHUP)
    assert read_all(idle.client) == b""
    assert idle.process.wait(5) == 0
    assert b"Re-exec" not in idle.process.stderr.read()


@pytest.mark.parametrize("option", ["--background", "--setsid", "--pid_file=x.pid"])
def test_options_of_a_long_running_server_exit_2(option, tmp_path):
    result = subprocess.run([*INET, option], capture_output=True, env=ENV, timeout=20, cwd=tmp_path,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert b"cannot be used with INET" in result.stderr and option.lstrip("-").split("=")[0].encode() in result.stderr
    assert not (tmp_path / "x.pid").exists()


def test_standard_input_that_is_no_connection_exits_1():
    result = subprocess.run(INET, capture_output=True, env=ENV, timeout=20, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert b"standard input is not a connection" in result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (apt-get install -y systemd)")
def test_the_example_units_pass_systemd_analyze_verify():
    examples = ROOT / "examples"
    result = subprocess.run(["systemd-analyze", "verify", str(examples / "netserver-echo.socket"),
                             str(examples / "netserver-echo@.service")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    unit = (examples / "netserver-echo.socket").read_text()
    assert "Accept=yes" in unit and "--server_type INET" in (examples / "netserver-echo@.service").read_text()


def test_term_ends_an_idle_pipe_pair_at_once():
    with subprocess.Popen([*INET, "--handler", "echo:Persistent"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=ENV) as idle:
        idle.stdin.write(b"hi\n")
        idle.stdin.flush()
        ready, _, _ = select.select([idle.stdout], [], [], 10)
        assert ready and idle.stdout.readline() == b"hi\n"
        stopped = time.monotonic()
        idle.send_signal(signal.SIGTERM)  # stdin stays open: only the stop can end the read
        assert idle.wait(5) == 0 and time.monotonic() - stopped < 3
        idle.stdin.close()
        assert idle.stdout.read() == b""


def test_term_still_answers_a_line_that_waits_in_the_pipe():
    with subprocess.Popen([*INET, "--handler", "echo:Persistent"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=ENV) as busy:
        busy.stdin.write(b"slow\n")
        busy.stdin.flush()
        time.sleep(0.3)
        busy.stdin.write(b"after\n")
        busy.stdin.flush()
        time.sleep(0.2)
        busy.send_signal(signal.SIGTERM)  # stdin stays open: the stop ends the read once "after" is served
        assert busy.wait(10) == 0
        busy.stdin.close()
        assert busy.stdout.read() == b"done\nafter\n"


def test_a_unix_stream_socket_on_fd_0_is_a_unix_client():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        process = subprocess.Popen([*INET, "--handler", "echo:Info", "--deny", ".*"], stdin=theirs, stdout=theirs,
                                   stderr=subprocess.PIPE, env=ENV)
        theirs.close()
        ours.settimeout(10)
        assert read_line(ours).split() == [b"unix", b"0", b"0"]  # unix sockets are always allowed
        ours.sendall(b"bye\n")
        assert process.wait(10) == 0
        process.stderr.close()
