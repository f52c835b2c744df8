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
