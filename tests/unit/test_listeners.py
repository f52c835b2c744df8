"""Unit tests for netserver.listeners: port specs, resolution, binding and fd hand-over.

Real sockets on loopback and in tmp_path; no server is started.  Every
socket a test opens is closed before it ends (warnings are errors).
"""

from __future__ import annotations

import os
import socket

import pytest

from netserver import listeners
from netserver.errors import BindError, ConfigError, ResolveError
from netserver.listeners import ListenSpec, Target

DEFAULTS = {"hosts": ("*",), "protos": ("tcp",), "ipvs": ("*",)}
HAVE_V6 = listeners.ipv6_available()
needs_v6 = pytest.mark.skipif(not HAVE_V6, reason="no IPv6 loopback")


def parse(text: str, **overrides) -> ListenSpec:
    args = {**DEFAULTS, **overrides}
    return listeners.parse_port(text, 0, args["hosts"], args["protos"], args["ipvs"], "command line")


def spec_fields(spec: ListenSpec) -> tuple:
    return (spec.proto, spec.host, spec.port, spec.path, spec.ipv)


def no_log(level, message, *args) -> None:
    pass


def close_all(found) -> None:
    for item in found:
        item.close()


def localhost_families() -> set[int]:
    infos = socket.getaddrinfo("localhost", 0, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    return {info[0] for info in infos if info[0] == socket.AF_INET or HAVE_V6}


# --- parse_port ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("8080", ("tcp", "*", 8080, "", "*")),
    ("127.0.0.1:8080", ("tcp", "127.0.0.1", 8080, "", "*")),
    ("[::1]:8080", ("tcp", "::1", 8080, "", "*")),
    ("*:8080", ("tcp", "*", 8080, "", "*")),
    ("localhost:8080", ("tcp", "localhost", 8080, "", "*")),
    ("8080/udp", ("udp", "*", 8080, "", "*")),
    ("8080|udp", ("udp", "*", 8080, "", "*")),
    ("8080/UDP", ("udp", "*", 8080, "", "*")),
    ("127.0.0.1:8080|tcp", ("tcp", "127.0.0.1", 8080, "", "*")),
    ("unix:/tmp/x.sock", ("unix", "", 0, "/tmp/x.sock", "*")),
    ("/tmp/x.sock|unix", ("unix", "", 0, "/tmp/x.sock", "*")),
    ("8080|IPv4", ("tcp", "*", 8080, "", "4")),
    ("8080|ipv6", ("tcp", "*", 8080, "", "6")),
    ("localhost:8080/udp|IPv6", ("udp", "localhost", 8080, "", "6")),
    ("http", ("tcp", "*", 80, "", "*")),
    ("127.0.0.1:http", ("tcp", "127.0.0.1", 80, "", "*")),
    ("0", ("tcp", "*", 0, "", "*")),
    ("65535", ("tcp", "*", 65535, "", "*")),
    (":8080", ("tcp", "*", 8080, "", "*")),
    # The other forms Net::Server's documentation gives.
    ("127.0.0.1|8080|tcp", ("tcp", "127.0.0.1", 8080, "", "*")),
    ("127.0.0.1:8080:tcp", ("tcp", "127.0.0.1", 8080, "", "*")),
    ("127.0.0.1, 8080, udp", ("udp", "127.0.0.1", 8080, "", "*")),
    ("localhost:8080/tcp/IPv4", ("tcp", "localhost", 8080, "", "4")),
    ("localhost:8080:IPv6", ("tcp", "localhost", 8080, "", "6")),
    ("*:8080/IPv4/IPv6", ("tcp", "*", 8080, "", "46")),
    ("8080|IPv*", ("tcp", "*", 8080, "", "*")),
    ("[::1]|8080", ("tcp", "::1", 8080, "", "*")),
])
def test_parse_port(text, expected):
    spec = parse(text)
    assert spec_fields(spec) == expected
    assert (spec.text, spec.origin) == (text, "command line")


@pytest.mark.parametrize("text, hint", [
    ("70000", "is not a port number between 0 and 65535"),
    ("65536", "is not a port number between 0 and 65535"),
    ("garbage!", "is not a port number, service name or socket path"),
    ("", "is not a port number, service name or socket path"),
    ("-1", "is not a port number, service name or socket path"),
    ("8080/sctp", "is not a port number, service name or socket path"),
    ("127.0.0.1:", "is not a port number, service name or socket path"),
    ("no-such-service-here", "is not a port number, service name or socket path"),
    ("[::1]8080", "is not [ADDRESS]:PORT"),
    ("[::1:8080", "is not [ADDRESS]:PORT"),
    ("unix:relative.sock", "is not a unix socket path"),
    ("127.0.0.1:443/ssl", "asks for proto ssl, which netserver does not serve"),
    ("/tmp/x.sock|unixdgram", "asks for proto unixdgram, which netserver does not serve"),
])
def test_parse_port_refuses(text, hint):
    with pytest.raises(ConfigError) as caught:
        parse(text)
    message = str(caught.value)
    assert message.startswith(f"port: {text!r} {hint}") and message.endswith(" (command line)")
    assert caught.value.exit_code == 2


