"""The pure-Python HTTP floors: pre-forked children on httptools serving hello_wsgi.app.

    python httpfloor.py --port 127.0.0.1:P --workers N [--epoll]

What a pre-fork WSGI server cannot do without, and nothing else: one
listener shared by N children, httptools' parser, a minimal PEP 3333
environ, the application called once per request, keep-alive and
pipelining (answers in order), ``Connection: close`` honoured; no Date or
Server header, no limits, no timeouts, no logging.

Default: a child serves one connection at a time, blocking in accept() and
then in recv() until the client closes (so a keep-alive client holds it).
--epoll: each child multiplexes the listener (EPOLLEXCLUSIVE, so a new
connection wakes one child) and all of its connections in one epoll set,
serving whichever is readable; a reply that does not fit the socket is
finished when it drains.
"""

import argparse
import io
import os
import select
import signal
import socket
import sys
from urllib.parse import unquote_to_bytes

import httptools

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hello_wsgi import app  # noqa: E402

STATIC = {
    "SCRIPT_NAME": "",
    "SERVER_NAME": "127.0.0.1",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
}


class Connection:
    """httptools' callbacks for one connection; done holds the answers to requests parsed so far."""

    def __init__(self, port):
        self.parser = httptools.HttpRequestParser(self)
        self.port, self.done, self.url, self.headers, self.body = str(port), [], b"", [], []

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        path, _, query = self.url.partition(b"?")
        env = dict(
            STATIC,
            REQUEST_METHOD=self.parser.get_method().decode(),
            SERVER_PORT=self.port,
            PATH_INFO=unquote_to_bytes(path).decode("latin-1"),
            QUERY_STRING=query.decode("latin-1"),
            SERVER_PROTOCOL="HTTP/" + self.parser.get_http_version(),
        )
        env["wsgi.input"] = io.BytesIO(b"".join(self.body))
        for name, value in self.headers:
            key = name.decode("latin-1").upper().replace("-", "_")
            env[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value.decode("latin-1")
        keep = self.parser.should_keep_alive()
        self.done.append(respond(env, keep))
        if not keep:
            self.done.append(None)  # the connection ends after this reply
        self.url, self.headers, self.body = b"", [], []


def respond(env, keep):
    started = []
    body = b"".join(app(env, lambda status, headers, exc_info=None: started.append((status, headers))))
    status, headers = started[0]
    head = "HTTP/1.1 %s\r\n%s%s\r\n" % (
        status,
        "".join("%s: %s\r\n" % h for h in headers),
        "" if keep else "Connection: close\r\n",
    )
    return head.encode("latin-1") + body


def feed(conn, data):
    """Parse data; the replies it completes, and whether the connection must close after them."""
    try:
        conn.parser.feed_data(data)
    except httptools.HttpParserError:
        conn.done.append(None)
    replies, conn.done = conn.done, []
    closing = None in replies
    return b"".join(r for r in replies if r is not None), closing


def one_at_a_time(listener):
    while True:
        sock, _ = listener.accept()
        conn = Connection(listener.getsockname()[1])
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                out, closing = feed(conn, data)
                if out:
                    sock.sendall(out)
                if closing:
                    break
        except OSError:
            pass  # a reset ends this connection, not the child
        sock.close()


def multiplexed(listener):
    port = listener.getsockname()[1]
    listener.setblocking(False)
    ep = select.epoll()
    ep.register(listener, select.EPOLLIN | select.EPOLLEXCLUSIVE)
    conns, unsent = {}, {}  # fd -> (socket, Connection); fd -> (bytes not yet written, close after)

    def close(fd):
        ep.unregister(fd)
        conns.pop(fd)[0].close()
        unsent.pop(fd, None)

    def write(fd, out, closing):
        try:
            sent = conns[fd][0].send(out) if out else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            return close(fd)
        if sent < len(out):
            unsent[fd] = (out[sent:], closing)
            ep.modify(fd, select.EPOLLOUT)
        elif closing:
            close(fd)
        elif unsent.pop(fd, None) is not None:
            ep.modify(fd, select.EPOLLIN)

    while True:
        for fd, _events in ep.poll():
            if fd == listener.fileno():
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    continue
                sock.setblocking(False)
                conns[sock.fileno()] = (sock, Connection(port))
                ep.register(sock, select.EPOLLIN)
            elif fd in unsent:
                write(fd, *unsent[fd])
            elif fd in conns:
                try:
                    data = conns[fd][0].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    close(fd)
                    continue
                write(fd, *feed(conns[fd][1], data))


class Stop(Exception):
    pass


def on_stop(signum, frame):
    raise Stop()  # cuts os.wait() short (PEP 475 would retry it)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--epoll", action="store_true")
    args = ap.parse_args()
    host, _, port = args.port.rpartition(":")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(1024)
    serve = multiplexed if args.epoll else one_at_a_time
    signal.signal(signal.SIGTERM, on_stop)
    children = set()

    def spawn():
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                serve(listener)
            finally:
                os._exit(0)
        children.add(pid)

    try:
        for _ in range(args.workers):
            spawn()
        while True:
            pid, _ = os.wait()
            if pid in children:
                children.discard(pid)
                spawn()
    except Stop:
        pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


if __name__ == "__main__":
    main()
