"""Option declarations: one ``Option`` per setting, parsers that know their name.

An ``Option`` carries everything about a setting: its name, how to read a
value, its default and its help text.  The same declaration drives ``run()``
keywords, the command line, the conf file, ``--help`` and the README table,
so a setting cannot be spelled or validated differently in two places.

Each class lists only its own options in ``declared_options``; a server's
table is collected along its MRO (:func:`collect`), so a protocol mixin and a
personality compose in either order: ``class App(MyProtocol, PreForkSimple)``
has both sets.  The same declaration met twice is one option; a subclass may
redeclare an option it inherits (to change its default or meaning); two
unrelated classes declaring one name differently is an error when the
combining class is created, naming both.

Parsers take either text (command line, conf file) or a native Python value
(keywords) and raise ``ValueError`` with a hint; the caller turns that into a
``ConfigError`` naming the option, value and source.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import signal
import socket
from collections.abc import Callable

from .records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Parser = Callable[[Any], Any]

_TRUE = {"1", "yes", "true", "on"}
#: Syslog facility name -> code (<sys/syslog.h>; the names and codes of
#: logging.handlers.SysLogHandler.facility_names, which a test keeps equal).
SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14, "solaris-cron": 15,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}
_FALSE = {"0", "no", "false", "off", ""}


class Option(Record):
    """One configuration setting.

    ``multi`` options collect every occurrence (port, allow...); scalar
    options keep the last occurrence within a source.  ``flag`` options may
    be given without a value on the command line.
    """

    name: str
    parse: Parser
    default: Any
    help: str
    multi: bool = False
    flag: bool = False
    metavar: str = "VALUE"

    def convert(self, value: Any) -> Any:
        """Parse one raw value (text or native); ValueError carries the hint."""
        return self.parse(value)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("is not a boolean (use 1, 0, yes, no, true, false, on or off)")


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser:
    return _integer(minimum, maximum)  # keywords or not, one cache entry: equal declarations compare equal


@functools.cache  # the same arguments, the same parser
def _integer(minimum: int | None, maximum: int | None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("is not a whole number")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.strip().lstrip("+").isdigit():
            number = int(value.strip())
        elif isinstance(value, str) and value.strip().startswith("-") and value.strip()[1:].isdigit():
            number = int(value.strip())
        else:
            raise ValueError("is not a whole number")
        if minimum is not None and number < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum}")
        return number

    return parse


def seconds(allow_zero: bool = False) -> Parser:
    return _seconds(allow_zero)


@functools.cache
def _seconds(allow_zero: bool) -> Parser:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("is not a number of seconds")
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError("is not a number of seconds") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("is not a finite number of seconds")
        if number < 0 or (number == 0 and not allow_zero):
            raise ValueError("must be greater than 0" if not allow_zero else "must not be negative")
        return number

    return parse


def text(value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValueError("is not text")
    result = str(value).strip()
    if "\0" in result:
        raise ValueError("contains a NUL byte")
    return result


@functools.cache
def optional(parser: Parser) -> Parser:
    def parse(value: Any) -> Any:
        if value is None:
            return None
        return parser(value)

    return parse


@functools.cache
def choice(*values: str) -> Parser:
    def parse(value: Any) -> str:
        word = text(value).lower()
        if word not in values:
            raise ValueError("is not one of " + ", ".join(values))
        return word

    return parse


def signal_names(value: Any) -> tuple[str, ...]:
    """``USR1,USR2`` or ``SIGUSR1`` -> ('USR1', 'USR2'); unknown names refused."""
    names = []
    for word in text(value).replace(",", " ").split():
        found = getattr(signal, "SIG" + word.upper().removeprefix("SIG"), None)
        if not isinstance(found, signal.Signals) or found in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            raise ValueError(f"names a signal that cannot be passed through: {word!r}")
        names.append(found.name.removeprefix("SIG"))  # canonical: CLD is CHLD, refused above
    if not names:
        raise ValueError("names no signal")
    return tuple(names)


def names(value: Any) -> tuple[str, ...]:
    """``PreFork,Single`` or ``PreFork Single`` -> ('PreFork', 'Single')."""
    words = tuple(text(value).replace(",", " ").split())
    if not words:
        raise ValueError("names nothing")
    return words


def regex(value: Any) -> str:
    pattern = text(value)
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"is not a valid regular expression: {error}") from None
    return pattern


def cidr_blocks(value: Any) -> str:
    blocks = text(value)
    for block in blocks.replace(",", " ").split():
        try:
            ipaddress.ip_network(block, strict=False)
        except ValueError:
            raise ValueError(f"is not a CIDR block such as 10.0.0.0/8 ({block!r})") from None
    return blocks


def port_spec(value: Any) -> str:
    """Check the spec's own syntax now, so the error names its own line."""
    from .errors import ConfigError
    from .listeners import parse_port

    spec = text(value)
    try:
        parse_port(spec, 0, ("*",), ("tcp",), ("*",), "")
    except ConfigError as error:
        raise ValueError(error.hint) from None
    return spec


