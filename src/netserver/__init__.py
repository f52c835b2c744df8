"""netserver: Perl's Net::Server for Python.

``Single`` serves one connection at a time; ``PreForkSimple`` keeps a fixed
pool of pre-forked children.  Subclass one and define
``process_request(self, client)``.
"""

from .connection import LineTooLong
from .errors import BindError, BootFailure, ConfigError, ExitCode, NetServerError, ResolveError, StartupError
from .options import Option
from .personalities import PreForkSimple, Single
from .server import Server

__all__ = ["BindError", "BootFailure", "ConfigError", "ExitCode", "LineTooLong", "NetServerError", "Option",
           "PreForkSimple", "ResolveError", "Server", "Single", "StartupError"]
__version__ = "0.1.0"
