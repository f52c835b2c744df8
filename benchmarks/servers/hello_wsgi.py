"""The hello-world WSGI application of the HTTP workloads (5-7): every Python peer serves this.

    netserver --app hello_wsgi:app        gunicorn hello_wsgi:app        granian --interface wsgi hello_wsgi:app

A fixed 14-byte body with its length, so no server needs chunked encoding
and each does the same work per request: parse, environ, one call, one write.
``hello.psgi`` is the same application for the Perl peers.
"""

BODY = b"Hello, world!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
