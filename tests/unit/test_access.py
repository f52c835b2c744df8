"""Unit tests for netserver.access: address normalisation, forward-confirmed
host names, and the allow/deny decision order (reference section g)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netserver.access import (
    AccessPolicy,
    Resolver,
    confirmed_hostname,
    normalize_address,
)
from netserver.errors import ConfigError, ExitCode


class StubResolver:
    """A resolver answering from two tables instead of DNS; it records its queries."""

    def __init__(self, ptr: dict[str, str], a: dict[str, list[str]]) -> None:
        self.ptr = ptr
        self.a = a
        self.queries: list[tuple[str, str]] = []

    def reverse(self, address: str) -> str | None:
        self.queries.append(("PTR", address))
        return self.ptr.get(address)

    def forward(self, name: str) -> list[str]:
        self.queries.append(("A", name))
        return list(self.a.get(name, []))


# --- normalize_address -------------------------------------------------------


@pytest.mark.parametrize(
    ("given_address", "expected"),
    [
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::FFFF:1.2.3.4", "1.2.3.4"),
        ("::ffff:102:304", "1.2.3.4"),  # the same mapped address in hex
        ("[::ffff:1.2.3.4]", "1.2.3.4"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),  # scope kept
        ("[fe80::1%eth0]", "fe80::1%eth0"),
        ("1.2.3.4", "1.2.3.4"),
        ("2001:db8::1", "2001:db8::1"),
        ("0:0::1", "0:0::1"),  # no canonicalisation: regexes see the text as given
        ("::1.2.3.4", "::1.2.3.4"),  # v4-compatible, not v4-mapped
        ("not an address", "not an address"),
        ("", ""),
    ],
)
def test_normalize_address(given_address: str, expected: str) -> None:
    assert normalize_address(given_address) == expected


# --- confirmed_hostname ------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "ptr", "a", "expected"),
    [
        pytest.param(
            "192.0.2.7",
            {"192.0.2.7": "host.example.com"},
            {"host.example.com": ["192.0.2.99", "192.0.2.7"]},
            "host.example.com",
            id="confirmed-among-several",
        ),
        pytest.param(
            "::ffff:192.0.2.7",
            {"192.0.2.7": "host.example.com"},
            {"host.example.com": ["192.0.2.7"]},
            "host.example.com",
            id="v4-mapped-peer-asks-ptr-of-v4",
        ),
        pytest.param(
            "192.0.2.7",
            {"192.0.2.7": "host.example.com"},
            {"host.example.com": ["::ffff:192.0.2.7"]},
            "host.example.com",
            id="v4-mapped-forward-answer",
        ),
        pytest.param(
            "::1",
            {"::1": "me.example.com"},
            {"me.example.com": ["0:0::1"]},
            "me.example.com",
            id="ipv6-compared-as-addresses",
        ),
        pytest.param(
            "2001:db8::7",
            {"2001:db8::7": "Host.Example.COM."},
            {"Host.Example.COM.": ["2001:DB8:0::7"]},
            "host.example.com",
            id="name-lowercased-trailing-dot-dropped",
        ),
        pytest.param(
            "192.0.2.7",
            {},
            {"host.example.com": ["192.0.2.7"]},
            None,
            id="no-ptr",
        ),
        pytest.param(
            "192.0.2.7",
            {"192.0.2.7": "host.example.com"},
            {},
            None,
            id="name-does-not-resolve",
        ),
        pytest.param(
            "192.0.2.7",
            {"192.0.2.7": "host.example.com"},
            {"host.example.com": ["192.0.2.70", "garbage"]},
            None,
            id="name-resolves-elsewhere",
        ),
        pytest.param(
            "192.0.2.7",
            {"192.0.2.7": "host.example.com"},
            {"host.example.com": ["::ffff:192.0.2.8"]},
            None,
            id="mapped-answer-for-other-v4",
        ),
        pytest.param(
            "garbage",
            {"garbage": "host.example.com"},
            {"host.example.com": ["garbage"]},
            None,
            id="peer-not-an-ip",
        ),
    ],
)
def test_confirmed_hostname(
    address: str, ptr: dict[str, str], a: dict[str, list[str]], expected: str | None
) -> None:
    assert confirmed_hostname(address, StubResolver(ptr, a)) == expected


def test_confirmed_hostname_skips_forward_lookup_without_ptr() -> None:
    resolver = StubResolver({}, {})
    assert confirmed_hostname("192.0.2.7", resolver) is None
    assert resolver.queries == [("PTR", "192.0.2.7")]


def test_cve_2013_1841_unconfirmed_ptr_name_is_not_trusted() -> None:
    # The attacker at 203.0.113.66 controls its own reverse zone and claims a name
    # that the allow rule trusts; the real name resolves somewhere else.
    resolver = StubResolver(
        {"203.0.113.66": "gateway.trusted.example"},
        {"gateway.trusted.example": ["192.0.2.1"]},
    )
    policy = AccessPolicy.compile(allow=[r".+\.trusted\.example"])
    hostname = confirmed_hostname("203.0.113.66", resolver)

    assert hostname is None
    assert not policy.permits("tcp", "203.0.113.66", hostname)
    # Guard that the test means something: the bare PTR name would have matched.
    assert policy.permits("tcp", "203.0.113.66", resolver.reverse("203.0.113.66"))
    # The genuine host, whose name resolves back to it, is admitted.
    genuine = StubResolver(
        resolver.ptr | {"192.0.2.1": "gateway.trusted.example"}, resolver.a
    )
    assert policy.permits("tcp", "192.0.2.1", confirmed_hostname("192.0.2.1", genuine))


# --- AccessPolicy.permits: one row per step of the decision order --------------

SEED = {"allow": [r".+\.(net|com)", r"domain\.com"], "deny": ["a.+"]}

# One row per case, kept on one line each so the table reads as a table.
# fmt: off
PERMITS_CASES = [
    # (id, compile kwargs, proto, address, hostname, expected)
    ("unix-always-allowed", {"cidr_deny": ["0.0.0.0/0"]}, "unix", "", None, True),
    ("unixdgram-always-allowed", {"deny": [".*"]}, "UNIXDGRAM", "x", None, True),
    ("no-rules-allows-all", {}, "tcp", "203.0.113.1", None, True),
    ("no-rules-allows-garbage", {}, "udp", "garbage", None, True),
    # deny regexes
    ("deny-regex-address", {"deny": [r"10\..*"], "allow": [".*"]}, "tcp", "10.1.1.1", None, False),
    ("deny-regex-hostname", {"deny": [r".*\.bad\.net"], "allow": [".*"]}, "tcp", "192.0.2.1", "x.bad.net", False),
    ("deny-regex-ignores-missing-hostname", {"deny": [r".*\.bad\.net"], "allow": [".*"]}, "tcp", "192.0.2.1", None, True),
    ("deny-regex-on-normalised-v4", {"deny": [r"10\.0\.0\.1"], "allow": [".*"]}, "tcp", "::ffff:10.0.0.1", None, False),
    # cidr_deny
    ("cidr-deny-v4", {"cidr_deny": ["10.0.0.0/8"], "allow": [".*"]}, "tcp", "10.200.1.1", None, False),
    ("cidr-deny-v4-mapped", {"cidr_deny": ["10.0.0.0/8"], "allow": [".*"]}, "tcp", "::ffff:10.200.1.1", None, False),
    ("cidr-deny-v6", {"cidr_deny": ["2001:db8::/32"], "allow": [".*"]}, "tcp", "2001:db8:1::5", None, False),
    ("cidr-deny-v6-misses-v4", {"cidr_deny": ["::/0"], "allow": [".*"]}, "tcp", "10.0.0.1", None, True),
    ("cidr-deny-v4-misses-v6", {"cidr_deny": ["0.0.0.0/0"], "allow": [".*"]}, "tcp", "::1", None, True),
    ("cidr-deny-scoped-v6", {"cidr_deny": ["fe80::/10"], "allow": [".*"]}, "tcp", "fe80::1%eth0", None, False),
    # deny wins over allow, whichever kinds they are
    ("deny-regex-beats-allow-regex", {"deny": [r"192\..*"], "allow": [r"192\.0\.2\.1"]}, "tcp", "192.0.2.1", None, False),
    ("deny-regex-beats-cidr-allow", {"deny": [r".*\.bad\.net"], "cidr_allow": ["192.0.2.0/24"]}, "tcp", "192.0.2.1", "x.bad.net", False),
    ("cidr-deny-beats-allow-regex", {"cidr_deny": ["192.0.2.0/24"], "allow": [r"192\.0\.2\.1"]}, "tcp", "192.0.2.1", None, False),
    ("cidr-deny-beats-cidr-allow", {"cidr_deny": ["192.0.2.1/32"], "cidr_allow": ["192.0.2.0/24"]}, "tcp", "192.0.2.1", None, False),
    # allow regexes
    ("allow-regex-address", {"allow": [r"127\.0\.0\.1"]}, "tcp", "127.0.0.1", None, True),
    ("allow-regex-anchored-end", {"allow": [r"127\.0\.0\.1"]}, "tcp", "127.0.0.10", None, False),
    ("allow-regex-anchored-start", {"allow": [r"27\.0\.0\.1"]}, "tcp", "127.0.0.1", None, False),
    ("allow-unescaped-dot-anchored", {"allow": ["127.0.0.1"]}, "tcp", "127.0.0.10", None, False),
    ("allow-regex-v4-mapped", {"allow": [r"127\.0\.0\.1"]}, "tcp", "::ffff:127.0.0.1", None, True),
    ("allow-regex-hostname", {"allow": [r".+\.example\.com"]}, "tcp", "192.0.2.1", "h.example.com", True),
    ("allow-regex-hostname-anchored", {"allow": [r"example\.com"]}, "tcp", "192.0.2.1", "h.example.com", False),
    ("allow-regex-needs-hostname", {"allow": [r".+\.example\.com"]}, "tcp", "192.0.2.1", None, False),
    ("allow-regex-ipv6", {"allow": ["::1"]}, "tcp", "::1", None, True),
    # cidr_allow
    ("cidr-allow-v4", {"cidr_allow": ["192.0.2.0/24"]}, "tcp", "192.0.2.200", None, True),
    ("cidr-allow-v4-outside", {"cidr_allow": ["192.0.2.0/24"]}, "tcp", "192.0.3.1", None, False),
    ("cidr-allow-v4-mapped", {"cidr_allow": ["192.0.2.0/24"]}, "tcp", "::ffff:192.0.2.200", None, True),
    ("cidr-allow-v6", {"cidr_allow": ["2001:db8::/32"]}, "tcp", "2001:db8:ffff::1", None, True),
    ("cidr-allow-v6-outside", {"cidr_allow": ["2001:db8::/32"]}, "tcp", "2001:db9::1", None, False),
    ("cidr-allow-v6-misses-v4", {"cidr_allow": ["::/0"]}, "tcp", "192.0.2.1", None, False),
    ("cidr-allow-v4-misses-v6", {"cidr_allow": ["0.0.0.0/0"]}, "tcp", "2001:db8::1", None, False),
    ("cidr-allow-bracketed-v6", {"cidr_allow": ["::1/128"]}, "tcp", "[::1]", None, True),
    ("cidr-allow-host-bits-set", {"cidr_allow": ["192.0.2.77/24"]}, "tcp", "192.0.2.1", None, True),
    ("cidr-allow-bare-address", {"cidr_allow": ["192.0.2.1"]}, "tcp", "192.0.2.1", None, True),
    ("cidr-list-comma-and-space", {"cidr_allow": ["10.0.0.0/8, 192.0.2.0/24 2001:db8::/32"]}, "tcp", "2001:db8::1", None, True),
    ("garbage-matches-no-cidr", {"cidr_allow": ["0.0.0.0/0", "::/0"]}, "tcp", "garbage", None, False),
    ("garbage-not-denied-by-cidr", {"cidr_deny": ["0.0.0.0/0"], "allow": ["gar.*"]}, "tcp", "garbage", None, True),
    # default deny
    ("no-match-denies", {"allow": [r"10\..*"], "cidr_allow": ["10.0.0.0/8"]}, "tcp", "192.0.2.1", None, False),
    ("deny-only-denies-matching", {"deny": [r"10\..*"]}, "tcp", "10.0.0.1", None, False),
    ("deny-only-denies-everyone", {"deny": [r"10\..*"]}, "tcp", "192.0.2.1", None, False),
    ("cidr-deny-only-denies-everyone", {"cidr_deny": ["10.0.0.0/8"]}, "tcp", "192.0.2.1", "ok.example.com", False),
    # the sample patterns from the seed configuration, as written there
    ("seed-net-or-com", SEED, "tcp", "192.0.2.1", "www.example.net", True),
    ("seed-domain-com", SEED, "tcp", "192.0.2.1", "domain.com", True),
    ("seed-other-tld", SEED, "tcp", "192.0.2.1", "www.example.org", False),
    ("seed-deny-a-hostname", SEED, "tcp", "192.0.2.1", "attacker.com", False),
    ("seed-deny-a-ipv6-address", SEED, "tcp", "abcd::1", "fine.example.com", False),
    ("seed-no-hostname-address-only", SEED, "tcp", "192.0.2.1", None, False),
]
# fmt: on


@pytest.mark.parametrize(
    ("kwargs", "proto", "address", "hostname", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in PERMITS_CASES],
)
def test_permits(
    kwargs: dict[str, Any],
    proto: str,
    address: str,
    hostname: str | None,
    expected: bool,
) -> None:
    assert AccessPolicy.compile(**kwargs).permits(proto, address, hostname) is expected


@pytest.mark.parametrize(
    ("kwargs", "proto", "address", "hostname", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in PERMITS_CASES],
)
def test_decide_agrees_with_permits(
    kwargs: dict[str, Any], proto: str, address: str, hostname: str | None, expected: bool
) -> None:
    decision = AccessPolicy.compile(**kwargs).decide(proto, address, hostname)
    assert decision.allowed is expected and decision.rule


# fmt: off
DECIDE_CASES = [
    # (rules, address, hostname, allowed, the rule reported)
    ({"deny": [r"192\..*"], "allow": [r"192\.0\.2\.1"]}, "192.0.2.1", None, False, r"deny 192\..*"),
    ({"deny": [r".*\.bad\.net"]}, "192.0.2.1", "x.bad.net", False, r"deny .*\.bad\.net"),
    ({"cidr_deny": ["192.0.2.0/24"], "allow": [".*"]}, "::ffff:192.0.2.9", None, False, "cidr_deny 192.0.2.0/24"),
    ({"allow": [r"127\.0\.0\.1"]}, "127.0.0.1", None, True, r"allow 127\.0\.0\.1"),
    ({"cidr_allow": ["10.0.0.0/8, 127.0.0.0/8"]}, "127.0.0.1", None, True, "cidr_allow 127.0.0.0/8"),
    ({"cidr_allow": ["10.0.0.0/8"]}, "127.0.0.1", None, False, "no allow or cidr_allow rule matched"),
    ({"deny": [r"10\..*"]}, "127.0.0.1", None, False, "only deny rules are configured, which denies everyone"),
    ({}, "127.0.0.1", None, True, "no allow or deny rules"),
]
# fmt: on


@pytest.mark.parametrize(("kwargs", "address", "hostname", "allowed", "rule"), DECIDE_CASES)
def test_decide_names_the_rule_as_configured(
    kwargs: dict[str, Any], address: str, hostname: str | None, allowed: bool, rule: str
) -> None:
    assert AccessPolicy.compile(**kwargs).decide("tcp", address, hostname) == (allowed, rule)


def test_unix_peers_are_allowed_whatever_the_rules() -> None:
    assert AccessPolicy.compile(cidr_allow=["10.0.0.0/8"]).decide("unix", "", None) == (
        True, "unix sockets are always allowed")


@pytest.mark.parametrize(
    ("kwargs", "empty", "deny_only", "uses_hostnames"),
    [
        ({}, True, False, False),
        ({"allow": ["x"]}, False, False, True),
        ({"deny": ["x"]}, False, True, True),
        ({"cidr_deny": ["10.0.0.0/8"]}, False, True, False),
        ({"cidr_allow": ["10.0.0.0/8"]}, False, False, False),
        ({"deny": ["x"], "cidr_allow": ["10.0.0.0/8"]}, False, False, True),
        ({"cidr_deny": ["10.0.0.0/8"], "allow": ["x"]}, False, False, True),
        ({"cidr_allow": [" , "]}, True, False, False),  # separators only: no block
    ],
)
def test_properties(
    kwargs: dict[str, Any], empty: bool, deny_only: bool, uses_hostnames: bool
) -> None:
    policy = AccessPolicy.compile(**kwargs)
    assert (policy.empty, policy.deny_only, policy.uses_hostnames) == (
        empty,
        deny_only,
        uses_hostnames,
    )


def test_compile_keeps_every_cidr_block_of_a_multi_value() -> None:
    policy = AccessPolicy.compile(
        cidr_allow=["10.0.0.0/8,192.0.2.0/24", " 2001:db8::/32\t"]
    )
    assert [str(n) for n in policy.cidr_allow] == [
        "10.0.0.0/8",
        "192.0.2.0/24",
        "2001:db8::/32",
    ]


# --- configuration errors ------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "values", "bad", "hint"),
    [
        (
            "allow",
            ["ok", "(unclosed"],
            "(unclosed",
            "is not a valid regular expression",
        ),
        ("deny", ["*oops"], "*oops", "is not a valid regular expression"),
        ("cidr_allow", ["10.0.0.0/33"], "10.0.0.0/33", "is not a CIDR block such as"),
        ("cidr_deny", ["10.0.0.0/8", "bogus"], "bogus", "is not a CIDR block such as"),
        ("cidr_allow", ["10.0.0.0/8, 300.1.1.1/8"], "300.1.1.1/8", "is not a CIDR"),
    ],
)
def test_bad_value_raises_config_error_naming_option_value_and_source(
    option: str, values: list[str], bad: str, hint: str
) -> None:
    sources = {option: "server.conf:3", "port": "command line"}
    with pytest.raises(ConfigError) as caught:
        AccessPolicy.compile(**{option: values}, sources=sources)
    error = caught.value
    assert (error.option, error.value, error.source) == (option, bad, "server.conf:3")
    assert error.exit_code == ExitCode.USAGE
    message = str(error)
    assert message.startswith(f"{option}: {bad!r} {hint}")
    assert message.endswith(" (server.conf:3)")


def test_bad_value_without_sources_has_no_source() -> None:
    with pytest.raises(ConfigError) as caught:
        AccessPolicy.compile(cidr_deny=["nope"])
    assert (
        str(caught.value) == "cidr_deny: 'nope' is not a CIDR block such as 10.0.0.0/8"
    )


# --- property: a single cidr_allow block behaves exactly like `ip in network` ---


@given(
    address=st.ip_addresses(v=4),
    network_address=st.ip_addresses(v=4),
    prefix=st.integers(min_value=0, max_value=32),
)
def test_cidr_allow_equals_membership(
    address: ipaddress.IPv4Address, network_address: ipaddress.IPv4Address, prefix: int
) -> None:
    network = ipaddress.ip_network(f"{network_address}/{prefix}", strict=False)
    policy = AccessPolicy.compile(cidr_allow=[f"{network_address}/{prefix}"])
    assert policy.permits("tcp", str(address)) == (address in network)
    assert policy.permits("tcp", f"::ffff:{address}") == (address in network)


# --- the default resolver (no network: numeric and malformed input only) -------


def test_default_resolver_handles_numeric_and_malformed_input() -> None:
    resolver = Resolver()
    assert resolver.forward("127.0.0.1") == ["127.0.0.1"]
    assert resolver.forward("a..b") == []  # empty IDNA label
    assert resolver.forward("bad\x00name") == []
    assert resolver.reverse("bad\x00address") is None
