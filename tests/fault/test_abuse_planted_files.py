"""Abuse: planted pid and lock files (reliability.md G3, G5).

Symlinks: uid 65534 plants ``link -> target`` in a 1777 directory under
tmp_path (``setpriv --reuid=65534 ... ln -s``); the target belongs to the user
the server runs as, so a server that followed the link could overwrite it.
The server is started as that user: nstest (``setpriv --reuid nstest
--regid nstest --clear-groups python -m netserver ...``) and, for
comparison, root.  It must exit 1 and leave the target's bytes and mtime
alone.  The negative control writes through a second, identical link as the
same user with a plain ``sh -c 'echo > link'``: that must change its target,
which proves that neither permissions nor fs.protected_symlinks (0 on this
box; the directory is owned by 65534, the link's owner, so the sysctl would
let the link be followed even where it is 1) are what stops the server.

Reachability: pytest keeps /tmp/pytest-of-root at mode 0700, so nobody and
nstest cannot walk to tmp_path.  Every unprivileged command therefore runs
with its working directory already set to the 1777 directory (chdir happens
as root, before setpriv drops the uid) and uses relative paths, and the
server logs to stderr (a log_file there would fail the directory check).
The interpreter is one nstest can execute (the test's own lives under
/root); src/ is reached through PYTHONPATH.

Pid files of another instance: a live, locked one stops a second instance
("already running", exit 1); a stale one (naming a dead pid, or a live pid
that holds no lock) is replaced, with a warning in the log.  The control:
the same stale content, but locked by this test, is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import subprocess
import sys

import pytest

from conftest import server_env
from support import procs
from support.clients import talk

NOBODY = 65534


def as_user(user: str | int, *command: str) -> list[str]:
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]


@pytest.fixture(scope="module")
def user_python(nstest) -> str:
    """A Python >= 3.11 that nstest may execute."""
    for candidate in ("/usr/bin/python3", sys.executable):
        probe = subprocess.run(as_user("nstest", candidate, "-c", "import sys; assert sys.version_info >= (3, 11)"),
                               cwd="/", capture_output=True, timeout=30)
        if probe.returncode == 0:
            return candidate
    pytest.fail("no Python >= 3.11 that user nstest can execute")


@pytest.fixture
def public(tmp_path):
    """A 1777 directory owned by the link planter (see the module docstring)."""
    folder = tmp_path / "public"
    folder.mkdir()
    os.chown(folder, NOBODY, NOBODY)
    os.chmod(folder, 0o1777)
    return folder


def plant(folder, link: str, target: str, owner: pwd.struct_passwd | None) -> None:
    """target (owned by ``owner``, or root) and link -> target, planted by uid 65534."""
    path = folder / target
    path.write_bytes(os.urandom(64))
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    subprocess.run(as_user(NOBODY, "ln", "-s", target, link), cwd=folder, check=True, timeout=30)
    assert (folder / link).is_symlink() and (folder / link).lstat().st_uid == NOBODY


def fingerprint(path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.mark.parametrize("user", ["nstest", "root"])
@pytest.mark.parametrize("option", ["pid_file", "lock_file"])
def test_planted_symlink_is_refused_and_its_target_untouched(public, nstest, user_python, option, user):
    owner = nstest if user == "nstest" else None
    plant(public, "planted", "target", owner)
    plant(public, "control-link", "control-target", owner)
    before = fingerprint(public / "target")
    extra = ["--serialize", "flock", "--lock_file", "planted"] if option == "lock_file" else ["--pid_file", "planted"]
    python = user_python if user == "nstest" else sys.executable
    command = [python, "-m", "netserver", "--port", "127.0.0.1:0", "--max_servers", "1", "--log_level", "1", *extra]
    if user == "nstest":
        command = as_user("nstest", *command)
    result = subprocess.run(command, cwd=public, env=server_env(), capture_output=True, timeout=30,
                            start_new_session=True)
    procs.reap_strays()
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 1, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"netserver: {option}: 'planted' is a symbolic link"), err
    assert fingerprint(public / "target") == before
    assert os.readlink(public / "planted") == "target"
    assert procs.children_of(os.getpid()) == []

    # Negative control: the same user writing through an identical link does change its target.
    control = fingerprint(public / "control-target")
    writer = ["sh", "-c", "echo planted > control-link"]
    subprocess.run(as_user("nstest", *writer) if user == "nstest" else writer, cwd=public, check=True, timeout=30)
    assert fingerprint(public / "control-target") != control


def test_a_live_instances_pid_file_stops_a_second_one(serve, tmp_path):
    pid_file = tmp_path / "server.pid"
    first = serve("--max_servers", "1", "--pid_file", str(pid_file), "--handler", "echo:Pid")
    (child,) = first.wait_children(1)
    result = serve.run("--max_servers", "1", "--pid_file", str(pid_file), "--port", "127.0.0.1:0",
                       "--log_file", str(tmp_path / "second.log"))
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 1, err
    assert err == f"netserver: already running (pid {first.pid}, pid_file '{pid_file}')\n"
    assert pid_file.read_text() == f"{first.pid}\n"
    assert first.children() == [child] and int(talk(first.addr, b"\n").split()[0]) == child


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait(10)
    return process.pid


@pytest.mark.parametrize("names", ["dead-pid", "unrelated-live-pid", "garbage"])
def test_a_stale_pid_file_is_replaced_with_a_warning(serve, tmp_path, names):
    old = {"dead-pid": str(dead_pid()), "unrelated-live-pid": str(os.getpid()), "garbage": "not a pid"}[names]
    pid_file = tmp_path / "server.pid"
    pid_file.write_text(old + "\n")
    server = serve("--max_servers", "1", "--pid_file", str(pid_file))
    assert pid_file.read_text() == f"{server.pid}\n"
    warning = f"pid_file {pid_file} names pid {old}, which holds no lock: stale, replacing it"
    assert warning in server.log()


def test_control_the_same_stale_content_locked_by_someone_is_refused(serve, tmp_path):
    pid_file = tmp_path / "server.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    with open(pid_file, "r+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = serve.run("--max_servers", "1", "--pid_file", str(pid_file), "--port", "127.0.0.1:0",
                           "--log_file", str(tmp_path / "server.log"))
    assert result.returncode == 1
    assert b"already running" in result.stderr
    assert pid_file.read_text() == f"{os.getpid()}\n"
