"""The ``client`` object handed to ``process_request``.

Timeouts are enforced by the kernel: the listening socket carries
SO_RCVTIMEO/SO_SNDTIMEO and every accepted socket inherits them, so the
client socket stays blocking and costs no extra system call per read (a
Python socket timeout would poll before every recv).  A read or write that
waits longer raises ``TimeoutError`` through ``rfile`` and ``wfile``; code
that calls ``client.sock`` directly sees ``BlockingIOError`` instead, which
the server treats the same way.

``rfile`` refuses lines longer than ``max_line_length`` (``LineTooLong``), so
a client that never sends a newline costs at most that much memory.
``wfile.write`` sends everything before it returns, or raises.
"""

from __future__ import annotations

import io
import os
import select
import socket
import struct
import time

from .listeners import Listener, normalise_ip


class LineTooLong(ValueError):
    """A line exceeded ``max_line_length`` bytes."""


class _SocketRaw(io.RawIOBase):
    """recv_into with the kernel's timeout reported as TimeoutError.

    socket.SocketIO would turn EAGAIN into ``None``, which BufferedReader
    takes for "no data yet" and would hand back a truncated line.
    """

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._recv_into = sock.recv_into
        self.at_eof = False
        self.timeout = timeout
        self.deadline = 0.0  # set while a line is being read
        self.reads = 0
        self.shortened = False
        self.received = 0  # bytes ever received; LineReader counts those it handed out
        self.idle = False  # waiting for the first byte of a line with nothing buffered
        self.owed = 0      # after a stop: received counts up to here are still served

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        # BufferedReader asks once, when it is made.  RawIOBase's own tell calls seek, which
        # raises UnsupportedOperation, and the reader clears it: an exception made and dropped
        # for every connection.  The count of bytes received is this stream's position.
        return self.received

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self.deadline:
            # A line must arrive whole within the timeout, or a client sending a
            # byte now and then (slowloris) would hold this process forever.  The
            # first recv of a line uses the listener's inherited timeout; later
            # ones get what is left of it.
            if self.reads:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the line did not arrive within the timeout")
                _set_receive_timeout(self._sock, left)
                self.shortened = True
            self.reads += 1
        try:
            count = self._recv_into(buffer)
        except BlockingIOError:
            raise TimeoutError("timed out reading from the client") from None
        self.idle = False
        if not count:
            self.at_eof = True
        self.received += count
        return count

    def owe_waiting_input(self) -> None:
        """A stop began: what the kernel holds now (lines the client sent while the last one was
        served) is still answered, and nothing that arrives later (a client that never pauses
        would otherwise hold the stop until graceful_timeout)."""
        import fcntl
        import termios

        fd = self._sock.fd if type(self._sock) is _PipeEnd else self._sock.fileno()
        try:
            waiting = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            waiting = 0
        self.owed = self.received + waiting

    def end_line(self) -> None:
        """Give the socket back its full timeout after a line that shortened it."""
        self.deadline = 0.0
        if self.shortened:
            self.shortened = False
            _set_receive_timeout(self._sock, self.timeout)


def timeval(seconds: float) -> bytes:
    """A struct timeval for SO_RCVTIMEO/SO_SNDTIMEO; never 0, which would mean "wait forever"."""
    whole = int(seconds)
    micro = max(int((seconds - whole) * 1e6), 1 if not whole else 0)
    return struct.pack("@ll", whole, micro)


def _set_receive_timeout(sock: socket.socket, seconds: float) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))


