"""Trusted proxies: Forwarded / X-Forwarded-For parsing and the walk from the right."""

from __future__ import annotations

import pytest

from netserver.protocols.forwarded import TrustedProxies, parse_forwarded, split_node


def environ(peer: str = "10.0.0.1") -> dict:
    return {"REMOTE_ADDR": peer, "REMOTE_PORT": "5000", "wsgi.url_scheme": "http"}


def apply(headers: list[tuple[str, str]], peer: str = "10.0.0.1", allow=("10.0.0.0/8",)) -> dict:
    env = environ(peer)
    TrustedProxies(tuple(allow)).apply(env, [(name.encode(), value.encode("latin-1")) for name, value in headers])
    return env


def test_parse_forwarded_elements_pairs_and_quotes() -> None:
    assert parse_forwarded('for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711"') == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"},
        {"for": "[2001:db8:cafe::17]:4711"},
    ]
    # a comma or semicolon inside quotes does not split; an escaped quote is kept
    assert parse_forwarded('for="a,b;c";x="say \\"hi\\""') == [{"for": "a,b;c", "x": 'say "hi"'}]
    assert parse_forwarded(" , ,") == []


@pytest.mark.parametrize("node, expected", [
    ("192.0.2.1", ("192.0.2.1", "")),
    ("192.0.2.1:4711", ("192.0.2.1", "4711")),
    ("[2001:db8::1]:4711", ("2001:db8::1", "4711")),
    ("[2001:DB8::1]", ("2001:db8::1", "")),
    ("2001:db8::1", ("2001:db8::1", "")),
    ("192.0.2.1:_port", ("192.0.2.1", "")),   # an obfuscated port is dropped, the address kept
    ("_hidden", (None, "")),                  # RFC 7239 6.3 obfuscated identifier
    ("unknown", (None, "")),
    ("example.com", (None, "")),
    ("", (None, "")),
])
def test_split_node(node: str, expected: tuple) -> None:
    assert split_node(node) == expected


def test_untrusted_peer_is_ignored() -> None:
    env = apply([("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https"),
                 ("Forwarded", "for=203.0.113.9;proto=https")], peer="198.51.100.7")
    assert env == environ("198.51.100.7")


def test_no_trusted_networks_is_inactive() -> None:
    assert not TrustedProxies(()).active
    assert TrustedProxies(("10.0.0.0/8",)).active


def test_x_forwarded_for_rightmost_untrusted_wins() -> None:
    # 6.6.6.6 is what the client claimed; 203.0.113.9 is what our proxy 10.0.0.2 saw.
    env = apply([("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.0.0.2"), ("X-Forwarded-Proto", "https")])
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["REMOTE_PORT"] == "5000"
    assert env["wsgi.url_scheme"] == "https"


def test_x_forwarded_for_across_lines_and_a_single_proto() -> None:
    env = apply([("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "10.0.0.3"),
                 ("X-Forwarded-Proto", "http, HTTPS")])
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["wsgi.url_scheme"] == "http"  # the proto of the same hop, read from the right too


def test_every_hop_trusted_gives_the_leftmost() -> None:
    assert apply([("X-Forwarded-For", "10.0.0.9, 10.0.0.8")])["REMOTE_ADDR"] == "10.0.0.9"


def test_forwarded_wins_over_x_forwarded_for_and_carries_port_and_proto() -> None:
    env = apply([("X-Forwarded-For", "198.51.100.1"),
                 ("Forwarded", 'for="[2001:db8::17]:4711";proto=https, for=10.0.0.2')])
    assert env["REMOTE_ADDR"] == "2001:db8::17"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"


def test_ipv6_proxy_and_ipv4_mapped_peer() -> None:
    env = apply([("X-Forwarded-For", "203.0.113.9")], peer="2001:db8::2", allow=("2001:db8::/64",))
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    env = apply([("X-Forwarded-For", "203.0.113.9")], peer="::ffff:10.0.0.1")
    assert env["REMOTE_ADDR"] == "203.0.113.9"


def test_obfuscated_node_stops_the_walk() -> None:
    # Nothing left of an obfuscated node can be checked: the client is not believed past it.
    assert apply([("Forwarded", "for=203.0.113.9, for=_hidden")]) == environ()
    env = apply([("Forwarded", "for=_hidden, for=10.0.0.2")])
    assert env["REMOTE_ADDR"] == "10.0.0.2"  # the last address that could be checked


def test_unknown_proto_is_not_taken() -> None:
    env = apply([("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "javascript")])
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["wsgi.url_scheme"] == "http"


def test_garbage_addresses_change_nothing() -> None:
    assert apply([("X-Forwarded-For", "not-an-address")]) == environ()
    assert TrustedProxies(("10.0.0.0/8",)).trusts("bogus") is False
