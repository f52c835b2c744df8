"""The ``netserver`` command: pick a personality and a handler, then run.

``netserver [--handler module:attr] [--server_type NAME] [options]``

``handler`` and ``server_type`` are read before anything else, from the
command line or else from the conf file it names, so that ``--help`` lists
the options of the personality actually chosen and an option that belongs to
another personality is refused by name.  They stay in the arguments: the
server reads them again like any option and checks that they describe the
class built here.  The option parser itself is the one ``run()`` uses
(config.parse_argv): one grammar for the command line, generated from the
declarations, rather than a second argparse description that could drift.
"""

from __future__ import annotations

import sys

from . import config
from .errors import ConfigError, ExitCode, NetServerError
from .loading import load_object
from .options import OptionClash
from .personalities import PERSONALITIES, PreForkSimple, find
from .server import Server

DEFAULT_PERSONALITY = PreForkSimple
INTRO = """Runs a Net::Server-style server.  MODULE:ATTR names a class that defines
process_request(self, client) (it is mixed in front of the personality), or a
Server subclass.  Without --handler it runs the demo line service.  handler and
server_type may also come from the conf file; the command line wins.
Personalities: {names}.  Default: {default}.

"""

#: (value, where it came from), e.g. ("Single", "server.conf:3")
Setting = tuple[str, str]


def _take(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """Remove --name VALUE / --name=VALUE (dashes or underscores) from argv."""
    spelled = {f"--{name}", f"--{name.replace('_', '-')}"}
    rest: list[str] = []
    value = None
    index = 0
    while index < len(argv):
        token = argv[index]
        key, has_value, text = token.partition("=")
        if key in spelled:
            if has_value:
                value = text
            elif index + 1 < len(argv):
                value = argv[index + 1]
                index += 1
            else:
                raise ConfigError(name, None, "command line", "needs a value")
        else:
            rest.append(token)
        index += 1
    return value, rest


def chosen(argv: list[str], names: tuple[str, ...] = ("handler", "server_type")) -> tuple[Setting | None, ...]:
    """handler and server_type (or ``names``): the command line's, else the last in the conf file it names."""
    found: dict[str, Setting] = {}
    for name in names:
        value, _ = _take(argv, name)
        if value is not None:
            found[name] = (value.strip(), "command line")
    conf_file, _ = _take(argv, "conf_file")
    if conf_file and len(found) < len(names):
        from_file: dict[str, Setting] = {}
        for raw in config.read_conf_file(conf_file, "command line"):
            if raw.name in names:
                from_file[raw.name] = (raw.value, raw.origin)
        found = from_file | found
    return tuple(found.get(name) for name in names)


def build_class(handler: Setting | None, server_type: Setting | None, app: Setting | None = None) -> type[Server]:
    personality = None
    if server_type is not None:
        personality = find(server_type[0])
        if personality is None:
            raise ConfigError("server_type", server_type[0], server_type[1],
                              "is not a known personality; use one of " + ", ".join(PERSONALITIES))
    if app is not None:
        return http_class(app, handler, personality or DEFAULT_PERSONALITY)
    if handler is None:
        return personality or DEFAULT_PERSONALITY
    spec, origin = handler
    target = load_object(spec, "handler", origin)
    # handler_spec tells the server that this class is the one its handler option names.
    if isinstance(target, type) and issubclass(target, Server):
        if personality is not None and not issubclass(target, personality):
            raise ConfigError("server_type", server_type[0], server_type[1],
                              f"conflicts with handler {spec}, a {target.personality} server")
        return type(target.__name__, (target,), {"__module__": target.__module__,
                                                 "__qualname__": target.__qualname__, "handler_spec": spec})
    if not isinstance(target, type) or not callable(getattr(target, "process_request", None)):
        raise ConfigError("handler", spec, origin, "is not a class with a process_request(self, client) method")
    base = personality or DEFAULT_PERSONALITY
    try:
        return type(target.__name__, (target, base), {"__module__": target.__module__, "handler_spec": spec})
    except OptionClash as clash:
        raise ConfigError("handler", spec, origin, f"cannot be combined with {base.personality}: "
                          f"{clash}") from None


def http_class(app: Setting, handler: Setting | None, base: type[Server]) -> type[Server]:
    """--app: the WSGI protocol in front of the personality (httptools is imported only now)."""
    from .protocols import HTTP_EXTRA_HINT, http_available

    if handler is not None:
        raise ConfigError("app", app[0], app[1], f"cannot be combined with handler {handler[0]} "
                          f"({handler[1]}): --app serves a WSGI application, --handler a process_request class")
    if not http_available():
        raise ConfigError("app", app[0], app[1], HTTP_EXTRA_HINT)
    try:
        from .protocols.wsgi import WSGIProtocol
    except ImportError as error:
        # httptools is there but does not import (a broken or foreign build): the same advice.
        if "httptools" not in str(error):
            raise
        raise ConfigError("app", app[0], app[1], f"{HTTP_EXTRA_HINT} (importing it failed: {error})") from None

    return type("WSGIServer", (WSGIProtocol, base), {"__module__": __name__})


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        handler, server_type, app = chosen(args, ("handler", "server_type", "app"))
        cls = build_class(handler, server_type, app)
    except NetServerError as error:
        print(f"netserver: {error}", file=sys.stderr)
        return int(error.exit_code)
    if "--help" in args or "-h" in args:
        from .usage import help_text

        intro = INTRO.format(names=", ".join(PERSONALITIES), default=DEFAULT_PERSONALITY.personality)
        print(help_text(cls, "netserver", "[--handler MODULE:ATTR] [--server_type NAME] [--OPTION VALUE ...]",
                        intro))
        return 0
    if "--version" in args:
        from . import __version__

        print(f"netserver {__version__}")
        return 0
    try:
        cls().run(argv=args)
    except NetServerError as error:
        print(f"netserver: {error}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.OK)
    return int(ExitCode.OK)
