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

import importlib
import os
import sys

from . import config
from .errors import ConfigError, ExitCode, NetServerError
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


def chosen(argv: list[str]) -> tuple[Setting | None, Setting | None]:
    """handler and server_type: the command line's, else the last in the conf file it names."""
    found: dict[str, Setting] = {}
    for name in ("handler", "server_type"):
        value, _ = _take(argv, name)
        if value is not None:
            found[name] = (value.strip(), "command line")
    conf_file, _ = _take(argv, "conf_file")
    if conf_file and len(found) < 2:
        from_file: dict[str, Setting] = {}
        for raw in config.read_conf_file(conf_file, "command line"):
            if raw.name in ("handler", "server_type"):
                from_file[raw.name] = (raw.value, raw.origin)
        found = from_file | found
    return found.get("handler"), found.get("server_type")


def load_handler(spec: str, origin: str = "command line") -> object:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError("handler", spec, origin, "is not MODULE:ATTR")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import-time failure is the user's configuration
        # A SyntaxError's own text repeats its place, shortened to the file's base name.
        message = " ".join((error.msg if isinstance(error, SyntaxError) else str(error)).split())
        raise ConfigError("handler", spec, origin,
                          f"cannot be imported: {type(error).__name__}: {message}{_where(error)}") from None
    try:
        target = module
        for part in attr.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise ConfigError("handler", spec, origin, f"module {module_name!r} has no {attr!r}") from None
    return target


def _where(error: BaseException) -> str:
    """`` at FILE:LINE``: the innermost frame of the user's code (and where it was raised, if elsewhere).

    The user's code is anything outside the standard library (its
    site-packages excepted), netserver and the frozen import machinery.
    """
    if isinstance(error, SyntaxError) and error.filename:
        return f" at {error.filename}:{error.lineno}"
    stdlib = os.path.dirname(os.__file__) + os.sep
    ours = os.path.dirname(os.path.abspath(__file__)) + os.sep
    user = raised = None
    tb = error.__traceback__
    while tb is not None:
        place = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        if not place[0].startswith("<"):
            raised = place
            in_stdlib = place[0].startswith(stdlib) and "-packages" + os.sep not in place[0]
            if not in_stdlib and not place[0].startswith(ours):
                user = place
        tb = tb.tb_next
    if user is None:
        return ""
    where = f" at {user[0]}:{user[1]}"
    return where if raised == user else f"{where} (raised in {raised[0]}:{raised[1]})"


def build_class(handler: Setting | None, server_type: Setting | None) -> type[Server]:
    personality = None
    if server_type is not None:
        personality = find(server_type[0])
        if personality is None:
            raise ConfigError("server_type", server_type[0], server_type[1],
                              "is not a known personality; use one of " + ", ".join(PERSONALITIES))
    if handler is None:
        return personality or DEFAULT_PERSONALITY
    spec, origin = handler
    target = load_handler(spec, origin)
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


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cls = build_class(*chosen(args))
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
