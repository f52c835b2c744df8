"""Layering every configuration source into one frozen ``Options`` object.

Precedence is Net::Server's, highest first: constructor keywords, the
command line, ``run()`` keywords, the conf file, ``default_values()``, the
declared defaults.  Within one source a scalar takes its last occurrence; a
list option takes every occurrence from the highest source that names it and
ignores the lower ones (so ``--port 9001`` on the command line replaces the
conf file's ports rather than adding to them).

Each raw value is remembered with its origin (``server.conf:3``, ``command
line``...) so that any later error about it can say where it came from.
Unlike Net::Server we refuse what we do not understand: unknown keys, lines
that are not ``key value``, values of the wrong type; nothing falls back to a
default silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from .errors import ConfigError
from .options import Option, option_table
from .records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Options only other personalities declare -> the personality that is running (or a callable
#: giving that map, asked only when an unknown option turns up).
Foreign = dict[str, str] | Callable[[], dict[str, str]] | None


class Raw(Record):
    """One occurrence of an option in a source."""

    name: str
    value: Any
    origin: str


# The separator is "=" or ":" right after the key, or one standing alone between
# spaces ("key = value"); after whitespace, an "=" or ":" that touches what follows
# starts the value.  Net::Server took the first ":" anywhere, so "allow ::1" read
# as ":1" and "host ::" as ":", which silently denied every IPv6 client.
_CONF_LINE = re.compile(r"^(?:--)?([A-Za-z_][\w-]*)(?:[=:]|\s+[=:](?=\s|$)|(?=\s)|$)\s*(.*)$")
_ESCAPED_HASH = "\0hash\0"


def normalise_key(key: str) -> str:
    return key.strip().replace("-", "_")


def parse_conf_text(content: str, path: str) -> list[Raw]:
    """Read ``key value`` / ``key=value`` / ``key = value`` / ``key: value`` lines.

    ``#`` starts a comment unless escaped as ``\\#``; trailing whitespace is
    trimmed (Net::Server kept it, which silently broke paths).  ``allow ::1``
    and ``host ::`` keep their colons (see ``_CONF_LINE``).
    """
    entries = []
    # Only \n ends a line: splitlines() also breaks at form feeds and other
    # separators, which would shift every line number after them.
    for number, line in enumerate(content.split("\n"), 1):
        line = line.removesuffix("\r")
        line = line.replace("\\#", _ESCAPED_HASH)
        line = line.split("#", 1)[0].replace(_ESCAPED_HASH, "#").strip()
        if not line:
            continue
        match = _CONF_LINE.match(line)
        where = f"{path}:{number}"
        if not match:
            raise ConfigError(None, line, where, "is not a 'key value' line")
        key, value = normalise_key(match.group(1)), match.group(2).strip()
        if not value:
            raise ConfigError(key, None, where, "needs a value")
        entries.append(Raw(key, value, where))
    return entries


def read_conf_file(path: str, origin: str) -> list[Raw]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(16 * 1024 * 1024 + 1)
    except OSError as error:
        raise ConfigError("conf_file", path, origin,
                          f"cannot be read: {error.strerror or error}") from None
    if len(data) > 16 * 1024 * 1024:
        raise ConfigError("conf_file", path, origin, "is larger than 16 MiB")
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError("conf_file", path, origin,
                          f"is not UTF-8 text (byte {error.start})") from None
    if "\0" in content:
        raise ConfigError("conf_file", path, origin, "contains a NUL byte")
    return parse_conf_text(content, path)


#: ``max_servers=8``: Net::Server also takes an argument without its dashes when it has a value.
_PERL_STYLE = re.compile(r"[A-Za-z_][\w-]*=")


def _names_an_option(token: str, table: dict[str, Option]) -> bool:
    """``max_servers=8`` after a flag is the next option, not the flag's value."""
    return bool(_PERL_STYLE.match(token)) and normalise_key(token.partition("=")[0]) in table