#: Sys::Syslog's openlog options (Net::Server's syslog_logopt): accepted, none changes anything here.
SYSLOG_LOGOPT_WORDS = ("cons", "ndelay", "nodelay", "nofatal", "noeager", "nowait", "odelay", "perror", "pid")


def syslog_options(value: Any) -> str:
    words = text(value).replace("|", ",").replace(" ", ",").split(",")
    unknown = [word for word in words if word and word not in SYSLOG_LOGOPT_WORDS]
    if unknown:
        raise ValueError(f"names {unknown[0]!r}, which is not one of " + ", ".join(SYSLOG_LOGOPT_WORDS))
    return text(value)


#: Perl's Sys::Syslog socket types (Net::Server's syslog_logsock) that name a place we can send to.
SYSLOG_SOCKET_TYPES = {"native": "/dev/log", "unix": "/dev/log", "stream": "/dev/log",
                       "udp": "localhost:514", "inet": "localhost:514"}


def syslog_socket(value: Any) -> str:
    """A unix path, host:port (UDP), or one of Perl's socket types, read as where it sends."""
    where = text(value)
    lower = where.lower()
    if lower in SYSLOG_SOCKET_TYPES:
        return SYSLOG_SOCKET_TYPES[lower]
    if lower in ("tcp", "console"):
        raise ValueError(f"(Sys::Syslog's {lower}) is not supported: give a unix path, or host:port for UDP")
    host, _, port = where.rpartition(":")
    if where.startswith("/") or (host and port.isdigit()):
        return where
    raise ValueError("is not a unix path (starting with /), host:port for UDP, or one of Perl's "
                     "unix, native, stream, udp, inet")


