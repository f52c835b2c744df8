"""One behaviour suite, run against every personality, over real sockets.

Each personality declares what it supports (``Personality`` below); a test
names the capability it needs and runs on exactly the personalities that
have it, so no test asks which personality it is running on.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import procs
from support.clients import connect, read_all, read_line, talk, udp_exchange

INETD = str(Path(__file__).resolve().parent.parent / "support" / "inetd.py")


@dataclass(frozen=True)
class Personality:
    """What one personality supports, as the tests see it.

    binds: the server binds its own listeners (every option about them applies).
    stops: TERM, INT and QUIT to the server act as the README's stop table says.
    graceful_timeout: the stop waits at most graceful_timeout for its children.
    reloads: a HUP re-execs in place and fails no connection.
    children_serve: clients are served in forked children, never in the parent.
    recycles: a child leaves after max_requests and is replaced.
    orphan_safe: children leave when the parent is killed.
    """

    name: str
    extra: tuple[str, ...] = ()
    script: str | None = None  # run under this harness instead of as a server of its own
    binds: bool = True
    stops: bool = True
    graceful_timeout: bool = True
    reloads: bool = True
    children_serve: bool = True
    recycles: bool = False
    orphan_safe: bool = True


TABLE = (
    Personality("Single", graceful_timeout=False, children_serve=False, orphan_safe=False),
    Personality("PreForkSimple", ("--max_servers", "2"), recycles=True),
    Personality("PreFork", ("--max_servers", "2"), recycles=True),
    Personality("Fork", ("--max_servers", "4")),
    # Run as inetd runs it: one process per connection, stopped per connection (test_inet.py).
    Personality("INET", script=INETD, binds=False, stops=False, graceful_timeout=False, reloads=False,
                children_serve=False, orphan_safe=False),
)


def having(capability: str | None = None) -> list:
    return [pytest.param(each, id=each.name) for each in TABLE if capability is None or getattr(each, capability)]


@pytest.fixture
def start(request, serve):
    personality: Personality = request.param

    def launch(*args, **kwargs):
        return serve("--server_type", personality.name, *personality.extra, *args, script=personality.script,
                     **kwargs)

    launch.personality = personality
    return launch


def every(capability: str | None = None):
    """Run the test on every personality that has ``capability`` (all of them for None)."""
    return pytest.mark.parametrize("start", having(capability), indirect=True)


@every()
def test_demo_service_welcomes_echoes_and_quits(start):
    server = start()
    with connect(server.addr) as sock:
        welcome = read_line(sock)
        assert welcome.startswith(f'Welcome to "{start.personality.name}" ('.encode())
        sock.sendall(b"hello there\r\n")
        assert read_line(sock).endswith(b': You said "hello there"\r\n')
        sock.sendall(b"quit\r\n")
        assert read_all(sock) == b""


@every("binds")
def test_ipv6_unix_and_tcp_listeners_together(start, tmp_path):
    path = str(tmp_path / "s.sock")
    server = start("--port", "127.0.0.1:0", "--port", "[::1]:0", "--port", f"unix:{path}", port=None)
    assert [a.proto for a in server.addresses] == ["tcp", "tcp", "unix"]
    for address in server.addresses:
        reply = talk(address.tuple, b"hi\nquit\n")
        assert b'You said "hi"' in reply, address


@every("binds")
def test_udp_datagram_is_answered(start):
    server = start("--port", "127.0.0.1:0/udp", port=None)
    assert server.addresses[0].proto == "udp"
    assert udp_exchange(server.addr, b"ping") == b'You said "ping"'


@every("binds")
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


@every("binds")
def test_v4_client_on_dual_stack_listener_is_reported_as_v4(start):
    server = start("--handler", "echo:Info", port="*:0")
    with connect(("127.0.0.1", server.addresses[0].port)) as sock:
        assert read_line(sock).split()[1] == b"127.0.0.1"


@every()
def test_timeout_closes_the_connection_and_serving_continues(start):
    server = start("--timeout", "0.5", "--handler", "echo:Echo")
    with connect(server.addr) as idle:
        started = time.monotonic()
        assert read_all(idle) == b""
        assert 0.4 < time.monotonic() - started < 3
    assert talk(server.addr, b"next\n") == b"next\n"
    assert "Timed out waiting for 127.0.0.1:" in server.log()


@every()
def test_line_too_long_closes_only_that_connection(start):
    server = start("--max_line_length", "100", "--handler", "echo:Echo")
    with connect(server.addr) as sock:
        sock.sendall(b"x" * 5000)
        assert read_all(sock) == b""
    assert talk(server.addr, b"short\n") == b"short\n"
    assert "line longer than 100 bytes" in server.log()


@every()
def test_handler_exception_is_logged_and_serving_continues(start):
    server = start("--handler", "echo:Crash")
    assert talk(server.addr, b"a\nboom\nb\n") == b"a\n"
    assert talk(server.addr, b"after\n") == b"after\n"
    log = server.log()
    assert "process_request failed for 127.0.0.1:" in log
    assert "RuntimeError: handler exploded on purpose" in log


@every()
def test_client_reset_is_one_quiet_line(start):
    server = start("--handler", "echo:Echo", "--log_level", "3")
    with connect(server.addr) as sock:
        sock.sendall(b"x\n")
        read_line(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    assert talk(server.addr, b"ok\n") == b"ok\n"
    assert "Traceback" not in server.log()


@every("stops")
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
@every("stops")
def test_int_and_quit_stop_with_status_zero(start, signame):
    server = start()
    server.signal(getattr(signal, signame))
    assert server.wait_exit(10) == 0


# The stop table (README "Stopping"): what each signal does to idle and in-flight clients.
def _long_grace(start):
    # A stop that waited for graceful_timeout would show.
    return ("--graceful_timeout", "20") if start.personality.graceful_timeout else ()


def _idle_client(server):
    sock = connect(server.addr, timeout=8)
    sock.sendall(b"hi\n")
    assert read_line(sock) == b"hi\n"
    return sock  # now waiting in client.rfile for a new line: idle


@every("stops")
def test_term_closes_an_idle_persistent_client_at_once(start):
    server = start("--handler", "echo:Persistent", *_long_grace(start))
    with _idle_client(server) as sock:
        stopped = time.monotonic()
        server.signal(signal.SIGTERM)
        assert read_all(sock) == b""  # a clean FIN: a reset would raise here
        assert time.monotonic() - stopped < 5
    assert server.wait_exit(5) == 0
    assert "finish hook ran" in server.log()


@every("stops")
@pytest.mark.parametrize("sent_meanwhile", [b"", b"after\n"], ids=["alone", "with-a-line-waiting"])
def test_term_lets_a_request_in_flight_finish(start, sent_meanwhile):
    # A line sent while the request ran waits in the kernel, not in the reader's buffer: the
    # connection is not idle until it is answered too.
    server = start("--handler", "echo:Persistent", *_long_grace(start))
    with connect(server.addr, timeout=8) as sock:
        sock.sendall(b"slow\n")
        time.sleep(0.2)
        sock.sendall(sent_meanwhile)
        time.sleep(0.2)
        server.signal(signal.SIGTERM)
        assert read_line(sock) == b"done\n"
        if sent_meanwhile:
            assert read_line(sock) == sent_meanwhile
        assert read_all(sock) == b""  # then it is idle, and closed
    assert server.wait_exit(5) == 0


@every("stops")
def test_term_is_not_held_up_by_a_client_that_never_stops_sending(start):
    # Only what waited in the kernel when the stop began is still served; a client streaming
    # lines without a pause would otherwise keep the connection from ever being idle.
    server = start("--handler", "echo:Persistent", *_long_grace(start))
    with connect(server.addr, timeout=8) as sock:
        sending = threading.Event()
        sending.set()

        def stream():
            while sending.is_set():
                try:
                    sock.sendall(b"tick\n")
                except OSError:
                    return
                time.sleep(0.005)

        sender = threading.Thread(target=stream)
        sender.start()
        try:
            assert read_line(sock) == b"tick\n"
            stopped = time.monotonic()
            server.signal(signal.SIGTERM)
            assert server.wait_exit(10) == 0
            assert time.monotonic() - stopped < 5  # graceful_timeout is 20
        finally:
            sending.clear()
            sender.join(5)
    assert "finish hook ran" in server.log()


@every("stops")
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


@every("reloads")
def test_hup_closes_an_idle_persistent_client_at_once(start):
    server = start("--handler", "echo:Persistent", *_long_grace(start))
    with _idle_client(server) as sock:
        hupped = time.monotonic()
        server.signal(signal.SIGHUP)
        assert read_all(sock) == b""
        assert time.monotonic() - hupped < 5
    procs.wait_until(lambda: server.log().count("starting! pid") == 2, 15, message="the re-exec")
    assert talk(server.addr, b"again\n") == b"again\n"


@every("reloads")
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
    if start.personality.children_serve:
        procs.wait_until(lambda: not procs.alive(first), 10, message="the old generation to leave")
    assert _socket_inodes(server.pid) == inode
    with connect(server.addr) as sock:
        second = int(read_line(sock).strip())
        sock.sendall(b"x\n")
        assert read_line(sock) == b"x\n"
    assert (second != first) == start.personality.children_serve


@every("reloads")
def test_a_routine_reload_is_logged_as_a_notice_not_an_error(start):
    server = start()
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: server.log().count("starting! pid") == 2, 15, message="the re-exec")
    log = server.log()
    assert "notice: Re-exec server during HUP" in log
    assert "error:" not in log


@every("binds")
def test_pid_file_of_a_running_server_refuses_a_second(start, serve, tmp_path):
    pid_file = tmp_path / "one.pid"
    server = start("--pid_file", str(pid_file))
    result = serve.run("--server_type", start.personality.name, "--pid_file", str(pid_file), "--port", "127.0.0.1:0")
    assert result.returncode == 1
    assert b"already running" in result.stderr and str(server.pid).encode() in result.stderr
    assert pid_file.read_text() == f"{server.pid}\n"


@every()
def test_deny_closes_before_process_request(start):
    server = start("--deny", r"127\.0\.0\.1")
    assert talk(server.addr, b"hi\n") == b""
    assert "every client will be denied" in server.log()


@every()
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


@every()
def test_client_info_of_a_tcp_client(start):
    server = start("--handler", "echo:Info")
    with connect(server.addr) as sock:
        proto, peer, peerport, local, localport, host = read_line(sock).split()
        assert (proto, peer, local, int(localport), host) == (b"tcp", b"127.0.0.1", b"127.0.0.1", server.addresses[0].port,
                                                              b"127.0.0.1")
        assert int(peerport) == sock.getsockname()[1]


@every()
def test_bad_configuration_exits_2_naming_it_and_starts_nothing(start, serve, tmp_path):
    pid_file, log_file = tmp_path / "bad.pid", tmp_path / "bad.log"
    result = serve.run("--server_type", start.personality.name, "--log_level", "9", "--pid_file", str(pid_file),
                       "--log_file", str(log_file), "--port", "127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    assert b"log_level: '9' must be at most 4 (command line)" in result.stderr
    assert not pid_file.exists() and not log_file.exists()


@every("reloads")
def test_hup_while_clients_keep_coming_fails_no_connection(start):
    server = start("--handler", "echo:Echo")
    failures, served, done = [], [], threading.Event()

    def clients():
        while not done.is_set():
            try:
                assert talk(server.addr, b"ping\n", timeout=10) == b"ping\n"
                served.append(1)
            except (OSError, AssertionError) as error:
                failures.append(repr(error))

    worker = threading.Thread(target=clients)
    worker.start()
    try:
        procs.wait_until(lambda: len(served) >= 5, 10, message="clients before the HUP")
        server.signal(signal.SIGHUP)
        procs.wait_until(lambda: "Ready: READY" in server.log().split("Re-exec server during HUP")[-1], 15,
                         message="readiness after the restart")
        count = len(served)
        procs.wait_until(lambda: len(served) >= count + 5, 10, message="clients after the HUP")
    finally:
        done.set()
        worker.join(15)
    assert not failures, failures[:3]


@every("recycles")
def test_max_requests_recycles_the_child(start):
    server = start("--handler", "echo:Pid", "--max_servers", "1", "--max_requests", "2")
    pids = []
    for _ in range(3):
        with connect(server.addr) as sock:
            pids.append(int(read_line(sock).strip()))
    assert pids[0] == pids[1] != pids[2]
    assert procs.alive(server.pid)


@every("orphan_safe")
def test_parent_death_leaves_no_child(start):
    server = start("--handler", "echo:Persistent")
    with _idle_client(server) as sock:  # a Fork child exists only while it serves someone
        children = server.wait_children(len(server.children()) or 1)
        server.signal(signal.SIGKILL)
        assert read_all(sock) == b""  # the idle client is closed by the orphaned child on its way out
    procs.wait_until(lambda: not any(procs.alive(pid) for pid in children), 10, message="the children to leave")
