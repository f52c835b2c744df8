"""WSGI (PEP 3333) against a real ``netserver --app`` server: environ, wsgi.input, the response side.

Every test talks to ``tests/handlers/wsgi_apps.py`` over a real socket; the
wire is read strictly (support/rawhttp.py) so a malformed response fails.
The first tests run on every personality; many on both I/O paths of a
pre-forked child (`io_path`: the epoll mux and the blocking Channel).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time

import pytest

from support import procs
from support.rawhttp import Wire, exchange, get
from support.wsgi_servers import IO_PATHS, PERSONALITY_ARGS, start


@pytest.fixture(params=sorted(IO_PATHS))
def io_path(request):
    return IO_PATHS[request.param]


def environ_of(address, request: bytes) -> dict:
    reply = exchange(address, request)
    assert reply.status == 200, reply
    return json.loads(reply.body)


# ---------------------------------------------------------------------- every personality
@pytest.mark.parametrize("personality", sorted(PERSONALITY_ARGS))
def test_environ_keys_on_every_personality(serve, personality):
    server = start(serve, personality=PERSONALITY_ARGS[personality])
    host, port = server.addr
    environ = environ_of(server.addr, get("/environ/x?a=1&b=2", host="example.test:8080"))
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SCRIPT_NAME"] == "" and environ["PATH_INFO"] == "/environ/x"
    assert environ["QUERY_STRING"] == "a=1&b=2" and environ["RAW_URI"] == "/environ/x?a=1&b=2"
    assert environ["REQUEST_URI"] == environ["RAW_URI"] and environ["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert environ["SERVER_NAME"] == host and environ["SERVER_PORT"] == str(port)
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["HTTP_HOST"] == "example.test:8080"
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["REMOTE_PORT"].isdigit()
    assert environ["wsgi.version"] == [1, 0] and environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is False and environ["wsgi.run_once"] is False
    assert environ["wsgi.multiprocess"] is (personality != "Single")
    assert environ["wsgi.multithread"] is False
    assert environ["input_api"] and environ["errors_api"] and environ["file_wrapper"]
    assert environ["str_types"] == []  # PEP 3333: every CGI key is a native str
    assert "CONTENT_TYPE" not in environ and "CONTENT_LENGTH" not in environ


@pytest.mark.parametrize("path", sorted(IO_PATHS))
def test_each_connection_has_its_own_addresses_on_a_wildcard_listener(serve, path):
    """SERVER_NAME is the address a connection reached, REMOTE_PORT its own: the fixed keys a child
    reuses per listener never carry one connection's addresses into another's environ."""
    server = start(serve, "--max_servers", "1", personality=IO_PATHS[path], port="0.0.0.0:0")
    port = server.addr[1]
    seen = []
    for local in ("127.0.0.1", "127.0.0.2", "127.0.0.1"):
        environ = environ_of((local, port), get("/environ", host="h"))
        assert environ["SERVER_NAME"] == local and environ["SERVER_PORT"] == str(port)
        seen.append(environ["REMOTE_PORT"])
    assert len(set(seen)) == 3, seen


@pytest.mark.parametrize("personality", sorted(PERSONALITY_ARGS))
def test_keepalive_and_pipelining_on_every_personality(serve, personality):
    server = start(serve, personality=PERSONALITY_ARGS[personality])
    body = b"first body\nsecond line\n"
    pipelined = (b"POST /echo?mode=readline HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                 + get("/pid") + get("/hello", headers="Connection: close\r\n"))
    with Wire(server.addr) as wire:
        wire.send(pipelined)
        first, second, third = wire.read_reply(), wire.read_reply(), wire.read_reply()
        assert wire.closed_by_server()
    assert first.status == 200 and first.body == body and first.header("X-Pieces") == "2"
    assert second.status == 200 and second.body.isdigit()
    assert third.body == b"Hello, world!\n" and third.header("Connection") == "close"


# ---------------------------------------------------------------------- environ
def test_script_name_is_removed_from_path_info(serve):
    server = start(serve, "--script_name", "/mount")
    environ = environ_of(server.addr, get("/mount/environ/deep?q"))
    assert environ["SCRIPT_NAME"] == "/mount" and environ["PATH_INFO"] == "/environ/deep"
    # A path that only starts with the prefix's letters is not under it.
    reply = exchange(server.addr, get("/mountain/environ"))
    assert reply.status == 404 and reply.body == b"no such case: mountain"


def test_path_info_is_percent_decoded_as_latin1(serve):
    server = start(serve)
    environ = environ_of(server.addr, get("/environ/caf%C3%A9%20%2Fx%e9?k=%C3%A9"))
    assert environ["PATH_INFO"] == "/environ/caf\u00c3\u00a9 /x\u00e9"  # bytes as latin-1 (PEP 3333)
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace").startswith("/environ/café /x")
    assert environ["QUERY_STRING"] == "k=%C3%A9"  # never decoded
    assert environ["RAW_URI"] == "/environ/caf%C3%A9%20%2Fx%e9?k=%C3%A9"


def test_absolute_form_target(serve):
    server = start(serve)
    environ = environ_of(server.addr, get("http://other.test:81/environ/abs?z=9", host="ignored"))
    assert environ["PATH_INFO"] == "/environ/abs" and environ["QUERY_STRING"] == "z=9"
    assert environ["HTTP_HOST"] == "other.test:81"


def test_headers_content_type_length_duplicates_and_underscores(serve):
    server = start(serve)
    request = (b"POST /environ HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
               b"X-Dup: one\r\nX-Dup: two\r\nCookie: a=1\r\nCookie: b=2\r\nX_Forwarded_For: 6.6.6.6\r\n"
               b"x-lower: yes\r\n\r\nabc")
    environ = environ_of(server.addr, request)
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["CONTENT_TYPE"] == "text/plain" and environ["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_X_DUP"] == "one, two" and environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["HTTP_X_LOWER"] == "yes"
    assert "HTTP_X_FORWARDED_FOR" not in environ  # a name with "_" could spoof one with "-"


def test_a_requests_environ_has_room_for_its_headers_without_growing(serve, io_path):
    """The per-connection environ template already holds every per-request key and has room for
    twenty headers: its copy for each request is never grown (a dict resize per request)."""
    server = start(serve, personality=io_path)
    few = environ_of(server.addr, get("/environ"))
    many = environ_of(server.addr, get("/environ", headers="".join("X-H%d: v\r\n" % n for n in range(12))))
    assert many["HTTP_X_H11"] == "v"
    assert many["dict_bytes"] == few["dict_bytes"]


def test_http_10_request(serve):
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(b"GET /environ HTTP/1.0\r\n\r\n")
        reply = wire.read_reply()
        assert wire.closed_by_server()
    assert reply.status == 200 and json.loads(reply.body)["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert reply.version == "HTTP/1.1" and reply.header("Connection") == "close"


# ---------------------------------------------------------------------- wsgi.input
@pytest.mark.parametrize("mode", ["read", "sized", "readline", "readline_sized", "readlines", "iter"])
def test_input_is_bounded_by_the_body_and_spares_the_next_request(serve, mode):
    server = start(serve)
    body = b"line one\nline two is longer\n\nlast without newline"
    expected_pieces = {"read": 1, "sized": -(-len(body) // 7), "readline": 4, "readlines": 4, "iter": 4,
                       "readline_sized": sum(-(-len(line) // 4) for line in body.splitlines(True))}
    with Wire(server.addr) as wire:
        # The body and the next request arrive in one segment: read() must stop at the body's end.
        wire.send(b"POST /echo?mode=%s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s%s"
                  % (mode.encode(), len(body), body, get("/hello")))
        reply, after = wire.read_reply(), wire.read_reply()
    assert reply.status == 200 and reply.body == body
    assert reply.header("X-Pieces") == str(expected_pieces[mode])
    assert after.body == b"Hello, world!\n"


@pytest.mark.parametrize("mode", ["read", "sized", "readline", "readlines", "iter"])
def test_input_of_a_request_without_a_body_is_empty_and_so_is_the_next_ones(serve, io_path, mode):
    """GET and an empty POST share one empty wsgi.input; a body after them still gets its own."""
    server = start(serve, personality=io_path)
    with Wire(server.addr) as wire:
        wire.send(get("/echo?mode=" + mode) +
                  b"POST /echo?mode=%s HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n" % mode.encode() +
                  b"POST /echo?mode=%s HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody" % mode.encode())
        replies = [wire.read_reply() for _ in range(3)]
    empty = "1" if mode == "read" else "0"  # read() is one piece, empty or not
    assert [(r.status, r.body, r.header("X-Pieces")) for r in replies] == \
        [(200, b"", empty), (200, b"", empty), (200, b"body", "1")]


def test_input_waits_for_a_body_sent_slowly(serve):
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(b"POST /echo?mode=readline HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\nhello\n")
        time.sleep(0.2)
        wire.send(b"world\n")
        reply = wire.read_reply()
    assert reply.body == b"hello\nworld\n" and reply.header("X-Pieces") == "2"


@pytest.mark.parametrize("mode", ["read", "sized", "readline", "iter"])
def test_chunked_request_body(serve, mode):
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(b"POST /echo?mode=%s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"6\r\nhello\n\r\n" % mode.encode())
        time.sleep(0.1)
        wire.send(b"7;ext=1\r\nchunked\r\n1\r\n\n\r\n0\r\nX-Trailer: t\r\n\r\n" + get("/hello"))
        reply, after = wire.read_reply(), wire.read_reply()
    assert reply.status == 200 and reply.body == b"hello\nchunked\n"
    assert after.body == b"Hello, world!\n"


def test_expect_100_continue_is_sent_when_the_app_reads(serve, io_path):
    server = start(serve, personality=io_path)
    with Wire(server.addr) as wire:
        for size in (5, 100000):  # buffered by the server first (mux), and streamed to the app
            wire.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % size)
            interim = wire.read_head()
            assert interim.status == 100
            wire.send(b"y" * size)
            reply = wire.read_reply()
            assert reply.status == 200 and reply.body == b"y" * size
        wire.send(get("/hello"))
        assert wire.read_reply().body == b"Hello, world!\n"  # the connection went on


def test_expect_100_continue_when_the_app_reads_after_start_response(serve, io_path):
    server = start(serve, personality=io_path)
    with Wire(server.addr) as wire:
        wire.send(b"POST /late_read HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
        assert wire.read_head().status == 100  # no byte of the final response has gone out yet
        wire.send(b"b" * 100000)
        assert wire.read_reply().body == b"got " + b"b" * 100000


def test_expect_100_continue_is_not_sent_when_the_app_does_not_read(serve, io_path):
    server = start(serve, personality=io_path)
    with Wire(server.addr) as wire:
        wire.send(b"POST /noread HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
        reply = wire.read_reply()  # the final response first, never a 100 before or after it
        assert reply.status == 200 and reply.body == b"not read"
        # The body was never asked for, so the connection cannot go on, and the response says so.
        assert reply.header("Connection") == "close"
        assert wire.closed_by_server()


def test_unread_small_body_is_skipped_and_the_connection_goes_on(serve):
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(b"POST /noread HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" + get("/hello"))
        assert wire.read_reply().body == b"not read"
        assert wire.read_reply().body == b"Hello, world!\n"


def test_large_unread_body_closes_and_says_so(serve, io_path):
    server = start(serve, personality=io_path)
    with Wire(server.addr) as wire:
        wire.send(b"POST /noread HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        reply = wire.read_reply()
        assert reply.body == b"not read" and reply.header("Connection") == "close"


def test_wsgi_errors_lines_reach_the_server_log(serve):
    server = start(serve)
    assert exchange(server.addr, get("/errors")).body == b"logged"
    log = procs.wait_until(lambda: "unterminated tail" in server.log() and server.log(), 5, message="errors in log")
    for line in ("first wsgi.errors line", "second wsgi.errors line", "unterminated tail"):
        assert "wsgi.errors: " + line in log


# ---------------------------------------------------------------------- the response side
def test_file_wrapper_of_a_real_file(serve, tmp_path, io_path):
    """sendfile(2) on the blocking path; the mux copies in blocks; both frame it by the file's size."""
    payload = bytes(range(256)) * 5000 + b"tail"
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    server = start(serve, personality=io_path)
    with Wire(server.addr) as wire:
        wire.send(get("/file?path=%s" % path) * 2)
        first, second = wire.read_reply(), wire.read_reply()
    for reply in (first, second):
        assert reply.status == 200 and reply.header("Content-Length") == str(len(payload))
        assert not reply.chunked and hashlib.sha256(reply.body).digest() == hashlib.sha256(payload).digest()


