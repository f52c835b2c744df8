"""One behaviour suite, run against every personality, over real sockets."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from support import procs
from support.clients import connect, read_all, read_line, talk, udp_exchange

PERSONALITIES = ["Single", "PreForkSimple", "PreFork"]


@pytest.fixture(params=PERSONALITIES)
def start(request, serve):
    personality = request.param

    def launch(*args, **kwargs):
        extra = [] if personality == "Single" else ["--max_servers", "2"]
        return serve("--server_type", personality, *extra, *args, **kwargs)

    launch.personality = personality
    return launch


def test_demo_service_welcomes_echoes_and_quits(start):
    server = start()
    with connect(server.addr) as sock:
        welcome = read_line(sock)
        assert welcome.startswith(f'Welcome to "{start.personality}" ('.encode())
        sock.sendall(b"hello there\r\n")
        assert read_line(sock).endswith(b': You said "hello there"\r\n')
        sock.sendall(b"quit\r\n")
        assert read_all(sock) == b""


def test_ipv6_unix_and_tcp_listeners_together(start, tmp_path):
    path = str(tmp_path / "s.sock")
    server = start("--port", "127.0.0.1:0", "--port", "[::1]:0", "--port", f"unix:{path}", port=None)
    assert [a.proto for a in server.addresses] == ["tcp", "tcp", "unix"]
    for address in server.addresses:
        reply = talk(address.tuple, b"hi\nquit\n")
        assert b'You said "hi"' in reply, address


def test_udp_datagram_is_answered(start):
    server = start("--port", "127.0.0.1:0/udp", port=None)
    assert server.addresses[0].proto == "udp"
    assert udp_exchange(server.addr, b"ping") == b'You said "ping"'


def test_client_attributes(start, tmp_path):
    path = str(tmp_path / "i.sock")
    server = start("--handler", "echo:Info", "--port", "127.0.0.1:0", "--port", f"/{path.lstrip('/')}|unix",
                   "--port", "[::1]:0", port=None)
    tcp, unix, v6 = server.addresses
    with connect(tcp.tuple) as sock:
        proto, peer, peerport, local, localport, host = read_line(sock).split()
        assert (proto, peer, local, int(localport), host) == (b"tcp", b"127.0.0.1", b"127.0.0.1", tcp.port, peer)
        assert int(peerport) == sock.getsockname()[1]
    with connect(v6.tuple) as sock:
        assert read_line(sock).split()[1] == b"::1"
    with connect(unix.tuple) as sock:
        assert read_line(sock).split() == [b"unix", b"0", b"0"] or read_line(sock) == b""


def test_v4_client_on_dual_stack_listener_is_reported_as_v4(start):
    server = start("--handler", "echo:Info", port="*:0")
    with connect(("127.0.0.1", server.addresses[0].port)) as sock:
        assert read_line(sock).split()[1] == b"127.0.0.1"


def test_timeout_closes_the_connection_and_serving_continues(start):
    server = start("--timeout", "0.5", "--handler", "echo:Echo")
    with connect(server.addr) as idle:
        started = time.monotonic()
        assert read_all(idle) == b""
        assert 0.4 < time.monotonic() - started < 3
    assert talk(server.addr, b"next\n") == b"next\n"
    assert "Timed out waiting for 127.0.0.1:" in server.log()


def test_line_too_long_closes_only_that_connection(start):
    server = start("--max_line_length", "100", "--handler", "echo:Echo")
    with connect(server.addr) as sock:
        sock.sendall(b"x" * 5000)
        assert read_all(sock) == b""
    assert talk(server.addr, b"short\n") == b"short\n"
    assert "line longer than 100 bytes" in server.log()


def test_handler_exception_is_logged_and_serving_continues(start):
    server = start("--handler", "echo:Crash")
    assert talk(server.addr, b"a\nboom\nb\n") == b"a\n"
    assert talk(server.addr, b"after\n") == b"after\n"
    log = server.log()
    assert "process_request failed for 127.0.0.1:" in log
    assert "RuntimeError: handler exploded on purpose" in log


def test_client_reset_is_one_quiet_line(start):
    server = start("--handler", "echo:Echo", "--log_level", "3")
    with connect(server.addr) as sock:
        sock.sendall(b"x\n")
        read_line(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    assert talk(server.addr, b"ok\n") == b"ok\n"
    assert "Traceback" not in server.log()


def test_term_stops_cleanly_and_removes_the_pid_file(start, tmp_path):
    pid_file = tmp_path / "server.pid"
    server = start("--pid_file", str(pid_file))
    assert pid_file.read_text() == f"{server.pid}\n"
    server.signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    assert not pid_file.exists()
    with pytest.raises(ConnectionRefusedError):
        connect(server.addr, timeout=2)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGQUIT"])
def test_int_and_quit_stop_with_status_zero(start, signame):
    server = start()
    server.signal(getattr(signal, signame))
    assert server.wait_exit(10) == 0


# The stop table (README "Stopping"): what each signal does to idle and in-flight clients.
def _long_grace(start):
    # A stop that waited for graceful_timeout would show; Single has no such option.
    return () if start.personality == "Single" else ("--graceful_timeout", "20")


def _idle_client(server):
    sock = connect(server.addr, timeout=8)
    sock.sendall(b"hi\n")
    assert read_line(sock) == b"hi\n"
    return sock  # now waiting in client.rfile for a new line: idle


def test_term_closes_an_idle_persistent_client_at_once(start):
    server = start("--handler", "echo:Persistent", *_long_grace(start))
    with _idle_client(server) as sock:
        stopped = time.monotonic()
        server.signal(signal.SIGTERM)
        assert read_all(sock) == b""  # a clean FIN: a reset would raise here
        assert time.monotonic() - stopped < 5
    assert server.wait_exit(5) == 0
    assert "finish hook ran" in server.log()


def test_term_lets_a_request_in_flight_finish(start):
    server = start("--handler", "echo:Persistent", *_long_grace(start))
    with connect(server.addr, timeout=8) as sock:
        sock.sendall(b"slow\n")
        time.sleep(0.4)
        server.signal(signal.SIGTERM)
        assert read_line(sock) == b"done\n"
        assert read_all(sock) == b""  # then it is idle, and closed
    assert server.wait_exit(5) == 0


def test_int_abandons_a_request_in_flight_and_runs_the_finish_hook(start):
    server = start("--handler", "echo:Persistent", *_long_grace(start))
    with connect(server.addr, timeout=8) as sock:
        sock.sendall(b"slow\n")
        time.sleep(0.4)
        stopped = time.monotonic()
        server.signal(signal.SIGINT)
        try:
            assert read_all(sock) == b""
        except ConnectionResetError:
            pass  # abandoned with the request unread: a reset is allowed for the fast stop
        assert time.monotonic() - stopped < 1.4  # before the request would have answered
    assert server.wait_exit(5) == 0
    assert "finish hook ran" in server.log()


def test_hup_closes_an_idle_persistent_client_at_once(start):
    server = start("--handler", "echo:Persistent", *_long_grace(start))
    with _idle_client(server) as sock:
        hupped = time.monotonic()
        server.signal(signal.SIGHUP)
        assert read_all(sock) == b""
        assert time.monotonic() - hupped < 5
    procs.wait_until(lambda: server.log().count("starting! pid") == 2, 15, message="the re-exec")
    assert talk(server.addr, b"again\n") == b"again\n"


def test_hup_restarts_in_place_keeping_the_socket(start):
    server = start("--handler", "echo:Pid")
    inode = _socket_inodes(server.pid)
    with connect(server.addr) as sock:
        first = int(read_line(sock).strip())
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: server.log().count("starting! pid") == 2, 15, message="the re-exec")
    procs.wait_until(lambda: "Ready: READY" in server.log().split("Re-exec server during HUP")[-1], 15,
                     message="readiness after the restart")
    assert procs.alive(server.pid)
    if start.personality == "PreForkSimple":
        procs.wait_until(lambda: not procs.alive(first), 10, message="the old generation to leave")
    assert _socket_inodes(server.pid) == inode
    with connect(server.addr) as sock:
        second = int(read_line(sock).strip())
        sock.sendall(b"x\n")
        assert read_line(sock) == b"x\n"
    if start.personality == "PreForkSimple":
        assert second != first


def test_a_routine_reload_is_logged_as_a_notice_not_an_error(start):
    server = start()
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: server.log().count("starting! pid") == 2, 15, message="the re-exec")
    log = server.log()
    assert "notice: Re-exec server during HUP" in log
    assert "error:" not in log


def test_pid_file_of_a_running_server_refuses_a_second(start, serve, tmp_path):
    pid_file = tmp_path / "one.pid"
    server = start("--pid_file", str(pid_file))
    result = serve.run("--server_type", start.personality, "--pid_file", str(pid_file), "--port", "127.0.0.1:0")
    assert result.returncode == 1
    assert b"already running" in result.stderr and str(server.pid).encode() in result.stderr
    assert pid_file.read_text() == f"{server.pid}\n"


def test_deny_closes_before_process_request(start):
    server = start("--deny", r"127\.0\.0\.1")
    assert talk(server.addr, b"hi\n") == b""
    assert "every client will be denied" in server.log()


def test_allow_and_cidr_rules(start):
    server = start("--allow", r"10\..*", "--cidr_allow", "127.0.0.0/8", "--deny", r"127\.0\.0\.2")
    assert talk(server.addr, b"quit\n").startswith(b"Welcome")
    bound = socket.socket()
    bound.settimeout(5)
    bound.bind(("127.0.0.2", 0))
    bound.connect(server.addr)
    with bound:
        assert read_all(bound) == b""


def _socket_inodes(pid: int) -> set[str]:
    return {target for target in procs.fd_targets(pid) if target.startswith("socket:")}
