"""One WSGI response: start_response, write(), the body's framing, the wire.

The application's status and headers are checked before anything is sent
(a bad one is the application's error: a 500 and a logged traceback, never a
malformed response).  The framing is chosen once, when the head goes out:
the application's Content-Length, else one computed from a body of one
piece, else chunked (HTTP/1.1) or close-delimited (HTTP/1.0).  A body
longer than its Content-Length is cut there and the connection closed; a
shorter one closes the connection too, so the client can tell.
"""

from __future__ import annotations

import os
import re
import socket
import stat

from . import http
from .wsgi_io import FileWrapper

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS = re.compile(r"[1-9][0-9][0-9]( [^\x00-\x08\x0a-\x1f\x7f]*)?\Z")
#: Hop-by-hop fields are the server's (PEP 3333); Connection: close is honoured, the rest refused.
_HOP_BY_HOP = {"keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
               "transfer-encoding", "upgrade"}


class AppError(Exception):
    """The application broke the WSGI contract (bad status, header, start_response misuse)."""


# Header kinds the server acts on, as bits; PLAIN is 0 so that the common case tests false.
PLAIN, LENGTH, CLOSE, DATE, SERVER = 0, 1, 2, 4, 8
#: (name, value) -> (the encoded line, its kind, a Content-Length's value).  An application sends
#: the same few headers again and again: each is checked and encoded once.  Bounded, since values
#: that change per response (lengths, ETags, cookies) would otherwise grow it without end.
_LINES: dict[tuple[str, str], tuple[bytes, int, int]] = {}
_STATUS_LINES: dict[str, tuple[bytes, int]] = {}  # status -> (its encoded line, its code)
_CACHE_LIMIT = 2048


def _status_line(status: Any) -> tuple[bytes, int]:
    if type(status) is not str or not _STATUS.match(status):
        raise AppError("invalid status %r from the application" % (status,)) from None
    try:
        line = b"HTTP/1.1 " + status.encode("latin-1") + b"\r\n"
    except UnicodeEncodeError:
        raise AppError("the status must be latin-1 (PEP 3333): %r" % status) from None
    found = line, int(status[:3])
    if len(_STATUS_LINES) < _CACHE_LIMIT:
        _STATUS_LINES[status] = found
    return found


def _header_line(item: Any) -> tuple[bytes, int, int]:
    """Check one (name, value) from the application and encode it."""
    if type(item) is not tuple or len(item) != 2:
        raise AppError("response header %r is not a (name, value) tuple" % (item,)) from None
    name, value = item
    if type(name) is not str or not _TOKEN.match(name):
        raise AppError("invalid response header name %r" % (name,)) from None
    if type(value) is not str or _BAD_VALUE.search(value):
        raise AppError("invalid value for response header %s: %r" % (name, value)) from None
    lower = name.lower()
    kind, number = PLAIN, 0
    if lower == "content-length":
        if not value.strip().isdigit():
            raise AppError("invalid Content-Length %r from the application" % value) from None
        kind, number = LENGTH, int(value)
    elif lower == "connection":
        # The server writes its own Connection field; the application's close is honoured, and a
        # keep-alive from it is the server's decision anyway.
        entry = (b"", CLOSE if "close" in value.lower() else PLAIN, 0)
        if len(_LINES) < _CACHE_LIMIT:
            _LINES[item] = entry
        return entry
    elif lower in _HOP_BY_HOP:
        raise AppError("the hop-by-hop header %s is the server's to send" % name) from None
    elif lower == "date":
        kind = DATE
    elif lower == "server":
        kind = SERVER
    try:
        line = b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
    except UnicodeEncodeError:
        raise AppError("header values must be latin-1 (PEP 3333): %s: %r" % (name, value)) from None
    entry = (line, kind, number)
    if len(_LINES) < _CACHE_LIMIT:
        _LINES[item] = entry
    return entry