def test_file_wrapper_head_sends_the_length_and_no_body(serve, tmp_path):
    path = tmp_path / "payload.bin"
    path.write_bytes(b"z" * 10000)
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(get("/file?path=%s" % path, method="HEAD") + get("/hello"))
        head = wire.read_reply(head_request=True)
        assert wire.read_reply().body == b"Hello, world!\n"  # nothing of the file came in between
    assert head.status == 200


def test_file_wrapper_plain_copy_for_a_bytesio(serve):
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(get("/bytesio?size=100001") + get("/hello"))
        reply, after = wire.read_reply(), wire.read_reply()
    assert reply.status == 200 and len(reply.body) == 100001 and reply.body.endswith(b"x" * (100001 % 256))
    assert reply.chunked  # no length known: chunked on HTTP/1.1
    assert after.body == b"Hello, world!\n"


def test_write_callable_then_the_iterable(serve):
    server = start(serve)
    reply = exchange(server.addr, get("/write"))
    assert reply.status == 200 and reply.body == b"written, then returned, in order"


def test_exc_info_replaces_headers_before_the_response_started(serve):
    server = start(serve)
    reply = exchange(server.addr, get("/exc_before"))
    assert reply.status == 503 and reply.body == b"replaced"
    assert reply.header("X-Replaced") == "yes" and reply.header("X-First") is None