def octal_mode(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        try:
            number = int(text(value), 8)
        except ValueError:
            raise ValueError("is not an octal mode such as 022") from None
    if not 0 <= number <= 0o777:
        raise ValueError("is not an octal mode between 000 and 777")
    return number


BASE_OPTIONS: tuple[Option, ...] = (
    Option("conf_file", optional(text), None,
           "Read options from this file (key value per line, # comments). "
           "Values given in the constructor, on the command line or to run() win over it.",
           metavar="PATH"),
    Option("server_type", names, (),
           "The personality: Single, PreForkSimple, PreFork, Fork or INET. Repeat it or give a comma list "
           "to name fallbacks: the netserver command uses the first that loads with the handler "
           "(Net::Server's MultiType; default PreForkSimple). A script's class is fixed: the list must "
           "name its personality.", multi=True, metavar="NAME"),
    Option("handler", optional(text), None,
           "netserver command only: MODULE:ATTR, a class with process_request(self, client) mixed in "
           "front of the personality, or a Server subclass. Default: the demo line service.",
           metavar="MODULE:ATTR"),
    Option("port", port_spec, ("20203",),
           "Where to listen: PORT, HOST:PORT, [V6ADDR]:PORT, PORT/udp, unix:/path or /path|unix. "
           "Repeat it for several listeners; port 0 picks a free port. Default 20203.",
           multi=True, metavar="SPEC"),
    Option("host", text, ("*",),
           "Bind address for each port, paired by index (the last one is reused). "
           "'*' binds every address: one dual-stack IPv6 socket where IPv6 exists. Default *.",
           multi=True, metavar="HOST"),
    Option("proto", choice("tcp", "udp", "unix"), ("tcp",),
           "Protocol for each port, paired by index: tcp, udp or unix. Default tcp.",
           multi=True, metavar="PROTO"),
    Option("ipv", choice("4", "6", "46", "64", "*"), ("*",),
           "Address family for each port, paired by index: 4, 6, 46 (both, two sockets) or * "
           "(as resolved). Default *.", multi=True, metavar="IPV"),
    Option("listen", integer(1, 65535), socket.SOMAXCONN,
           f"Listen backlog of each TCP or unix socket. Default socket.SOMAXCONN ({socket.SOMAXCONN}).",
           metavar="N"),
    Option("log_level", integer(0, 4), 2,
           "0 errors only, 1 warnings, 2 notices, 3 info (one line per connection), 4 debug. Default 2.",
           metavar="0-4"),
    Option("log_file", optional(text), None,
           "Append log lines to this file, or 'syslog' (or 'Sys::Syslog') to log to syslog. "
           "Default: standard error.", metavar="PATH"),
    Option("syslog_ident", text, "netserver", "Syslog identity. Default netserver.", metavar="NAME"),
    Option("syslog_facility", choice(*SYSLOG_FACILITIES), "daemon",
           "Syslog facility name (daemon, local0 ... local7, mail...). Default daemon.", metavar="NAME"),
    Option("syslog_logsock", optional(syslog_socket), None,
           "Syslog socket: a unix path, or host:port for UDP; Perl's unix, native and stream mean "
           "/dev/log, udp and inet localhost:514. Default /dev/log.", metavar="SOCKET"),
    Option("syslog_logopt", syslog_options, "pid",
           "Accepted from Net::Server conf files (Sys::Syslog's openlog options: pid, ndelay, cons, "
           "nofatal ...): the pid is always in the record, the socket opens at start-up and a failed "
           "send is never fatal. Default pid.", metavar="OPTS"),
    Option("pid_file", optional(text), None,
           "Write the server's pid here and hold a lock on it while running; a second instance "
           "with the same pid file refuses to start. Default: none.", metavar="PATH"),
    Option("background", boolean, False,
           "Detach from the terminal (double fork, setsid). The command returns once the server "
           "accepts connections, with its start-up status. Default off.", flag=True, metavar="BOOL"),
    Option("setsid", boolean, False,
           "Background and start a new session (same as background here). Default off.",
           flag=True, metavar="BOOL"),
    Option("umask", optional(octal_mode), None,
           "Set this umask (octal) at start-up. Default: unchanged.", metavar="MODE"),
    Option("user", optional(text), None,
           "Run children (Single: the server after binding) as this user, name or uid. Default: "
           "unchanged.", metavar="USER"),
    Option("group", optional(text), None,
           "Run as these groups (names or gids, space or comma separated): the first is the gid, "
           "all are the supplementary groups. Default: the user's groups (a `user` uid with no passwd "
           "entry has none: name a `group`).", metavar="GROUPS"),
    Option("chroot", optional(text), None,
           "Children (Single: the server) chroot into this directory after binding. Default: none.",
           metavar="DIR"),
    Option("allow", regex, (), "Regular expression a peer address (or confirmed host name) must "
           "fully match to be allowed. Repeatable.", multi=True, metavar="REGEX"),
    Option("deny", regex, (), "Regular expression that denies a matching peer. Repeatable.",
           multi=True, metavar="REGEX"),
    Option("cidr_allow", cidr_blocks, (), "Allow peers inside this CIDR block. Repeatable.",
           multi=True, metavar="CIDR"),
    Option("cidr_deny", cidr_blocks, (), "Deny peers inside this CIDR block. Repeatable.",
           multi=True, metavar="CIDR"),
    Option("reverse_lookups", boolean, False,
           "Look up each peer's host name (forward-confirmed) for client.peerhost and the allow/deny "
           "rules. Default off.", flag=True, metavar="BOOL"),
    Option("timeout", seconds(allow_zero=True), 30.0,
           "Seconds a client gets to send a whole line through client.rfile, and for any other single "
           "read or write; 0 turns it off. Default 30.",
           metavar="SECONDS"),
    Option("max_line_length", integer(1), 65536,
           "Longest line client.rfile returns; a longer one closes the connection. Default 65536.",
           metavar="BYTES"),
    Option("udp_recv_len", integer(1, 65535), 65535,
           "Largest UDP datagram read. Default 65535.", metavar="BYTES"),
    Option("ready_fd", optional(integer(0)), None,
           "Write one line 'READY pid=<pid> <proto>:<addr>:<port> ...' to this inherited file "
           "descriptor once the server accepts, then close it.", metavar="FD"),
    Option("proc_name", optional(text), None,
           "The name in the process titles ps and top show ('netserver: parent [NAME]', 'netserver: "
           "child [NAME]'), set where setproctitle is installed (pip install 'netserver[proctitle]'). "
           "Default: the handler or app given, else the class name.", metavar="NAME"),
    Option("check_config", boolean, False,
           "Validate the configuration (options, users, hosts) without binding anything, print every "
           "option a source sets and that source on stdout, then exit 0, or 2 with the error (1 for an "
           "unresolvable host).", flag=True, metavar="BOOL"),
)


PREFORK_SIMPLE_OPTIONS: tuple[Option, ...] = (
    Option("max_servers", integer(1), 50, "Number of accepting children kept alive. Default 50.", metavar="N"),
    Option("max_requests", integer(0), 1000,
           "Connections a child serves before it exits and is replaced (HTTP: requests, keep-alive ones "
           "included); 0 means no limit. Default 1000.",
           metavar="N"),
    Option("check_for_dead", seconds(), 30.0,
           "Seconds between sweeps that look for children which died unnoticed. Default 30.", metavar="SECONDS"),
    Option("max_dequeue", optional(integer(1)), None,
           "Most dequeue children running at once (with check_for_dequeue). Default 1.", metavar="N"),
    Option("check_for_dequeue", optional(seconds()), None,
           "Every this many seconds fork a dequeue child running dequeue(). Default: never.", metavar="SECONDS"),
    Option("lock_file", optional(text), None,
           "File to flock for serialize flock. Default: a private file that is removed at once.", metavar="PATH"),
    Option("serialize", choice("auto", "flock", "semaphore", "pipe", "none"), "auto",
           "How children take turns to accept: flock, semaphore, pipe or none; auto is none with one "
           "listener and flock with several. Default auto.", metavar="KIND"),
    Option("graceful_timeout", seconds(), 30.0,
           "Seconds children get to finish their connection on stop or restart before SIGKILL. Default 30.",
           metavar="SECONDS"),
    Option("leave_children_open_on_hup", boolean, True,
           "On HUP let the old children finish their connection (1) or TERM them before the exec (0, "
           "Net::Server's default). Default 1.", flag=True, metavar="BOOL"),
    Option("sig_passthrough", signal_names, (),
           "Signals the parent forwards to every child (e.g. USR1,USR2). Repeatable.", multi=True,
           metavar="SIGNALS"),
    Option("max_child_lifetime", seconds(allow_zero=True), 0.0,
           "Seconds a child serves before it finishes what it holds, leaves and is replaced (as at "
           "max_requests); 0 means no limit. Default 0.", metavar="SECONDS"),
)


PREFORK_OPTIONS: tuple[Option, ...] = (
    Option("max_servers", integer(1), 50,
           "The most children at once: the pool grows up to this under load. Default 50.", metavar="N"),
    Option("min_servers", optional(integer(1)), None,
           "Children forked at start, and the fewest kept. Default: 5, or max_servers if that is smaller.",
           metavar="N"),
    Option("min_spare_servers", optional(integer(0)), None,
           "Fork when fewer children than this are idle (up to max_servers). Default: 2, or less if "
           "min_servers or max_spare_servers is smaller.", metavar="N"),
    Option("max_spare_servers", optional(integer(0)), None,
           "Retire idle children above this many (down to min_servers), every check_for_waiting seconds. "
           "Default: 10, or max_servers - 1 if that is smaller.", metavar="N"),
    Option("check_for_waiting", seconds(), 10.0,
           "Seconds between checks for too many idle children. Default 10.", metavar="SECONDS"),
    Option("check_for_spawn", seconds(), 30.0,
           "Seconds between full recounts of the pool against the scoreboard (the pool is also checked "
           "50 times a second to decide on forks, 200 while it grows). Default 30.", metavar="SECONDS"),
    Option("min_child_ttl", seconds(allow_zero=True), 10.0,
           "Retire no idle child while any child is younger than this many seconds. Default 10.",
           metavar="SECONDS"),
    Option("max_spawn_per_tick", integer(1), 8,
           "The most children forked in one pool check (every 20 ms, every 5 ms while the pool grows), so "
           "that a burst cannot fork-bomb the machine. Default 8.", metavar="N"),
    Option("child_communication", boolean, False,
           "Give each child a socketpair to the parent: the child writes to self.parent_sock, and the "
           "parent calls child_is_talking_hook(sock) with what it read. Default off.", flag=True, metavar="BOOL"),
)


_SHARED_WITH_FORK = ("check_for_dead", "graceful_timeout", "leave_children_open_on_hup", "sig_passthrough")

FORK_OPTIONS: tuple[Option, ...] = (
    Option("max_servers", integer(1), 256,
           "The most connection children at once. With that many running the parent stops accepting, "
           "so further clients wait in the kernel's queue (listen) until a child exits. Default 256.",
           metavar="N"),
    # The same declarations as PreForkSimple's: one meaning wherever they appear.
    *(option for option in PREFORK_SIMPLE_OPTIONS if option.name in _SHARED_WITH_FORK),
)


class OptionClash(TypeError):
    """Two unrelated classes declare one option differently (raised at class creation)."""


def collect(cls: type) -> dict[str, Option]:
    """The option table of ``cls``: every ``declared_options`` along its MRO, bases first.

    For each name the declaration that wins is the one from a class that is
    a subclass of every class declaring the name differently (a personality
    redeclaring a base's option, or the combining class settling a clash).
    The same declaration met again (a mixin listed twice, an old-style
    ``Base.declared_options + (...)``) changes nothing.  Anything else is a
    clash: neither class can know which meaning the server should get.
    """
    declarers: dict[str, list[tuple[type, Option]]] = {}
    for klass in reversed(cls.__mro__):
        for option in klass.__dict__.get("declared_options", ()):
            declarers.setdefault(option.name, []).append((klass, option))
    table: dict[str, Option] = {}
    for name, found in declarers.items():
        winner = next((option for klass, option in reversed(found)
                       if all(other == option or issubclass(klass, owner) for owner, other in found)), None)
        if winner is None:
            (first, _), (second, _) = next((a, b) for a in found for b in found
                                              if a[1] != b[1] and not issubclass(b[0], a[0])
                                              and not issubclass(a[0], b[0]))
            raise OptionClash(
                f"{cls.__name__}: option {name!r} is declared by both {first.__name__} and "
                f"{second.__name__}, differently; redeclare it in {cls.__name__} to say which one it is")
        table[name] = winner
    return table


def all_options(cls: type) -> tuple[Option, ...]:
    """Every option a server class accepts, collected along its MRO (``Server.option_table``)."""
    return tuple(cls.option_table().values())


def option_table(declared: tuple[Option, ...]) -> dict[str, Option]:
    """Name -> Option, later declarations overriding earlier ones."""
    table: dict[str, Option] = {}
    for option in declared:
        table[option.name] = option
    return table


def format_help(declared: tuple[Option, ...], width: int = 100) -> str:
    """The options section of ``--help``: one entry per option, in declaration order."""
    import textwrap

    lines = []
    for option in option_table(declared).values():
        flag = f"  --{option.name} {option.metavar}"
        lines.append(flag)
        lines.extend(textwrap.wrap(option.help, width, initial_indent="        ",
                                   subsequent_indent="        "))
    return "\n".join(lines)
