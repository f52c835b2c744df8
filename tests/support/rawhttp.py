"""A strict HTTP/1.1 response reader over a raw socket, for tests that check the wire itself.

http.client forgives and hides framing; these tests need to see exactly what
was sent: the status line, each header as sent, the body by its framing,
and whether the server closed the connection afterwards.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass
class Reply:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunked: bool = False

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None

    def names(self) -> list[str]:
        return [key.lower() for key, _ in self.headers]


class Wire:
    """One connection: send raw bytes, read whole responses, tell whether the server closed."""

    def __init__(self, address: tuple, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bytes:
        data = self.sock.recv(65536)
        self.buffer += data
        return data

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._more():
                raise EOFError("connection closed before %r (have %r)" % (marker, self.buffer[:200]))
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._more():
                raise EOFError("connection closed %d bytes into a %d-byte body" % (len(self.buffer), count))
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_head(self) -> Reply:
        head = self.until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head.split("\r\n")
        version, status, reason = (status_line.split(" ", 2) + [""])[:3]
        headers = []
        for line in lines:
            assert ": " in line and line == line.strip(), "malformed header line %r" % line
            name, _, value = line.partition(": ")
            headers.append((name, value))
        return Reply(version, int(status), reason, headers)

    def read_reply(self, head_request: bool = False) -> Reply:
        reply = self.read_head()
        if reply.status < 200:
            return reply
        if head_request or reply.status in (204, 304):
            return reply
        if (reply.header("Transfer-Encoding") or "").lower() == "chunked":
            reply.chunked = True
            parts = []
            while True:
                size = int(self.until(b"\r\n"), 16)
                if size == 0:
                    self.until(b"\r\n")  # no trailers from this server
                    break
                parts.append(self.exactly(size))
                assert self.exactly(2) == b"\r\n"
            reply.body = b"".join(parts)
        elif reply.header("Content-Length") is not None:
            reply.body = self.exactly(int(reply.header("Content-Length")))
        else:
            reply.body = self.rest()
        return reply

    def rest(self) -> bytes:
        """Everything until the server closes."""
        while self._more():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def closed_by_server(self, wait: float = 3.0) -> bool:
        """True if the server closes with nothing more to say within ``wait`` seconds."""
        if self.buffer:
            return False
        self.sock.settimeout(wait)
        try:
            return self._more() == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True


def get(path: str, host: str = "localhost", version: str = "1.1", headers: str = "", method: str = "GET") -> bytes:
    return ("%s %s HTTP/%s\r\nHost: %s\r\n%s\r\n" % (method, path, version, host, headers)).encode("latin-1")


def exchange(address: tuple, request: bytes, head_request: bool = False) -> Reply:
    """One request on a fresh connection, its reply."""
    with Wire(address) as wire:
        wire.send(request)
        return wire.read_reply(head_request)
