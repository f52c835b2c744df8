"""Net::Server's log levels 0-4 on top of stdlib logging.

Level 0 is errors only (Net::Server's 0 silenced even fatal errors; we never
do), 1 warnings, 2 notices, 3 info (one line per connection), 4 debug.  Each
line carries the time, the pid and the level; bytes a client controls are
escaped so that one record stays one line and no terminal escape reaches a
log reader.

The handler is opened in the parent before forking, so children inherit it:
a file is opened in append mode, whose single ``write`` per record the
kernel keeps whole between processes.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

#: Net::Server level -> stdlib level
LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: NOTICE, 3: logging.INFO, 4: logging.DEBUG}
_NAMES = {logging.ERROR: "error", logging.WARNING: "warning", NOTICE: "notice", logging.INFO: "info",
          logging.DEBUG: "debug", logging.CRITICAL: "error"}
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\n\t]")


def escape(text: str) -> str:
    """Make text safe for one log line: newlines and control bytes become escapes."""
    text = _UNPRINTABLE.sub(lambda m: "\\x%02x" % ord(m.group()) if ord(m.group()) < 256
                            else m.group().encode("unicode_escape").decode("ascii"), text)
    return text.replace("\n", "\\n")


class LineFormatter(logging.Formatter):
    """``2026/11/27-22:46:01 [1234] notice: message``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%Y/%m/%d-%H:%M:%S")
        message = escape(record.getMessage())
        if record.exc_info:
            trace = self.formatException(record.exc_info)
            message += "\n" + "\n".join("    " + escape(line) for line in trace.splitlines())
        return f"{stamp} [{record.process}] {_NAMES.get(record.levelno, 'info')}: {message}"


class SyslogFormatter(LineFormatter):
    def format(self, record: logging.LogRecord) -> str:
        message = escape(record.getMessage())
        if record.exc_info:
            message += " | " + escape(self.formatException(record.exc_info)).replace("\\n", " | ")
        return message


def syslog_address(logsock: str | None) -> str | tuple[str, int]:
    if not logsock:
        return "/dev/log"
    if logsock.startswith("/"):
        return logsock
    host, _, port = logsock.rpartition(":")
    if host and port.isdigit():
        return (host.strip("[]"), int(port))
    return logsock


def make_handler(log_file: str | None, ident: str, facility: str, logsock: str | None) -> logging.Handler:
    """Raises OSError (unopenable file) or ValueError (unknown facility)."""
    if log_file is None:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LineFormatter())
        return handler
    if log_file.lower() in ("syslog", "sys::syslog"):
        from logging.handlers import SysLogHandler  # only syslog needs it: kept out of start-up time

        code = SysLogHandler.facility_names.get(facility.lower())
        if code is None:
            raise ValueError(f"syslog_facility: {facility!r} is not a syslog facility")
        address = syslog_address(logsock)
        kind = socket.SOCK_DGRAM
        handler = SysLogHandler(address=address, facility=code, socktype=kind)
        handler.ident = ident + f"[{os.getpid()}]: "
        # SysLogHandler maps unknown level names to "warning"; ours has NOTICE.
        handler.priority_map = {**handler.priority_map, "NOTICE": "notice"}
        handler.setFormatter(SyslogFormatter())
        return handler
    handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    handler.setFormatter(LineFormatter())
    return handler


class Log:
    """The server's logger: ``log(level, fmt, *args)`` with Net::Server levels.

    ``enabled(level)`` is a cheap check for hot paths.
    """

    def __init__(self, name: str = "netserver") -> None:
        self.logger = logging.getLogger(name)
        self.logger.propagate = False
        self.level = 2
        self.handler: logging.Handler | None = None

    def configure(self, level: int, handler: logging.Handler) -> None:
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
            self.handler.close()
        self.level = level
        self.handler = handler
        self.logger.addHandler(handler)
        self.logger.setLevel(LEVELS[level])

    def enabled(self, level: int) -> bool:
        return level <= self.level

    def __call__(self, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
        if level <= self.level:
            self.logger.log(LEVELS[level], msg, *args, exc_info=exc_info)

    def after_fork(self) -> None:
        """Syslog handlers name the pid in their ident; refresh it in a child."""
        if hasattr(self.handler, "ident") and hasattr(self.handler, "facility"):  # a SysLogHandler
            prefix = self.handler.ident.split("[", 1)[0]
            self.handler.ident = f"{prefix}[{os.getpid()}]: "

    def default_handler(self) -> None:
        """Stderr at level 2, used until the configured handler is open."""
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LineFormatter())
        self.configure(2, handler)