def test_exc_info_after_the_response_started_reraises_and_closes(serve, io_path):
    server = start(serve, personality=io_path)
    with Wire(server.addr) as wire:
        wire.send(get("/exc_after"))
        head = wire.read_head()
        assert head.status == 200
        assert b"partial body" in wire.rest()  # then the close: no clean end, no second response
    procs.wait_until(lambda: "after the response started" in server.log(), 5, message="the traceback logged")


def test_the_iterables_close_is_called(serve, marks):
    server = start(serve, env={"MARK_DIR": str(marks)})
    reply = exchange(server.addr, get("/close"))
    assert reply.status == 200 and reply.body == b"one two"
    procs.wait_until(lambda: (marks / "close-normal").exists(), 5, message="close() called")


def test_the_iterables_close_is_called_when_it_raises(serve, marks, io_path):
    server = start(serve, personality=io_path, env={"MARK_DIR": str(marks)})
    with Wire(server.addr) as wire:
        wire.send(get("/close_raise"))
        assert wire.read_head().status == 200
        assert not wire.rest().endswith(b"0\r\n\r\n")  # cut short, then closed
    procs.wait_until(lambda: (marks / "close-raise").exists(), 5, message="close() called")


def test_the_iterables_close_is_called_when_the_client_disconnects(serve, marks, io_path):
    server = start(serve, personality=io_path, env={"MARK_DIR": str(marks)})
    with Wire(server.addr) as wire:
        wire.send(get("/close_slow"))
        assert wire.read_head().status == 200
    procs.wait_until(lambda: (marks / "close-slow").exists(), 10, message="close() after the client left")
    assert exchange(server.addr, get("/hello")).status == 200  # and the server goes on


