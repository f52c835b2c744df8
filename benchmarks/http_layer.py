"""The HTTP layer's own Python work per request, in process: parse, environ, app call, response.

    python benchmarks/http_layer.py            # CPU microseconds per request, best of 7 rounds
    python benchmarks/http_layer.py --profile  # and where the time goes (cProfile, by own time)

One request of the shape wrk sends (three headers) is fed to the protocol's
own Channel, which parses it (httptools), builds the environ, calls a
hello-world application and frames the response into a sink instead of a
socket: no system call is counted, only the server's Python.  CPU time
(process_time), best of 7 rounds of 20,000 requests, so that other work on
the machine inflates the figure as little as it can.
"""

from __future__ import annotations

import cProfile
import pstats
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from netserver.protocols import http  # noqa: E402
from netserver.protocols.access_log import AccessLog  # noqa: E402
from netserver.protocols.forwarded import TrustedProxies  # noqa: E402
from netserver.protocols.wsgi import Channel  # noqa: E402

REQUEST = b"GET /hello/world?x=1 HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"


def hello(environ, start_response):
    body = b"Hello, world!\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Options:
    timeout, keepalive_timeout, timeout_header, script_name, max_requests = 30.0, 5.0, 15.0, "", 0


class Server:
    """The attributes Channel reads from a WSGIProtocol server, set as post_configure sets them."""

    options = Options()
    http_limits = http.Limits()
    application = staticmethod(hello)
    trusted_proxies = TrustedProxies(())
    access_log = AccessLog.compile("combined", "default")  # compiled, not opened: off, as by default
    server_line = b"Server: netserver/0.1.0\r\n"
    date = http.DateHeader(server_line)
    draining = False
    requests = 0
    request_limit = 0
    wsgi_environ_hook = None

    def log(self, *args, **kwargs) -> None: ...
    def wsgi_environ(self, environ, client) -> None: ...


class Sink:
    sock = None
    sent = 0

    def send(self, data: bytes) -> None:
        self.sent += len(data)


def make_channel() -> Channel:
    ours, _theirs = socket.socketpair()

    class Client:
        sock, proto, closing = ours, "tcp", False
        sockaddr, sockport, peeraddr, peerport = "127.0.0.1", 8000, "127.0.0.1", 50000

    channel = Channel(Server(), Client())
    channel.sender = Sink()
    channel._keep = (ours, _theirs)  # type: ignore[attr-defined]
    return channel


def per_request(channel: Channel, count: int) -> float:
    stream = channel.stream
    started = time.process_time()
    for _ in range(count):
        stream.feed(REQUEST)
        channel.respond(stream.requests[0])
        stream.requests.popleft()
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    channel = make_channel()
    per_request(channel, 2000)  # warm the caches (header lines, environ keys, the Date line)
    best = min(per_request(channel, 20000) for _ in range(7))
    print(f"HTTP layer: {best:.2f} us of CPU per request (parse, environ, app, response; best of 7)")
    if "--profile" in sys.argv:
        profile = cProfile.Profile()
        profile.runcall(per_request, channel, 20000)
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