def test_parse_ports_pairs_host_proto_ipv_by_index_reusing_the_last():
    specs = listeners.parse_ports(("1", "2", "3", "4"), ("127.0.0.1", "::1"), ("tcp", "udp", "tcp"),
                                  ("4", "6"), "test.conf:3")
    assert [spec_fields(spec) for spec in specs] == [
        ("tcp", "127.0.0.1", 1, "", "4"),
        ("udp", "::1", 2, "", "6"),
        ("tcp", "::1", 3, "", "6"),
        ("tcp", "::1", 4, "", "6"),
    ]
    assert {spec.origin for spec in specs} == {"test.conf:3"}


def test_parse_ports_spec_text_wins_over_paired_values():
    specs = listeners.parse_ports(("127.0.0.1:1/udp", "2|IPv4"), ("::1",), ("tcp",), ("6",), "x")
    assert [spec_fields(spec) for spec in specs] == [("udp", "127.0.0.1", 1, "", "6"), ("tcp", "::1", 2, "", "4")]


def test_parse_ports_drops_exact_duplicates_but_not_port_zero():
    specs = listeners.parse_ports(("8080", "8080", "0", "0"), ("*",), ("tcp",), ("*",), "x")
    assert [spec.port for spec in specs] == [8080, 0, 0]


# --- resolve ------------------------------------------------------------------------------------

def targets_of(text: str, **overrides) -> list[tuple]:
    return [(t.family, t.address, t.v6only) for t in listeners.resolve(parse(text, **overrides))]


@needs_v6
@pytest.mark.parametrize("text, ipv, expected", [
    ("8080", "*", [(socket.AF_INET6, ("::", 8080), False)]),
    ("*:8080", "*", [(socket.AF_INET6, ("::", 8080), False)]),
    ("8080", "4", [(socket.AF_INET, ("0.0.0.0", 8080))]),
    ("8080|IPv4", "*", [(socket.AF_INET, ("0.0.0.0", 8080))]),
    ("8080", "6", [(socket.AF_INET6, ("::", 8080), True)]),
    ("8080", "46", [(socket.AF_INET6, ("::", 8080), True), (socket.AF_INET, ("0.0.0.0", 8080))]),
    ("8080", "64", [(socket.AF_INET6, ("::", 8080), True), (socket.AF_INET, ("0.0.0.0", 8080))]),
    ("127.0.0.1:8080", "*", [(socket.AF_INET, ("127.0.0.1", 8080))]),
    ("[::1]:8080", "*", [(socket.AF_INET6, ("::1", 8080), True)]),
    ("[::1]:8080/udp", "*", [(socket.AF_INET6, ("::1", 8080), True)]),
])
def test_resolve_wildcards_and_literals(text, ipv, expected):
    found = targets_of(text, ipvs=(ipv,))
    assert [item[:2] for item in found] == [item[:2] for item in expected]
    for got, want in zip(found, expected, strict=True):
        if want[0] == socket.AF_INET6:
            assert got[2] is want[2]


def test_resolve_unix_is_one_af_unix_target(tmp_path):
    path = str(tmp_path / "x.sock")
    assert targets_of(f"unix:{path}") == [(socket.AF_UNIX, path, False)]


def test_resolve_localhost_gives_a_target_per_family():
    found = listeners.resolve(parse("localhost:8080"))
    expected = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
    assert {t.family for t in found} == localhost_families()
    for target in found:
        assert target.address == (expected[target.family], 8080)


@pytest.mark.skipif(localhost_families() != {socket.AF_INET, socket.AF_INET6},
                    reason="localhost does not resolve to both ::1 and 127.0.0.1 here")
def test_resolve_localhost_gives_both_loopbacks():
    addresses = sorted(t.address for t in listeners.resolve(parse("localhost:8080")))
    assert addresses == [("127.0.0.1", 8080), ("::1", 8080)]


def test_resolve_localhost_restricted_to_ipv4():
    found = listeners.resolve(parse("localhost:8080|IPv4"))
    assert [(t.family, t.address) for t in found] == [(socket.AF_INET, ("127.0.0.1", 8080))]


