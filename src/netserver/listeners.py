"""Listening sockets: port specs, resolution, binding, and inheritance across exec.

A port spec is Net::Server's string grammar: ``8080``, ``127.0.0.1:8080``,
``[::1]:8080``, ``*:8080``, ``8080/udp``, ``localhost:8080|tcp``,
``unix:/run/x.sock`` or ``/run/x.sock|unix``, with the ``host``, ``proto``
and ``ipv`` options filling in what the string leaves out, paired with the
ports by index.

Each spec resolves to one or more ``Target`` (family, address, v6only), and
each target becomes one ``Listener``.  On a HUP the parent re-execs itself
with the listening fds left open and described in ``NETSERVER_LISTEN_FDS``;
the new image adopts every fd whose target key still appears in its
configuration (checked with getsockname, never trusted blindly) and closes
the rest.  The socket is never closed and re-bound, so no connection is
refused during a restart (closing a listener resets its accept queue).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import stat

from .config import pair
from .errors import BindError, ConfigError, ResolveError
from .records import Record

ENV_FDS = "NETSERVER_LISTEN_FDS"

# Net::Server's separators: any run of , | space : / between the parts (80|IPv4, host:80:tcp, 80/udp).
_IPV_SUFFIX = re.compile(r"(?<=[\w*\]])[,|\s:/]+(ipv[46*])$", re.IGNORECASE)
_PROTO_SUFFIX = re.compile(r"(?<=[\w*\]])[,|\s:/]+(tcp|udp|unix|ssl|ssleay|unixdgram)$", re.IGNORECASE)
_HOST_AND_PORT = re.compile(r"(.*?)[,|\s]+(\w+)$")  # 127.0.0.1|80 (a colon is taken apart from the right)


class ListenSpec(Record):
    """One parsed ``port`` entry."""

    proto: str  # 'tcp' | 'udp' | 'unix'
    host: str  # '*' | name | address ('' for unix)
    port: int  # 0 for unix
    path: str  # unix socket path, else ''
    ipv: str  # '4' | '6' | '46' | '*'
    text: str  # as written, for messages
    origin: str
    index: int = 0  # position among the ports: two "127.0.0.1:0" are two sockets


class Target(Record):
    """A concrete socket to create: family, bind address, and dual-stack choice."""

    spec: ListenSpec
    family: int
    address: tuple | str
    v6only: bool = False

    @property
    def key(self) -> str:
        """Identity across a HUP: the spec as configured (port 0 stays 0)."""
        host = self.address if isinstance(self.address, str) else self.address[0]
        spec = self.spec
        index = "" if spec.port else spec.index  # two port-0 specs are distinct sockets
        return f"{spec.proto}|{spec.host}|{spec.port}|{spec.ipv}|{self.family}|{host}|{index}"


def _port_of_key(key: str) -> int | None:
    """The port a ``Target.key`` names (0 for a unix socket), or None for what is not a key."""
    fields = key.split("|")
    return int(fields[2]) if len(fields) == 7 and fields[2].isdigit() else None


class Listener:
    """A bound socket and where it listens."""

    __slots__ = ("target", "sock", "inherited", "unix_inode", "family", "proto", "_bound", "_fixed")

    def __init__(self, target: Target, sock: socket.socket, inherited: bool = False,
                 unix_inode: tuple[int, int] | None = None) -> None:
        self.target = target
        self.sock = sock
        self.family = int(target.family)  # a plain int: sock.family builds an enum on every read
        self.proto = target.spec.proto    # read for every connection: an attribute, not a property
        self.inherited = inherited
        self.unix_inode = unix_inode
        self._bound: tuple[str, int] | None = None  # (address, port), read once: a Fork child closes the socket
        self._fixed: tuple[str, int] | None | bool = False  # fixed_local(), once known

    def __repr__(self) -> str:
        return f"<Listener {self.target.key}{' inherited' if self.inherited else ''}>"

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def host(self) -> str:
        if self.proto == "unix":
            return self.target.spec.path
        return self._name()[0]

    @property
    def port(self) -> int:
        return 0 if self.proto == "unix" else self._name()[1]

    def _name(self) -> tuple[str, int]:
        if self._bound is None:
            name = self.sock.getsockname()
            self._bound = (normalise_ip(name[0]), name[1])
        return self._bound

    def fixed_local(self) -> tuple[str, int] | None:
        """The local (address, port) of every connection it accepts: None when bound to a wildcard
        address (each connection then has its own) and for unix sockets ("", 0)."""
        fixed = self._fixed
        if fixed is False:
            if self.proto == "unix":
                fixed = ("", 0)
            else:
                host, port = self._name()
                fixed = None if host in _WILDCARDS else (host, port)
            self._fixed = fixed
        return fixed  # type: ignore[return-value]

    def describe(self) -> str:
        """``tcp:127.0.0.1:8080``, ``tcp::::8080``, ``unix:/run/x.sock:0``: the READY line's form.

        Kept as it is because programs parse it (split at the first and the
        last colon); people read :meth:`display`.
        """
        return f"{self.proto}:{self.host}:{self.port}"

    def display(self) -> str:
        """``127.0.0.1:8080``, ``[::]:8080``, ``127.0.0.1:53/udp``, ``unix:/run/x.sock``: for logs.

        Each is also a valid ``port`` value, so a line can be pasted back.
        """
        if self.proto == "unix":
            return f"unix:{self.host}"
        where = display_address(self.host, self.port)
        return where if self.proto == "tcp" else f"{where}/{self.proto}"

    def close(self) -> None:
        self.sock.close()

    def remove_socket_file(self) -> None:
        """Unlink our unix socket file, only if it is still the one we bound."""
        if self.unix_inode is None:
            return
        try:
            info = os.lstat(self.target.spec.path)
            if (info.st_dev, info.st_ino) == self.unix_inode:
                os.unlink(self.target.spec.path)
        except OSError:
            pass


#: Addresses a listener bound to stands for any local address.
_WILDCARDS = frozenset(("0.0.0.0", "::", ""))


def display_address(host: str, port: int) -> str:
    """``127.0.0.1:8080`` or ``[::1]:8080``: an IPv6 address needs brackets before its port."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalise_ip(address: str) -> str:
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


