"""WSGI applications for tests/functional/test_wsgi*.py: one dispatcher, a case per first path segment.

``netserver --app wsgi_apps:app`` serves them all; SCRIPT_NAME tests mount it
under a prefix, which the server removes from PATH_INFO before this sees it.
Marks (the iterable's close() was called) go to files in $MARK_DIR.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from urllib.parse import parse_qs

NOT_CALLABLE = 42
TEXT = [("Content-Type", "text/plain")]


def mark(name: str) -> None:
    folder = os.environ.get("MARK_DIR")
    if folder:
        with open(os.path.join(folder, name), "a") as file:
            file.write("%d\n" % os.getpid())


class Closing:
    """An iterable whose close() leaves a mark; ``fail_at`` makes iteration raise there."""

    def __init__(self, name: str, chunks: list[bytes], fail_at: int = -1, pause: float = 0.0) -> None:
        self.name, self.chunks, self.fail_at, self.pause = name, chunks, fail_at, pause

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError("the iterable failed on purpose")
            if index and self.pause:
                time.sleep(self.pause)
            yield chunk

    def close(self) -> None:
        mark(self.name)


def environ_case(environ, start_response):
    shown = {}
    for key, value in environ.items():
        if isinstance(value, (str, bool, int)) or key == "wsgi.version":
            shown[key] = value
    wsgi_input, errors = environ["wsgi.input"], environ["wsgi.errors"]
    shown["input_api"] = all(callable(getattr(wsgi_input, name, None))
                             for name in ("read", "readline", "readlines", "__iter__"))
    shown["errors_api"] = all(callable(getattr(errors, name, None)) for name in ("write", "writelines", "flush"))
    shown["file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    shown["dict_bytes"] = sys.getsizeof(environ)
    shown["str_types"] = sorted(key for key, value in environ.items() if key.isupper() and type(value) is not str)
    body = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def echo_case(environ, start_response):
    """Read the body the way ?mode= says; answer it, and how it arrived (X-Pieces)."""
    wsgi_input = environ["wsgi.input"]
    mode = parse_qs(environ["QUERY_STRING"]).get("mode", ["read"])[0]
    if mode == "read":
        pieces = [wsgi_input.read()]
    elif mode == "sized":
        pieces = []
        while True:
            piece = wsgi_input.read(7)
            if not piece:
                break
            pieces.append(piece)
    elif mode == "readline":
        pieces = []
        while True:
            line = wsgi_input.readline()
            if not line:
                break
            pieces.append(line)
    elif mode == "readline_sized":
        pieces = []
        while True:
            line = wsgi_input.readline(4)
            if not line:
                break
            pieces.append(line)
    elif mode == "readlines":
        pieces = wsgi_input.readlines()
    else:
        pieces = list(wsgi_input)
    pieces.append(wsgi_input.read())  # at the end: empty, never the next request
    body = b"".join(pieces)
    start_response("200 OK", TEXT + [("X-Pieces", str(len(pieces) - 1)), ("Content-Length", str(len(body)))])
    return [body]


def late_read_case(environ, start_response):
    """Reads the body only while the response is produced (after start_response, before any byte)."""
    start_response("200 OK", TEXT)

    def body():
        yield b"got " + environ["wsgi.input"].read()
    return body()


def noread_case(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"not read"]


def errors_case(environ, start_response):
    errors = environ["wsgi.errors"]
    errors.write("first wsgi.errors line\nsecond ")
    errors.writelines(["wsgi.errors line\n"])
    errors.write("unterminated tail")
    errors.flush()
    start_response("200 OK", TEXT)
    return [b"logged"]


def file_case(environ, start_response):
    path = parse_qs(environ["QUERY_STRING"])["path"][0]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](open(path, "rb"), 8192)


def bytesio_case(environ, start_response):
    size = int(parse_qs(environ["QUERY_STRING"]).get("size", ["100000"])[0])
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](io.BytesIO(bytes(range(256)) * (size // 256) + b"x" * (size % 256)), 4096)


def write_case(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"written, ")
    write(bytearray(b"then "))
    return [b"returned, ", b"in order"]


def exc_before_case(environ, start_response):
    start_response("200 OK", TEXT + [("X-First", "yes")])
    try:
        raise ValueError("caught before the response started")
    except ValueError:
        start_response("503 Service Unavailable", TEXT + [("X-Replaced", "yes")], sys.exc_info())
    return [b"replaced"]


def exc_after_case(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"partial body")
    try:
        raise ValueError("after the response started")
    except ValueError:
        start_response("500 Internal Server Error", TEXT, sys.exc_info())  # re-raises
    return [b"never"]


def close_case(environ, start_response):
    start_response("200 OK", TEXT)
    return Closing("close-normal", [b"one ", b"two"])


def close_raise_case(environ, start_response):
    start_response("200 OK", TEXT)
    return Closing("close-raise", [b"one ", b"two"], fail_at=1)


def close_slow_case(environ, start_response):
    start_response("200 OK", TEXT)
    return Closing("close-slow", [b"x" * 65536] * 400, pause=0.01)


def stream_case(environ, start_response):
    start_response("200 OK", TEXT)
    return (b"part %d\n" % index for index in range(5))


def empty_stream_case(environ, start_response):
    start_response("200 OK", TEXT)
    return iter([])


def bad_status_case(environ, start_response):
    start_response("200OK", TEXT)
    return [b"bad"]


def bad_name_case(environ, start_response):
    start_response("200 OK", [("Bad Name", "x")])
    return [b"bad"]


def bad_value_case(environ, start_response):
    start_response("200 OK", [("X-Injected", "a\r\nSet-Cookie: evil=1")])
    return [b"bad"]


def non_bytes_case(environ, start_response):
    start_response("200 OK", TEXT)
    return ["text, not bytes"]


def non_bytes_later_case(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"fine ", "then text"]


def raise_case(environ, start_response):
    raise RuntimeError("the application failed on purpose")


def raise_after_case(environ, start_response):
    start_response("200 OK", TEXT)

    def body():
        yield b"first chunk\n"
        raise RuntimeError("failed after the response started")
    return body()


def no_start_case(environ, start_response):
    return [b"forgot start_response"]


def hello_case(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"Hello, world!\n"]


def pid_case(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", TEXT)
    return [body]


def no_content_case(environ, start_response):
    start_response("204 No Content", [])
    return [b""]


def slow_case(environ, start_response):
    time.sleep(1.0)  # long enough for a test to signal the server meanwhile
    start_response("200 OK", TEXT)
    return [b"slow"]


def slow_stream_case(environ, start_response):
    start_response("200 OK", TEXT)

    def body():
        time.sleep(1.0)  # the head goes out with the first piece, after a test's signal
        yield b"slow"

    return body()


CASES = {name.removesuffix("_case"): value for name, value in list(globals().items()) if name.endswith("_case")}


def app(environ, start_response):
    name = environ["PATH_INFO"].strip("/").split("/")[0] or "hello"
    case = CASES.get(name)
    if case is None:
        start_response("404 Not Found", TEXT)
        return [b"no such case: " + name.encode("latin-1", "replace")]
    return case(environ, start_response)
