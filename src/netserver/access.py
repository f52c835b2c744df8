"""Access control: the ``allow``, ``deny``, ``cidr_allow`` and ``cidr_deny`` options.

The decision order is Net::Server's ``allow_deny`` (see the reference, section g),
with two deliberate differences:

* Host names are trusted only when forward-confirmed (:func:`confirmed_hostname`).
  Net::Server before 2.007 matched ``allow`` rules against the bare PTR name, so
  whoever controlled the reverse zone of their own address could name themselves
  into the allow list (CVE-2013-1841).
* Patterns are compiled once, in the parent, so a bad regex or CIDR is a start-up
  ConfigError naming the option and its source, not a crash in every child.

Regexes are anchored with :func:`re.fullmatch`, as Perl's ``/^$re$/`` was;
``re.search`` would let ``allow 127.0.0.1`` admit ``127.0.0.10``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping

from netserver.errors import ConfigError

from .records import Record

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_Regexes = tuple[re.Pattern[str], ...]
_Networks = tuple[_IPNetwork, ...]


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class HostResolver(Protocol):
        """What :func:`confirmed_hostname` needs: :class:`Resolver` or a test stub."""

        def reverse(self, address: str) -> str | None: ...
        def forward(self, name: str) -> list[str]: ...


class Resolver:
    """Default DNS resolver (stdlib :mod:`socket`): :meth:`reverse`, :meth:`forward`.

    Both block on DNS, so they run in the process serving the connection (the child
    under Fork and PreFork), never in the parent's accept loop.
    """

    def reverse(self, address: str) -> str | None:
        """Return the PTR name of ``address``, or None when there is none."""
        try:
            return socket.gethostbyaddr(address)[0]
        except (OSError, TypeError, ValueError):
            # OSError: no PTR or SERVFAIL; TypeError/ValueError: NUL byte, bad IDNA.
            return None

    def forward(self, name: str) -> list[str]:
        """Return the distinct addresses ``name`` resolves to, or [] on failure."""
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except (OSError, TypeError, ValueError):
            return []
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def normalize_address(address: str) -> str:
    """Return ``address`` with brackets removed and v4-mapped IPv6 turned into IPv4.

    ``'::ffff:1.2.3.4'`` becomes ``'1.2.3.4'`` and ``'[::1]'`` becomes ``'::1'``.  A
    ``%scope`` suffix is kept; any other text is returned unchanged, because allow and
    deny regexes are matched against this exact text.
    """
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # Dual-stack sockets report IPv4 peers this way; rules are written for 1.2.3.4.
        return str(ip.ipv4_mapped)
    return address


def _parse(address: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_address(normalize_address(address))
    except ValueError:
        return None


def confirmed_hostname(address: str, resolver: HostResolver, log: Callable[..., None] | None = None) -> str | None:
    """Return the forward-confirmed host name of ``address``, or None.

    The PTR name counts only if looking that name up again yields ``address``
    (compared as IP addresses, so ``'::1'`` equals ``'0:0::1'`` and v4-mapped equals
    IPv4).  The name is lower-cased and loses a trailing dot, so that a PTR record
    spelled ``Host.Example.NET.`` cannot slip past ``deny .+\\.example\\.net``.

    Runs in the process serving the connection; it blocks on two DNS lookups.
    """
    peer = _parse(address)
    if peer is None:
        return None
    name = resolver.reverse(normalize_address(address))
    if not name:
        return None
    for candidate in resolver.forward(name):
        ip = _parse(candidate)
        # Compare without %scope: DNS answers never carry one, so a scoped link-local
        # peer could otherwise never be confirmed.
        if ip is not None and (ip.version, int(ip)) == (peer.version, int(peer)):
            return name.rstrip(".").lower() or None
    if log is not None:
        log(4, "Ignoring PTR name %s of %s: it does not resolve back", name, address)
    return None


class AccessPolicy(Record):
    """The compiled allow/deny rules; frozen, so processes and threads can share it.

    * :meth:`compile` (parent, once at start-up; forked children inherit the result).
    * :meth:`permits` decides one connection in the process serving it, without I/O:
      the caller resolves the host name first, and only if :attr:`uses_hostnames`.
      :meth:`decide` is the same decision with the rule that made it, for the log.
    * :attr:`empty` and :attr:`deny_only` let the server skip the check, or warn at
      start-up that a deny-only configuration denies everyone.
    """

    allow: _Regexes = ()
    deny: _Regexes = ()
    cidr_allow: _Networks = ()
    cidr_deny: _Networks = ()

    @classmethod
    def compile(
        cls,
        *,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        cidr_allow: Iterable[str] = (),
        cidr_deny: Iterable[str] = (),
        sources: Mapping[str, str] | None = None,
    ) -> AccessPolicy:
        """Compile option values, or raise :class:`ConfigError` naming the bad one.

        ``sources`` maps an option to where it was set (``'server.conf:3'``).
        """
        src = sources or {}
        return cls(
            allow=_regexes("allow", allow, src.get("allow")),
            deny=_regexes("deny", deny, src.get("deny")),
            cidr_allow=_networks("cidr_allow", cidr_allow, src.get("cidr_allow")),
            cidr_deny=_networks("cidr_deny", cidr_deny, src.get("cidr_deny")),
        )

    @property
    def empty(self) -> bool:
        """True when no rule is configured: every connection is allowed."""
        return not (self.allow or self.deny or self.cidr_allow or self.cidr_deny)

    @property
    def deny_only(self) -> bool:
        """True when only deny rules exist; as in Net::Server, that denies everyone."""
        return bool(self.deny or self.cidr_deny) and not (self.allow or self.cidr_allow)

    @property
    def uses_hostnames(self) -> bool:
        """True when an allow or deny regex exists, since those may match host names."""
        return bool(self.allow or self.deny)

    def permits(self, proto: str, address: str, hostname: str | None = None) -> bool:
        """Return whether a peer may connect (:meth:`decide` without the reason)."""
        return self.decide(proto, address, hostname).allowed

    def decide(self, proto: str, address: str, hostname: str | None = None) -> Decision:
        """Return whether a peer may connect, and the rule that decided it.

        ``hostname`` must be forward-confirmed (:func:`confirmed_hostname`) or None.
        Order: UNIX sockets (``unix``, ``unixdgram``) and INET's pipes (``pipe``: the
        superserver on this machine is the peer) are always allowed; no rules
        allows; a deny regex or cidr_deny match denies; an allow regex or cidr_allow
        match allows; anything else is denied.  No I/O: the reason is a string the
        caller may log (and rate-limit) or ignore.
        """
        if proto.lower().startswith("unix") or proto == "pipe":
            return _UNIX
        if self.empty:
            return _NO_RULES
        address = normalize_address(address)
        ip = _parse(address)
        names = (address,) if hostname is None else (hostname, address)
        denied = _first_rule("deny", self.deny, self.cidr_deny, names, ip)
        if denied is not None:
            return Decision(False, denied)
        allowed = _first_rule("allow", self.allow, self.cidr_allow, names, ip)
        if allowed is not None:
            return Decision(True, allowed)
        return _UNMATCHED if self.allow or self.cidr_allow else _DENY_ONLY


def _first_rule(kind: str, patterns, networks, names: tuple[str, ...], ip) -> str | None:
    """The first ``kind`` rule (regex, then CIDR block) that matches, as configured; None if none."""
    for rx in patterns:
        if any(rx.fullmatch(name) for name in names):
            return f"{kind} {rx.pattern}"
    if ip is not None:
        for net in networks:
            if ip in net:
                return f"cidr_{kind} {net}"
    return None


class Decision(Record):
    """What :meth:`AccessPolicy.decide` found: allowed or not, and why.

    ``rule`` names the option and the value as configured (``'deny 10\\..*'``,
    ``'cidr_allow 127.0.0.0/8'``), or says why no rule decided.
    """

    allowed: bool
    rule: str


_UNIX = Decision(True, "unix sockets are always allowed")
_NO_RULES = Decision(True, "no allow or deny rules")
_UNMATCHED = Decision(False, "no allow or cidr_allow rule matched")
_DENY_ONLY = Decision(False, "only deny rules are configured, which denies everyone")


def _regexes(option: str, values: Iterable[str], source: str | None) -> _Regexes:
    try:
        return tuple(re.compile(value) for value in values)
    except re.error as exc:
        hint = f"is not a valid regular expression: {exc}"
        raise ConfigError(option, exc.pattern, source, hint) from None


def _networks(option: str, values: Iterable[str], source: str | None) -> _Networks:
    # Net::Server hands cidr_* to Net::CIDR, which takes "a/8, b/16" or "a/8 b/16".
    blocks = [b for value in values for b in re.split(r"[,\s]+", value) if b]
    networks = []
    for block in blocks:
        try:
            networks.append(ipaddress.ip_network(block, strict=False))
        except ValueError:
            hint = "is not a CIDR block such as 10.0.0.0/8"
            raise ConfigError(option, block, source, hint) from None
    return tuple(networks)
