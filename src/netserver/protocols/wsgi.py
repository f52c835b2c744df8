"""HTTP/1.1 and WSGI (PEP 3333) as a protocol mixin: ``class App(WSGIProtocol, PreFork)``.

The protocol supplies ``process_request``: it serves the requests of one
connection in order (keep-alive and pipelining), each through the WSGI
application named by the ``app`` option, until the client or the server
ends the connection.  Every personality runs it unchanged; the netserver
command builds the pair for ``--app MODULE:ATTR``.

How a connection ends:

* the client asks (``Connection: close``, HTTP/1.0 without keep-alive), or
  goes quiet for ``keepalive_timeout`` between requests;
* the server drains (HUP, a graceful stop, ``max_requests``, which counts
  requests here): the request in flight is answered with
  ``Connection: close``.  An idle keep-alive connection is not cut at once,
  since its client may have its next request on the wire: that request is
  answered (with ``Connection: close``), or the connection closes when
  ``keepalive_timeout`` passes;
* a request refused before the application saw it (400, 408, 413, 414, 431,
  505) is answered and the connection closed.

Timeouts are the kernel's: the socket's SO_RCVTIMEO is set to what the next
wait may take (the keep-alive wait, what is left of ``timeout_header`` while
a head arrives, ``timeout`` while the application reads the body), and only
changed when the wait changes, so a keep-alive request costs no extra
system call.
"""

from __future__ import annotations

import socket
import struct
import time
from urllib.parse import unquote_to_bytes

from .. import __version__
from ..connection import timeval
from ..errors import ConfigError
from ..loading import load_object, split_spec
from ..options import Option, cidr_blocks, integer, optional, seconds, text
from ..supervisor import Supervisor
from . import http
from .access_log import AccessLog
from .forwarded import TrustedProxies
from .response import AppError, Response, Sender
from .wsgi_io import NO_BODY, Errors, FileWrapper, Input

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def wsgi_app(value: Any) -> Any:
    """MODULE:ATTR text, or (as a keyword) the WSGI callable itself."""
    if callable(value):
        return value
    spec = text(value)
    try:
        split_spec(spec)
    except ValueError as error:
        raise ValueError(f"{error} (for example myproject.wsgi:application)") from None
    return spec


HTTP_OPTIONS: tuple[Option, ...] = (
    Option("app", optional(wsgi_app), None,
           "The WSGI application: MODULE:ATTR (myproject.wsgi:application), imported in the parent before "
           "the children fork; in Python also the callable itself. Required.", metavar="MODULE:ATTR"),
    Option("script_name", text, "",
           "The URL prefix the application is mounted at: SCRIPT_NAME, and removed from PATH_INFO where a "
           "path starts with it. Default: none.", metavar="PREFIX"),
    Option("keepalive_timeout", seconds(allow_zero=True), 5.0,
           "Seconds an idle keep-alive connection waits for its next request; 0 closes each connection "
           "after one response. Default 5.", metavar="SECONDS"),
    Option("timeout_header", seconds(), 15.0,
           "Seconds a client gets to send a whole request head once it has begun (then 408). Default 15 "
           "(Net::Server::HTTP's).", metavar="SECONDS"),
    Option("max_request_line", integer(16), 8190,
           "Longest request target in bytes (then 414). Default 8190.", metavar="BYTES"),
    Option("max_header_count", integer(1), 100,
           "Most header fields in a request (then 431). Default 100.", metavar="N"),
    Option("max_header_size", integer(256), 65536,
           "Most bytes of header fields in a request (then 431). Default 65536.", metavar="BYTES"),
    Option("max_body_size", integer(0), 1 << 30,
           "Largest request body in bytes (then 413). Default 1073741824 (1 GiB).", metavar="BYTES"),
    Option("max_connections", integer(1), 1000,
           "Pre-forking personalities: connections one child holds at once, served one request at a "
           "time as their requests arrive (at most the open-file limit less 32); 1 serves one connection "
           "at a time, blocking on it. Default 1000.", metavar="N"),
    Option("buffer_body", integer(0), 65536,
           "A request body up to this many bytes is received before the application runs (so a slow "
           "upload costs no child time); a larger one streams through wsgi.input under timeout. Default "
           "65536.", metavar="BYTES"),
    Option("server_revision", text, "netserver/" + __version__,
           "The Server header (Net::Server::HTTP's name); empty sends none. Default netserver/VERSION.",
           metavar="TEXT"),
    Option("forwarded_allow", cidr_blocks, (),
           "Proxies whose X-Forwarded-For, X-Forwarded-Proto and Forwarded headers are believed: "
           "REMOTE_ADDR, wsgi.url_scheme and the access log then show the client. Repeatable. Default: "
           "none.", multi=True, metavar="CIDR"),
    Option("access_log_file", optional(text), None,
           "Write an access log line per request to this file, STDOUT, STDERR, or 'log' (the server's log "
           "at level 2). Default: none.", metavar="PATH"),
    Option("access_log_format", text, "combined",
           "common, combined, or an Apache format string (%h %l %u %t %r %>s %b %D %T %{Header}i ...). "
           "Default combined.", metavar="FORMAT"),
)

