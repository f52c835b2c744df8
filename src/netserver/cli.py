"""The ``netserver`` command: pick a personality and a handler, then run.

``netserver [--handler module:attr] [--server_type NAME] [options]``

``--handler`` and ``--server_type`` are read before anything else, so that
``--help`` lists the options of the personality actually chosen and an
option that belongs to another personality is refused by name.  The option
parser itself is the one ``run()`` uses (config.parse_argv): one grammar for
the command line, generated from the declarations, rather than a second
argparse description that could drift from it.
"""

from __future__ import annotations

import importlib
import os
import sys

from .errors import ConfigError, ExitCode, NetServerError
from .options import OptionClash, format_help
from .personalities import PERSONALITIES, PreForkSimple, find
from .server import Server

DEFAULT_PERSONALITY = PreForkSimple
USAGE = """usage: netserver [--handler MODULE:ATTR] [--server_type NAME] [--OPTION VALUE ...]

Runs a Net::Server-style server.  MODULE:ATTR names a class that defines
process_request(self, client) (it is mixed in front of the personality), or a
Server subclass.  Without --handler it runs the demo line service.
Personalities: {names}.  Default: {default}.

Exit status: 0 stopped cleanly, 1 the environment refused start-up,
2 the configuration is wrong, 3 children kept failing to boot.

Options of {chosen} (give them as --name value, --name=value or --name-with-dashes value):
"""


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


def load_handler(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError("handler", spec, "command line", "is not MODULE:ATTR")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import-time failure is the user's configuration
        raise ConfigError("handler", spec, "command line",
                          f"cannot be imported: {type(error).__name__}: {error}") from None
    try:
        target = module
        for part in attr.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise ConfigError("handler", spec, "command line", f"module {module_name!r} has no {attr!r}") from None
    return target


def build_class(handler: str | None, server_type: str | None) -> type[Server]:
    personality = None
    if server_type is not None:
        personality = find(server_type)
        if personality is None:
            raise ConfigError("server_type", server_type, "command line",
                              "is not a known personality; use one of " + ", ".join(PERSONALITIES))
    if handler is None:
        return personality or DEFAULT_PERSONALITY
    target = load_handler(handler)
    if isinstance(target, type) and issubclass(target, Server):
        if personality is not None and not issubclass(target, personality):
            raise ConfigError("server_type", server_type, "command line",
                              f"conflicts with --handler {handler}, a {target.personality} server")
        return target
    if not isinstance(target, type) or not callable(getattr(target, "process_request", None)):
        raise ConfigError("handler", handler, "command line",
                          "is not a class with a process_request(self, client) method")
    base = personality or DEFAULT_PERSONALITY
    try:
        return type(target.__name__, (target, base), {"__module__": target.__module__})
    except OptionClash as clash:
        raise ConfigError("handler", handler, "command line", f"cannot be combined with {base.personality}: "
                          f"{clash}") from None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        handler, args = _take(args, "handler")
        server_type, args = _take(args, "server_type")
        cls = build_class(handler, server_type)
    except NetServerError as error:
        print(f"netserver: {error}", file=sys.stderr)
        return int(error.exit_code)
    if "--help" in args or "-h" in args:
        print(USAGE.format(names=", ".join(PERSONALITIES), default=DEFAULT_PERSONALITY.personality,
                           chosen=cls.personality) + format_help(tuple(cls.option_table().values())))
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
