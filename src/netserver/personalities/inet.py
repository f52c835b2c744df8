"""INET: serve the one connection a superserver hands over on stdin/stdout.

For inetd, xinetd and systemd socket units with ``Accept=yes``: the
superserver accepts, starts one process per connection with the client on
fd 0 (and fd 1), and this personality serves it and exits.  Nothing is
bound, nothing forked; configuration, hooks, allow/deny and the ``client``
object are every other personality's.

fd 0 is a stream socket (inetd, systemd ``Accept=yes``): the peer names come
from ``getpeername``, the client is a ``Connection`` with the timeout set on
the socket as a listener would pass it on.  fd 0 and fd 1 are pipes (a
superserver that pipes, a test harness): the client is a
``PipeConnection`` with the same ``rfile``/``wfile`` contract and empty peer
names.  Either way the connection is moved to private descriptors and fds
0 and 1 are pointed at /dev/null, so a stray ``print()`` cannot corrupt the
protocol, and closing the client really ends the connection.

The log never goes to stdout.  Without ``log_file`` it goes to stderr,
unless stderr is the connection itself (inetd passes the socket as fd 2
too): then it goes to syslog.  Options that belong to a long-running server
are refused: ``background``/``setsid`` (the superserver runs the process)
and ``pid_file`` (a second concurrent connection would find it locked).

Signals: TERM and QUIT end an idle connection at once and let a request in
flight finish; INT abandons it; HUP ends the connection at its next idle
point (a re-exec would have nothing to keep: the next connection starts a
new process anyway).
"""

from __future__ import annotations

import os
import socket
import stat

from ..connection import Connection, PipeConnection, timeval
from ..daemon import StartupError
from ..errors import ConfigError
from ..listeners import display_address, normalise_ip
from ..log import SyslogSink
from ..server import StopServer
from .single import Single

REFUSED = {
    "background": "the superserver runs this process; it has nothing to detach from",
    "setsid": "the superserver runs this process; it has nothing to detach from",
    "pid_file": "each connection is its own process: a second one would find the pid file locked",
}


class Endpoint:
    """Where the connection arrived, as far as this process can tell: what ``client.listener`` is."""

    def __init__(self, proto: str, local: str) -> None:
        self.proto = proto
        self.local = local

    def display(self) -> str:
        return self.local

    def describe(self) -> str:
        return f"{self.proto}:{self.local}"

    def close(self) -> None:
        """Nothing listens here."""

    def remove_socket_file(self) -> None:
        """Nothing was bound."""


class INET(Single):
    """Serve the connection on stdin/stdout, then exit (inetd, xinetd, systemd ``Accept=yes``).

    Caller API and hooks: Single's (every per-connection hook runs in this
    process, once).  ``done()`` is always true: one connection per process.
    """

    personality = "INET"

    def post_configure(self) -> None:
        super().post_configure()
        for name, reason in REFUSED.items():
            if getattr(self.options, name):
                raise ConfigError(name, getattr(self.options, name), self.option_origins[name],
                                  f"cannot be used with INET: {reason}")

    def open_files(self) -> None:
        super().open_files()
        if self.options.log_file is None and not self.in_check_mode() and _same_file(2, 0):
            # inetd gives us the socket as stderr too: a log line there would reach the client.
            options = self.options
            self.log.configure(options.log_level, SyslogSink(options.syslog_ident, options.syslog_facility,
                                                             options.syslog_logsock))

    def bind(self) -> None:
        """Nothing to bind; a standard input that is no connection fails here, before anything starts."""
        self.listeners = []
        _connection_kind()

    def done(self) -> bool:
        return True

    def loop(self) -> None:
        client = self.stdio_client()  # after post_bind: a pipe's reads watch the signal wakeup fd
        self.notify_ready()
        try:
            self.run_client_connection(client)
        except StopServer:
            self.log(2, "Stopping during a request from %s", self._peer(client))
        self.stopping = True

    def stdio_client(self) -> Connection | PipeConnection:
        """The client on fd 0 (a socket) or fds 0 and 1 (pipes); StartupError for anything else."""
        options = self.options
        if _connection_kind() == "socket":
            for fd in (1, 2):
                if _same_file(fd, 0):
                    _point_at_dev_null(fd)  # inetd's fds 1 and 2 are the socket too: ours is the copy taken below
            sock = socket.socket(fileno=_take_fd(0))
            if options.timeout:
                limit = timeval(options.timeout)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
            if sock.family == socket.AF_UNIX:
                endpoint, peer = Endpoint("unix", "unix:" + (sock.getsockname() or "?")), ""
            else:
                local = sock.getsockname()
                endpoint, peer = Endpoint("tcp", display_address(normalise_ip(local[0]), local[1])), sock.getpeername()
            return Connection(sock, peer, endpoint, options.max_line_length, options.timeout)
        read_fd, write_fd = _take_fd(0), _take_fd(1)
        return PipeConnection(read_fd, write_fd, Endpoint("pipe", "stdin/stdout"), options.max_line_length,
                              options.timeout, self.signals.read_fd)


def _connection_kind() -> str:
    """'socket' or 'pipes': what fds 0 and 1 hold; StartupError (exit 1) for anything else."""
    mode = _mode(0)
    if stat.S_ISSOCK(mode):
        with socket.socket(fileno=os.dup(0)) as probe:
            if probe.type != socket.SOCK_STREAM:
                raise StartupError("INET: standard input is a datagram socket; only stream connections are served "
                                   "(inetd: 'stream ... nowait', systemd: ListenStream with Accept=yes)")
        return "socket"
    if stat.S_ISFIFO(mode) and stat.S_ISFIFO(_mode(1)):
        return "pipes"
    raise StartupError("INET: standard input is not a connection (a stream socket, or a pipe with a pipe on "
                       "standard output); run this from inetd, xinetd or a systemd socket unit with Accept=yes")


def _mode(fd: int) -> int:
    try:
        return os.fstat(fd).st_mode
    except OSError:
        return 0


def _same_file(fd: int, other: int) -> bool:
    try:
        one, two = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)


def _take_fd(fd: int) -> int:
    """Move fd to a private descriptor and leave /dev/null in its place."""
    private = os.dup(fd)
    _point_at_dev_null(fd)
    return private


def _point_at_dev_null(fd: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, fd)
    os.close(null)