class Sender:
    """What a response writes through: one connection's socket, or (``sock`` None) a writer such as
    the output pipe of an INET connection, which gets no sendfile."""

    def __init__(self, sock: socket.socket | None, write: Any = None) -> None:
        self.sock = sock
        self._sendall = sock.sendall if sock is not None else write
        self.sent = 0

    def send(self, data: bytes) -> None:
        try:
            self._sendall(data)
        except BlockingIOError:
            raise TimeoutError("timed out writing to the client") from None
        self.sent += len(data)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of a file from ``offset``; returns the bytes sent."""
        if type(self.sock) is not socket.socket:
            return -1  # a wrapped socket (TLS) cannot: the caller copies instead
        out = self.sock.fileno()
        done = 0
        while done < count:
            try:
                sent = os.sendfile(out, fd, offset + done, count - done)
            except BlockingIOError:
                raise TimeoutError("timed out writing to the client") from None
            if not sent:
                break  # the file is shorter than it said
            done += sent
        self.sent += done
        return done


class Response:
    """The response to one request; ``start_response`` and ``write`` are the application's."""

    __slots__ = ("request", "sender", "head_line", "status", "code", "headers", "length", "chunked",
                 "head_sent", "body_sent", "keep_alive", "head_only", "started", "_extra", "_lines", "_app_length",
                 "skip_limit", "stopping")

    def __init__(self, request: http.Request, sender: Sender, head_line: bytes, keep_alive: bool,
                 skip_limit: int = http.SKIP_BODY_LIMIT) -> None:
        self.request = request
        self.sender = sender
        self.head_line = head_line          # Date and Server lines, made by the protocol
        self.status = ""
        self.code = 0
        self.headers: Sequence[tuple[str, str]] = ()  # the application's list, once start_response has it
        self.length: int | None = None      # the body's length, when known
        self.chunked = False
        self.head_sent = False
        self.body_sent = 0
        self.keep_alive = keep_alive
        self.head_only = request.method == "HEAD"
        self.started = False
        self._extra = b""                   # the protocol's Date and Server lines, less those the app sent
        self._app_length = False            # the length is the application's Content-Length
        self.skip_limit = skip_limit        # the most unread body the channel reads away after us
        self.stopping: Any = None           # a streamed body: callable, True once the server stops

    # ------------------------------------------------------------------ the application's side
    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None):
        if exc_info is not None or self.started:
            self._restart(exc_info)
        try:
            status_line, code = _STATUS_LINES[status]
        except (KeyError, TypeError):
            status_line, code = _status_line(status)
        if type(headers) is not list:
            raise AppError("response headers must be a list, not %s" % type(headers).__name__)
        lines = [status_line]
        length = None
        kinds = 0
        for item in headers:
            try:
                line, kind, value = _LINES[item]
            except (KeyError, TypeError):
                line, kind, value = _header_line(item)
            lines.append(line)  # b"" for a Connection field: the server writes its own
            if kind:
                if kind == LENGTH:
                    length = value
                else:
                    kinds |= kind
        self.status, self.code, self.headers, self._lines = status, code, headers, lines
        if length is not None:
            self.length, self._app_length = length, True
        if kinds:
            if kinds & CLOSE:
                self.keep_alive = False
            if kinds & (DATE | SERVER):
                self._extra = self._own_lines(bool(kinds & DATE), bool(kinds & SERVER))
        self.started = True
        return self.write

    def _restart(self, exc_info: Any) -> None:
        """start_response again: allowed with exc_info before the head went out (PEP 3333)."""
        if exc_info is None:
            raise AppError("start_response called a second time without exc_info")
        try:
            if self.head_sent:
                raise exc_info[1].with_traceback(exc_info[2])
        finally:
            exc_info = None  # no reference cycle through the traceback (PEP 3333)
        self.length, self._app_length, self._extra = None, False, b""

    def _own_lines(self, has_date: bool, has_server: bool) -> bytes:
        # The application sent Date or Server itself: keep only the protocol's other line.
        return b"".join(line + b"\r\n" for line in self.head_line.split(b"\r\n") if line
                        and not (has_date and line.startswith(b"Date:"))
                        and not (has_server and line.startswith(b"Server:")))

    def write(self, data: bytes) -> None:
        """The write() callable (and the path every body chunk takes)."""
        if not self.started:
            raise AppError("write() called before start_response")
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise AppError("the response body must be bytes, not %s" % type(data).__name__)
            data = bytes(data)
        if not self.head_sent:
            self.send_head(data, more=True)
            return
        self._send_body(data)

    # ------------------------------------------------------------------ the server's side
    def send_head(self, body: bytes = b"", more: bool = False) -> None:
        """Decide the framing, then send the head with ``body`` after it in one write."""
        request = self.request
        no_body = http.no_body_status(self.code)
        if self.stopping is not None and self.stopping():
            self.keep_alive = False  # a stop or HUP came while the body was being made
        if self.length is None and not no_body:
            if not more:
                self.length = len(body)
            elif request.version == "1.1":
                self.chunked = not self.head_only
            else:
                self.keep_alive = False  # HTTP/1.0 with no length: the body ends at the close
        if self.keep_alive and not http.body_skippable(request, self.skip_limit):
            # The body the application left unread will not be read away: the connection ends
            # after this response, and RFC 9110 15.5 asks the server to say so in it.
            self.keep_alive = False
        lines = self._lines
        if self.length is not None and not no_body and not self._app_length:
            lines.append(b"Content-Length: %d\r\n" % self.length)
        if self.chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines.append(self._extra or self.head_line)
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self.head_sent = True
        if body and not no_body and not self.head_only:
            body = self._frame(body)
            lines.append(body)
        self.sender.send(b"".join(lines))

    def _frame(self, data: bytes) -> bytes:
        length = self.length
        if length is not None:
            left = length - self.body_sent
            if len(data) > left:
                data = data[:left]  # never more than the application announced
                self.keep_alive = False
            self.body_sent += len(data)
            return data
        self.body_sent += len(data)
        return http.chunk(data) if self.chunked else data

    def _send_body(self, data: bytes) -> None:
        if not data or self.head_only or http.no_body_status(self.code):
            return
        framed = self._frame(data)
        if framed:
            self.sender.send(framed)

    def send_whole(self, result: list[Any]) -> bool:
        """A body of one piece (a list of one item): head and body in one write; True to keep the
        connection.  The common response takes this path with the fewest checks its case needs;
        anything less plain goes the general way."""
        body = result[0]
        request = self.request
        if type(body) is not bytes or not self.started or self.head_sent or self.head_only or \
                self._extra or not request.complete or not 200 <= self.code < 300 or self.code == 204:
            self.send_body(result)
            return self.finish()
        lines = self._lines
        length = self.length
        if length is None:
            self.length = length = len(body)
            lines.append(b"Content-Length: %d\r\n" % length)
        elif len(body) != length:
            self.send_body(result)  # shorter or longer than announced: framed and cut the general way
            return self.finish()
        if self.keep_alive and request.version == "1.1":
            lines += (self.head_line, b"\r\n", body)  # the usual case: one step, not three
        else:
            lines += (self.head_line, b"Connection: close\r\n" if not self.keep_alive else
                      b"Connection: keep-alive\r\n", b"\r\n", body)
        self.head_sent = True
        self.body_sent = length
        self.sender.send(b"".join(lines))
        return self.keep_alive

    def send_body(self, result: Any) -> None:
        """Send what the application returned, by the cheapest path that fits."""
        if type(result) is list and len(result) == 1 and not self.head_sent:
            body = result[0]
            if type(body) is not bytes:
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise AppError("the response body must be bytes, not %s" % type(body).__name__)
                body = bytes(body)
            if not self.started:
                raise AppError("the application returned without calling start_response")
            self.send_head(body)
            return
        if isinstance(result, FileWrapper) and self._send_file(result):
            return
        for data in result:
            if data:
                self.write(data)
        if not self.started:
            raise AppError("the application returned without calling start_response")
        if not self.head_sent:
            self.send_head()

    def adopt_file_length(self, wrapper: FileWrapper) -> None:
        """A file_wrapper body with no Content-Length from the application: frame it by the file's size.

        For a sender that copies the file in blocks (no sendfile), so that the client still gets
        a Content-Length rather than chunks.  Only a regular file has a size to trust.
        """
        if self.length is not None or not self.started or self.head_sent or self.head_only:
            return
        fileno = getattr(wrapper.filelike, "fileno", None)
        if fileno is None:
            return
        try:
            fd = fileno()
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode):
                self.length = max(0, info.st_size - os.lseek(fd, 0, os.SEEK_CUR))
        except (OSError, ValueError, TypeError):
            pass

    def _send_file(self, wrapper: FileWrapper) -> bool:
        """sendfile(2) for a regular file on a plain socket; False: iterate it instead."""
        fileno = getattr(wrapper.filelike, "fileno", None)
        if fileno is None or self.head_only or not self.started:
            return False
        try:
            fd = fileno()
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            size = os.fstat(fd).st_size - offset
        except (OSError, ValueError, TypeError):
            return False
        if size < 0 or type(self.sender.sock) is not socket.socket:
            return False
        if self.length is None:
            self.length = size
        count = min(size, self.length - self.body_sent)
        if not self.head_sent:
            self.send_head(more=True)
        sent = self.sender.sendfile(fd, offset, count)
        if sent < 0:
            return False
        self.body_sent += sent
        if sent < count:
            self.keep_alive = False  # the file shrank: the client sees a short body and a close
        return True

    def finish(self) -> bool:
        """End the body; True if the connection may carry another request."""
        if self.chunked:
            self.sender.send(http.LAST_CHUNK)
        elif self.length is not None and self.body_sent < self.length and not self.head_only \
                and not http.no_body_status(self.code):
            self.keep_alive = False  # shorter than announced: only a close tells the client
        return self.keep_alive
