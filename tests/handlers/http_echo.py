"""A WSGI application for the request suite: it answers with how the server parsed the request.

The response body is JSON: method, target (RAW_URI), version, PATH_INFO,
QUERY_STRING, every HTTP_* / CONTENT_* key, and the body as read through
wsgi.input (latin-1 text, so any byte survives the round trip).
"""

import json


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    echo = {
        "method": environ["REQUEST_METHOD"],
        "target": environ["RAW_URI"],
        "version": environ["SERVER_PROTOCOL"].removeprefix("HTTP/"),
        "environ": {key: value for key, value in environ.items()
                    if key.startswith(("HTTP_", "CONTENT_")) or key in ("PATH_INFO", "QUERY_STRING")},
        "body": body.decode("latin-1"),
    }
    data = json.dumps(echo, sort_keys=True).encode("ascii")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