@pytest.mark.parametrize("text, message", [
    ("no-such-host.invalid:8080", "port: 'no-such-host.invalid:8080' (host 'no-such-host.invalid') cannot be "
                                  "resolved: "),
    ("[::1]:8080|IPv4", "port: '[::1]:8080|IPv4' (host '::1') has no IPv4 address (server.conf:1)"),
])
def test_resolve_names_the_resolution_failure_not_a_bind(text, message):
    # Resolution happens while configuring, also in --check_config, which binds nothing.
    with pytest.raises(ResolveError) as caught:
        listeners.resolve(listeners.parse_port(text, 0, ("*",), ("tcp",), ("*",), "server.conf:1"), "command line")
    assert caught.value.exit_code == 1
    assert str(caught.value).startswith(message) and str(caught.value).endswith("(server.conf:1)")
    assert "bind" not in str(caught.value)


def test_resolve_names_the_host_option_when_the_port_spec_has_no_host():
    spec = listeners.parse_port("8080", 0, ("no-such-host.invalid",), ("tcp",), ("*",), "default")
    with pytest.raises(ResolveError) as caught:
        listeners.resolve(spec, "server.conf:2")
    assert str(caught.value).startswith("host: 'no-such-host.invalid' cannot be resolved: ")
    assert str(caught.value).endswith("(server.conf:2)")


# --- bind_all -----------------------------------------------------------------------------------

@needs_v6
def test_bind_all_port_zero_gives_one_port_to_both_families():
    spec = ListenSpec("tcp", "localhost", 0, "", "*", "localhost:0", "x")
    targets = [Target(spec, socket.AF_INET6, ("::1", 0), v6only=True), Target(spec, socket.AF_INET, ("127.0.0.1", 0))]
    bound = listeners.bind_all(targets, 16, {}, no_log)
    try:
        assert [listener.host for listener in bound] == ["::1", "127.0.0.1"]
        assert bound[0].port != 0 and bound[0].port == bound[1].port
    finally:
        close_all(bound)


@needs_v6
def test_bind_all_wildcard_46_port_zero_shares_the_port():
    targets = listeners.resolve(parse("0", ipvs=("46",)))
    bound = listeners.bind_all(targets, 16, {}, no_log)
    try:
        assert [listener.sock.family for listener in bound] == [socket.AF_INET6, socket.AF_INET]
        assert bound[0].sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert bound[0].port == bound[1].port != 0
    finally:
        close_all(bound)


@needs_v6
def test_bind_all_dual_stack_wildcard_accepts_ipv4():
    bound = listeners.bind_all(listeners.resolve(parse("0")), 16, {}, no_log)
    try:
        assert len(bound) == 1
        assert bound[0].sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        with socket.create_connection(("127.0.0.1", bound[0].port), timeout=5):
            pass
    finally:
        close_all(bound)


@pytest.mark.skipif(localhost_families() != {socket.AF_INET, socket.AF_INET6},
                    reason="localhost does not resolve to both ::1 and 127.0.0.1 here")
def test_bind_all_localhost_port_zero_same_port_on_both_families():
    bound = listeners.bind_all(listeners.resolve(parse("localhost:0")), 16, {}, no_log)
    try:
        assert {listener.sock.family for listener in bound} == {socket.AF_INET, socket.AF_INET6}
        assert len({listener.port for listener in bound}) == 1
    finally:
        close_all(bound)


def test_bind_all_port_in_use_names_the_address():
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        first = listeners.resolve(parse("127.0.0.1:0"))
        clash = listeners.resolve(parse(f"127.0.0.1:{taken}"))
        with pytest.raises(BindError) as caught:
            listeners.bind_all(first + clash, 16, {}, no_log)
        assert f"127.0.0.1:{taken}" in str(caught.value) and "in use" in str(caught.value)
    finally:
        holder.close()


@pytest.mark.parametrize("spec", ["127.0.0.1:0", pytest.param("[::1]:0", marks=needs_v6),
                                  pytest.param("[::]:0", marks=needs_v6)])
