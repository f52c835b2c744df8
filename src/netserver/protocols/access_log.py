"""The HTTP access log: Apache's common and combined formats, or a format string.

The format is compiled once, at start-up, into a list of small functions,
so a bad directive is a configuration error naming it.  Fields the client
controls are escaped (control bytes, ``"`` and ``\\`` become ``\\xHH``, as
Net::Server::HTTP does), so that a request cannot forge a log line.  A file
is opened in the parent with O_APPEND and each line is one ``write``, which
the kernel keeps whole between the children.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from ..daemon import try_appending
from ..errors import ConfigError, StartupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Field = Callable[[dict[str, Any], Any, float], str]

FORMATS = {
    "common": '%h %l %u %t "%r" %>s %b',
    "combined": '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"',
}
_DIRECTIVE = re.compile(r"%(?:\{([^}]*)\})?(>?)([a-zA-Z%])")
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def _escape(text: str) -> str:
    return _UNSAFE.sub(lambda match: "".join("\\x%02x" % byte for byte in match.group().encode("utf-8")),
                       text)


def _header_key(name: str) -> str:
    upper = name.upper().replace("-", "_")
    return upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper


def _response_header(name: str) -> Field:
    lower = name.lower()

    def field(environ: dict[str, Any], response: Any, took: float) -> str:
        for key, value in response.headers:
            if key.lower() == lower:
                return _escape(value)
        return "-"
    return field


_second = -1
_stamp = ""


def _time(environ: dict[str, Any], response: Any, took: float) -> str:
    global _second, _stamp  # one formatting a second, shared by every log line of the process
    now = int(time.time())
    if now != _second:
        _second, _stamp = now, time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(now))
    return _stamp


def _request_line(environ: dict[str, Any], response: Any, took: float) -> str:
    return _escape("%s %s %s" % (environ["REQUEST_METHOD"], environ["RAW_URI"], environ["SERVER_PROTOCOL"]))


def _simple(key: str, default: str = "-") -> Field:
    return lambda environ, response, took: _escape(str(environ.get(key) or default))


SIMPLE: dict[str, Field] = {
    "h": _simple("REMOTE_ADDR"),
    "a": _simple("REMOTE_ADDR"),
    "l": lambda environ, response, took: "-",
    "u": _simple("REMOTE_USER"),
    "t": _time,
    "r": _request_line,
    "s": lambda environ, response, took: str(response.code or "-"),
    "b": lambda environ, response, took: str(response.body_sent) if response.body_sent else "-",
    "B": lambda environ, response, took: str(response.body_sent),
    "D": lambda environ, response, took: str(int(took * 1e6)),
    "T": lambda environ, response, took: str(int(took)),
    "m": _simple("REQUEST_METHOD"),
    "U": lambda environ, response, took: _escape(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")),
    "q": lambda environ, response, took: "?" + _escape(environ["QUERY_STRING"]) if environ.get("QUERY_STRING")
    else "",
    "H": _simple("SERVER_PROTOCOL"),
    "p": _simple("SERVER_PORT"),
    "P": lambda environ, response, took: str(os.getpid()),
    "v": _simple("HTTP_HOST"),
    "%": lambda environ, response, took: "%",
}


def _cannot_open(target: str, origin: str, error: OSError) -> StartupError:
    return StartupError("access_log_file: cannot open %r (%s): %s" % (target, origin, error.strerror))


#: access_log_file values that name a stream rather than a file.
_NAMED = frozenset(("STDOUT", "/DEV/STDOUT", "STDERR", "/DEV/STDERR", "LOG"))


class AccessLog:
    """Compiled format plus where the lines go; ``write`` does nothing until ``open`` names a target."""

    def __init__(self, parts: list[str | Field]) -> None:
        self.parts = parts
        self.enabled = False
        self._fd = -1
        self._log: Any = None

    @classmethod
    def compile(cls, text: str, origin: str) -> AccessLog:
        fmt = FORMATS.get(text.strip().lower(), text)
        parts: list[str | Field] = []
        position = 0
        for match in _DIRECTIVE.finditer(fmt):
            if match.start() > position:
                parts.append(fmt[position:match.start()])
            argument, _, letter = match.groups()
            if argument is not None and letter in "io":
                parts.append(_simple(_header_key(argument)) if letter == "i" else _response_header(argument))
            elif argument is None and letter in SIMPLE:
                parts.append(SIMPLE[letter])
            else:
                raise ConfigError("access_log_format", text, origin,
                                  "has an unknown directive %r (known: %s, %%{Header}i, %%{Header}o)" %
                                  (match.group(), " ".join("%" + key for key in SIMPLE)))
            position = match.end()
        if position < len(fmt):
            if "%" in fmt[position:]:
                raise ConfigError("access_log_format", text, origin, "ends with an incomplete directive")
            parts.append(fmt[position:])
        return cls(parts)

    def check(self, target: str | None, origin: str) -> None:
        """Check mode: raise what ``open`` would, leaving no file behind."""
        if target is None or target.strip().upper() in _NAMED:
            return
        try:
            try_appending(target)
        except OSError as error:
            raise _cannot_open(target, origin, error) from None

    def open(self, target: str | None, origin: str, log: Any) -> None:
        if target is None:
            return
        named = target.strip().upper()
        if named in ("STDOUT", "/DEV/STDOUT"):
            self._fd = 1
        elif named in ("STDERR", "/DEV/STDERR"):
            self._fd = 2
        elif named == "LOG":
            self._log = log
        else:
            try:
                self._fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as error:
                raise _cannot_open(target, origin, error) from None
        self.enabled = True

    def line(self, environ: dict[str, Any], response: Any, took: float) -> str:
        return "".join(part if type(part) is str else part(environ, response, took) for part in self.parts)

    def write(self, environ: dict[str, Any], response: Any, took: float) -> None:
        if not self.enabled:
            return
        line = self.line(environ, response, took)
        if self._log is not None:
            self._log(2, "%s", line)
            return
        try:
            os.write(self._fd, (line + "\n").encode("utf-8", "replace"))
        except OSError:
            pass  # a full disk must not fail the request; the error log has its own path
