"""The log writer: formatting, escaping, and one whole line per record."""

import os

import pytest

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


# --- what a child can still do after chroot or a privilege drop ----------------------------------

def test_logging_an_exception_imports_nothing_and_looks_up_no_codec(tmp_path):
    # After chroot, or as a user who cannot read the interpreter's tree, an import
    # (traceback, or the codec behind a non-ASCII escape) fails; so none may happen.
    import subprocess
    import sys

    code = f"""
import sys
from netserver.log import FileSink, Log
log = Log()
log.configure(1, FileSink({str(tmp_path / 'x.log')!r}))
before = set(sys.modules)
def inner():
    raise ValueError("bad \\u2603 \\U0001f600 value")
try:
    try:
        inner()
    except ValueError as error:
        raise KeyError("outer") from error
except KeyError:
    log(1, "failed \\u2603", exc_info=True)
print(sorted(set(sys.modules) - before))
"""
    env = dict(os.environ, PYTHONPATH=str(__import__("pathlib").Path(__file__).resolve().parents[2] / "src"))
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"
    text = (tmp_path / "x.log").read_text()
    assert "failed \\u2603" in text and "ValueError: bad \\u2603 \\U0001f600 value" in text
    assert "The above exception was the direct cause of the following exception:" in text
    assert text.rstrip().endswith("KeyError: 'outer'")


def test_a_traceback_without_readable_source_still_names_file_line_and_exception(tmp_path):
    from netserver.log import format_exception

    source = tmp_path / "handler.py"
    source.write_text("def handle():\n    raise RuntimeError('no source here')\n")
    namespace: dict = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    try:
        namespace["handle"]()
    except RuntimeError as error:
        readable = format_exception(error)
        source.unlink()  # as under chroot: the file is not there any more
        unreadable = format_exception(error)
    assert f'  File "{source}", line 2, in handle\n    raise RuntimeError(\'no source here\')' in readable
    assert f'  File "{source}", line 2, in handle\nRuntimeError: no source here' in unreadable


def test_a_traceback_collapses_repeated_frames_and_shows_notes_and_groups():
    from netserver.log import format_exception

    def recurse(n):
        if n == 0:
            raise ExceptionGroup("several", [ValueError("one"), TypeError("two")])
        recurse(n - 1)

    try:
        recurse(20)
    except ExceptionGroup as error:
        error.add_note("a note")
        text = format_exception(error)
    assert text.count("in recurse\n") == 4 and "  [Previous line repeated 17 more times]" in text
    assert "ExceptionGroup: several (2 sub-exceptions)\na note\n" in text
    assert "| ValueError: one" in text and "| TypeError: two" in text


# --- rate limits -------------------------------------------------------------------------------

def test_rate_limit_admits_a_few_a_second_then_reports_how_many_it_left_out():
    from netserver.log import RateLimit

    now = [100.0]
    limit = RateLimit(per_second=3, clock=lambda: now[0])
    assert [limit.admit() for _ in range(10)] == [0, 0, 0, None, None, None, None, None, None, None]
    now[0] = 100.9
    assert limit.admit() is None
    now[0] = 101.0
    assert limit.admit() == 8  # the first record of the next second carries the count
    assert limit.admit() == 0


def test_rate_limit_is_shared_with_forked_children():
    from netserver.log import RateLimit

    now = [5.0]
    limit = RateLimit(per_second=2, clock=lambda: now[0])
    assert limit.admit() == 0
    pid = os.fork()
    if pid == 0:
        os._exit(0 if limit.admit() == 0 and limit.admit() is None else 1)  # the parent used one already
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    now[0] = 6.0
    assert limit.admit() == 1


# --- a full disk -------------------------------------------------------------------------------

def test_after_a_short_write_the_next_record_starts_a_fresh_line_even_from_another_process(tmp_path):
    import resource
    import signal

    path = tmp_path / "server.log"
    sink = FileSink(str(path))
    log = Log()
    log.configure(2, sink)
    log(2, "first")
    size = path.stat().st_size
    pid = os.fork()
    if pid == 0:
        # RLIMIT_FSIZE cuts a write short where the file reaches the limit, as a full disk does.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, resource.RLIM_INFINITY))
        log(2, "a record that the limit cuts in the middle")
        log(2, "a record that cannot be written at all")
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert path.stat().st_size == size + 20
    log(2, "second")
    log(2, "third")
    lines = read_lines(path)
    assert len(lines) == 4, lines
    assert lines[0].endswith("notice: first") and lines[2].endswith("notice: second")
    assert not lines[1].endswith("middle")  # cut
    assert lines[3].endswith("notice: third")


@pytest.mark.parametrize(("given", "meant"), [("unix", "/dev/log"), ("native", "/dev/log"), ("STREAM", "/dev/log"),
                                              ("udp", "localhost:514"), ("inet", "localhost:514"),
                                              ("/run/log.sock", "/run/log.sock"), ("[::1]:514", "[::1]:514")])
def test_perls_syslog_socket_types_name_where_they_send(given, meant):
    from netserver.options import syslog_socket

    assert syslog_socket(given) == meant
