"""A pre-forked HTTP child serving many connections, one request at a time.

The child waits in one epoll on its listeners, all of its connections, its
signal wakeup fd and the parent-death pipe.  A request reaches the
application only once its head, and its body up to ``buffer_body`` bytes,
have arrived, so a slow or idle client costs the child nothing; requests
that are ready run one after another, one per connection per round, so no
connection can starve the others.  Responses go into a per-connection
buffer that is written as the socket drains; a body the application yields
piece by piece is pulled only while that buffer is below its limit, so a
client that never reads stalls only itself.

Why these choices:

* No accept lock: a child may not block in a lock while its own
  connections wait.  The listeners are watched with EPOLLEXCLUSIVE, so a
  new connection wakes one child idle in epoll; a child busy in the
  application is not waiting and does not compete, which spreads
  connections to the idle children (and a child holding far more than a
  sibling leaves the next one to it for a moment).  Each wake-up accepts
  one connection, and a child at ``max_connections`` stops watching the
  listeners until one of its connections ends.
* Edge-triggered connection sockets, registered for input only: a response
  that fits the socket buffer costs no epoll_ctl and no output event.  The
  first send the socket pushes back on adds output (once, for the rest of
  the connection).
* The client object is a SocketClient, without a Connection's buffered
  rfile and wfile, and the environ's fixed keys come from a template per
  listener: a connection costs what it must.
* A body larger than ``buffer_body`` streams through ``wsgi.input``: the
  child then waits on that client alone, under ``timeout``.

Draining (HUP, a graceful stop, ``max_requests``): the child closes its
listeners, answers each connection's next request with ``Connection:
close``, closes connections as they go quiet (``keepalive_timeout``), and
leaves when none is left.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import time
from collections import deque

from .. import status
from ..connection import SocketClient
from . import http
from .response import AppError, Response
from .wsgi import Channel
from .wsgi_io import FileWrapper

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

IN, OUT, EDGE = select.EPOLLIN | select.EPOLLRDHUP, select.EPOLLOUT, select.EPOLLET
ERRORS = select.EPOLLERR | select.EPOLLHUP
#: Response bytes buffered per connection before the application's body iterator is paused.
OUT_LIMIT = 256 * 1024
SWEEP = 0.25  # seconds between timeout sweeps
DEFER = 0.002  # seconds a child holding far more connections than a sibling leaves a new one to it
#: "Far more": more than this many over the sibling's count.  No balancing below it: a child
#: serving 4 keep-alive connections does them in one wake-up, four children with one each need
#: four.  (Over twice the sibling's count and 4 more, the rule before, let the kernel's habit of
#: waking the same idle child leave 6 connections on one child and 17 on another, and the clients
#: of the busiest child got half the mean's rate.)
HOARD_SLACK = 4
LINGER = 0.5  # seconds a closed connection is read away for, so its last response is not reset


class BufferedSender:
    """A Response's sender that never blocks: bytes queue in ``out`` and go as the socket takes them."""

    sock = None  # the Response's own sendfile path is the blocking one's; here FileSend does it

    def __init__(self, conn: MuxConnection) -> None:
        self.conn = conn
        self.out = bytearray()
        self.sent = 0

    def send(self, data: bytes) -> None:
        size = len(data)
        self.sent += size
        if self.out:
            self.out += data
            return
        try:
            done = self.conn.sock.send(data)
        except BlockingIOError:
            done = 0
        except OSError as error:
            raise ConnectionResetError(str(error)) from None
        if done < size:
            self.out += data[done:]
            self.conn.last_write = time.monotonic()
            self.conn.want_output()

    def flush(self) -> bool:
        """Write what the socket takes; True once the buffer is empty."""
        out = self.out
        while out:
            try:
                done = self.conn.sock.send(out)
            except BlockingIOError:
                self.conn.want_output()
                return False
            del out[:done]
            self.conn.last_write = time.monotonic()
        return True

    def flush_blocking(self, timeout: float) -> None:
        """Wait until the buffer is written (100 Continue before a streamed body)."""
        deadline = time.monotonic() + (timeout or 3600.0)
        while not self.flush():
            if not _wait(self.conn.sock, select.POLLOUT, deadline):
                raise TimeoutError("timed out writing to the client")


