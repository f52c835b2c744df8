"""Trusted proxies: the client a proxy says it forwarded, believed only from ``forwarded_allow``.

Headers a client sends are the client's word.  They are believed only when
the socket's peer is a listed proxy, and then read from the right: each
hop appends the address it saw, so the rightmost address that is not a
trusted proxy is the client (the addresses left of it are whatever that
client claimed).  RFC 7239 ``Forwarded`` wins over ``X-Forwarded-For`` and
``X-Forwarded-Proto`` when both are present.  allow/deny acts earlier, on the
socket's peer at accept, before any header is read.
"""

from __future__ import annotations

import ipaddress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, blocks: tuple[str, ...]) -> None:
        self.networks: list[Network] = [ipaddress.ip_network(block, strict=False) for block in blocks]
        self.active = bool(self.networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def apply(self, environ: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
        """Rewrite REMOTE_ADDR (and REMOTE_PORT, wsgi.url_scheme) when the peer is a trusted proxy."""
        if not self.trusts(environ["REMOTE_ADDR"]):
            return
        forwarded = [value for name, value in headers if name.lower() == b"forwarded"]
        if forwarded:
            hops = [(element.get("for", ""), element.get("proto", "")) for element in
                    parse_forwarded(b",".join(forwarded).decode("latin-1"))]
        else:
            addresses = [part.strip() for name, value in headers if name.lower() == b"x-forwarded-for"
                         for part in value.decode("latin-1").split(",")]
            protos = [part.strip().lower() for name, value in headers if name.lower() == b"x-forwarded-proto"
                      for part in value.decode("latin-1").split(",")]
            if not addresses and protos:
                addresses = [""]  # a proxy that says only the scheme (X-Forwarded-Proto alone)
            if len(protos) != len(addresses):
                protos = [protos[-1] if protos else ""] * len(addresses)
            hops = list(zip(addresses, protos, strict=True))
        chosen: tuple[str | None, str, str] | None = None
        for node, proto in reversed(hops):
            address, port = split_node(node)
            if address is None:
                if chosen is None and not node.strip():
                    chosen = (None, "", proto)  # the trusted peer's own hop, with no address: its scheme
                break  # an obfuscated or unknown node: nothing further left can be checked
            chosen = (address, port, proto)
            if not self.trusts(address):
                break
        if chosen is None:
            return
        address, port, proto = chosen
        if address is not None:
            environ["REMOTE_ADDR"] = address
        if port:
            environ["REMOTE_PORT"] = port
        if proto in ("http", "https"):
            environ["wsgi.url_scheme"] = proto


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239: comma-separated elements of ;-separated name=value pairs (values may be quoted)."""
    elements: list[dict[str, str]] = []
    for element in _split_outside_quotes(value, ","):
        pairs: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            name, _, raw = pair.partition("=")
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1].replace('\\"', '"')
            if name.strip():
                pairs[name.strip().lower()] = raw
        elements.append(pairs)
    return elements


def _split_outside_quotes(value: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def split_node(node: str) -> tuple[str | None, str]:
    """'192.0.2.1', '192.0.2.1:4711', '[2001:db8::1]:4711', '2001:db8::1' -> (address, port)."""
    node = node.strip()
    port = ""
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif node.count(":") == 1:
        host, _, port = node.partition(":")
    else:
        host = node
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        return None, ""
    return address, port if port.isdigit() else ""