class LineReader(io.BufferedReader):
    """A buffered reader whose ``readline`` and iteration stop at a limit.

    It also knows when its connection is idle: after at least one line,
    waiting for the first byte of the next with nothing buffered (every byte
    received has been handed out as a line).  A graceful stop or a HUP ends an idle connection at once
    and a busy one at its next idle point: ``close_when_idle`` makes
    ``readline`` return EOF there.  Bytes taken with ``read()`` are not
    counted, so a connection read that way never looks idle: it stays in
    flight until its handler returns, the safe side.
    """

    max_line_length = 65536
    close_when_idle = False
    consumed = 0

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        # The per-line path of every line protocol: plain attribute work and
        # the C readline, no helper calls (workload 2 of the benchmarks).
        limit = self.max_line_length
        ask = limit + 1
        if size is not None and 0 <= size <= limit:
            ask = size
        raw = self.raw
        if raw.received == self.consumed and self.consumed:
            # Idle between requests.  A connection that has sent no line yet is not idle: its
            # client may have its first request on the way, and closing it would lose that.
            if self.close_when_idle and raw.received >= raw.owed:
                return b""  # (lines already waiting when the stop began are served first)
            raw.idle = True
        if not raw.timeout:
            try:
                line = _buffered_readline(self, ask)
            finally:
                raw.idle = False
        else:
            raw.deadline = _monotonic() + raw.timeout
            raw.reads = 0
            try:
                line = _buffered_readline(self, ask)
            finally:
                raw.deadline = 0.0
                raw.idle = False
                if raw.shortened:
                    raw.end_line()
        self.consumed += len(line)
        if len(line) > limit:
            raise LineTooLong(f"line longer than {limit} bytes")
        return line


_buffered_readline = io.BufferedReader.readline
_monotonic = time.monotonic


class SocketWriter:
    """Binary writer that sends everything before returning, or raises."""

    def __init__(self, sock: socket.socket) -> None:
        self._sendall = sock.sendall
        self.closed = False

    def write(self, data: bytes) -> int:
        try:
            self._sendall(data)
        except BlockingIOError:
            raise TimeoutError("timed out writing to the client") from None
        return len(data)

    def writelines(self, lines) -> None:
        self.write(b"".join(lines))

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


class _LocalName:
    """``sockaddr`` and ``sockport``: the local end, asked of the kernel once, when first read."""

    __slots__ = ()
    sock: socket.socket
    _local: tuple[str, int] | None

    @property
    def sockaddr(self) -> str:
        return self._local_name()[0]

    @property
    def sockport(self) -> int:
        return self._local_name()[1]

    def _local_name(self) -> tuple[str, int]:
        if self._local is None:
            name = self.sock.getsockname()
            self._local = (normalise_ip(name[0]), name[1])
        return self._local


class _StreamClient:
    """What every stream client (a socket, or INET's pipe pair) offers through its rfile and wfile."""

    rfile: LineReader
    wfile: SocketWriter | PipeWriter

    def send(self, data: bytes) -> int:
        return self.wfile.write(data)

    @property
    def closing(self) -> bool:
        """A graceful stop or a HUP asked this connection to end at its next idle point."""
        return self.rfile.close_when_idle


class Connection(_LocalName, _StreamClient):
    """One accepted client (TCP or unix stream).

    Attributes: ``sock``, ``rfile``, ``wfile``, ``peeraddr``, ``peerport``,
    ``peerhost``, ``sockaddr``, ``sockport``, ``proto`` ('tcp' or 'unix'),
    ``listener`` (the Listener it arrived on), ``data`` (None for streams).
    """

    data: bytes | None = None

    #: False once the connection is abandoned (an over-long line, a timeout):
    #: then close() does not read what a hostile client keeps sending.
    drain_on_close = True

    def __init__(self, sock: socket.socket, peer, listener: Listener, max_line_length: int,
                 timeout: float = 0.0) -> None:
        self.sock = sock
        self.listener = listener
        self.proto = listener.proto
        if self.proto == "unix":
            self.peeraddr, self.peerport = "", 0
        else:
            self.peeraddr, self.peerport = normalise_ip(peer[0]), peer[1]
        self.peerhost = self.peeraddr
        self._raw = _SocketRaw(sock, timeout)
        reader = LineReader(self._raw, 16384)
        reader.max_line_length = max_line_length
        self.rfile = reader
        self.wfile = SocketWriter(sock)
        self._local = ("", 0) if self.proto == "unix" else None

    def close_when_idle(self) -> None:
        """End the connection at its next idle point: now, if it is idle.

        Called from a signal handler (a graceful stop, a HUP).  A reader
        blocked in recv for the first byte of a line gets EOF from the
        shutdown as soon as the handler returns (PEP 475 retries the recv),
        so the handler's loop ends normally and the client sees a clean FIN.
        """
        self._raw.owe_waiting_input()
        self.rfile.close_when_idle = True
        if self._raw.idle and self._raw.received >= self._raw.owed:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def close(self) -> None:
        """Shut down for writing, drain what the client already sent, close.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy the tail of our reply before the client reads it.
        The drain is bounded (1 MiB, 0.5 s) and costs nothing when the
        client sent nothing more.
        """
        sock = self.sock
        if sock.fileno() < 0:
            return
        self.wfile.close()
        if self.drain_on_close and not self._raw.at_eof:  # after EOF nothing unread can remain
            try:
                _drain(sock)
            except OSError:
                pass
        try:
            self.rfile.close()
        except (OSError, ValueError):
            pass
        sock.close()

    def __repr__(self) -> str:
        return f"<Connection {self.proto} {self.peeraddr}:{self.peerport}>"


