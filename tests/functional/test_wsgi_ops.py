"""WSGI in operation: trusted proxies, the access log, max_requests, and --app's start-up errors."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest

from conftest import ROOT, server_env
from support import procs
from support.clients import connect, read_all
from support.rawhttp import Wire, exchange, get
from support.wsgi_servers import APP, DEFAULT, IO_PATHS, PERSONALITY_ARGS, start


def environ_of(address, request: bytes) -> dict:
    return json.loads(exchange(address, request).body)


# ---------------------------------------------------------------------- trusted proxies
def test_forwarded_headers_ignored_without_forwarded_allow(serve):
    server = start(serve)
    environ = environ_of(server.addr, get("/environ", headers="X-Forwarded-For: 203.0.113.7\r\n"
                                          "X-Forwarded-Proto: https\r\nForwarded: for=198.51.100.1;proto=https\r\n"))
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["wsgi.url_scheme"] == "http"


def test_forwarded_headers_ignored_from_an_untrusted_peer(serve):
    server = start(serve, "--forwarded_allow", "10.0.0.0/8", "--forwarded_allow", "::1/128")
    environ = environ_of(server.addr, get("/environ", headers="X-Forwarded-For: 203.0.113.7\r\n"))
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_x_forwarded_for_and_proto_from_a_trusted_proxy(serve, tmp_path):
    log = tmp_path / "access.log"
    server = start(serve, "--forwarded_allow", "127.0.0.0/8", "--access_log_file", str(log),
                   "--access_log_format", "%h %{X-Forwarded-Proto}i")
    # The client's own claim (left of the address the proxy saw) is not believed.
    environ = environ_of(server.addr, get("/environ", headers="X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n"
                                          "X-Forwarded-Proto: https\r\n"))
    assert environ["REMOTE_ADDR"] == "203.0.113.7" and environ["wsgi.url_scheme"] == "https"
    lines = procs.wait_until(lambda: log.read_text().splitlines() if log.exists() else None, 5, message="access log")
    assert lines == ["203.0.113.7 https"]


def test_rfc7239_forwarded_from_a_trusted_proxy(serve):
    server = start(serve, "--forwarded_allow", "127.0.0.1/32")
    environ = environ_of(server.addr, get("/environ", headers='Forwarded: for="[2001:db8::1]:4711";proto=https\r\n'
                                          "X-Forwarded-For: 203.0.113.7\r\n"))
    assert environ["REMOTE_ADDR"] == "2001:db8::1" and environ["REMOTE_PORT"] == "4711"
    assert environ["wsgi.url_scheme"] == "https"  # Forwarded wins over X-Forwarded-*


# ---------------------------------------------------------------------- the access log
def test_access_log_is_off_by_default(serve, tmp_path):
    server = start(serve)
    assert exchange(server.addr, get("/hello")).status == 200
    assert not [path for path in tmp_path.iterdir() if "access" in path.name]
    assert "GET /hello" not in server.log()


@pytest.mark.parametrize("fmt", ["common", "combined", "%m %U%q %>s %b %{X-Pieces}o %H"])
def test_access_log_formats(serve, tmp_path, fmt):
    log = tmp_path / "access.log"
    server = start(serve, "--access_log_file", str(log), "--access_log_format", fmt)
    exchange(server.addr, get("/hello?x=1", headers="Referer: http://ref.test/\r\nUser-Agent: tester/1\r\n"))
    body = b"abc\ndef\n"
    exchange(server.addr, b"POST /echo?mode=readline HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n" + body)
    lines = procs.wait_until(lambda: len(log.read_text().splitlines()) == 2 and log.read_text().splitlines(), 5,
                             message="two access log lines")
    if fmt == "%m %U%q %>s %b %{X-Pieces}o %H":
        assert lines == ["GET /hello?x=1 200 14 - HTTP/1.1", "POST /echo?mode=readline 200 8 2 HTTP/1.1"]
        return
    first = lines[0]
    assert first.startswith('127.0.0.1 - - [') and '] "GET /hello?x=1 HTTP/1.1" 200 14' in first
    assert first.endswith('200 14 "http://ref.test/" "tester/1"') == (fmt == "combined")
    assert lines[1].split('"')[1] == "POST /echo?mode=readline HTTP/1.1"


def test_access_log_cannot_be_injected(serve, tmp_path):
    log = tmp_path / "access.log"
    server = start(serve, "--access_log_file", str(log), "--access_log_format", "combined")
    # Control characters in a field are refused (400) before any log; quotes, backslashes and
    # obs-text reach the log and are escaped there.
    agent = 'evil" 200 1 "-" "x\\ \xe9\tend'
    with Wire(server.addr) as wire:
        wire.send(('GET /a"b\\c%0a%0d HTTP/1.1\r\nHost: h\r\nUser-Agent: ' + agent
                   + '\r\nReferer: r"r\r\n\r\n').encode("latin-1"))
        assert wire.read_reply().status == 404
    lines = procs.wait_until(lambda: log.read_text().splitlines() if log.exists() else None, 5, message="access log")
    assert len(lines) == 1
    line = lines[0]
    assert all(0x20 <= ord(char) < 0x7f for char in line)
    assert line.count('"') == 6  # only the format's own quotes: request, Referer, User-Agent
    assert '"GET /a\\x22b\\x5cc%0a%0d HTTP/1.1"' in line
    assert 'evil\\x22 200 1 \\x22-\\x22 \\x22x\\x5c \\xc3\\xa9\\x09end' in line and "r\\x22r" in line


def test_access_log_to_the_server_log(serve):
    server = start(serve, "--access_log_file", "log", "--access_log_format", "common")
    exchange(server.addr, get("/hello"))
    procs.wait_until(lambda: '"GET /hello HTTP/1.1" 200 14' in server.log(), 5, message="access line in the log")


# ---------------------------------------------------------------------- max_requests
@pytest.mark.parametrize("personality", ["PreForkSimple", "PreForkSimple-blocking", "PreFork"])
def test_max_requests_counts_keepalive_requests(serve, personality):
    args = list(PERSONALITY_ARGS[personality])
    args[args.index("--max_servers") + 1] = "1"
    server = serve(*APP, *args, "--max_requests", "3")
    first_child = server.wait_children(1)[0]
    with Wire(server.addr) as wire:
        replies = []
        for _ in range(3):
            wire.send(get("/pid"))
            replies.append(wire.read_reply())
        assert wire.closed_by_server()
    assert {reply.body for reply in replies} == {str(first_child).encode()}
    assert [reply.header("Connection") for reply in replies] == [None, None, "close"]
    procs.wait_until(lambda: not procs.alive(first_child), 10, message="the child to leave")
    later = exchange(server.addr, get("/pid"))
    assert later.status == 200 and int(later.body) != first_child


# ---------------------------------------------------------------------- --app errors
@pytest.mark.parametrize("spec, expected", [
    ("nocolon", "app: 'nocolon'"),
    ("no_such_module_here:app", "cannot be imported: ModuleNotFoundError"),
    ("wsgi_apps:missing", "has no 'missing'"),
    ("wsgi_apps:NOT_CALLABLE", "is not callable"),
])
def test_app_errors_exit_2_naming_app(serve, spec, expected):
    result = serve.run("--app", spec, "--port", "127.0.0.1:0")
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "app" in stderr and expected in stderr and "Traceback" not in stderr


def test_app_with_handler_exits_2(serve):
    result = serve.run("--app", "wsgi_apps:app", "--handler", "echo:Echo", "--port", "127.0.0.1:0")
    stderr = result.stderr.decode()
    assert result.returncode == 2 and "app" in stderr and "handler" in stderr, stderr


def test_app_without_httptools_exits_2_saying_what_to_install(serve, tmp_path):
    stub = tmp_path / "stub" / "httptools"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("No module named httptools (a stub)")\n')
    env = {"PYTHONPATH": os.pathsep.join([str(stub.parent), str(ROOT / "src"), str(ROOT / "tests" / "handlers")])}
    result = serve.run("--app", "wsgi_apps:app", "--port", "127.0.0.1:0", env=env)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "app" in stderr and "pip install 'netserver[http]'" in stderr and "Traceback" not in stderr


def test_importing_netserver_never_imports_httptools():
    code = ("import sys, netserver, netserver.cli, netserver.protocols, netserver.personalities; "
            "assert 'httptools' not in sys.modules, 'httptools imported'; "
            "netserver.cli.build_class(None, [('PreFork', 'test')]); "
            "assert 'httptools' not in sys.modules, 'httptools imported by build_class'")
    result = subprocess.run([sys.executable, "-c", code], env=server_env(), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize("io", sorted(IO_PATHS))
def test_http_10_client_without_host(serve, io):
    server = start(serve, personality=IO_PATHS[io])
    environ = environ_of(server.addr, b"GET /environ HTTP/1.0\r\n\r\n")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0" and "HTTP_HOST" not in environ


# ---------------------------------------------------------------------- a stop, a multi-part response
@pytest.mark.parametrize("path", ["/slow", "/slow_stream"])
@pytest.mark.parametrize("personality", ["PreForkSimple", "PreForkSimple-blocking"])
def test_a_request_in_flight_at_a_stop_is_answered_with_connection_close(serve, personality, path):
    server = serve(*APP, *PERSONALITY_ARGS[personality])
    with Wire(server.addr) as wire:
        wire.send(get(path))
        time.sleep(0.3)  # the application is running
        server.signal(signal.SIGTERM)
        reply = wire.read_reply()
        assert (reply.status, reply.body, reply.header("Connection")) == (200, b"slow", "close")
        assert wire.closed_by_server()
    assert server.wait_exit(10) == 0


@pytest.mark.parametrize("personality", ["PreForkSimple", "PreForkSimple-blocking"])
def test_a_response_sent_in_several_writes_is_not_held_back_for_the_clients_ack(serve, personality):
    # Without TCP_NODELAY each later write of a keep-alive response waits for the client's delayed
    # ACK of the first (about 40 ms on Linux loopback).
    server = serve(*APP, *PERSONALITY_ARGS[personality])
    took = []
    with Wire(server.addr) as wire:
        for _ in range(11):
            started = time.monotonic()
            wire.send(get("/stream"))
            assert wire.read_reply().body == b"".join(b"part %d\n" % index for index in range(5))
            took.append(time.monotonic() - started)
    assert statistics.median(took) < 0.02, took


# ---------------------------------------------------------------------- logs that cannot be opened
@pytest.mark.parametrize("option", ["--access_log_file", "--log_file"])
def test_check_config_tries_the_log_files_and_leaves_nothing(serve, tmp_path, option):
    folder = tmp_path / "a-folder.log"
    folder.mkdir()
    ok = serve.run(*APP, option, str(tmp_path / "new.log"), "--check_config")
    assert ok.returncode == 0, ok.stderr
    bad = serve.run(*APP, option, str(folder), "--check_config")
    assert bad.returncode == 1
    assert f"{option[2:]}: cannot open '{folder}' (command line): Is a directory" in bad.stderr.decode()
    assert sorted(os.listdir(tmp_path)) == ["a-folder.log"]


def test_hup_to_an_access_log_that_cannot_be_opened_is_refused(serve, tmp_path):
    conf = tmp_path / "web.conf"
    conf.write_text(f"access_log_file {tmp_path / 'access.log'}\n")
    server = serve(*APP, *DEFAULT, "--conf_file", str(conf))
    kids = server.wait_children(2)
    (tmp_path / "a-folder.log").mkdir()
    conf.write_text(f"access_log_file {tmp_path / 'a-folder.log'}\n")
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: "HUP refused" in server.log(), 15, message="the refusal")
    assert "access_log_file: cannot open" in server.log() and server.children() == kids
    assert exchange(server.addr, get("/hello")).status == 200


@pytest.mark.parametrize("personality", ["PreForkSimple", "PreForkSimple-blocking"])
def test_the_servers_own_refusals_and_500s_are_in_the_access_log(serve, tmp_path, personality):
    log = tmp_path / "access.log"
    server = serve(*APP, *PERSONALITY_ARGS[personality], "--timeout_header", "0.5", "--access_log_file", str(log),
                   "--access_log_format", "%r %>s %b %{Content-Type}o")
    smuggling = b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert exchange(server.addr, smuggling).status == 400
    assert exchange(server.addr, get("/raise")).status == 500
    with connect(server.addr, timeout=5) as slow:
        slow.sendall(b"GET /never-finished HTTP/1.1\r\nHost: h\r\n")
        assert read_all(slow).startswith(b"HTTP/1.1 408 ")
    lines = procs.wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 3
                             and log.read_text().splitlines(), 5, message="three access log lines")
    assert lines == ["POST /echo HTTP/1.1 400 16 text/plain; charset=utf-8",
                     "GET /raise HTTP/1.1 500 26 text/plain; charset=utf-8",
                     "GET /never-finished HTTP/1.1 408 20 text/plain; charset=utf-8"]


@pytest.mark.parametrize("personality", ["PreForkSimple", "PreForkSimple-blocking"])
def test_a_refusal_whose_request_line_was_read_logs_that_line(serve, tmp_path, personality):
    log = tmp_path / "access.log"
    server = serve(*APP, *PERSONALITY_ARGS[personality], "--timeout", "0.5", "--access_log_file", str(log),
                   "--access_log_format", "%r %>s")
    assert exchange(server.addr, b"GET /two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status == 400
    assert exchange(server.addr, b"GET /bad-field HTTP/1.1\r\nHost: a\r\nBad Field: x\r\n\r\n").status == 400
    with connect(server.addr, timeout=5) as slow:  # a body that never arrives
        slow.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc")
        assert read_all(slow).startswith(b"HTTP/1.1 408 ")
    lines = procs.wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 3
                             and log.read_text().splitlines(), 5, message="three access log lines")
    assert lines == ["GET /two-hosts HTTP/1.1 400", "GET /bad-field HTTP/1.1 400", "POST /echo HTTP/1.1 408"]
