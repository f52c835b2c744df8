"""The examples, and the README's custom-option example, run as documented."""

import re
from pathlib import Path

import pytest

from netserver.listeners import ipv6_available
from support.clients import connect, read_line, talk

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
POLICY = str(EXAMPLES / "policy_daemon.py")
ECHO = str(EXAMPLES / "echo_server.py")


def test_echo_server_example(serve):
    server = serve("--max_servers", "2", script=ECHO)
    assert talk(server.addr, b"one\ntwo\n") == b"one\ntwo\n"


def test_policy_daemon_example(serve):
    server = serve("--max_servers", "1", "--blocked_domain", "spam.test", script=POLICY)
    with connect(server.addr) as sock:
        sock.sendall(b"request=smtpd_access_policy\nsender=a@spam.test\n\n")
        assert read_line(sock) == b"action=REJECT sender domain not accepted\n"
        assert read_line(sock) == b"\n"
        sock.sendall(b"request=smtpd_access_policy\nsender=b@ok.test\n\n")
        assert read_line(sock) == b"action=DUNNO\n"


def test_example_conf_file(serve):
    server = serve("--conf_file", str(EXAMPLES / "server.conf"), "--port", "127.0.0.1:0", "--port", "[::1]:0",
                   port=None)
    assert [a.host for a in server.addresses] == ["127.0.0.1", "::1"]
    assert talk(server.addr, b"quit\n").startswith(b'Welcome to "PreForkSimple"')


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_example_conf_file_lets_an_ipv6_client_in(serve):
    # Its "allow ::1" once read as the rule ":1", which denied every IPv6 client without a word.
    server = serve("--conf_file", str(EXAMPLES / "server.conf"), "--port", "[::1]:0", port=None)
    assert [(a.proto, a.host) for a in server.addresses] == [("tcp", "::1")]
    assert talk(server.addr, b"hi\nquit\n").startswith(b'Welcome to "PreForkSimple"')


# --- the examples' defaults come from default_values(): a conf file changes them ----------------

@pytest.mark.parametrize("script, children", [(POLICY, 4), (ECHO, 8)])
def test_example_scripts_take_port_and_max_servers_from_a_conf_file(serve, tmp_path, script, children):
    (tmp_path / "mine.conf").write_text("port 127.0.0.1:0\nmax_servers 2\n")
    server = serve("--conf_file", "mine.conf", script=script, port=None)
    assert [(a.proto, a.host) for a in server.addresses] == [("tcp", "127.0.0.1")]
    server.wait_children(2)
    # Without the conf file the script's own default applies (seen without binding).
    result = serve.run("--check_config", script=script)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^max_servers +{children} +# default_values\(\)$", result.stdout.decode(), re.M)


def test_policy_daemon_listens_on_loopback_by_default(serve):
    result = serve.run("--check_config", script=POLICY)
    assert re.search(r"^port +127\.0\.0\.1:10023 +# default_values\(\)$", result.stdout.decode(), re.M)


# --- --help on a script that calls run() ------------------------------------------------------------

def after_usage(text: str) -> str:
    return text[text.index("Exit status:"):]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_a_scripts_help_is_the_commands_help_with_its_own_options(serve, flag):
    result = serve.run(flag, script=POLICY)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert out.startswith("usage: policy_daemon.py [--OPTION VALUE ...]\n")
    for word in ("--blocked_domain DOMAIN", "Reject mail from senders", "--max_servers N", "--conf_file PATH",
                 "Options of Policy (PreForkSimple)", "Exit status: 0"):
        assert word in out
    command = serve.run("--handler", "policy_daemon:Policy", flag, cwd=str(EXAMPLES))
    assert command.returncode == 0, command.stderr
    assert after_usage(out) == after_usage(command.stdout.decode())


def test_help_comes_first_whatever_else_is_on_the_line(serve):
    result = serve.run("--max_servers", "lots", "--help", script=ECHO)
    assert result.returncode == 0, result.stderr
    assert "Options of Echo (PreForkSimple)" in result.stdout.decode()


# --- the README's custom option ----------------------------------------------------------------------

def readme_custom_option_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Your own options"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```", start)]


def test_the_readmes_custom_option_example_works(serve, tmp_path):
    (tmp_path / "greeter.py").write_text(readme_custom_option_example())
    script = str(tmp_path / "greeter.py")
    server = serve("--greeting", "hey", "--repeat", "2", "--max_servers", "1", script=script)
    assert talk(server.addr, b"") == b"hey\nhey\n"
    (tmp_path / "greeter.conf").write_text("greeting = good morning\n")
    server = serve("--conf_file", "greeter.conf", "--max_servers", "1", script=script)
    assert talk(server.addr, b"") == b"good morning\n"
    bad = serve.run("--repeat", "11", script=script)
    assert bad.returncode == 2
    assert bad.stderr.decode().strip() == "greeter.py: repeat: '11' must be at most 10 (command line)"
    assert "--greeting TEXT" in serve.run("--help", script=script).stdout.decode()
