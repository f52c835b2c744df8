"""The ``netserver`` command: pick a personality and a handler, then run.

``netserver [--handler module:attr] [--server_type NAME[,NAME...]] [options]``

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
from .options import OptionClash, names
from .personalities import PERSONALITIES, PreForkSimple, find
from .server import Server

DEFAULT_PERSONALITY = PreForkSimple
INTRO = """Runs a Net::Server-style server.  MODULE:ATTR names a class that defines
process_request(self, client) (it is mixed in front of the personality), or a
Server subclass.  Without --handler it runs the demo line service.  handler and
server_type may also come from the conf file; the command line wins.  Several
server_type names (repeated, or a comma list) are tried in order: the first
that loads with the handler runs (Net::Server's MultiType).  --app MODULE:ATTR
serves a WSGI application over HTTP/1.1 instead (needs httptools: the http extra).
Personalities: {names}.  Default: {default}.

"""

#: (value, where it came from), e.g. ("Single", "server.conf:3")
Setting = tuple[str, str]


def _take(argv: list[str], name: str) -> tuple[list[str], list[str]]:
    """Remove every --name VALUE / --name=VALUE (dashes or underscores) from argv: (values, the rest)."""
    spelled = {f"--{name}", f"--{name.replace('_', '-')}"}
    bare = {name, name.replace("_", "-")}  # Net::Server's key=value, which always has its value
    rest: list[str] = []
    values: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        key, has_value, text = token.partition("=")
        if has_value and key in bare:
            values.append(text)
        elif key in spelled:
            if has_value:
                values.append(text)
            elif index + 1 < len(argv):
                values.append(argv[index + 1])
                index += 1
            else:
                raise ConfigError(name, None, "command line", "needs a value")
        else:
            rest.append(token)
        index += 1
    return values, rest


def chosen(argv: list[str]) -> tuple[Setting | None, list[Setting]]:
    """handler (the last given) and server_type (every name, in order: MultiType's list).

    The command line's, else the conf file's it names; like any list option,
    server_type comes whole from the highest source that names it.
    """
    handler, types = _take(argv, "handler")[0], _take(argv, "server_type")[0]
    found_handler = (handler[-1].strip(), "command line") if handler else None
    found_types = [(name, "command line") for value in types for name in _names(value, "command line")]
    conf_file = _take(argv, "conf_file")[0]
    if conf_file and (found_handler is None or not found_types):
        file_handler, file_types = None, []
        for raw in config.read_conf_file(conf_file[-1], "command line"):
            if raw.name == "handler":
                file_handler = (raw.value, raw.origin)
            elif raw.name == "server_type":
                file_types += [(name, raw.origin) for name in _names(raw.value, raw.origin)]
        found_handler = found_handler or file_handler
        found_types = found_types or file_types
    return found_handler, found_types


def _names(value: str, origin: str) -> tuple[str, ...]:
    try:
        return names(value)
    except ValueError as error:
        raise ConfigError("server_type", value, origin, str(error)) from None


def chosen_app(argv: list[str]) -> Setting | None:
    """The app option (--app), read like handler: the command line's, else the conf file's."""
    given = _take(argv, "app")[0]
    if given:
        return given[-1].strip(), "command line"
    conf_file = _take(argv, "conf_file")[0]
    found = None
    if conf_file:
        for raw in config.read_conf_file(conf_file[-1], "command line"):
            if raw.name == "app":
                found = (raw.value, raw.origin)
    return found


def build_class(handler: Setting | None, server_types: list[Setting], app: Setting | None = None
                ) -> type[Server]:
    """The class to run: the handler on the first personality of ``server_types`` that loads with it.

    Net::Server's MultiType: a personality that cannot take the handler (a
    Server subclass of another personality, an option clash) is passed over
    for the next; when none can, the error names each one's reason.  A name
    that is not a personality at all, or a handler that does not import, is a
    mistake rather than a reason to fall back: exit 2 at once.
    """
    personalities = []
    for name, origin in server_types:
        personality = find(name)
        if personality is None:
            raise ConfigError("server_type", name, origin,
                              "is not a known personality; use one of " + ", ".join(PERSONALITIES))
        personalities.append((personality, (name, origin)))
    if app is not None:
        return http_class(app, handler, personalities[0][0] if personalities else DEFAULT_PERSONALITY)
    if handler is None:
        return personalities[0][0] if personalities else DEFAULT_PERSONALITY
    spec, origin = handler
    target = load_object(spec, "handler", origin)
    if not isinstance(target, type) or not (issubclass(target, Server) or
                                            callable(getattr(target, "process_request", None))):
        raise ConfigError("handler", spec, origin, "is not a class with a process_request(self, client) method")
    if not personalities:
        return _combine(target, spec, origin, None, None)
    refusals = []
    for personality, setting in personalities:
        try:
            return _combine(target, spec, origin, personality, setting)
        except ConfigError as error:
            refusals.append(error)
    if len(refusals) == 1:
        raise refusals[0]
    listed = ",".join(name for _, (name, _) in personalities)
    reasons = "; ".join(f"{name}: {error.hint}" for (_, (name, _)), error in zip(personalities, refusals, strict=True))
    raise ConfigError("server_type", listed, personalities[-1][1][1], f"none of them loads: {reasons}")


def _combine(target: type, spec: str, origin: str, personality: type[Server] | None,
             server_type: Setting | None) -> type[Server]:
    # handler_spec tells the server that this class is the one its handler option names.
    if issubclass(target, Server):
        if personality is not None and server_type is not None and not issubclass(target, personality):
            raise ConfigError("server_type", server_type[0], server_type[1],
                              f"conflicts with handler {spec}, a {target.personality} server")
        return type(target.__name__, (target,), {"__module__": target.__module__,
                                                 "__qualname__": target.__qualname__, "handler_spec": spec})
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
        handler, server_types = chosen(args)
        cls = build_class(handler, server_types, chosen_app(args))
    except NetServerError as error:
        print(f"netserver: {error}", file=sys.stderr)
        return int(error.exit_code)
    if "--help" in args or "-h" in args:
        from .usage import help_text, print_help

        intro = INTRO.format(names=", ".join(PERSONALITIES), default=DEFAULT_PERSONALITY.personality)
        text = help_text(cls, "netserver", "[--handler MODULE:ATTR | --app MODULE:ATTR] [--server_type NAME[,NAME...]] "
                         "[--OPTION VALUE ...]", intro)
        if handler is None and chosen_app(args) is None:  # the demo's help: say where HTTP's options are
            text += ("\nThe HTTP and WSGI options (access_log_file, keepalive_timeout, max_connections ...) "
                     "are listed by: netserver --app MODULE:ATTR --help\n")
        print_help(text)
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
