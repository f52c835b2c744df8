"""netserver: Perl's Net::Server for Python.

``Single`` serves one connection at a time; ``PreForkSimple`` keeps a fixed
pool of pre-forked children; ``PreFork`` keeps a pool that follows the load; ``Fork`` forks a
child per connection; ``INET`` serves the one connection inetd or systemd hands over on stdin.  Subclass
one and define ``process_request(self, client)``, or put ``WSGIProtocol`` in front of one to serve a
WSGI application.
"""

from .connection import LineTooLong
from .errors import BindError, BootFailure, ConfigError, ExitCode, NetServerError, ResolveError, StartupError
from .options import Option
from .server import Server

__all__ = ["BindError", "BootFailure", "ConfigError", "ExitCode", "Fork", "INET", "LineTooLong", "NetServerError",
           "Option", "PreFork", "PreForkSimple", "ResolveError", "Server", "Single", "StartupError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Each personality's module is imported when the personality is first named, so that a server
    # pays at start-up only for the one it runs.
    # The registry, not "from . import personalities": that form asks this very hook for the
    # submodule before importing it.
    from .personalities import PERSONALITIES, load

    if name in PERSONALITIES:
        return load(name)
    # WSGIProtocol needs httptools (the http extra): imported on first use, never by "import netserver".
    if name == "WSGIProtocol":
        from .protocols.wsgi import WSGIProtocol

        return WSGIProtocol
    raise AttributeError(f"module 'netserver' has no attribute {name!r}")
