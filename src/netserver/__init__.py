"""netserver: Perl's Net::Server for Python.

``Single`` serves one connection at a time; ``PreForkSimple`` keeps a fixed
pool of pre-forked children; ``PreFork`` keeps a pool that follows the load.  Subclass one and define
``process_request(self, client)``.
"""

from .connection import LineTooLong
from .errors import BindError, BootFailure, ConfigError, ExitCode, NetServerError, ResolveError, StartupError
from .options import Option
from .personalities import PreFork, PreForkSimple, Single
from .server import Server

__all__ = ["BindError", "BootFailure", "ConfigError", "ExitCode", "LineTooLong", "NetServerError", "Option",
           "PreFork", "PreForkSimple", "ResolveError", "Server", "Single", "StartupError"]
__version__ = "0.1.0"