def _wait(sock: socket.socket, events: int, deadline: float) -> bool:
    poller = select.poll()
    poller.register(sock, events)
    left = deadline - time.monotonic()
    return left > 0 and bool(poller.poll(left * 1000))


class FileSend:
    """A file_wrapper body of a regular file, sent with sendfile(2) as the socket drains."""

    __slots__ = ("fd", "offset", "left")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.fd, self.offset, self.left = fd, offset, count

    @classmethod
    def of(cls, wrapper: FileWrapper, response: Response) -> FileSend | None:
        """The sendfile plan for this body, or None (not a regular file with a length: iterate it)."""
        if response.length is None or response.head_only or response.head_sent:
            return None
        try:
            fd = wrapper.filelike.fileno()
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            size = os.fstat(fd).st_size - offset
        except (AttributeError, OSError, ValueError, TypeError):
            return None
        response.send_head(more=True)  # framed by the length; the body follows from the file
        return cls(fd, offset, max(0, min(size, response.length)))

    def send(self, conn: MuxConnection, response: Response) -> bool:
        """As much as the socket takes; True once all is sent (or the file ended early)."""
        if conn.sender.out and not conn.sender.flush():
            return False  # the head first
        out = conn.sock.fileno()
        while self.left:
            try:
                sent = os.sendfile(out, self.fd, self.offset, self.left)
            except BlockingIOError:
                conn.want_output()
                return False
            if not sent:
                response.keep_alive = False  # the file shrank: a short body and a close tell the client
                break
            self.offset += sent
            self.left -= sent
            response.body_sent += sent
            conn.last_write = time.monotonic()
        return True


class MuxConnection(Channel):
    """One connection of a multiplexing child: the blocking Channel's request logic, non-blocking I/O."""

    def __init__(self, server: Any, client: Any, mux: Multiplexer) -> None:
        self.mux = mux
        super().__init__(server, client)
        self.fd = self.sock.fileno()
        self.out_armed = False     # watched for output: only once the socket has pushed back
        self.last_read = self.last_write = time.monotonic()
        self.queued = False        # in the child's run queue
        self.pending: tuple[Any, ...] | None = None  # (response, iterator, result, environ, request, started)
        self.close_after = False   # close once the buffer is written
        self.eof = False
        self.lingering = 0.0       # deadline of the read-away after our FIN
        self.readable = True       # an input edge not yet read to EAGAIN
        self.skip_limit = mux.buffer_body

    def make_sender(self) -> BufferedSender:
        return BufferedSender(self)

    def make_base_environ(self) -> dict[str, Any]:
        return self.mux.base_environ(self)

    def want_output(self) -> None:
        """Watch the socket for room to write (an edge comes at once if there is room already)."""
        if not self.out_armed:
            self.out_armed = True
            self.mux.poller.modify(self.fd, IN | OUT | EDGE)

    # ------------------------------------------------------------------ blocking pieces, for big bodies
    def read_more(self, request: http.Request) -> None:
        if request.expect_continue:
            request.expect_continue = False
            if not self._head_sent():
                self.sender.send(http.CONTINUE)
                self.sender.flush_blocking(self.body_timeout)
        deadline = time.monotonic() + (self.body_timeout or 3600.0)
        while True:
            try:
                data = self.sock.recv(65536)
                break
            except BlockingIOError:
                if not _wait(self.sock, select.POLLIN, deadline):
                    raise http.HTTPError(408, "the request body did not arrive in time") from None
        if not data:
            raise ConnectionResetError("the client closed the connection during the request body")
        self.last_read = time.monotonic()
        self.stream.feed(data)
        if self.stream.broken and not request.complete and request.error is None:
            request.error = http.HTTPError(400, "the request body was cut short")

    # ------------------------------------------------------------------ state
    def ready_request(self, buffer_body: int) -> http.Request | None:
        """The first queued request, once the application may have it."""
        requests = self.stream.requests
        if not requests:
            return None
        request = requests[0]
        if request.error is not None or request.complete or len(request.body) >= buffer_body:
            return request
        if request.content_length is not None and request.content_length > buffer_body:
            return request  # too big to buffer: the application streams it under timeout
        if request.expect_continue and not request.body:
            # A buffered body: the server asks for it itself, once (RFC 9110 10.1.1).
            request.expect_continue = False
            self.sender.send(http.CONTINUE)
        return None


