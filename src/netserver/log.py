"""Net::Server's log levels 0-4, written by a small line writer of our own.

Level 0 is errors only (Net::Server's 0 silenced even fatal errors; we never
do), 1 warnings, 2 notices, 3 info (one line per connection), 4 debug.  Each
line carries the time, the pid and the level; bytes a client controls are
escaped so that one record stays one line and no terminal escape reaches a
log reader.

Why not stdlib ``logging``: it imports ``threading``, whose at-fork hook runs
Python code in every forked child, and on CPython 3.11 each function a child
runs writes to its code object, so the hook alone un-shares about 400 KiB
per child (measured with the benchmark suite's /proc/PID/smaps_rollup
figures) and slows every fork.  A server whose users log with ``logging``
in their own code still can; the framework itself does not pay for it.

The sink is opened in the parent before forking, so children inherit it: a
file is opened with ``O_APPEND`` and every record is one ``write``, which the
kernel keeps whole between processes.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time

from .options import SYSLOG_FACILITIES

NAMES = ("error", "warning", "notice", "info", "debug")
#: Net::Server level -> syslog severity (RFC 5424): err, warning, notice, info, debug
SEVERITIES = (3, 4, 5, 6, 7)
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\n\t]")


def escape(text: str) -> str:
    """Make text safe for one log line: newlines and control bytes become escapes."""
    text = _UNPRINTABLE.sub(lambda m: "\\x%02x" % ord(m.group()) if ord(m.group()) < 256
                            else m.group().encode("unicode_escape").decode("ascii"), text)
    return text.replace("\n", "\\n")


def render(msg: str, args: tuple) -> str:
    """``msg % args`` as logging does it; a bad format is logged, not raised."""
    if not args:
        return str(msg)
    if len(args) == 1 and isinstance(args[0], dict) and args[0]:
        args = args[0]  # type: ignore[assignment]  # logging's mapping form: log(2, "%(x)s", {"x": 1})
    try:
        return str(msg) % args
    except Exception as error:  # a log call must never take the server down
        try:
            shown = repr(args)
        except Exception:
            shown = "(unprintable arguments)"
        return f"{msg!s} {shown} (bad log format: {type(error).__name__}: {error})"


def _trace() -> str:
    import traceback  # only a logged exception needs it

    return traceback.format_exc().rstrip("\n")


class Sink:
    """Where log lines go.  ``write(level, text)`` gets one escaped record."""

    def write(self, level: int, text: str) -> None:
        raise NotImplementedError

    def write_exception(self, level: int, text: str, trace: str) -> None:
        lines = "\n".join("    " + escape(line) for line in trace.splitlines())
        self.write(level, f"{text}\n{lines}")

    def flush(self) -> None: ...
    def close(self) -> None: ...


def _line(level: int, text: str) -> str:
    stamp = time.strftime("%Y/%m/%d-%H:%M:%S")
    return f"{stamp} [{os.getpid()}] {NAMES[level]}: {text}\n"


class StreamSink(Sink):
    """``2026/11/27-22:46:01 [1234] notice: message`` on a text stream (standard error)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr

    def write(self, level: int, text: str) -> None:
        try:
            self.stream.write(_line(level, text))
        except (OSError, ValueError):
            return  # a closed or broken stderr must not take the server down
        self.flush()

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass


class FileSink(Sink):
    """The same lines appended to a file, one ``write`` per record."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)

    def write(self, level: int, text: str) -> None:
        try:
            os.write(self.fd, _line(level, text).encode("utf-8", "backslashreplace"))
        except OSError:
            pass  # a full disk must not take the server down

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SyslogSink(Sink):
    """RFC 3164 datagrams, ``<PRI>ident[pid]: message``, to /dev/log, a unix path or host:port (UDP)."""

    def __init__(self, ident: str, facility: str, logsock: str | None) -> None:
        code = SYSLOG_FACILITIES.get(facility.lower())
        if code is None:
            raise ValueError(f"syslog_facility: {facility!r} is not a syslog facility")
        self.ident = ident
        self.facility = code
        self.address = syslog_address(logsock)
        self.sock: socket.socket | None = None
        try:
            self._connect()
        except OSError:
            if isinstance(self.address, tuple):
                raise  # a host that does not resolve is a configuration error
            # Like openlog(3): a syslogd that is not there yet (or is being
            # restarted across our HUP) is tried again at the next record.

    def _connect(self) -> None:
        address = self.address
        if isinstance(address, tuple):
            family = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_DGRAM)[0][0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            if isinstance(address, tuple):
                raise
            # Some syslog daemons listen on a stream socket.
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(address)
            except OSError:
                sock.close()
                raise
        self.sock = sock

    def write(self, level: int, text: str) -> None:
        priority = self.facility * 8 + SEVERITIES[level]
        payload = f"<{priority}>{self.ident}[{os.getpid()}]: {text}".encode("utf-8", "backslashreplace")
        for _attempt in (1, 2):
            try:
                if self.sock is None:
                    self._connect()
                assert self.sock is not None
                # A stream socket needs a delimiter between records.
                self.sock.sendall(payload + b"\0" if self.sock.type == socket.SOCK_STREAM else payload)
                return
            except OSError:
                self.close()  # syslogd restarted: reconnect once, then give this record up

    def write_exception(self, level: int, text: str, trace: str) -> None:
        self.write(level, text + " | " + " | ".join(escape(line) for line in trace.splitlines()))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def syslog_address(logsock: str | None) -> str | tuple[str, int]:
    if not logsock:
        return "/dev/log"
    if logsock.startswith("/"):
        return logsock
    host, _, port = logsock.rpartition(":")
    if host and port.isdigit():
        return (host.strip("[]"), int(port))
    return logsock


def make_sink(log_file: str | None, ident: str, facility: str, logsock: str | None) -> Sink:
    """Raises OSError (unopenable file or socket) or ValueError (unknown facility)."""
    if log_file is None:
        return StreamSink()
    if log_file.lower() in ("syslog", "sys::syslog"):
        return SyslogSink(ident, facility, logsock)
    return FileSink(log_file)


class Log:
    """The server's logger: ``log(level, fmt, *args)`` with Net::Server levels.

    ``enabled(level)`` is a cheap check for hot paths; arguments are formatted
    only when the level is on.
    """

    def __init__(self) -> None:
        # Until configure(): warnings and errors to standard error.
        self.level = 1
        self.sink: Sink = StreamSink()
        self.configured = False

    def configure(self, level: int, sink: Sink) -> None:
        if self.sink is not sink:
            self.sink.close()
        self.level = level
        self.sink = sink
        self.configured = True

    def enabled(self, level: int) -> bool:
        return level <= self.level

    def __call__(self, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
        if level > self.level:
            return
        level = min(max(level, 0), 4)
        text = escape(render(msg, args))
        if exc_info and sys.exc_info()[0] is not None:
            self.sink.write_exception(level, text, _trace())
        else:
            self.sink.write(level, text)

    def flush(self) -> None:
        self.sink.flush()
