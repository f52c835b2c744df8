"""The request cases of tests/requests/ sent over real sockets to one ``netserver --app`` server.

The application (tests/handlers/http_echo.py) answers with how it saw the
request, so a valid case checks the parse end to end: responses in request
order, the echoed method, target, version, environ keys and body, and the
connection's fate (closed after a request that ends it; otherwise a
following request is answered, which also proves no byte of the case was
left to be taken for the start of the next request).  An invalid case
checks the refusal's status line and that the server then closes.

One server serves every case, so its ``no_leftover_children`` check moves
from each test to the module's teardown.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from conftest import Launcher
from support import procs
from support.clients import connect
from support.http_cases import OPTIONS, Case, environ_headers, load_all

pytest.importorskip("httptools")

CASES = load_all()
PING = b"GET /ping HTTP/1.1\r\nHost: ping.example\r\n\r\n"
TIMEOUT = 5.0
HEADER_TIMEOUT = 1


@pytest.fixture(autouse=True)
def no_leftover_children():
    """Replaced for this module: its one server lives across the tests (see ``server``)."""
    yield


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    launcher = Launcher(tmp_path_factory.mktemp("requests"))
    handle = launcher("--app", "http_echo:app", *OPTIONS, "--timeout_header", str(HEADER_TIMEOUT),
                      "--timeout", "3")
    yield handle
    problems = launcher.cleanup()
    assert not problems, problems
    assert not procs.children_of(os.getpid()), "the request suite's server left processes"


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class Reader:
    """Responses off one socket, framed by Content-Length or chunked, every read bounded."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.buffer += data
        return bool(data)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._more():
                raise AssertionError(f"connection closed before {marker!r}; got {self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._more():
                raise AssertionError(f"connection closed {size - len(self.buffer)} bytes short")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, head_only: bool = False) -> Response:
        lines = self._until(b"\r\n\r\n").split(b"\r\n")
        version, code, _ = lines[0].split(b" ", 2)
        assert version == b"HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.decode().lower()] = value.strip().decode("latin-1")
        status = int(code)
        if head_only or status < 200 or status in (204, 304):
            return Response(status, headers, b"")
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if not size:
                    self._until(b"\r\n")
                    return Response(status, headers, body)
                body += self._exactly(size)
                assert self._exactly(2) == b"\r\n"
        return Response(status, headers, self._exactly(int(headers.get("content-length", "0"))))

    def closed(self) -> bool:
        """True if the server closes with nothing more sent (within the socket's timeout)."""
        if self.buffer:
            return False
        try:
            return not self._more()
        except TimeoutError:
            return False


def send(sock: socket.socket, reader: Reader, case: Case) -> list[Response]:
    """Send the case's parts; answer the 100 Continue the case expects between them."""
    interim = []
    for index, part in enumerate(case.parts):
        if index:
            if case.expect.get("interim"):
                interim.append(reader.response())
            else:
                time.sleep(0.2)  # a client that pauses: the server has consumed the part before
        sock.sendall(part)
    return interim


def check_echo(case: Case, expected: dict, response: Response) -> None:
    assert response.status == 200, (case.name, response.status, response.body)
    echo = json.loads(response.body)
    assert echo["method"] == expected["method"]
    assert echo["target"] == expected["target"]
    assert echo["version"] == expected["version"]
    assert echo["body"] == expected["body"]
    want = environ_headers(expected["headers"])
    want.update(expected.get("environ", {}))
    seen = {key: value for key, value in echo["environ"].items()
            if key.startswith(("HTTP_", "CONTENT_")) or key in expected.get("environ", {})}
    assert seen == want, case.expect.get("why")


def check_persistence(reader: Reader, sock: socket.socket, keep_alive: bool, version: str) -> None:
    connection = reader.last.headers.get("connection", "").lower()
    if not keep_alive:
        assert connection == "close"
        assert reader.closed(), "the server kept the connection open after a closing request"
        return
    assert connection == ("keep-alive" if version == "1.0" else "")
    sock.sendall(PING)
    ping = json.loads(reader.response().body)
    assert ping["target"] == "/ping", "the case left bytes behind that spoiled the next request"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_request_case_over_a_socket(server, case: Case) -> None:
    with connect(server.addr, TIMEOUT) as sock:
        reader = Reader(sock)
        started = time.monotonic()
        interim = send(sock, reader, case)
        assert [r.status for r in interim] == case.expect.get("interim", []), case.expect.get("why")
        answered = []
        for expected in case.requests:
            reader.last = reader.response(head_only=expected["method"] == "HEAD")
            answered.append(expected)
            if expected["method"] == "HEAD":
                assert reader.last.status == 200 and int(reader.last.headers["content-length"]) > 0
            else:
                check_echo(case, expected, reader.last)
            if not expected["keep_alive"]:
                break
        if case.status is None:
            last = answered[-1]
            check_persistence(reader, sock, last["keep_alive"], last["version"])
            return
        refusal = reader.response()
        assert refusal.status == case.status, (case.name, case.expect.get("why"), refusal.body)
        assert refusal.headers.get("connection") == "close"
        assert reader.closed(), "the server kept the connection open after a refusal"
        if case.expect.get("timeout"):
            assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9
