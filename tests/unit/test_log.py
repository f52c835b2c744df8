"""The log writer: formatting, escaping, and one whole line per record."""

import os

from netserver.log import FileSink, Log, escape, render


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def test_render_formats_lazily_and_never_raises():
    assert render("%s and %d", ("a", 2)) == "a and 2"
    assert render("%(who)s", ({"who": "me"},)) == "me"
    assert render("100%", ()) == "100%"  # no args: no formatting, as logging does
    bad = render("%d", ("x",))
    assert bad.startswith("%d ('x',) (bad log format:")


def test_escape_keeps_one_record_on_one_line():
    assert escape("a\nb\x1b[31m\t\u2028") == "a\\nb\\x1b[31m\t\\u2028"


def test_file_records_carry_time_pid_level_and_are_filtered_by_level(tmp_path):
    path = tmp_path / "server.log"
    log = Log()
    log.configure(3, FileSink(str(path)))
    log(3, "client %s said %r", "127.0.0.1", "hi\n")
    log(4, "not at level 3")
    log(0, "boom")
    lines = read_lines(path)
    assert len(lines) == 2
    stamp, pid, rest = lines[0].split(" ", 2)
    assert len(stamp) == len("2026/11/27-22:46:01") and pid == f"[{os.getpid()}]"
    assert rest == "info: client 127.0.0.1 said 'hi\\n'"
    assert lines[1].endswith(" error: boom")


def test_a_logged_exception_is_indented_under_its_record(tmp_path):
    path = tmp_path / "server.log"
    log = Log()
    log.configure(1, FileSink(str(path)))
    try:
        raise ValueError("bad\x07value")
    except ValueError:
        log(1, "process_request failed", exc_info=True)
    lines = read_lines(path)
    assert lines[0].endswith("warning: process_request failed")
    assert lines[1] == "    Traceback (most recent call last):"
    assert lines[-1] == "    ValueError: bad\\x07value"


def test_configure_closes_the_previous_file(tmp_path):
    log = Log()
    first = FileSink(str(tmp_path / "a.log"))
    log.configure(2, first)
    log.configure(2, FileSink(str(tmp_path / "b.log")))
    assert first.fd == -1


def test_a_format_that_raises_anything_is_logged_not_raised():
    assert "OverflowError" in render("%c", (10**9,))

    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no")

        __str__ = __repr__

    assert render("%s", (Unprintable(),)).endswith("(bad log format: RuntimeError: no)")


def test_syslog_that_is_not_there_yet_gets_the_records_once_it_is(tmp_path):
    import socket

    from netserver.log import SyslogSink

    path = str(tmp_path / "log.sock")
    sink = SyslogSink("mysrv", "local3", path)  # nothing listens yet: no error
    sink.write(2, "lost: nobody was listening")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as daemon:
        daemon.bind(path)
        daemon.settimeout(10)
        sink.write(2, "hello")
        assert daemon.recv(4096) == f"<157>mysrv[{os.getpid()}]: hello".encode()
    sink.close()