@pytest.mark.parametrize("case", ["bad_status", "bad_name", "bad_value", "non_bytes", "raise", "no_start"])
def test_application_errors_are_a_500_and_a_logged_traceback(serve, case, io_path):
    server = start(serve, personality=io_path)
    with Wire(server.addr) as wire:
        wire.send(get("/" + case))
        reply = wire.read_reply()
        assert wire.closed_by_server()
    assert reply.status == 500 and reply.header("Connection") == "close"
    assert "Set-Cookie" not in str(reply.headers) and b"evil" not in reply.body
    log = procs.wait_until(lambda: "Traceback" in server.log() and server.log(), 5, message="traceback")
    assert "/" + case in log


@pytest.mark.parametrize("case", ["raise_after", "non_bytes_later"])
def test_an_error_after_the_response_started_closes_the_connection(serve, case, io_path):
    server = start(serve, personality=io_path)
    with Wire(server.addr) as wire:
        wire.send(get("/" + case) + get("/hello"))
        head = wire.read_head()
        rest = wire.rest()
    assert head.status == 200 and head.header("Transfer-Encoding") == "chunked"
    assert not rest.endswith(b"0\r\n\r\n") and b"Hello, world" not in rest  # cut short: the client can tell
    procs.wait_until(lambda: "Traceback" in server.log(), 5, message="traceback")


