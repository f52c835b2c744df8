"""WSGI apps for the HTTP load and fault tests."""

import os
import time


def hello(environ, start_response):
    body = b"Hello, world!\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def slow(environ, start_response):
    """Every tenth request takes 100 ms, so a HUP or a kill finds requests in flight."""
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.1)
    body = b"pid %d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def big(environ, start_response):
    """10 MiB in 64 KiB pieces: more than any socket buffer holds."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    piece = b"x" * 65536
    for _ in range(160):
        yield piece


def route(environ, start_response):
    if environ["PATH_INFO"] == "/big":
        return big(environ, start_response)
    return hello(environ, start_response)


PATTERN = bytes(range(256)) * 16384  # 4 MiB whose every byte says where it is


def big_file(environ, start_response):
    """A 4 MiB regular file through wsgi.file_wrapper: sendfile on a plain socket."""
    import tempfile

    path = os.path.join(tempfile.gettempdir(), "netserver-test-big-%d" % os.getpid())
    if not os.path.exists(path):
        with open(path, "wb") as out:
            out.write(PATTERN)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    handle = open(path, "rb")
    os.unlink(path)  # the open file stays readable; nothing is left behind
    return environ["wsgi.file_wrapper"](handle)
