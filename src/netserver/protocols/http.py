"""HTTP/1.1 messages, sans I/O: bytes in, requests out; a response's head out.

Parsing is httptools (llhttp, the parser Node.js ships), which already
refuses most request-smuggling tricks: Content-Length together with
Transfer-Encoding, duplicate Content-Length, bad chunk sizes and extensions,
obsolete line folding, invalid header names and values, NUL and bare CR or
LF.  On top of it :class:`RequestStream` adds what the parser leaves to the
server: the HTTP version (1.0 and 1.1 only), one valid ``Host`` (required on
HTTP/1.1), transfer codings other than chunked (501), chunked framing on
HTTP/1.0, the four request-target forms, and the limits (request
line, header count and size, body).  Every refusal is an :class:`HTTPError`
with the status to answer; after one, the connection's framing is lost and
nothing more is parsed.

Nothing here reads a socket, so the blocking loop of one connection per
child (``wsgi.py``) and a child multiplexing many connections drive the same
code: ``feed()`` what arrived, serve ``requests[0]`` once its head is in,
and read its body as it arrives.  The requests of a pipelining client queue
in arrival order, so their responses go out in that order.
"""

from __future__ import annotations

import re
import time
from collections import deque
from email.utils import formatdate

try:
    import httptools
except ImportError:  # pragma: no cover - exercised by the CLI test without the extra
    raise ImportError("HTTP needs httptools: pip install 'netserver[http]'") from None

from ..records import Record