def parse_port(text: str, index: int, hosts: tuple[str, ...], protos: tuple[str, ...],
               ipvs: tuple[str, ...], origin: str) -> ListenSpec:
    """Take one port string apart from the right, as Net::Server does."""
    rest = text.strip()
    ipv = None
    while (match := _IPV_SUFFIX.search(rest)) is not None:
        found = match.group(1)[3]
        ipv = found if ipv is None else "".join(sorted(set(ipv + found))).replace("*", "") or "*"
        rest = rest[: match.start()]
    proto = None
    if rest.lower().startswith("unix:"):
        proto, rest = "unix", rest[5:]
    elif (match := _PROTO_SUFFIX.search(rest)) is not None:
        proto, rest = match.group(1).lower(), rest[: match.start()]
    if proto in ("ssl", "ssleay", "unixdgram"):
        raise ConfigError("port", text, origin, f"asks for proto {proto}, which netserver does not serve "
                          "(tcp, udp and unix stream sockets only)")
    proto = proto or pair(protos, index)
    ipv = ipv or pair(ipvs, index)
    if proto == "unix":
        if not rest.startswith("/") and not rest.startswith("."):
            raise ConfigError("port", text, origin, "is not a unix socket path (give an absolute path)")
        return ListenSpec("unix", "", 0, rest, "*", text, origin, index)
    host = None
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0 or rest[close + 1: close + 2] not in (":", "|", ",", " "):
            raise ConfigError("port", text, origin, "is not [ADDRESS]:PORT")
        host, rest = rest[1:close], rest[close + 2:]
    elif (match := _HOST_AND_PORT.match(rest)) is not None:
        host, rest = match.group(1), match.group(2)
    elif ":" in rest:
        host, rest = rest.rsplit(":", 1)
    host = host if host else pair(hosts, index)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return ListenSpec(proto, host, service_port(rest, proto, text, origin), "", ipv, text, origin, index)