FOREVER = struct.pack("@ll", 0, 0)  # SO_RCVTIMEO of zero: wait as long as it takes (timeout 0)
#: Header name (as sent) -> environ key; None for names with "_" (spoofable through CGI's mapping).
_ENVIRON_KEYS: dict[bytes, str | None] = {}


def environ_key(name: bytes) -> str | None:
    key = _ENVIRON_KEYS.get(name)
    if key is None and name not in _ENVIRON_KEYS:
        text_name = name.decode("latin-1").upper()
        if "_" in text_name:
            key = None  # X_Forwarded_For would become HTTP_X_FORWARDED_FOR like X-Forwarded-For
        elif text_name in ("CONTENT-TYPE", "CONTENT-LENGTH"):
            key = text_name.replace("-", "_")
        else:
            key = "HTTP_" + text_name.replace("-", "_")
        if len(_ENVIRON_KEYS) < 4096:  # header names are the client's: bound the cache
            _ENVIRON_KEYS[name] = key
    return key


class WSGIProtocol:
    """HTTP/1.1 + WSGI as ``process_request``, for any personality.

    Caller API: ``class App(WSGIProtocol, PreForkSimple)`` then
    ``App(app=application).run()``; or ``netserver --app MODULE:ATTR``.

    Overridable (child unless said): ``wsgi_environ(environ, client)``
    to add keys, and the usual Net::Server hooks, which see the connection
    (``post_accept_hook``, ``allow_deny_hook``...).  ``application`` holds
    the loaded callable (parent, then inherited by every child).
    """

    declared_options = HTTP_OPTIONS
    application: Any = None
    request_limit = 0
    wsgi_environ_hook: Any = None  # wsgi_environ where it is overridden, else None (post_configure)

    def default_values(self) -> dict[str, Any]:
        return {"port": "8000", **super().default_values()}  # type: ignore[misc]

    def post_configure(self) -> None:
        super().post_configure()  # type: ignore[misc]
        options, origins = self.options, self.option_origins  # type: ignore[attr-defined]
        app = options.app
        if app is None:
            if self.application is None:
                raise ConfigError("app", None, "default", "is required: name the WSGI application, "
                                  "e.g. --app myproject.wsgi:application")
        elif callable(app):
            self.application = app
        else:
            target = load_object(app, "app", origins["app"])
            if not callable(target):
                raise ConfigError("app", app, origins["app"], "is not callable (a WSGI application is a "
                                  "callable taking environ and start_response)")
            self.application = target
        self.http_limits = http.Limits(options.max_request_line, options.max_header_count,
                                       options.max_header_size, options.max_body_size)
        self.trusted_proxies = TrustedProxies(options.forwarded_allow)
        self.access_log = AccessLog.compile(options.access_log_format, origins["access_log_format"])
        server = options.server_revision
        self.server_line = b"Server: %s\r\n" % server.encode("latin-1") if server else b""
        self.date = http.DateHeader(self.server_line)
        # Single has no max_requests (it serves one connection at a time, for ever).
        self.request_limit = getattr(options, "max_requests", 0) or 0
        # The hook is called only where a server overrides it (in a subclass, or on the instance
        # before it runs): most do not, and each request pays for the call.
        hook = self.wsgi_environ
        overridden = getattr(hook, "__func__", None) is not WSGIProtocol.wsgi_environ
        self.wsgi_environ_hook = hook if overridden else None

    def open_files(self) -> None:
        super().open_files()  # type: ignore[misc]
        target, origin = self.options.access_log_file, self.option_origins["access_log_file"]
        if self.in_check_mode():  # type: ignore[attr-defined]
            self.access_log.check(target, origin)  # a HUP to an unwritable path is refused, not fatal
        else:
            self.access_log.open(target, origin, self.log)

    def bind(self) -> None:
        super().bind()  # type: ignore[misc]
        for listener in self.listeners:  # type: ignore[attr-defined]
            if listener.proto == "tcp":
                # Accepted sockets inherit it.  A response written in more than one send (a
                # generator, a chunked body's last chunk) would otherwise wait for the client's
                # delayed ACK of the first: about 40 ms a response on a keep-alive connection.
                listener.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def process_request(self, client: Any) -> None:
        if client.proto == "udp":
            self.log(1, "HTTP does not run over UDP; ignoring a datagram from %s", client.peeraddr)
            return
        Channel(self, client).serve()

    def multiplexing(self) -> bool:
        """True in a pre-forking personality's child with max_connections above 1."""
        return self.options.max_connections > 1 and hasattr(super(), "child_loop")

    def child_loop(self) -> None:
        """A pre-forked child: many connections at once (http_mux), or one at a time."""
        if self.multiplexing():
            from .http_mux import serve_child

            serve_child(self)
        else:
            super().child_loop()  # type: ignore[misc]

    def serialize_kind(self) -> str:
        """No accept lock for a multiplexing child: it must not block in one while its connections wait."""
        kind = super().serialize_kind()  # type: ignore[misc]
        if kind != "none" and self.multiplexing():
            if self.options.serialize != "auto":
                self.log(1, "serialize %s does not apply to HTTP children that hold several connections "
                         "(max_connections %d): they take turns by epoll instead", self.options.serialize,
                         self.options.max_connections)
            return "none"
        return kind

    def wsgi_environ(self, environ: dict[str, Any], client: Any) -> None:
        """Hook: add or change environ keys before each request reaches the application."""


