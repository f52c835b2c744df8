"""The objects a WSGI application touches besides environ: input, errors, file_wrapper.

``Input`` reads the request body as the application asks for it, never past
the body's end, so the bytes of a pipelined next request stay the server's.
It pulls through its channel (which sends ``100 Continue`` first when the
client waits for it) and raises ``HTTPError`` when the body breaks its
framing or its limit, which the server answers if no response has started.
"""

from __future__ import annotations

from collections.abc import Iterator

from .http import Request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class BodySource(Protocol):
        def read_more(self, request: Request) -> None:
            """Receive more of ``request``'s body into ``request.body`` (or raise)."""


class Input:
    """``wsgi.input``: read, readline, readlines and iteration, bounded by the body."""

    def __init__(self, source: BodySource, request: Request) -> None:
        self._source = source
        self._request = request

    def _fill(self) -> bool:
        """One more receive; False once the whole body is in."""
        request = self._request
        if request.error is not None:
            raise request.error
        if request.complete:
            return False
        self._source.read_more(request)
        if request.error is not None:
            raise request.error
        return True

    def read(self, size: int | None = -1) -> bytes:
        buffer = self._request.body
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(buffer)
            buffer.clear()
            return data
        while len(buffer) < size and self._fill():
            pass
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        buffer = self._request.body
        limit = size if size is not None and size >= 0 else None
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if limit is not None and len(buffer) >= limit:
                end = limit
                break
            start = len(buffer)
            if not self._fill():
                end = len(buffer)
                break
        if limit is not None:
            end = min(end, limit)
        data = bytes(buffer[:end])
        del buffer[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def unread(self) -> int:
        """Body bytes neither read by the application nor yet received (-1: unknown, chunked)."""
        request = self._request
        if request.complete:
            return 0
        if request.content_length is None:
            return -1
        return request.content_length - request.received


def _no_body() -> Input:
    request = Request()
    request.complete = True
    return Input(None, request)  # type: ignore[arg-type]  # complete: it never pulls from its source


#: The ``wsgi.input`` of every request whose body is empty or absent (most of them): nothing to
#: read and nothing to pull, so one object serves them all instead of one made per request.
NO_BODY = _no_body()


class Errors:
    """``wsgi.errors``: text the application writes goes to the server's log, a line a record."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._log(1, "wsgi.errors: %s", line)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            line, self._pending = self._pending, ""
            self._log(1, "wsgi.errors: %s", line)


class FileWrapper:
    """``wsgi.file_wrapper``: a file the server may send with ``os.sendfile``.

    Iterating reads ``block_size`` bytes at a time, which is what a server
    without sendfile (TLS, a file object with no descriptor) does.
    """

    def __init__(self, filelike: Any, block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            data = read(self.block_size)
            if not data:
                return
            yield data