class SocketClient(_LocalName):
    """A client for a protocol that does its own non-blocking I/O on ``sock`` (the HTTP multiplexer).

    The attributes of a Connection that hooks and access rules read, without
    ``rfile`` and ``wfile``: reading through a buffered file would steal bytes
    from the protocol's parser, and making them costs each connection a 16 KiB
    buffer and four objects.  The local address is the listener's when it is
    bound to one (no getsockname per connection).
    """

    __slots__ = ("sock", "listener", "proto", "peeraddr", "peerport", "peerhost", "drain_on_close", "_local")

    data: bytes | None = None
    closing = False  # the multiplexer drains its connections itself

    def __init__(self, sock: socket.socket, peer, listener: Listener, max_line_length: int = 0,
                 timeout: float = 0.0) -> None:
        self.sock = sock
        self.listener = listener
        self.proto = proto = listener.proto
        self._local: tuple[str, int] | None = listener.fixed_local()  # None: asked of the socket when read
        if proto == "unix":
            self.peeraddr, self.peerport = "", 0
        else:
            self.peeraddr, self.peerport = normalise_ip(peer[0]), peer[1]
        self.peerhost = self.peeraddr
        self.drain_on_close = True

    def send(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)

    def close(self) -> None:
        sock = self.sock
        if sock.fileno() < 0:
            return
        if self.drain_on_close:
            try:
                _drain(sock)
            except OSError:
                pass
        sock.close()

    def __repr__(self) -> str:
        return f"<SocketClient {self.proto} {self.peeraddr}:{self.peerport}>"


def _drain(sock: socket.socket, limit: int = 1 << 20, seconds: float = 0.5) -> None:
    """Read what the client sent unasked, after telling it we are done (FIN).

    The first non-blocking recv settles the common case alone: nothing is
    unread, and a plain close sends no reset.  Only unread input earns the
    shutdown and a bounded wait for the rest.
    """
    got = 0
    deadline = 0.0
    poller = None
    while got < limit:
        try:
            chunk = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if not got:
                return  # nothing unread: a plain close sends no reset
            if poller is None:
                sock.shutdown(socket.SHUT_WR)
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                deadline = time.monotonic() + seconds
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                return
            continue
        if not chunk:
            return
        got += len(chunk)