def parse_argv(argv: Iterable[str], table: dict[str, Option], origin: str = "command line",
               foreign: Foreign = None) -> list[Raw]:
    """``--key=value``, ``--key value``, ``--key-name value``, ``key=value``; ``--flag`` alone means on.

    A flag takes the next token as its value unless that token is another
    option, so ``--background --port 80`` works and ``--background bogus`` is
    refused as a value that is not a boolean.
    """
    tokens = list(argv)
    entries: list[Raw] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        given = token
        if not token.startswith("--") or token == "--":
            if not _PERL_STYLE.match(token):
                raise ConfigError(None, token, origin, "is not an option (options look like --name value)")
            token = "--" + token  # Net::Server's bare key=value
        body = token[2:]
        key, has_value, value = body.partition("=")
        key = normalise_key(key)
        option = table.get(key)
        if option is None:
            raise unknown_option(key, given, origin, table, foreign)
        if not has_value:
            nxt = tokens[index] if index < len(tokens) else None
            if option.flag:
                if nxt is not None and not nxt.startswith("--") and not _names_an_option(nxt, table):
                    value = nxt
                    index += 1
                else:
                    value = "1"
            else:
                if nxt is None or (nxt.startswith("--") and len(nxt) > 2):
                    raise ConfigError(key, None, origin, "needs a value")
                value = nxt
                index += 1
        entries.append(Raw(key, value, origin))
    return entries


def unknown_option(key: str, given: str, origin: str, table: dict[str, Option],
                   foreign: Foreign) -> ConfigError:
    if callable(foreign):
        foreign = foreign()  # asked only now: finding other personalities' options imports them
    if foreign and key in foreign:
        return ConfigError(key, None, origin, f"is not valid for {foreign[key]}")
    # Imported here: only a mistyped option pays for difflib, never a start-up.
    import difflib

    close = difflib.get_close_matches(key, list(table), n=1)
    hint = f"; did you mean {close[0]}?" if close else " (see --help)"
    return ConfigError(None, given, origin, "is not a known option" + hint)


def entries_from_mapping(mapping: dict[str, Any], origin: str) -> list[Raw]:
    """Keyword arguments: a list option takes a list (or one value)."""
    entries = []
    for key, value in mapping.items():
        key = normalise_key(key)
        if isinstance(value, (list, tuple)):
            entries.extend(Raw(key, item, origin) for item in value)
        else:
            entries.append(Raw(key, value, origin))
    return entries


class Layered(Record):
    values: dict[str, Any]
    origins: dict[str, str]


def layer(sources: list[list[Raw]], table: dict[str, Option],
          foreign: Foreign = None) -> Layered:
    """Merge sources (highest precedence first) and convert every value.

    Raises ConfigError for unknown keys, repeated values of a scalar given
    as a list in one keyword, and any value its option refuses.
    """
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for source in sources:
        seen_here: set[str] = set()
        for raw in source:
            option = table.get(raw.name)
            if option is None:
                raise unknown_option(raw.name, raw.name, raw.origin, table, foreign)
            # Every value is checked, even one a higher source overrides: a conf file
            # with "max_servers lots" is wrong whatever the command line says.
            converted = convert(option, raw)
            if raw.name in values and raw.name not in seen_here:
                continue  # a higher source already set it
            if option.multi:
                # A list option's parser may yield several values ("USR1,USR2").
                items = converted if isinstance(converted, tuple) else (converted,)
                values[raw.name] = (values[raw.name] if raw.name in seen_here else ()) + items
            else:
                values[raw.name] = converted
            origins[raw.name] = raw.origin
            seen_here.add(raw.name)
    for name, option in table.items():
        if name not in values:
            values[name] = option.default
            origins[name] = "default"
    return Layered(values, origins)


def convert(option: Option, raw: Raw) -> Any:
    try:
        return option.convert(raw.value)
    except ValueError as error:
        raise ConfigError(option.name, raw.value, raw.origin, str(error)) from None


