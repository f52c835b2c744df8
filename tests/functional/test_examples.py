"""The examples run as documented."""

from pathlib import Path

from support.clients import connect, read_line, talk

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_echo_server_example(serve):
    server = serve("--max_servers", "2", script=str(EXAMPLES / "echo_server.py"))
    assert talk(server.addr, b"one\ntwo\n") == b"one\ntwo\n"


def test_policy_daemon_example(serve):
    server = serve("--max_servers", "1", "--blocked_domain", "spam.test", script=str(EXAMPLES / "policy_daemon.py"))
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