class Channel:
    """One connection in blocking mode: read a request, run the application, answer, repeat."""

    def __init__(self, server: Any, client: Any) -> None:
        self.server = server
        self.client = client
        self.sock: socket.socket = client.sock
        self.stream = http.RequestStream(server.http_limits)
        self.sender = self.make_sender()
        options = server.options
        self.keepalive = options.keepalive_timeout
        self.header_timeout = options.timeout_header
        self.body_timeout = options.timeout
        self._waits = options.timeout  # what the socket's SO_RCVTIMEO is now (inherited from the listener)
        self.served = 0
        self._response: Response | None = None
        self.base = self.make_base_environ()
        self.environ_hook = server.wsgi_environ_hook

    def make_sender(self) -> Any:
        # A pipe pair (INET under a superserver that passes pipes) has no socket: its reader and writer.
        return Sender(self.sock) if self.sock is not None else Sender(None, self.client.wfile.write)

    def make_base_environ(self) -> dict[str, Any]:
        """The environ keys that are the same for every request of this connection."""
        return self._base_environ()

    # ------------------------------------------------------------------ the loop
    def serve(self) -> None:
        server = self.server
        stream = self.stream
        while True:
            request = self.next_request()
            if request is None:
                return
            if self.served:
                server.requests += 1  # max_requests counts requests: the connection counted the first
            self.served += 1
            if request.error is not None:
                self.refuse(request.error, request)
                return
            keep = self.respond(request)
            stream.requests.popleft()
            if not keep:
                return
            # A drain that began after this response's head went out (without Connection: close)
            # does not cut the connection here: its client may already be sending the next
            # request, which is answered with Connection: close.

    def next_request(self) -> http.Request | None:
        """Block until a request's head is in; None when the connection is over."""
        stream = self.stream
        while not stream.requests:
            if stream.broken:
                return None
            if stream.in_head:
                left = self.header_timeout - (time.monotonic() - stream.head_started)
                if left <= 0:
                    self.refuse(http.HTTPError(408, "the request head did not arrive in time"), None)
                    return None
                data = self.receive(left)
            elif self.served:
                data = self.receive(self.keepalive)
            else:
                data = self.receive(self.header_timeout)
            if data is None:
                if stream.in_head:
                    continue  # the deadline check above answers 408
                return None  # quiet too long between requests: close
            if not data:
                return None  # the client closed
            stream.feed(data)
        return stream.requests[0]

    def receive(self, wait: float) -> bytes | None:
        """One recv of up to 64 KiB within ``wait`` seconds (0: no limit); None if the time ran out."""
        if self.sock is None:
            try:
                return self.client.rfile.read1(65536)  # the pipe's own timeout (timeout) applies
            except TimeoutError:
                return None
        if wait != self._waits:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(wait) if wait else FOREVER)
            self._waits = wait
        try:
            return self.sock.recv(65536)
        except BlockingIOError:  # SO_RCVTIMEO expired
            return None
        except (ConnectionResetError, TimeoutError):
            return b""

    def read_more(self, request: http.Request) -> None:
        """wsgi.input wants more of the body: say 100 Continue if the client waits for it, then read."""
        if request.expect_continue:
            request.expect_continue = False
            if not self._head_sent():
                self.sender.send(http.CONTINUE)
        data = self.receive(self.body_timeout)
        if data is None:
            raise http.HTTPError(408, "the request body did not arrive in time")
        if not data:
            raise ConnectionResetError("the client closed the connection during the request body")
        self.stream.feed(data)
        if self.stream.broken and not request.complete and request.error is None:
            request.error = http.HTTPError(400, "the request body was cut short")

    skip_limit = http.SKIP_BODY_LIMIT  # the most unread body read away to keep the connection

    def _head_sent(self) -> bool:
        return self._response is not None and self._response.head_sent

    # ------------------------------------------------------------------ one request
    def respond(self, request: http.Request) -> bool:
        """Run the application for one request; True if the connection may go on."""
        server = self.server
        keep = request.keep_alive and self.keepalive > 0 and not server.draining and not self.client.closing
        limit = server.request_limit
        if limit and server.requests >= limit:
            keep = False
        response = Response(request, self.sender, server.date.head_lines(), keep, self.skip_limit)
        self._response = response
        environ = self.environ(request)
        started = time.monotonic()
        result = None
        try:
            result = server.application(environ, response.start_response)
            if (server.draining or self.client.closing) and not response.head_sent:
                response.keep_alive = False  # a stop or HUP came during the call: this answer says so
            if type(result) is list and len(result) == 1:
                keep = response.send_whole(result)
            else:
                response.stopping = self.stopping  # the head may go out with the body's first piece
                response.send_body(result)
                keep = response.finish()
        except (ConnectionError, TimeoutError) as error:
            server.log(3, "HTTP client %s went away: %s", self.client.peeraddr, error)
            keep = False
        except http.HTTPError as error:  # the body broke its framing or limit under wsgi.input
            if not response.head_sent:
                self.refuse(error, request, response)
            keep = False
        except Exception as error:
            keep = self.app_failed(request, response, error)
        finally:
            self.close_result(result, request)
        if keep and not request.complete:
            keep = self.skip_body(request)
        server.access_log.write(environ, response, time.monotonic() - started)
        return keep

    def stopping(self) -> bool:
        return self.server.draining or self.client.closing

    def close_result(self, result: Any, request: http.Request) -> None:
        """PEP 3333: the iterable's close(), if it has one, once the response is over."""
        if type(result) is list:
            return  # the common one-piece body: a list has no close()
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                self.server.log(1, "The application's close() failed for %s %s", request.method,
                                request.target.decode("latin-1"), exc_info=True)

    def app_failed(self, request: http.Request, response: Response, error: Exception) -> bool:
        what = "broke the WSGI contract" if isinstance(error, AppError) else "failed"
        self.server.log(1, "The application %s on %s %s", what, request.method,
                        request.target.decode("latin-1"), exc_info=True)
        if not response.head_sent:
            response.status, response.code = "500 Internal Server Error", 500
            response.headers, response.body_sent = http.ERROR_HEADERS, len(http.error_body(500))
            try:
                self.sender.send(http.error_response(http.HTTPError(500, "application error"),
                                                     self.server.server_line, self.server.date))
            except OSError:
                pass
        return False  # after a failure, nothing says where the next request begins

    def skip_body(self, request: http.Request) -> bool:
        """The application left part of the body unread: read it away if small, else close."""
        if not http.body_skippable(request, self.skip_limit):
            return False
        while not request.complete:
            try:
                self.read_more(request)
            except (OSError, http.HTTPError):
                return False
            if request.error is not None:
                return False
        request.body.clear()
        return True

    def refuse(self, error: http.HTTPError, request: http.Request | None, response: Response | None = None) -> None:
        """Answer ``error`` and end the connection.  With the ``response`` the application had begun
        (a body that broke its framing under wsgi.input), that response records what was sent and
        the caller logs it; otherwise the refusal gets its own access log line."""
        server = self.server
        server.log(3, "HTTP %d for %s: %s", error.status, self.client.peeraddr, error.reason)
        try:
            self.sender.send(http.error_response(error, server.server_line, server.date))
        except OSError:
            pass
        # The close reads away what the client still sends (at most 1 MiB in 0.5 s), so the
        # refusal is not destroyed by a reset; a client too slow to send its head gets no wait.
        self.client.drain_on_close = error.status != 408
        answered: Any = response if response is not None else _Answer()
        answered.code, answered.headers = error.status, http.ERROR_HEADERS
        answered.body_sent = len(http.error_body(error.status))
        if response is None and server.access_log.enabled:
            server.access_log.write(self._refused_environ(request), answered, 0.0)

    def _refused_environ(self, request: http.Request | None) -> dict[str, Any]:
        """What the access log reads for a request the application never saw ("-" for what is unknown)."""
        environ = self.base.copy()
        # A head that timed out has no request yet: the stream knows what of its line arrived.
        method, target, version = (request.method, request.target, request.version) if request is not None \
            else self.stream.request_line()
        environ["REQUEST_METHOD"] = method or "-"
        environ["RAW_URI"] = environ["REQUEST_URI"] = target.decode("latin-1") if method else "-"
        environ["SERVER_PROTOCOL"] = "HTTP/" + version if method else "-"
        environ["PATH_INFO"] = environ["QUERY_STRING"] = ""
        return environ

    # ------------------------------------------------------------------ environ
    def _base_environ(self) -> dict[str, Any]:
        client, server = self.client, self.server
        if client.proto in ("unix", "pipe"):
            name, port, remote, remote_port = "localhost", "", "", ""
        else:
            name, port = client.sockaddr, str(client.sockport)
            remote, remote_port = client.peeraddr, str(client.peerport)
        return {
            "SERVER_NAME": name, "SERVER_PORT": port, "REMOTE_ADDR": remote, "REMOTE_PORT": remote_port,
            "SCRIPT_NAME": server.options.script_name, "SERVER_SOFTWARE": "netserver/" + __version__,
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": Errors(server.log),
            "wsgi.multithread": False, "wsgi.multiprocess": isinstance(server, Supervisor),
            "wsgi.run_once": False, "wsgi.file_wrapper": FileWrapper, "wsgi.input_terminated": True,
            "GATEWAY_INTERFACE": "CGI/1.1",
            # Each request sets these.  Present here, they give every copy of this dict room for a
            # request's keys and its headers: 22 keys make a dict of 64 slots (42 usable), where
            # 14 made one of 32 (21 usable) that the second header of every request outgrew.
            "REQUEST_METHOD": "", "SERVER_PROTOCOL": "", "RAW_URI": "", "REQUEST_URI": "", "PATH_INFO": "",
            "QUERY_STRING": "", "wsgi.input": NO_BODY,
        }

    def environ(self, request: http.Request) -> dict[str, Any]:
        environ = self.base.copy()
        environ["REQUEST_METHOD"] = request.method
        environ["SERVER_PROTOCOL"] = "HTTP/" + request.version
        # The target is taken apart as text: "x" in a str is a plain search, where b"x" in bytes
        # first tries (and fails) to read b"x" as a byte value, which costs an exception each time.
        environ["RAW_URI"] = environ["REQUEST_URI"] = target = request.target.decode("latin-1")
        if "#" in target:
            target = target.partition("#")[0]  # a fragment is the client's, never the server's
        if target[:1] == "/":
            path, _, query = target.partition("?")
        else:
            path, query = self._other_form(request, environ)
        if "%" in path:
            path = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
        script = environ["SCRIPT_NAME"]
        if script and (path == script or path.startswith(script + "/")):
            path = path[len(script):]
        environ["PATH_INFO"] = path
        environ["QUERY_STRING"] = query
        keys = _ENVIRON_KEYS
        for name, value in request.headers:
            try:
                key = keys[name]
            except KeyError:
                key = environ_key(name)
            if key is None:
                continue  # a name with "_" (see environ_key)
            if key in environ and key.startswith("HTTP_"):
                joiner = "; " if key == "HTTP_COOKIE" else ", "
                environ[key] = environ[key] + joiner + value.decode("latin-1")
            else:
                environ[key] = value.decode("latin-1")
        environ["wsgi.input"] = Input(self, request) if request.body or not request.complete else NO_BODY
        if self.server.trusted_proxies.active:
            self.server.trusted_proxies.apply(environ, request.headers)
        if self.environ_hook is not None:
            self.environ_hook(environ, self.client)
        return environ

    @staticmethod
    def _other_form(request: http.Request, environ: dict[str, Any]) -> tuple[str, str]:
        target = request.target
        if target == b"*" or request.method == "CONNECT":
            return "*" if target == b"*" else "", ""
        url = http.httptools.parse_url(target)  # absolute-form: its authority replaces Host (RFC 9112 3.2.2)
        if url.host:
            host = b"[%s]" % url.host if url.host.find(b":") >= 0 else url.host  # parse_url drops a v6 literal's []
            host += b":%d" % url.port if url.port else b""
            environ["HTTP_HOST"] = host.decode("latin-1")
            request.headers = [(name, value) for name, value in request.headers if name.lower() != b"host"]
        return (url.path or b"/").decode("latin-1"), (url.query or b"").decode("latin-1")


class _Answer:
    """What the access log reads of a refusal the server wrote before any application ran."""

    __slots__ = ("code", "headers", "body_sent")
