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

Nothing here imports a module or looks up a codec once the server runs: a
child may have chrooted, or dropped to a user who cannot read the
interpreter's own files, and an error must still reach the log.  That is why
tracebacks are formatted here (:func:`format_exception`) rather than by the
``traceback`` module, and why :func:`escape` spells out its escapes instead
of using the ``unicode_escape`` codec (which is imported on first use).
"""

from __future__ import annotations

import mmap
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Callable

from .options import SYSLOG_FACILITIES

NAMES = ("error", "warning", "notice", "info", "debug")
#: Net::Server level -> syslog severity (RFC 5424): err, warning, notice, info, debug
SEVERITIES = (3, 4, 5, 6, 7)
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\n\t]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def escape(text: str) -> str:
    """Make text safe for one log line: newlines and control bytes become escapes."""
    return _UNPRINTABLE.sub(_escaped, text).replace("\n", "\\n")


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


_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"
_REPEATS_SHOWN = 3  # as the traceback module: identical frames after the third become one line


def format_exception(error: BaseException) -> str:
    """``error`` and its chain in the ``traceback`` module's layout, without importing anything.

    Every frame shows its file, line and function; its source line only when
    the file can still be read (never under chroot, nor for a user who cannot
    read the interpreter's tree).  Chained exceptions, notes and the members
    of an exception group are included.
    """
    lines: list[str] = []
    _format_chain(error, lines, set(), "")
    return "\n".join(lines)


def _format_chain(error: BaseException, lines: list[str], seen: set[int], indent: str) -> None:
    chain: list[tuple[BaseException, str]] = []  # latest first, each with how it led to the one before
    current: BaseException | None = error
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    for position in range(len(chain) - 1, -1, -1):
        exc, link = chain[position]
        _format_one(exc, lines, seen, indent)
        if link:
            lines.extend(("", indent + link, ""))


def _format_one(error: BaseException, lines: list[str], seen: set[int], indent: str) -> None:
    tb = error.__traceback__
    if tb is not None:
        lines.append(indent + "Traceback (most recent call last):")
    previous, repeats = None, 0
    while tb is not None:
        code = tb.tb_frame.f_code
        where = (code.co_filename, tb.tb_lineno, code.co_name)
        tb = tb.tb_next
        if where == previous:
            repeats += 1
            if repeats >= _REPEATS_SHOWN:
                continue
        else:
            _repeated(lines, repeats, indent)
            previous, repeats = where, 0
        lines.append('%s  File "%s", line %s, in %s' % (indent, *where))
        source = _source_line(where[0], where[1])
        if source:
            lines.append(indent + "    " + source)
    _repeated(lines, repeats, indent)
    lines.append(indent + _exception_line(error))
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list | tuple):
        lines.extend(indent + str(note) for note in notes)
    if isinstance(error, BaseExceptionGroup):
        for number, member in enumerate(error.exceptions, 1):
            lines.append("%s+---------------- %d ----------------" % (indent, number))
            _format_chain(member, lines, seen, indent + "| ")


def _repeated(lines: list[str], repeats: int, indent: str) -> None:
    if repeats >= _REPEATS_SHOWN:
        lines.append("%s  [Previous line repeated %d more times]" % (indent, repeats - _REPEATS_SHOWN + 1))


def _exception_line(error: BaseException) -> str:
    kind = type(error)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    try:
        text = str(error)
    except Exception:
        text = "<exception str() failed>"
    return f"{name}: {text}" if text else name


def _source_line(filename: str, lineno: int | None) -> str:
    if not filename or filename.startswith("<") or not lineno or lineno < 1:
        return ""
    try:
        # Bytes, decoded by hand: a text-mode open would look its codec up.
        with open(filename, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if number == lineno:
                    return line.decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        pass  # unreadable here (chroot, another user's tree): file and line must do
    return ""


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
    """The same lines appended to a file, one ``write`` per record.

    On a full disk a record may be cut part-way (a short write) or not
    written at all, and the next record, from this process or another one
    appending to the same file, would carry on the cut line.  So a failed or
    short write raises a flag in a page shared with the children (made here,
    before they fork); while it is up, a record first reads the file's last
    byte and starts a fresh line when the file ends mid-record, and the first
    record written whole lowers it.  The usual record costs one system call.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # Readable too, so that the tail can be read with pread (O_APPEND
        # concerns writes only); a file we may only write to still works.
        flags = os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            self.fd = os.open(path, os.O_RDWR | flags, 0o666)
        except PermissionError:
            self.fd = os.open(path, os.O_WRONLY | flags, 0o666)
        self._cut = mmap.mmap(-1, 1)  # MAP_SHARED: byte 0 is 1 while the file may end mid-record

    def write(self, level: int, text: str) -> None:
        data = _line(level, text).encode("utf-8", "backslashreplace")
        cut = self._cut
        if cut[0] and not self._ends_a_line():
            data = b"\n" + data
        try:
            written = os.write(self.fd, data)
        except OSError:
            cut[0] = 1  # a full disk must not take the server down
            return
        if written < len(data):
            cut[0] = 1
        elif cut[0]:
            cut[0] = 0

    def _ends_a_line(self) -> bool:
        try:
            size = os.fstat(self.fd).st_size
            return not size or os.pread(self.fd, 1, size - 1) == b"\n"
        except OSError:
            return False  # cannot tell: an empty line is better than two records on one

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


class RateLimit:
    """At most ``per_second`` records a second, and then how many were left out.

    ``admit()`` returns None for a record to leave out, or the number left
    out since the last admitted one (usually 0), which the caller reports
    with the record it logs.  The state is one shared anonymous page: made in
    the parent before forking, it limits the whole server rather than each
    child (a scan spread over 50 children would otherwise log 50 times as
    much).  Its updates take no lock, so two processes admitting in the same
    instant can log one record too many or miss one from the count; a lock
    on this path would cost more than that is worth.
    """

    _STATE = struct.Struct("=qqq")  # whole monotonic second, records admitted in it, records left out

    def __init__(self, per_second: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.clock = clock  # CLOCK_MONOTONIC is the same in every process of the machine
        self._page = mmap.mmap(-1, self._STATE.size)  # MAP_SHARED: children update the same bytes

    def admit(self) -> int | None:
        second = int(self.clock())
        window, admitted, left_out = self._STATE.unpack_from(self._page)
        if window != second:
            window, admitted = second, 0
        if admitted >= self.per_second:
            self._STATE.pack_into(self._page, 0, window, admitted, left_out + 1)
            return None
        self._STATE.pack_into(self._page, 0, window, admitted + 1, 0)
        return left_out


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
        error = sys.exc_info()[1] if exc_info else None
        if error is not None:
            self.sink.write_exception(level, text, format_exception(error))
        else:
            self.sink.write(level, text)

    def flush(self) -> None:
        self.sink.flush()