def test_head_has_the_same_headers_and_no_body(serve):
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(get("/hello") + get("/hello", method="HEAD") + get("/stream", method="HEAD") + get("/pid"))
        full, head, stream_head, after = (wire.read_reply(), wire.read_reply(head_request=True),
                                          wire.read_reply(head_request=True), wire.read_reply())
    assert [name for name in full.names() if name != "date"] == [name for name in head.names() if name != "date"]
    assert head.header("Content-Length") == full.header("Content-Length") == "14"
    assert stream_head.status == 200 and stream_head.header("Transfer-Encoding") is None
    assert after.body.isdigit()  # no stray body bytes between the HEAD replies


def test_chunked_response_when_the_app_gives_no_length(serve):
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(get("/stream") + get("/empty_stream") + get("/no_content"))
        stream, empty, no_content = wire.read_reply(), wire.read_reply(), wire.read_reply()
    assert stream.chunked and stream.header("Content-Length") is None
    assert stream.body == b"".join(b"part %d\n" % index for index in range(5))
    assert empty.status == 200 and empty.body == b""
    assert no_content.status == 204 and no_content.header("Content-Length") is None
    assert no_content.header("Transfer-Encoding") is None


def test_http_10_stream_is_close_delimited(serve):
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reply = wire.read_reply()
    assert reply.header("Transfer-Encoding") is None and reply.header("Connection") == "close"
    assert reply.body == b"".join(b"part %d\n" % index for index in range(5))


def test_http_10_keepalive_only_when_asked(serve):
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reply = wire.read_reply()
        assert reply.header("Connection") == "keep-alive"
        wire.send(b"GET /hello HTTP/1.0\r\n\r\n")
        reply = wire.read_reply()
        assert reply.header("Connection") == "close" and wire.closed_by_server()


def test_http_11_connection_close_and_keepalive_default(serve):
    server = start(serve)
    with Wire(server.addr) as wire:
        wire.send(get("/hello"))
        assert wire.read_reply().header("Connection") is None
        assert not wire.closed_by_server(0.3)
        wire.send(get("/hello", headers="Connection: close\r\n"))
        assert wire.read_reply().header("Connection") == "close"
        assert wire.closed_by_server()


def test_date_and_server_headers(serve):
    server = start(serve)
    reply = exchange(server.addr, get("/hello"))
    assert reply.header("Server").startswith("netserver/")
    date = reply.header("Date")
    assert date.endswith(" GMT") and abs(time.mktime(time.strptime(date, "%a, %d %b %Y %H:%M:%S GMT"))
                                         - time.mktime(time.gmtime())) < 5
    quiet = start(serve, "--server_revision", "")
    reply = exchange(quiet.addr, get("/hello"))
    assert reply.header("Server") is None and reply.header("Date") is not None


def test_the_date_moves_on_between_requests_of_one_connection(serve, io_path):
    """The Date line is read once a round of requests (mux) or per response (blocking), never kept
    for a connection: requests a second apart on one keep-alive connection carry different dates."""
    server = start(serve, personality=io_path)
    with Wire(server.addr) as wire:
        dates = []
        for _ in range(3):
            wire.send(get("/hello"))
            dates.append(wire.read_reply().header("Date"))
            time.sleep(0.6)
    assert len(set(dates)) >= 2, dates


def test_http_client_round_trip(serve):
    server = start(serve)
    connection = http.client.HTTPConnection(*server.addr, timeout=5)
    try:
        for path, expected in (("/hello", b"Hello, world!\n"), ("/stream", b"part 0\n"), ("/write", b"written")):
            connection.request("GET", path)
            response = connection.getresponse()
            assert response.status == 200 and response.read().startswith(expected)
        connection.request("POST", "/echo", body=b"posted", headers={"Content-Type": "text/plain"})
        assert connection.getresponse().read() == b"posted"
    finally:
        connection.close()