class Datagram:
    """One UDP datagram as a client: ``data``, ``send(reply)``, ``rfile``."""

    proto = "udp"
    peerhost: str

    def __init__(self, sock: socket.socket, data: bytes, peer, listener: Listener) -> None:
        self.sock = sock
        self.listener = listener
        self.data = data
        self.peer = peer
        self.peeraddr, self.peerport = normalise_ip(peer[0]), peer[1]
        self.peerhost = self.peeraddr
        self.rfile = io.BytesIO(data)
        self.wfile = self

    @property
    def sockaddr(self) -> str:
        return normalise_ip(self.sock.getsockname()[0])

    @property
    def sockport(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> int:
        return self.sock.sendto(data, self.peer)

    write = send

    def flush(self) -> None:
        pass

    def close_when_idle(self) -> None:
        """A datagram is answered at once: nothing is ever idle."""

    def close(self) -> None:
        """The listening socket is shared: nothing to close."""


class _PipeEnd:
    """A pipe's read end behind the two socket calls ``_SocketRaw`` makes: ``recv_into`` and SO_RCVTIMEO.

    So a pipe gets the socket path's line timeout, idle points and EOF
    bookkeeping unchanged.  A pipe has no receive timeout: poll waits for
    what the "socket option" last said, and a wait that runs out raises
    BlockingIOError, as the kernel's timeout does.  The poll also watches the
    process's signal wakeup fd: a stop or HUP that finds the connection idle
    (``closing``) reads as EOF, as shutting a socket's read side does.
    """

    def __init__(self, fd: int, timeout: float, wakeup_fd: int = -1) -> None:
        self.fd = fd
        self.wait = timeout
        self.wakeup = wakeup_fd
        self.closing = False
        self.raw: _SocketRaw | None = None  # whose ``idle`` says whether closing may end the read
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        if wakeup_fd >= 0:
            self._poll.register(wakeup_fd, select.POLLIN)

    def setsockopt(self, level: int, option: int, value: bytes) -> None:
        whole, micro = struct.unpack("@ll", value)
        self.wait = whole + micro / 1e6

    def recv_into(self, buffer) -> int:
        deadline = time.monotonic() + self.wait if self.wait else None
        while True:
            if self.closing and self.raw is not None and self.raw.idle and self.raw.received >= self.raw.owed:
                return 0
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise BlockingIOError("the pipe stayed silent for the timeout")
            ready = {fd for fd, _ in self._poll.poll(None if left is None else left * 1000)}
            if self.fd in ready:
                return os.readv(self.fd, [buffer])
            if self.wakeup in ready:
                try:
                    os.read(self.wakeup, 512)  # the handler already acted; only its wake-up is left
                except BlockingIOError:
                    pass


class PipeWriter(SocketWriter):
    """Writes everything to a pipe fd within the timeout, or raises TimeoutError."""

    def __init__(self, fd: int, timeout: float) -> None:  # no super(): there is no socket's sendall
        self._fd = fd
        self._timeout = timeout
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)
        self.closed = False

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        deadline = time.monotonic() + self._timeout if self._timeout else 0.0
        while view:
            left = deadline - time.monotonic() if deadline else None
            if (left is not None and left <= 0) or not self._poll.poll(None if left is None else left * 1000):
                raise TimeoutError("timed out writing to the client")
            # Linux reports POLLOUT with a page free: a write of at most that much never blocks.
            view = view[os.write(self._fd, view[:select.PIPE_BUF]):]
        return len(data)


class PipeConnection(_StreamClient):
    """A client on two fds (INET under a superserver that passes a pipe pair): a ``Connection``'s API.

    ``rfile`` and ``wfile`` keep their contract (``max_line_length``, the
    timeout, idle points); ``sock`` is None, ``proto`` is 'pipe', and the
    peer and local names are empty, as for a unix socket.
    """

    data: bytes | None = None
    drain_on_close = True
    proto = "pipe"
    sock = None
    peeraddr = peerhost = sockaddr = ""
    peerport = sockport = 0

    def __init__(self, read_fd: int, write_fd: int, listener, max_line_length: int, timeout: float = 0.0,
                 wakeup_fd: int = -1) -> None:
        self.listener = listener
        self._fds: tuple[int, int] | None = (read_fd, write_fd)
        self._pipe = _PipeEnd(read_fd, timeout, wakeup_fd)
        self._raw = self._pipe.raw = _SocketRaw(self._pipe, timeout)  # type: ignore[arg-type]
        reader = LineReader(self._raw, 16384)
        reader.max_line_length = max_line_length
        self.rfile = reader
        self.wfile = PipeWriter(write_fd, timeout)

    def close_when_idle(self) -> None:
        """As Connection's: the wakeup fd ends the poll of an idle read, which then sees EOF."""
        self._raw.owe_waiting_input()
        self.rfile.close_when_idle = True
        self._pipe.closing = True

    def close(self) -> None:
        if self._fds is None:
            return
        self.wfile.close()
        for fd in self._fds:
            os.close(fd)
        self._fds = None

    def __repr__(self) -> str:
        return "<PipeConnection>"
