"""The ``serve`` fixture: real servers in subprocesses, found and cleaned up.

Each server runs in its own process group (start_new_session), reports its
bound addresses on ``--ready_fd``, and is stopped at teardown with TERM, then
KILL of the whole group; the test fails if any process of it is left.  The
test process makes itself a child subreaper so that daemons which double
fork are reparented to us and can be found and reaped.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ROOT / "tests" / "handlers"
sys.path.insert(0, str(ROOT / "tests"))

from support import procs  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def server_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(HANDLERS), env.get("PYTHONPATH", "")])
    env.pop("NETSERVER_RESTART", None)
    env.update(extra or {})
    return env


@dataclass
class Address:
    proto: str
    host: str
    port: int

    @property
    def tuple(self):
        return self.host if self.proto == "unix" else (self.host, self.port)


@dataclass
class ServerHandle:
    process: subprocess.Popen
    pid: int
    addresses: list[Address]
    log_path: Path
    extra_pids: list[int] = field(default_factory=list)

    @property
    def addr(self):
        """The first listener as a connect() address."""
        return self.addresses[0].tuple

    def by_proto(self, proto: str) -> Address:
        return next(a for a in self.addresses if a.proto == proto)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def children(self) -> list[int]:
        return procs.children_of(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_children(self, count: int, timeout: float = 10.0, exclude=()) -> list[int]:
        def ready():
            kids = [pid for pid in self.children() if pid not in exclude]
            return kids if len(kids) == count and all(procs.wchan(pid) for pid in kids) else None
        return procs.wait_until(ready, timeout, message=f"{count} children of {self.pid}")

    def wait_exit(self, timeout: float = 10.0) -> int | None:
        if self.process.pid == self.pid:
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"server {self.pid} did not exit within {timeout} s") from None
        procs.wait_until(lambda: not procs.alive(self.pid), timeout, message=f"daemon {self.pid} to exit")
        procs.reap_strays()
        return None


def parse_ready(line: str) -> tuple[int, list[Address]]:
    words = line.split()
    assert words[0] == "READY", line
    pid = int(words[1].split("=")[1])
    addresses = []
    for word in words[2:]:
        proto, rest = word.split(":", 1)
        host, _, port = rest.rpartition(":")
        addresses.append(Address(proto, host, int(port)))
    return pid, addresses


def read_ready(fd: int, timeout: float) -> str:
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no READY line within {timeout} s (got {data!r})")
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


class Launcher:
    """Starts servers; remembers them for cleanup."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.handles: list[ServerHandle] = []
        self.count = 0

    def command(self, args, script: str | None = None) -> list[str]:
        if script is not None:
            return [sys.executable, script, *args]
        return [sys.executable, "-m", "netserver", *args]

    def run(self, *args: str, script: str | None = None, timeout: float = 20.0, env: dict | None = None,
            cwd: str | None = None, input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
        """Run to completion (start-up failures, --check_config...)."""
        result = subprocess.run(self.command(args, script), env=server_env(env), cwd=cwd or self.tmp_path,
                                capture_output=True, timeout=timeout, input=input_bytes,
                                start_new_session=True)
        procs.reap_strays()
        return result

    def __call__(self, *args: str, script: str | None = None, ready_timeout: float = 20.0,
                 env: dict | None = None, cwd: str | None = None, port: str | None = "127.0.0.1:0",
                 preexec=None, log_file: bool = True) -> ServerHandle:
        self.count += 1
        log_path = self.tmp_path / f"server{self.count}.log"
        read_fd, write_fd = os.pipe()
        argv = list(args)
        if port is not None and not any(a.startswith("--port") for a in argv):
            argv += ["--port", port]
        argv += ["--ready_fd", str(write_fd)]
        if log_file and not any(a.startswith("--log_file") for a in argv):  # False: the test's conf names one
            argv += ["--log_file", str(log_path)]
        with open(self.tmp_path / f"stderr{self.count}", "wb") as stderr:
            process = subprocess.Popen(self.command(argv, script), env=server_env(env), cwd=cwd or self.tmp_path,
                                       pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=stderr, start_new_session=True, preexec_fn=preexec)
        os.close(write_fd)
        handle = ServerHandle(process, process.pid, [], log_path)
        self.handles.append(handle)
        try:
            line = read_ready(read_fd, ready_timeout)
        except AssertionError:
            stderr = (self.tmp_path / f"stderr{self.count}").read_text(errors="replace")
            raise AssertionError(f"server did not become ready; stderr:\n{stderr}\nlog:\n{handle.log()}") from None
        finally:
            os.close(read_fd)
        handle.pid, handle.addresses = parse_ready(line)
        return handle

    def cleanup(self) -> list[str]:
        problems = []
        for handle in self.handles:
            groups = {handle.process.pid}
            try:
                groups.add(os.getpgid(handle.pid))
            except ProcessLookupError:
                pass
            for pid in {handle.pid, handle.process.pid}:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(procs.group_members(g) for g in groups):
                procs.reap_strays()
                time.sleep(0.02)
            for group in groups:
                left = procs.group_members(group)
                if left:
                    problems.append(f"processes left in group {group}: {left}")
                    try:
                        os.killpg(group, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            try:
                handle.process.wait(5)
            except subprocess.TimeoutExpired:
                handle.process.kill()
                handle.process.wait(5)
            procs.reap_strays()
        return problems


@pytest.fixture(scope="session")
def nstest() -> pwd.struct_passwd:
    """The unprivileged user .ci/run creates; created here when missing (needs root)."""
    try:
        return pwd.getpwnam("nstest")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin",
                        "nstest"], timeout=30, check=False)  # a concurrent run may have made it: look again
        return pwd.getpwnam("nstest")


@pytest.fixture
def marks(tmp_path):
    """A folder the handlers in tests/handlers/prefork_handlers.py leave marks in ($MARK_DIR)."""
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


@pytest.fixture
def serve(tmp_path):
    launcher = Launcher(tmp_path)
    yield launcher
    problems = launcher.cleanup()
    assert not problems, problems


@pytest.fixture(autouse=True)
def no_leftover_children():
    """Every test leaves no child process of the test runner behind."""
    yield
    deadline = time.monotonic() + 5  # a daemon that reported its exit may still be leaving
    while procs.children_of(os.getpid()) and time.monotonic() < deadline:
        procs.reap_strays()
        time.sleep(0.02)
    procs.reap_strays()
    left = procs.children_of(os.getpid())
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    procs.reap_strays()
    assert not left, f"test left processes running: {left}"