class HTTPError(Exception):
    """A request refused before the application saw it: answer ``status``, then close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Limits(Record):
    """What one request may cost; each excess has its own status."""

    request_line: int = 8190       # 414 URI Too Long
    header_count: int = 100        # 431
    header_bytes: int = 65536      # 431: every header line together
    body: int = 1 << 30            # 413


#: The versions served; llhttp also parses 0.9 and 2.0 heads, which get 505.
_VERSIONS = {"1.1", "1.0"}
#: The lengths of the header names the server reads itself: host, expect, content-length, transfer-encoding.
_FRAMING_LENGTHS = frozenset((4, 6, 14, 17))
#: Method names as sent -> as text: the common ones are not decoded per request.
_METHOD_NAMES = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
#: Host values already found valid: a client sends the same one with every request.  Bounded, as the
#: values are the clients'.
_GOOD_HOSTS: set[bytes] = set()
_GOOD_HOSTS_LIMIT = 256


class _Trailers:
    """Where the fields after a head go (a chunked body's trailers): counted against the limit, dropped."""

    __slots__ = ("limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0

    def append(self, field: tuple[bytes, bytes]) -> None:
        self.size += len(field[0]) + len(field[1])
        if self.size > self.limit:
            raise HTTPError(431, "trailers longer than %d bytes" % self.limit)

    def __len__(self) -> int:
        return 0  # none kept: the field count is a head's limit, not the trailers'


class Request:
    """One request: its head, and its body as it arrives.

    ``headers`` is the list of (name, value) byte pairs in arrival order, name
    as sent.  ``body`` holds received body bytes not yet read by the
    application; ``complete`` is True once the whole message is in.
    """

    __slots__ = ("method", "target", "version", "keep_alive", "content_length", "chunked", "expect_continue",
                 "complete", "received", "error", "headers", "body")

    def __init__(self) -> None:
        # method, target, version and keep_alive are set when the head is complete (before anyone
        # sees the request), or by the refusal that makes a placeholder.
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.complete = False
        self.received = 0          # body bytes received so far
        self.error: HTTPError | None = None  # set on a placeholder for a refused request
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def header(self, name: bytes) -> bytes | None:
        """The last value of a header (name lower case), or None."""
        found = None
        for key, value in self.headers:
            if key.lower() == name:
                found = value
        return found

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.version}>"


class RequestStream:
    """Feed it the bytes of one connection; it queues the requests they hold.

    ``requests`` holds heads that are complete, in arrival order; the first
    is the one being served, and the last may still be receiving its body.
    A refused request is queued as a placeholder whose ``error`` is set, so
    that the requests before it are answered first and in order.
    ``in_head`` is True while a head has begun but is not complete, which is
    what a head timeout measures.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits = limits or Limits()
        self.requests: deque[Request] = deque()
        self.broken = False
        self.in_head = False
        self.head_started = 0.0
        self._parser = httptools.HttpRequestParser(self)
        self._current: Request | None = None
        self._receiving: Request | None = None   # whose body the next on_body belongs to
        self._url = b""
        self._trailers = _Trailers(limits.header_bytes)
        self._max_fields = limits.header_count  # read per field: an attribute, not the NamedTuple's
        self._headers: list[tuple[bytes, bytes]] | _Trailers = self._trailers  # where on_header puts fields
        self._feeding = 0            # the length of the data being parsed now
        self._fed_in_head = 0
        self._fed_without_data = 0   # chunk framing and trailer bytes since the last body data
        self._closes = False         # the last complete request ends the connection

    # ------------------------------------------------------------------ feeding
    def feed(self, data: bytes, now: float | None = None) -> None:
        """Parse what arrived (at ``now``, the monotonic clock, if the caller has read it); a
        refusal queues its placeholder and stops parsing."""
        if self.broken:
            return
        began_in_head = self.in_head
        receiving = self._receiving
        if not began_in_head and receiving is None:
            # Between messages, whatever arrives begins a head (or is the blank line before one):
            # its time runs from here.  Marked here rather than in a callback per message: a head
            # that begins later in these bytes, after a request they complete, is marked by the
            # next feed, which its remaining bytes need.
            self.in_head = True
            self.head_started = time.monotonic() if now is None else now
        received = receiving.received if receiving is not None else 0
        self._feeding = len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgraded()
            return
        except httptools.HttpParserCallbackError as error:
            refusal = error.__context__  # what one of our callbacks raised
            if not isinstance(refusal, HTTPError):
                raise
            self._fail(refusal)
            return
        except httptools.HttpParserInvalidMethodError:
            self._fail(HTTPError(400, "invalid request method"))
            return
        except httptools.HttpParserInvalidURLError:
            self._fail(HTTPError(400, "invalid request target"))
            return
        except httptools.HttpParserError as error:
            self._fail(parse_error(error, self._parser))
            return
        if self.in_head:
            # httptools buffers a header line until it ends, so a head that never ends is
            # bounded here: everything fed since it began counts (an over-count by at most
            # what preceded it in the feed where it began).
            self._fed_in_head = self._fed_in_head + len(data) if began_in_head else len(data)
            limit = self.limits.request_line + self.limits.header_bytes
            if self._fed_in_head > limit:
                self._fail(HTTPError(431, "request head longer than %d bytes" % limit))
        elif receiving is not None and receiving is self._receiving and receiving.chunked:
            # httptools buffers a trailer line until it ends, as it does a header line: bound the
            # bytes of chunk framing and trailers that bring no body data.
            self._fed_without_data = 0 if receiving.received != received else self._fed_without_data + len(data)
            if self._fed_without_data > self.limits.header_bytes:
                self._fail(HTTPError(431, "chunk framing or trailers longer than %d bytes" %
                                     self.limits.header_bytes))

    def _fail(self, error: HTTPError) -> None:
        self.broken = True
        self.in_head = False
        if self._closes and self._receiving is None:
            # RFC 9112 9.6: nothing after a request that closes the connection is processed, so
            # llhttp's "data after Connection: close" is no refusal to answer: the bytes are ignored.
            return
        placeholder = Request()
        placeholder.method, placeholder.target, placeholder.version = self.request_line()
        placeholder.error = error
        placeholder.keep_alive = False
        placeholder.complete = True
        if self._receiving is not None and not self._receiving.complete:
            # The body being received cannot be framed any more: its request ends with it.
            self._receiving.keep_alive = False
            self._receiving.error = error
            self._receiving = None
            return
        self.requests.append(placeholder)

    def request_line(self) -> tuple[str, bytes, str]:
        """What is known of the request being read (a refused one, for the access log): ("", b"", "1.1") if nothing."""
        current = self._current
        if current is None:
            return "", b"", "1.1"
        if hasattr(current, "method"):  # its head was complete
            return current.method, current.target, current.version
        try:  # llhttp has parsed the request line if a field or the target has arrived
            method = self._parser.get_method().decode("latin-1") if self._url else ""
            version = self._parser.get_http_version() if self._url else "1.1"
        except Exception:  # pragma: no cover - llhttp refuses to say
            return "", b"", "1.1"
        return method, self._url if method else b"", version if version in _VERSIONS else "1.1"

    def _upgraded(self) -> None:
        # llhttp stops at an Upgrade or CONNECT head and will parse nothing after it.  We
        # serve that request as an ordinary one (WSGI has no way to take the socket over),
        # with no body, and close the connection after it.
        self.broken = True
        self.in_head = False
        request = self.requests[-1] if self.requests else None
        if request is None:
            return
        request.keep_alive = False
        request.complete = True
        if request.content_length or request.chunked:
            request.error = HTTPError(400, "a body on an Upgrade request is not supported")

    # ------------------------------------------------------------------ httptools callbacks
    # No on_message_begin: a message's first callback is on_url (a request line has a target),
    # which begins the Request; one callback a request fewer.
    def on_url(self, url: bytes) -> None:
        if self._current is None:
            self._current = request = Request()
            self._headers = request.headers  # filled in place: the request's own list
            self._trailers.size = 0
            self._url = url
            self.in_head = True  # marked by feed() already, unless the head began after a request
        else:
            self._url += url  # a target split across reads arrives in several pieces
        if len(self._url) > self.limits.request_line:
            raise HTTPError(414, "request target longer than %d bytes" % self.limits.request_line)

    def on_header(self, name: bytes, value: bytes) -> None:
        # The count is checked as fields arrive (each costs far more held than sent), their size
        # once the head is complete (feed() bounds what a head can cost until then); trailers
        # are counted by the _Trailers they go to.
        headers = self._headers
        headers.append((name, value))
        if len(headers) > self._max_fields:
            raise HTTPError(431, "more than %d header fields" % self._max_fields)

    def on_headers_complete(self) -> None:
        request: Request = self._current  # type: ignore[assignment]
        headers = request.headers
        self._headers = self._trailers  # any field from now on is a trailer
        self.in_head = False
        limits = self.limits
        # A field counts its name, its value without trailing OWS, and 4; on the wire it takes at
        # least 3 more than its name and value, so only a head fed in more bytes than the limit
        # less one per field can be over it: the sum is rarely needed.
        if self._fed_in_head + self._feeding + len(headers) > limits.header_bytes and \
                sum(len(name) + len(value.rstrip(b" \t")) + 4 for name, value in headers) > limits.header_bytes:
            raise HTTPError(431, "header fields longer than %d bytes" % limits.header_bytes)
        parser = self._parser
        method = parser.get_method()
        try:
            request.method = method = _METHOD_NAMES[method]
        except KeyError:
            request.method = method = method.decode("ascii")
        request.version = version = parser.get_http_version()
        request.target = target = self._url
        request.keep_alive = parser.should_keep_alive()
        if version not in _VERSIONS:
            raise HTTPError(505, "HTTP/%s is not supported" % version)
        hosts = 0
        codings: list[bytes] | None = None
        padded = False
        for name, value in headers:
            if value[-1:] <= b" ":  # ends in a space or tab (llhttp keeps them), or is empty
                value = value.rstrip(b" \t")
                padded = True
            if len(name) not in _FRAMING_LENGTHS:
                continue  # not host, expect, content-length or transfer-encoding: no lower() needed
            lower = name.lower()
            if lower == b"host":
                hosts += 1
                if value not in _GOOD_HOSTS:
                    if not _HOST.match(value):
                        raise HTTPError(400, "invalid Host header %r" % value.decode("latin-1"))
                    if len(_GOOD_HOSTS) < _GOOD_HOSTS_LIMIT:
                        _GOOD_HOSTS.add(value)
            elif lower == b"content-length":
                request.content_length = int(value)  # llhttp has checked the digits and duplicates
            elif lower == b"transfer-encoding":
                request.chunked = True  # llhttp refuses chunked twice; the codings are checked below
                codings = (codings or []) + [coding.strip().lower() for coding in value.split(b",") if coding.strip()]
            elif lower == b"expect" and value.strip().lower() == b"100-continue" and version == "1.1":
                request.expect_continue = True
        if padded:
            # RFC 9112 5: optional whitespace around a field value is not part of it.
            request.headers = [(name, value.rstrip(b" \t")) for name, value in headers]
        if hosts != 1 or codings is not None:
            self._check_framing(request, hosts, codings)
        if target[:1] != b"/" or method == "CONNECT":
            check_target(method, target)  # origin-form needs no more checking, unless for CONNECT
        if request.content_length is not None and request.content_length > limits.body:
            raise HTTPError(413, "request body of %d bytes is over the limit of %d" %
                            (request.content_length, limits.body))
        self.requests.append(request)
        self._receiving = request

    @staticmethod
    def _check_framing(request: Request, hosts: int, codings: list[bytes] | None) -> None:
        """What a request that is not one plain Host and no Transfer-Encoding must also pass."""
        version = request.version
        if hosts > 1 or (version == "1.1" and not hosts):
            # RFC 9112 3.2: required on HTTP/1.1, and never more than one, whatever the version.
            raise HTTPError(400, "a request needs exactly one Host header on HTTP/1.1, at most one on "
                            "HTTP/1.0 (has %d)" % hosts)
        if codings and codings != [b"chunked"]:
            listed = b", ".join(codings).decode("latin-1")
            if codings[-1] != b"chunked":
                # RFC 9112 6.3: the body's length cannot be determined; 400 and close.
                raise HTTPError(400, "Transfer-Encoding %s does not end with chunked" % listed)
            # RFC 9112 6.1: a coding the server does not implement (it decodes chunked only).
            raise HTTPError(501, "Transfer-Encoding %s: only chunked is implemented" % listed)
        if request.chunked and version == "1.0":
            # RFC 9112 6.1: chunked framing on HTTP/1.0 is faulty framing.
            raise HTTPError(400, "Transfer-Encoding on an HTTP/1.0 request")

    def on_body(self, body: bytes) -> None:
        request = self._receiving
        if request is None:
            return
        request.received += len(body)
        if request.received > self.limits.body:
            raise HTTPError(413, "request body over the limit of %d bytes" % self.limits.body)
        request.body += body

    def on_message_complete(self) -> None:
        request = self._receiving
        if request is not None:
            request.complete = True
            self._closes = not request.keep_alive
        self._receiving = self._current = None


#: RFC 9110 7.2 and RFC 3986 3.2: uri-host [ ":" port ], where uri-host is an IP-literal in
#: brackets or a reg-name (which covers IPv4); no userinfo, no path.
_HOST_PART = rb"(?:\[[0-9A-Za-z:._~!$&'()*+,;=-]+\]|[0-9A-Za-z._~%!$&'()*+,;=-]*)"
_HOST = re.compile(_HOST_PART + rb"(?::[0-9]*)?\Z")
_AUTHORITY = re.compile(_HOST_PART + rb":[0-9]+\Z")


def parse_error(error: Exception, parser: httptools.HttpRequestParser) -> HTTPError:
    """The refusal for what llhttp refused: 505 for a version it knows the shape of but we don't serve."""
    reason = str(error) or "malformed request"
    if reason == "Invalid HTTP version":
        # llhttp's message for a well-formed HTTP-version other than 0.9, 1.0, 1.1 and 2.0
        # (HTTP/1.2, HTTP/3.0); a malformed one ("HTTP/1.x") has its own message and stays 400.
        return HTTPError(505, "the HTTP version is not supported")
    if parser.get_method() == b"PRI":
        return HTTPError(505, "HTTP/2 with prior knowledge is not supported")  # the RFC 9113 3.4 preface
    return HTTPError(400, reason)


#: The most unread request body the server reads away after a response to keep the connection.
SKIP_BODY_LIMIT = 65536


def body_skippable(request: Request, limit: int = SKIP_BODY_LIMIT) -> bool:
    """True if what the application left unread of the body may be read away after the response.

    Not when the client waits for ``100 Continue`` (a final response rules it out, so the
    client may never send the body), nor for a chunked rest or one over ``limit`` bytes.
    """
    if request.complete:
        return True
    if request.expect_continue or request.content_length is None:
        return False
    return request.content_length - request.received <= limit


def check_target(method: str, target: bytes) -> None:
    """RFC 9112 3.2: origin-form, absolute-form, authority-form (CONNECT), asterisk-form (OPTIONS)."""
    if method == "CONNECT":
        if not _AUTHORITY.match(target) or target.startswith(b":"):
            raise HTTPError(400, "CONNECT needs an authority-form target (host:port)")
        return
    if target.startswith(b"/"):
        return
    if target == b"*":
        if method != "OPTIONS":
            raise HTTPError(400, "the asterisk-form target is for OPTIONS only")
        return
    lower = target[:8].lower()
    scheme = 7 if lower.startswith(b"http://") else 8 if lower.startswith(b"https://") else 0
    if scheme:
        authority = re.split(rb"[/?#]", target[scheme:], maxsplit=1)[0]
        # RFC 9110 4.2.1 and 4.2.4: an http(s) URI has a host and no userinfo.
        if not authority or authority.startswith(b":") or not _HOST.match(authority):
            raise HTTPError(400, "the absolute-form target has no valid host (or has userinfo)")
        return
    raise HTTPError(400, "request target is not origin-, absolute-, authority- or asterisk-form")


# ---------------------------------------------------------------------- responses
REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    206: "Partial Content", 301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    411: "Length Required", 413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


def no_body_status(status: int) -> bool:
    """RFC 9110 6.4.1: 1xx, 204 and 304 responses never have a body."""
    return status < 200 or status in (204, 304)


class DateHeader:
    """``Date: ...\\r\\n``, formatted once a second rather than once a response; ``head_lines()``
    adds the lines that follow it in every response (the Server line)."""

    def __init__(self, after: bytes = b"") -> None:
        self._second = -1
        self._line = b""
        self._after = after
        self._lines = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
            self._lines = self._line + self._after
        return self._line

    def head_lines(self) -> bytes:
        """The Date line and what follows it."""
        if int(time.time()) != self._second:
            self.line()
        return self._lines


#: The headers of the server's own refusals and 500s, as the access log reads them (%{Content-Type}o).
ERROR_HEADERS = [("Content-Type", "text/plain; charset=utf-8")]


def error_body(status: int) -> bytes:
    """The one-line text body of the server's own refusal with ``status``."""
    return ("%d %s\n" % (status, REASONS.get(status, "Error"))).encode("ascii")


def error_response(error: HTTPError, server_line: bytes, date: DateHeader) -> bytes:
    """A complete refusal: status, a one-line text body, ``Connection: close``."""
    reason = REASONS.get(error.status, "Error")
    body = error_body(error.status)
    return b"".join((
        b"HTTP/1.1 %d %s\r\n" % (error.status, reason.encode("ascii")),
        date.line(), server_line,
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body),
        body,
    ))


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked response body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
