"""Protocols: what a connection speaks, mixed in front of a personality.

``wsgi.WSGIProtocol`` (HTTP/1.1 and WSGI) needs httptools, the ``http``
extra; nothing here imports it until HTTP is used.
"""

from __future__ import annotations

import importlib.util


def http_available() -> bool:
    """True if httptools, the HTTP parser of the ``http`` extra, can be imported."""
    return importlib.util.find_spec("httptools") is not None


HTTP_EXTRA_HINT = "needs httptools, the HTTP extra: pip install 'netserver[http]'"