class FrozenOptions:
    """Base of the per-server Options classes: one slot per option, read-only."""

    __slots__ = ()

    def __init__(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"options are read-only (tried to set {name})")

    __delattr__ = __setattr__

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return "Options(" + ", ".join(f"{name}={value!r}" for name, value in self.as_dict().items()) + ")"


_OPTION_CLASSES: dict[tuple[str, ...], type] = {}


def freeze(values: dict[str, Any]) -> Any:
    """A read-only object with one slot per option (``options.max_servers``)."""
    names = tuple(sorted(values))
    cls = _OPTION_CLASSES.get(names)
    if cls is None:
        cls = type("Options", (FrozenOptions,), {"__slots__": names})
        _OPTION_CLASSES[names] = cls
    return cls(values)


def build(*, table: dict[str, Option], constructor: dict[str, Any], argv: list[str],
          run_kwargs: dict[str, Any], default_values: dict[str, Any],
          foreign: Foreign = None) -> Layered:
    """Read every source in Net::Server's order and layer them."""
    ctor = entries_from_mapping(constructor, "constructor")
    cli = parse_argv(argv, table, "command line", foreign)
    run = entries_from_mapping(run_kwargs, "run()")
    defaults = entries_from_mapping(default_values, "default_values()")
    conf: list[Raw] = []
    head = layer([ctor, cli, run, defaults], table, foreign)
    conf_path = head.values.get("conf_file")
    if conf_path:
        conf = read_conf_file(conf_path, head.origins["conf_file"])
    return layer([ctor, cli, run, conf, defaults], table, foreign)


def effective_lines(values: dict[str, Any], origins: dict[str, str], table: dict[str, Option]) -> list[str]:
    """Every option a source set (even to its default), as conf-file lines naming the source.

    ``--check_config`` prints these so that a user can see which source won.
    Each value is written so that it reads back as the same value, and a
    list option gets one line per item.
    """
    rows: list[tuple[str, str | None, str]] = []
    for name, option in table.items():
        if origins.get(name, "default") == "default" or name == "check_config":
            continue
        value = values[name]
        if value is None:
            rows.append((name, None, origins[name]))
            continue
        items = value if option.multi else (value,)
        # A list's origin is its last item's line: for several items name only the file.
        origin = re.sub(r":\d+$", "", origins[name]) if len(items) > 1 else origins[name]
        for item in items:
            rows.append((name, _conf_text(option, item).replace("#", "\\#"), origin))
    width = max((len(name) for name, _, _ in rows), default=0)
    shown_width = min(max((len(shown or "") for _, shown, _ in rows), default=0), 40)
    lines = ["# options set by a source (all others are at their defaults); reads back as a conf file"]
    for name, shown, origin in rows:
        if shown is None:
            lines.append(f"# {name} is unset ({origin})")
        else:
            lines.append(f"{name:<{width}}  {shown:<{shown_width}}  # {origin}")
    return lines


def _conf_text(option: Option, value: Any) -> str:
    """The text that the option's parser turns back into ``value`` (a umask prints in octal)."""
    if isinstance(value, bool):
        candidates = ["1" if value else "0"]
    elif isinstance(value, float) and value.is_integer():
        candidates = [str(int(value))]
    elif isinstance(value, int):
        candidates = [str(value), f"{value:03o}"]
    else:
        candidates = [str(value)]
    for text in candidates:
        try:
            back = option.convert(text)
        except ValueError:
            continue
        if back == value or back == (value,):
            return text
    return candidates[0]


def pair(values: tuple[Any, ...], index: int) -> Any:
    """host/proto/ipv pair with port by index; the last value is reused."""
    return values[min(index, len(values) - 1)]


__all__ = ["Raw", "Layered", "build", "effective_lines", "freeze", "layer", "option_table", "pair", "parse_argv",
           "parse_conf_text", "read_conf_file"]
