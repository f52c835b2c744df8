"""A handler's exception after chroot or a privilege drop is logged, and the child goes on (issue 9 item 1).

A child that has dropped to ``user`` may not be able to read the interpreter's
own tree (a pyenv Python under a 0700 home), and a chrooted child sees no
interpreter files at all, so nothing on a child's error, log, HUP or exit path
may import a module or look up a codec.  Both cases run for real: the server
runs from a copy of this interpreter whose stdlib is reached only through a
0700 folder (so ``nstest`` cannot read it, whatever this machine's layout),
or chroots into an empty directory.  The handler raises a ValueError whose
message is not ASCII; the log must show the traceback with each frame's file
and line and the exception, the same child must serve the next client, and a
HUP and a stop must end the children cleanly.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import sysconfig
from pathlib import Path

import pytest

from support import needs_root, procs
from support.clients import talk

pytestmark = needs_root

HANDLERS = Path(__file__).resolve().parents[1] / "handlers" / "logging_handlers.py"


def locked_interpreter(tmp_path: Path) -> Path:
    """A copy of this Python whose stdlib lies behind a 0700 folder; returns its executable."""
    locked = tmp_path / "locked"
    (locked / "bin").mkdir(parents=True)
    (locked / "lib").mkdir()
    os.chmod(locked, 0o700)
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    executable = locked / "bin" / base.name
    shutil.copy2(base, executable)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    (locked / "lib" / stdlib.name).symlink_to(stdlib)
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "/nonexistent")
    for library in libdir.glob("libpython*"):  # a binary whose RUNPATH is $ORIGIN/../lib finds it here
        (locked / "lib" / library.name).symlink_to(library)
    return executable


def readable_as(uid: int, gid: int, path: Path) -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os._exit(0 if os.access(path, os.R_OK) else 1)
        finally:
            os._exit(2)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def serve_with(serve, python: Path | None, *args: str):
    if python is not None:
        serve.command = lambda argv, script=None: [str(python), "-m", "netserver", *argv]
    return serve("--handler", "logging_handlers:RaiseOnBoom", "--max_servers", "1", *args)


def assert_logged_and_still_serving(server, expected_uid: int, source_lines: bool) -> None:
    pid, uid = map(int, talk(server.addr, b"hello\n").split())
    assert uid == expected_uid
    assert talk(server.addr, b"boom\n") == b""
    procs.wait_until(lambda: "ValueError" in server.log(), 10, message="the traceback in the log")
    log = server.log()
    trace = log[log.index("process_request failed for 127.0.0.1:"):]
    print("\n" + trace.split("\n20")[0])
    assert re.search(rf'File "{re.escape(str(HANDLERS))}", line \d+, in process_request\n', trace)
    assert re.search(rf'File "{re.escape(str(HANDLERS))}", line \d+, in explode\n', trace)
    assert "    ValueError: handler failed on purpose \\u2603\n" in trace
    assert ("raise ValueError(" in trace) is source_lines
    assert talk(server.addr, b"again\n").split() == [str(pid).encode(), str(expected_uid).encode()]
    assert "exited abnormally" not in server.log()
    # HUP: the old child leaves through its HUP path, a new generation serves.
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: not procs.alive(pid), 15, message="the old child to leave on HUP")
    procs.wait_until(lambda: server.log().count("starting! pid") == 2, 15, message="the re-exec")
    new_pid = procs.wait_until(lambda: [p for p in server.children() if p != pid], 15, message="a new child")[0]
    assert talk(server.addr, b"boom\n") == b""
    procs.wait_until(lambda: server.log().count("    ValueError: handler failed") == 2, 10,
                     message="the new child's traceback")
    assert int(talk(server.addr, b"x\n").split()[0]) == new_pid
    server.signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0
    assert "exited abnormally" not in server.log() and "failed to boot" not in server.log()


def test_a_user_who_cannot_read_the_interpreter_still_logs_the_traceback(serve, nstest, tmp_path):
    python = locked_interpreter(tmp_path)
    stdlib_file = python.parent.parent / "lib" / Path(sysconfig.get_paths()["stdlib"]).name / "traceback.py"
    assert readable_as(0, 0, stdlib_file)
    assert not readable_as(nstest.pw_uid, nstest.pw_gid, stdlib_file), "the copy must be unreadable to nstest"
    assert readable_as(nstest.pw_uid, nstest.pw_gid, HANDLERS)
    server = serve_with(serve, python, "--user", "nstest")
    assert_logged_and_still_serving(server, nstest.pw_uid, source_lines=True)


@pytest.mark.parametrize("user", [None, "nstest"])
def test_a_chrooted_child_logs_the_traceback_without_source_lines(serve, nstest, tmp_path, user):
    jail = tmp_path / "jail"
    jail.mkdir()
    os.chmod(jail, 0o755)
    server = serve_with(serve, None, "--chroot", str(jail), *(["--user", user] if user else []))
    assert_logged_and_still_serving(server, nstest.pw_uid if user else 0, source_lines=False)