class Multiplexer:
    """The loop of one HTTP child: ``run()`` until drained; everything here runs in the child."""

    def __init__(self, server: Any) -> None:
        self.server = server
        options = server.options
        # Each connection is a descriptor: stay under the open-file limit rather than meet EMFILE.
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.cap = options.max_connections if soft == resource.RLIM_INFINITY else \
            max(1, min(options.max_connections, soft - 32))
        self.buffer_body = options.buffer_body
        self.keepalive = options.keepalive_timeout
        self.header_timeout = options.timeout_header
        self.io_timeout = options.timeout or 3600.0
        self.limit = options.max_requests
        self.access_log = server.access_log
        self.retire_at = server.retire_at()  # max_child_lifetime
        self.poller = select.epoll()
        self.conns: dict[int, MuxConnection] = {}
        self.run_queue: deque[MuxConnection] = deque()
        self.listening: dict[int, Any] = {}
        self.watching = False
        self.served_since_wait = False  # a request ran since the scoreboard last said idle
        self.head_lines = server.date.head_lines()  # the Date and Server lines of this round's responses
        self.next_sweep = 0.0
        self.deferred = 0.0        # until when this child leaves new connections to its siblings
        self.waited = False        # it has left one once: the next it takes
        self.templates: dict[Any, tuple[dict[str, Any], bool, bool]] = {}  # per listener: see base_environ
        for listener in server.listeners:
            listener.sock.setblocking(False)
            self.listening[listener.fileno()] = listener
        self.wakeup, self.death = server.signals.read_fd, server._death_read
        self.poller.register(self.wakeup, select.EPOLLIN)
        self.poller.register(self.death, select.EPOLLIN)
        self.watch_listeners(True)

    def base_environ(self, conn: MuxConnection) -> dict[str, Any]:
        """A connection's fixed environ keys: its listener's template, with the two ends' addresses."""
        client = conn.client
        listener = client.listener
        entry = self.templates.get(listener)
        if entry is None:
            # Made once per listener: wsgi.errors is then one stream for the child's connections,
            # which take turns (one request at a time), so their lines do not mix.  The local end
            # is the template's unless the listener is bound to a wildcard address.
            entry = self.templates[listener] = (conn._base_environ(), client.proto != "unix",
                                                listener.fixed_local() is None)
        template, by_address, own_local = entry
        base = template.copy()
        if by_address:
            base["REMOTE_ADDR"], base["REMOTE_PORT"] = client.peeraddr, str(client.peerport)
            if own_local:
                base["SERVER_NAME"], base["SERVER_PORT"] = client.sockaddr, str(client.sockport)
        return base

    def update_listeners(self) -> None:
        """Watch the listeners exactly while this child should take connections."""
        self.watch_listeners(bool(self.listening) and not self.deferred and len(self.conns) < self.cap)

    def watch_listeners(self, on: bool) -> None:
        if on == self.watching or not self.listening:
            return
        for fd in self.listening:
            try:
                if on:
                    self.poller.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
                else:
                    self.poller.unregister(fd)
            except OSError:
                pass  # a HUP during a request closed the listeners already (the kernel dropped them)
        self.watching = on

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        server = self.server
        try:
            while True:
                if server.draining:
                    self.drain()
                    if not self.conns:
                        return
                elif self.served_since_wait:
                    # Idle once the round's requests are done, not after each: the child is
                    # not idle until it waits, and one write a round costs less than one a request.
                    self.served_since_wait = False
                    server.status.idle()
                timeout = 0 if self.run_queue else (SWEEP if self.conns or self.deferred or self.retire_at else -1)
                if self.deferred and not self.run_queue:
                    timeout = max(0.0, min(timeout, self.deferred - time.monotonic()))
                # This round runs what was queued before these events: a connection whose request
                # the events complete runs it at once, and what it queues then waits for the next.
                queued = len(self.run_queue)
                events_now = self.poller.poll(timeout)
                # The Date line, read once a round rather than once a response: it changes once a
                # second, and a round's requests are answered within moments of each other (a round
                # of slow ones dates the last of them by the start of the round).
                self.head_lines = server.date.head_lines()
                for fd, events in events_now:
                    conn = self.conns.get(fd)
                    if conn is not None:
                        try:
                            self.on_event(conn, events)
                        except Exception:
                            self.lost(conn)
                    elif fd in self.listening and not server.draining:
                        self.accept(self.listening[fd])
                    elif fd == self.wakeup:
                        server._child_flags()
                    elif fd == self.death:
                        server.draining = True
                        self.poller.unregister(self.death)
                if queued:
                    self.run_round(queued)
                now = time.monotonic()
                if self.deferred and now >= self.deferred:
                    self.deferred, self.waited = 0.0, True
                    self.update_listeners()
                if now >= self.next_sweep:
                    self.next_sweep = now + SWEEP
                    self.sweep(now)
                    if self.retire_at is not None and now >= self.retire_at:
                        server.draining = True  # max_child_lifetime: drain as at max_requests
        finally:
            for conn in list(self.conns.values()):
                self.close(conn, linger=False)
            self.poller.close()

    def drain(self) -> None:
        """Stop accepting; idle connections close when keepalive_timeout passes (their next request
        may be on the wire), busy ones after their response, which says Connection: close."""
        if self.listening:
            self.watch_listeners(False)
            self.listening = {}
            self.server.close_listeners()
            self.server.status.state(status.LEAVING_STATE)  # siblings no longer count on this child
            if self.conns:
                self.server.announce_leaving()  # the replacement need not wait for our keep-alive drain

    # ------------------------------------------------------------------ connections
    def accept(self, listener: Any) -> None:
        server = self.server
        held = len(self.conns)
        if held > HOARD_SLACK and not self.waited:  # fewer cannot be "far more" than any sibling's
            fewest = server.status.fewest_elsewhere()
            if fewest is not None and held > fewest + HOARD_SLACK:
                # A sibling holds fewer: leave it this connection for a moment.  It takes the
                # connection if it is waiting in epoll (it was woken too); if it is not, this child
                # takes it when the moment is over.
                self.deferred = time.monotonic() + DEFER
                self.update_listeners()
                return
        # Having waited once, take it: the sibling may be held up by a long request.
        self.waited = False
        client = server.accept_from(listener, SocketClient)
        if client is None:
            return
        server.requests += 1  # run_client_connection's count: the first request of the connection
        try:
            ok = server.admit(client)
        except Exception:
            server.log(1, "A connection hook failed for %s; closing it", server._peer(client), exc_info=True)
            client.drain_on_close = False
            server.post_process_request(client)
            return
        if not ok:
            server.request_denied_hook(client)
            server.post_process_request_hook(client, False)
            server.post_process_request(client)
            server.post_client_connection_hook(client)
            return
        client.sock.setblocking(False)
        conn = MuxConnection(server, client, self)
        self.conns[conn.fd] = conn
        self.poller.register(conn.fd, IN | EDGE)  # output too, once a send finds the socket full
        server.status.connections(len(self.conns))
        if len(self.conns) >= self.cap:
            self.update_listeners()
        try:
            self.read(conn)  # the request often came with the connection: no wait for its edge
        except Exception:
            self.lost(conn)

    def on_event(self, conn: MuxConnection, events: int) -> None:
        if events & (IN | ERRORS):
            conn.readable = True
            if conn.lingering:
                self.linger_read(conn)
                return
            if conn.pending is None and not conn.queued:
                self.read(conn)
        if events & OUT and conn.fd in self.conns:
            self.write(conn)

    def read(self, conn: MuxConnection, at_once: bool = True) -> None:
        """Read to EAGAIN (edge-triggered), feed the parser; a ready request runs (``at_once``, for
        fresh input) or is queued for the next round (after a response: one per connection a round)."""
        while conn.readable:
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                conn.readable = False
                break
            except OSError:
                data = b""
            if not data:
                conn.readable = False
                conn.eof = True
                break
            conn.last_read = now = time.monotonic()
            conn.stream.feed(data, now)
            if len(data) < 65536:
                conn.readable = False  # a short read emptied the socket; more data brings a new edge
            requests = conn.stream.requests
            if not requests:
                continue
            request = requests[0]
            if request.complete or conn.ready_request(self.buffer_body) is not None:  # complete: ready
                if at_once:
                    self.start(conn, request)
                else:
                    self.queue(conn)
                return  # one request at a time: read no further ahead until it is answered
        if conn.sender.out:
            try:
                conn.sender.flush()  # a 100 Continue
            except OSError:
                self.close(conn, linger=False)
        elif conn.eof:
            self.close(conn, linger=False)

    def queue(self, conn: MuxConnection) -> None:
        if not conn.queued:
            conn.queued = True
            self.run_queue.append(conn)

    def write(self, conn: MuxConnection) -> None:
        try:
            done = conn.sender.flush()
        except OSError:
            self.close(conn, linger=False)
            return
        if conn.pending is not None and len(conn.sender.out) < OUT_LIMIT // 2:
            self.queue(conn)  # pull more of the body in the next round
        elif done:
            self.after_flush(conn)

    def after_flush(self, conn: MuxConnection) -> None:
        if conn.close_after:
            self.close(conn)
        elif conn.pending is None and not conn.queued:
            if conn.stream.requests and conn.ready_request(self.buffer_body) is not None:
                self.queue(conn)  # a pipelined request
            elif conn.readable:
                self.read(conn, at_once=False)
            elif conn.eof:
                self.close(conn, linger=False)

    def close(self, conn: MuxConnection, linger: bool = True) -> None:
        """End a connection; with unread input, FIN first and read it away briefly (no reset)."""
        if linger and not conn.eof and conn.readable:
            # Only input that arrived since the last read to EAGAIN (a new edge: readable) can be
            # unread; otherwise nothing is, and a plain close sends no reset.
            try:
                unread = conn.sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                unread = b""
            except OSError:
                unread = b""
            if unread:
                try:
                    conn.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                else:
                    conn.lingering = time.monotonic() + LINGER
                    return
        self.conns.pop(conn.fd, None)
        if conn.pending is not None:
            self.abandon(conn)
        # No epoll_ctl: closing the socket (post_process_request) takes it out of the epoll set.
        server = self.server
        client = conn.client
        client.drain_on_close = False  # done above, without blocking the child
        server.post_process_request_hook(client, True)
        server.post_process_request(client)
        server.post_client_connection_hook(client)
        server.status.connections(len(self.conns))
        self.update_listeners()

    def lost(self, conn: MuxConnection) -> None:
        """A connection whose handling raised outside the application's call: log it, close it, go on.

        The one connection is lost; the child and its other connections are not.
        """
        self.server.log(1, "HTTP connection from %s failed; closing it", conn.client.peeraddr, exc_info=True)
        conn.queued = False
        if conn.fd in self.conns:
            try:
                self.close(conn, linger=False)
            except Exception:
                self.conns.pop(conn.fd, None)
                self.server.log(1, "Closing the connection from %s failed too", conn.client.peeraddr, exc_info=True)

    def abandon(self, conn: MuxConnection) -> None:
        """A response cut short (its client stopped reading, or the child is ending): close its iterable."""
        response, _, result, environ, request, started = conn.pending
        conn.pending = None
        conn.close_result(result, request)
        self.server.log(3, "HTTP response to %s abandoned after %d bytes", conn.client.peeraddr, response.body_sent)
        self.access_log.write(environ, response, time.monotonic() - started)

    def linger_read(self, conn: MuxConnection) -> None:
        while True:
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                conn.eof, conn.lingering = True, 0.0
                self.close(conn, linger=False)
                return

    def sweep(self, now: float) -> None:
        """Timeouts: keep-alive, head, body, a client that does not read; the linger's end."""
        for conn in list(self.conns.values()):
            if conn.lingering:
                if now >= conn.lingering:
                    conn.lingering = 0.0
                    self.close(conn, linger=False)
                continue
            waiting_to_write = conn.sender.out or (conn.pending is not None and not conn.queued
                                                   and type(conn.pending[1]) is FileSend)
            if waiting_to_write:
                if now - conn.last_write > self.io_timeout:
                    self.close(conn, linger=False)  # it stopped reading its response
                continue
            if conn.pending is not None or conn.queued:
                continue
            stream = conn.stream
            if stream.in_head:
                if now - stream.head_started > self.header_timeout:
                    conn.refuse(http.HTTPError(408, "the request head did not arrive in time"), None)
                    conn.close_after = True
                    self.write(conn)
            elif stream.requests:
                if now - conn.last_read > self.io_timeout:
                    conn.refuse(http.HTTPError(408, "the request body did not arrive in time"), stream.requests[0])
                    conn.close_after = True
                    self.write(conn)
            elif now - conn.last_read > (self.keepalive if conn.served else self.header_timeout):
                self.close(conn, linger=False)

    # ------------------------------------------------------------------ running requests
    def run_round(self, count: int) -> None:
        """One step for each of the first ``count`` queued connections (those queued before the round)."""
        for _ in range(count):
            conn = self.run_queue.popleft()
            conn.queued = False
            if conn.fd not in self.conns:
                continue
            try:
                if conn.pending is not None:
                    self.pump(conn)
                else:
                    self.start(conn)
            except Exception:
                self.lost(conn)

    def start(self, conn: MuxConnection, request: http.Request | None = None) -> None:
        """Run the application for the connection's first request (``request``, if the caller has it)."""
        if request is None:
            request = conn.ready_request(self.buffer_body)
            if request is None:
                self.after_flush(conn)
                return
        server = self.server
        if conn.served:
            server.requests += 1
        conn.served += 1
        if request.error is not None:
            conn.refuse(request.error, request)
            conn.stream.requests.popleft()
            conn.close_after = True
            self.write(conn)
            return
        keep = request.keep_alive and self.keepalive > 0 and not server.draining
        if self.limit and server.requests >= self.limit:
            keep = False
            server.draining = True  # this child has served its share: finish and leave
        response = Response(request, conn.sender, self.head_lines, keep, conn.skip_limit)
        conn._response = response
        environ = conn.environ(request)
        started = time.monotonic() if self.access_log.enabled else 0.0  # only the access log's %D reads it
        reporter = server.status
        reporter.busy(conn.client.peeraddr, conn.client.peerport)
        self.served_since_wait = True
        server._in_request = True
        result = None
        try:
            result = server.application(environ, response.start_response)
            if server.draining and not response.head_sent:
                response.keep_alive = False  # a stop or HUP came during the call: this answer says so
            if type(result) is list and len(result) == 1:
                keep = response.send_whole(result)  # the common case: sent, and a list has no close()
            else:
                body: Any = None
                response.stopping = conn.stopping  # the head goes out later: look again then
                if isinstance(result, FileWrapper):
                    response.adopt_file_length(result)
                    body = FileSend.of(result, response)  # sendfile(2) as the socket drains
                conn.pending = (response, body or iter(result), result, environ, request, started)
        except BaseException as error:
            self.failed(conn, response, result, environ, request, started, error)
            return
        finally:
            server._in_request = False
            if server.draining:
                reporter.state(status.LEAVING_STATE)
        if conn.pending is not None:
            self.pump(conn)
            return
        if keep and not request.complete:
            keep = self.skip_body(conn, request)
        self.done(conn, response, environ, request, started, keep)

    def pump(self, conn: MuxConnection) -> None:
        """Pull the body while the connection's buffer has room."""
        response, iterator, result, environ, request, started = conn.pending
        server = self.server
        server._in_request = True
        try:
            if type(iterator) is FileSend:
                if iterator.send(conn, response):
                    conn.pending = None
                    self.finish(conn, response, result, environ, request, started)
                return
            while len(conn.sender.out) < OUT_LIMIT:
                try:
                    data = next(iterator)
                except StopIteration:
                    if not response.started:
                        raise AppError("the application returned without calling start_response") from None
                    if not response.head_sent:
                        response.send_head()
                    conn.pending = None
                    self.finish(conn, response, result, environ, request, started)
                    return
                if data:
                    response.write(data)
        except BaseException as error:
            conn.pending = None
            self.failed(conn, response, result, environ, request, started, error)
            return
        finally:
            server._in_request = False
        # The buffer is full: the rest waits for the socket to drain (write() queues us again).

    def finish(self, conn: MuxConnection, response: Response, result: Any, environ: dict, request: http.Request,
               started: float) -> None:
        try:
            keep = response.finish()
        except OSError:
            keep = False
        conn.close_result(result, request)
        if keep and not request.complete:
            keep = self.skip_body(conn, request)
        self.done(conn, response, environ, request, started, keep)

    def failed(self, conn: MuxConnection, response: Response, result: Any, environ: dict, request: http.Request,
               started: float, error: BaseException) -> None:
        conn.close_result(result, request)
        if isinstance(error, (ConnectionError, TimeoutError)):
            self.server.log(3, "HTTP client %s went away: %s", conn.client.peeraddr, error)
        elif isinstance(error, http.HTTPError):
            if not response.head_sent:
                conn.refuse(error, request, response)
        elif isinstance(error, Exception):
            conn.app_failed(request, response, error)
        else:
            raise error  # StopServer (TERM during the request), KeyboardInterrupt: the child ends
        self.done(conn, response, environ, request, started, False)

    def skip_body(self, conn: MuxConnection, request: http.Request) -> bool:
        """Unread body after the response: wait for it only if it is small and already on its way
        (the response said Connection: close otherwise, by the same rule)."""
        return request.received > 0 and conn.skip_body(request)

    def done(self, conn: MuxConnection, response: Response, environ: dict, request: http.Request,
             started: float, keep: bool) -> None:
        stream = conn.stream
        if stream.requests and stream.requests[0] is request:
            stream.requests.popleft()
        if self.access_log.enabled:
            self.access_log.write(environ, response, time.monotonic() - started)
        if not keep:
            conn.close_after = True
        if conn.fd in self.conns:
            if conn.sender.out:
                self.write(conn)
            else:
                self.after_flush(conn)  # all of it went out already


def serve_child(server: Any) -> None:
    """The child loop of a pre-forked HTTP server (``max_connections`` above 1)."""
    Multiplexer(server).run()