def test_logs_show_an_address_that_reads_as_a_port_value(spec):
    bound = listeners.bind_all(listeners.resolve(parse(spec)), 16, {}, no_log)
    try:
        host, port = bound[0].host, bound[0].port
        assert bound[0].describe() == f"tcp:{host}:{port}"  # the READY line's form is unchanged
        shown = bound[0].display()
        assert shown == (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        again = parse(shown)  # pasted back as a port value, it names the same socket
        assert (again.proto, again.host.strip("[]"), again.port) == ("tcp", host, port)
    finally:
        close_all(bound)


@needs_v6
def test_a_bind_error_names_the_address_as_the_log_shows_it():
    with socket.socket(socket.AF_INET6) as holder:
        holder.bind(("::1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(BindError) as caught:
            listeners.bind_all(listeners.resolve(parse(f"[::1]:{taken}")), 16, {}, no_log)
    assert str(caught.value) == f"cannot bind [::1]:{taken}: address already in use"


def test_display_address_brackets_ipv6_only():
    assert listeners.display_address("::", 20203) == "[::]:20203"
    assert listeners.display_address("fe80::1%eth0", 1) == "[fe80::1%eth0]:1"
    assert listeners.display_address("127.0.0.1", 20203) == "127.0.0.1:20203"


def test_udp_listener_is_a_datagram_socket():
    bound = listeners.bind_all(listeners.resolve(parse("127.0.0.1:0/udp")), 16, {}, no_log)
    try:
        assert bound[0].sock.type == socket.SOCK_DGRAM
        assert bound[0].describe() == f"udp:127.0.0.1:{bound[0].port}"
        assert bound[0].display() == f"127.0.0.1:{bound[0].port}/udp"
    finally:
        close_all(bound)


# --- unix sockets -------------------------------------------------------------------------------

def unix_targets(path) -> list[Target]:
    return listeners.resolve(parse(f"unix:{path}"))


def test_stale_unix_socket_file_is_replaced(tmp_path):
    path = tmp_path / "stale.sock"
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(str(path))
    old.close()  # the file stays, nobody listens
    assert path.is_socket()
    bound = listeners.bind_all(unix_targets(path), 16, {}, no_log)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(str(path))
        assert bound[0].describe() == f"unix:{path}:0"
        assert bound[0].display() == f"unix:{path}"
    finally:
        close_all(bound)
        bound[0].remove_socket_file()
    assert not path.exists()


def test_regular_file_at_unix_path_is_refused_and_kept(tmp_path):
    path = tmp_path / "data.sock"
    path.write_text("precious\n")
    with pytest.raises(BindError) as caught:
        listeners.bind_all(unix_targets(path), 16, {}, no_log)
    assert str(path) in str(caught.value) and "not a socket" in str(caught.value)
    assert path.read_text() == "precious\n"


def test_live_unix_listener_is_refused(tmp_path):
    path = tmp_path / "live.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        live.bind(str(path))
        live.listen()
        inode = os.lstat(path).st_ino
        with pytest.raises(BindError) as caught:
            listeners.bind_all(unix_targets(path), 16, {}, no_log)
        assert "another server is listening" in str(caught.value)
        assert os.lstat(path).st_ino == inode
    finally:
        live.close()


# --- export_env / import_env ----------------------------------------------------------------------

def test_export_import_round_trip_by_key():
    targets = listeners.resolve(parse("127.0.0.1:0"))
    bound = listeners.bind_all(targets, 16, {}, no_log)
    listener = bound[0]
    name = listener.sock.getsockname()
    value = listeners.export_env(bound)
    fd = listener.sock.detach()  # the next image owns the fd now
    try:
        assert value == f"{fd}={targets[0].key}"
        assert os.get_inheritable(fd)
        found = listeners.import_env(value, targets)
    except BaseException:
        os.close(fd)
        raise
    try:
        assert list(found) == [targets[0].key]
        sock = found[targets[0].key]
        assert sock.fileno() == fd
        assert sock.getsockname() == name
        assert not os.get_inheritable(fd)
    finally:
        close_all(found.values())


def test_bind_all_adopts_an_inherited_socket_instead_of_binding():
    targets = listeners.resolve(parse("127.0.0.1:0"))
    original = listeners.bind_all(targets, 16, {}, no_log)
    messages = []
    adopted = listeners.bind_all(targets, 16, {targets[0].key: original[0].sock},
                                 lambda level, message, *args: messages.append(message % args))
    try:
        assert adopted[0].inherited and adopted[0].sock is original[0].sock
        assert any("Reassociating" in message for message in messages)
    finally:
        close_all(original)


@pytest.mark.parametrize("other", ["127.0.0.1:1", "127.0.0.1:0/udp"])
def test_import_env_closes_an_fd_whose_key_does_not_match(other):
    bound = listeners.bind_all(listeners.resolve(parse("127.0.0.1:0")), 16, {}, no_log)
    value = listeners.export_env(bound)
    assert_import_refuses_and_closes(value, listeners.resolve(parse(other)), bound[0].sock.detach())


def test_import_env_closes_an_fd_whose_socket_does_not_match_its_key():
    bound = listeners.bind_all(listeners.resolve(parse("127.0.0.1:0")), 16, {}, no_log)
    port = bound[0].port
    wanted = listeners.resolve(parse(f"127.0.0.1:{port + 1 if port < 65535 else port - 1}"))
    listeners.export_env(bound)
    fd = bound[0].sock.detach()
    assert_import_refuses_and_closes(f"{fd}={wanted[0].key}", wanted, fd)


def assert_import_refuses_and_closes(value, targets, fd):
    """import_env adopts nothing from value and closes the fd it was handed."""
    try:
        found = listeners.import_env(value, targets)
    except BaseException:
        os.close(fd)
        raise
    assert found == {}
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.parametrize("value", [None, "", "garbage", "x=y;;"])
def test_import_env_ignores_empty_or_malformed_values(value):
    assert listeners.import_env(value, []) == {}