def service_port(word: str, proto: str, text: str, origin: str) -> int:
    word = word.strip()
    if word.isdigit():
        number = int(word)
        if number > 65535:
            raise ConfigError("port", text, origin, "is not a port number between 0 and 65535")
        return number
    if re.fullmatch(r"[A-Za-z][\w-]*", word):
        try:
            return socket.getservbyname(word, proto)
        except OSError:
            pass
    raise ConfigError("port", text, origin, "is not a port number, service name or socket path")


def parse_ports(ports: tuple[str, ...], hosts: tuple[str, ...], protos: tuple[str, ...],
                ipvs: tuple[str, ...], origin: str) -> list[ListenSpec]:
    specs: list[ListenSpec] = []
    for index, text in enumerate(ports):
        spec = parse_port(text, index, hosts, protos, ipvs, origin)
        duplicate = spec.port != 0 and any(
            (s.proto, s.host, s.port, s.path, s.ipv) == (spec.proto, spec.host, spec.port, spec.path, spec.ipv)
            for s in specs)
        if not duplicate:
            specs.append(spec)
    return specs


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def resolve(spec: ListenSpec, host_origin: str | None = None) -> list[Target]:
    """Turn a spec into sockets to bind; raises ResolveError for unresolvable hosts.

    ``host_origin`` is where the ``host`` option came from, named when the
    host was not written in the port spec itself.
    """
    if spec.proto == "unix":
        return [Target(spec, socket.AF_UNIX, spec.path)]
    kind = socket.SOCK_DGRAM if spec.proto == "udp" else socket.SOCK_STREAM
    families = {"4": [socket.AF_INET], "6": [socket.AF_INET6],
                "46": [socket.AF_INET6, socket.AF_INET], "64": [socket.AF_INET6, socket.AF_INET]}
    have_v6 = ipv6_available()
    if spec.host in ("*", ""):
        if spec.ipv == "*":
            if have_v6:
                return [Target(spec, socket.AF_INET6, ("::", spec.port), v6only=False)]
            return [Target(spec, socket.AF_INET, ("0.0.0.0", spec.port))]
        return [Target(spec, family, ("::" if family == socket.AF_INET6 else "0.0.0.0", spec.port),
                       v6only=True) for family in families[spec.ipv] if family == socket.AF_INET or have_v6]
    wanted = families.get(spec.ipv, [socket.AF_INET6, socket.AF_INET])
    try:
        infos = socket.getaddrinfo(spec.host, spec.port, 0, kind, 0, socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise _unresolved(spec, host_origin, f"cannot be resolved: {error.strerror}") from None
    targets: list[Target] = []
    for family, _, _, _, sockaddr in infos:
        if family not in wanted or (family == socket.AF_INET6 and not have_v6):
            continue
        target = Target(spec, family, (sockaddr[0], spec.port), v6only=family == socket.AF_INET6)
        if target not in targets:
            targets.append(target)
    if not targets:
        raise _unresolved(spec, host_origin, f"has no IPv{spec.ipv} address")
    return targets


def _unresolved(spec: ListenSpec, host_origin: str | None, reason: str) -> ResolveError:
    """Name the option that held the host: the port spec ("name:80") or the host option."""
    if ":" in spec.text or host_origin is None:
        return ResolveError("port", spec.text, spec.origin, f"(host {spec.host!r}) {reason}")
    return ResolveError("host", spec.host, host_origin, reason)


def open_listener(target: Target, backlog: int, port_override: int | None = None) -> Listener:
    spec = target.spec
    kind = socket.SOCK_DGRAM if spec.proto == "udp" else socket.SOCK_STREAM
    if spec.proto == "unix":
        return _open_unix(target, backlog)
    address = target.address
    if port_override is not None:
        address = (address[0], port_override)
    shown = display_address(address[0], address[1]) + ("/udp" if spec.proto == "udp" else "")
    sock = socket.socket(target.family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if target.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if target.v6only else 0)
        sock.bind(address)
        if kind == socket.SOCK_STREAM:
            sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise BindError(shown, error) from None
    return Listener(target, sock)


#: sun_path's size on Linux, the terminating NUL included.
UNIX_PATH_MAX = 108


def _claim_unix_path(path: str, remove_stale: bool = True) -> None:
    """Refuse a path that is no socket or that another server listens on; remove a stale socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise BindError(f"unix:{path}", "the path exists and is not a socket; not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        if remove_stale:
            os.unlink(path)  # stale: nobody listens on it
    except OSError:
        pass
    else:
        raise BindError(f"unix:{path}", "another server is listening on this socket")
    finally:
        probe.close()


def _open_unix(target: Target, backlog: int) -> Listener:
    path = target.spec.path
    _claim_unix_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
        info = os.lstat(path)
    except OSError as error:
        sock.close()
        raise BindError(f"unix:{path}", error) from None
    return Listener(target, sock, unix_inode=(info.st_dev, info.st_ino))


def probe(targets: list[Target], held: set[str]) -> None:
    """Raise the BindError that binding would meet, without keeping (or creating) anything.

    For the HUP check: ``held`` are the keys of the running server's
    listeners, which the new image adopts rather than binds.  A TCP or UDP
    port is bound and closed at once (the new image binds it a moment later:
    only a race with another program can still lose it); for a unix socket
    the path is looked at and a trial socket made in its directory, since
    binding the path itself would create the file.
    """
    held_ports = {_port_of_key(key) for key in held}
    for target in targets:
        spec = target.spec
        if target.key in held or (spec.proto != "unix" and spec.port == 0):
            continue
        if spec.proto == "unix":
            _probe_unix(spec.path)
            continue
        try:
            open_listener(target, 1).sock.close()
        except BindError as error:
            if isinstance(error.error, OSError) and error.error.errno == errno.EADDRINUSE \
                    and spec.port in held_ports:
                raise BindError(error.address, "address already in use, by this server under another "
                                "address: a new host for a port needs a stop and a start") from None
            raise


def _probe_unix(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BindError(f"unix:{path}", f"the directory {folder} does not exist")
    if len(os.fsencode(path)) >= UNIX_PATH_MAX:
        raise BindError(f"unix:{path}", f"the path is longer than a unix socket's {UNIX_PATH_MAX - 1} bytes")
    _claim_unix_path(path, remove_stale=False)  # a stale socket is the new image's to remove
    # Whether a socket can be made in that directory: bind one of our own there, then remove it
    # (skipped in the rare folder too deep for even that short a name).
    trial = os.path.join(folder, f".ns{os.getpid()}")
    if len(os.fsencode(trial)) >= UNIX_PATH_MAX:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.bind(trial)
    except OSError as error:
        raise BindError(f"unix:{path}", error) from None
    finally:
        probe.close()
    try:
        os.unlink(trial)
    except OSError:
        pass


def bind_all(targets: list[Target], backlog: int, inherited: dict[str, socket.socket],
             log, skip_failures: bool = False) -> list[Listener]:
    """Adopt inherited sockets whose key matches, bind the rest.

    With port 0 and several targets of one spec, every family gets the port
    the first one was given (as Net::Server does), so ``localhost:0`` is one
    port on both ::1 and 127.0.0.1.  ``skip_failures`` (a HUP restart, where
    the server is already serving) logs a port that cannot be bound and goes
    on without it instead of failing.
    """
    listeners: list[Listener] = []
    chosen_port: dict[ListenSpec, int] = {}
    try:
        for target in targets:
            sock = inherited.pop(target.key, None)
            if sock is not None:
                listener = Listener(target, sock, inherited=True, unix_inode=_socket_file(target))
                log(3, "Reassociating file descriptor %d with %s", sock.fileno(), listener.display())
            else:
                override = chosen_port.get(target.spec) if target.spec.port == 0 else None
                try:
                    listener = open_listener(target, backlog, override)
                except BindError as error:
                    if not skip_failures:
                        raise
                    log(0, "Skipping a port added by the restart: %s", error)
                    continue
            if target.spec.proto != "unix":
                chosen_port.setdefault(target.spec, listener.port)
            listeners.append(listener)
    except BaseException:
        for listener in listeners:
            if not listener.inherited:
                listener.close()
                listener.remove_socket_file()
        raise
    for key, sock in inherited.items():
        log(2, "Closing un-mapped inherited socket %s (fd %d)", key, sock.fileno())
        sock.close()
    return listeners


def _remove_dropped_socket_file(sock: socket.socket) -> None:
    """A unix port the restart dropped: its file goes too (the previous image bound it and held it
    since, so the socket file at its path is taken for ours, as for an adopted one)."""
    if sock.family != socket.AF_UNIX:
        return
    try:
        path = sock.getsockname()
        if isinstance(path, str) and path and stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def _socket_file(target: Target) -> tuple[int, int] | None:
    """An adopted unix listener's file, so that the image that stops last removes it.

    The previous image bound it and has held the socket since, so the socket
    file at the path now is taken for ours (its inode is not handed over).
    """
    if target.spec.proto != "unix":
        return None
    try:
        info = os.lstat(target.spec.path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISSOCK(info.st_mode) else None


def export_env(listeners: list[Listener]) -> str:
    """Clear FD_CLOEXEC on the listeners and describe them for the next image."""
    entries = []
    for listener in listeners:
        os.set_inheritable(listener.fileno(), True)
        entries.append(f"{listener.fileno()}={listener.target.key}")
    return ";".join(entries)


def import_env(value: str | None, targets: list[Target]) -> dict[str, socket.socket]:
    """Sockets handed over by the previous image, checked with getsockname."""
    found: dict[str, socket.socket] = {}
    if not value:
        return found
    by_key = {target.key: target for target in targets}
    for entry in value.split(";"):
        fd_text, _, key = entry.partition("=")
        if not fd_text.isdigit():
            continue
        fd = int(fd_text)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        target = by_key.get(key)
        if target is None or not _matches(sock, target):
            if target is None:
                _remove_dropped_socket_file(sock)  # the new configuration has no such port
            sock.close()
            continue
        os.set_inheritable(fd, False)
        found[key] = sock
    return found


def import_systemd(targets: list[Target], log) -> dict[str, socket.socket]:
    """Sockets passed by systemd socket activation (LISTEN_FDS from fd 3).

    Only when LISTEN_PID names this process; each fd is matched to a
    configured target by family, type and address, an unmatched one is
    closed.  The variables are removed so children and their subprocesses do
    not take the sockets for their own.
    """
    pid, count = os.environ.pop("LISTEN_PID", ""), os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    found: dict[str, socket.socket] = {}
    if pid != str(os.getpid()) or not count.isdigit():
        return found
    for fd in range(3, 3 + int(count)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        target = next((t for t in targets if t.key not in found and _matches(sock, t)), None)
        if target is None:
            log(1, "Closing socket fd %d from systemd: it matches no configured port", fd)
            sock.close()
            continue
        os.set_inheritable(fd, False)
        found[target.key] = sock
    return found


def _matches(sock: socket.socket, target: Target) -> bool:
    try:
        if sock.family != target.family:
            return False
        expected = socket.SOCK_DGRAM if target.spec.proto == "udp" else socket.SOCK_STREAM
        if sock.type != expected:
            return False
        if expected == socket.SOCK_STREAM and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return False
        name = sock.getsockname()
    except OSError as error:
        if error.errno in (errno.EBADF, errno.ENOTSOCK):
            return False
        raise
    if target.family == socket.AF_UNIX:
        return name == target.address
    return name[0] == target.address[0] and (target.spec.port == 0 or name[1] == target.spec.port)
