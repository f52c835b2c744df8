"""Processes as /proc shows them; no psutil needed."""

from __future__ import annotations

import ctypes
import os
import socket
import time


def stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            data = handle.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    return data[data.rindex(")") + 2:].split()


def state(pid: int) -> str | None:
    fields = stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int) -> bool:
    """True for a running process (a zombie counts as gone)."""
    current = state(pid)
    return current is not None and current not in ("Z", "X")


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_of(pid: int, include_zombies: bool = False) -> list[int]:
    found = []
    for other in all_pids():
        fields = stat_fields(other)
        if fields and int(fields[1]) == pid and (include_zombies or fields[0] != "Z"):
            found.append(other)
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    members = []
    for other in all_pids():
        fields = stat_fields(other)
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(other)
    return members


def status_field(pid: int, name: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def wchan(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/wchan") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid: int) -> list[str]:
    """What each of pid's descriptors points at ('socket:[123]', 'pipe:[45]', a path)."""
    targets = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except FileNotFoundError:
            continue  # closed while we looked
    return targets


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        raw = handle.read()
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


def wait_until(predicate, timeout: float, interval: float = 0.01, message: str = "condition"):
    """Poll predicate until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def reap_strays() -> None:
    """Collect zombies reparented to us (we are a subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture
_libc = ctypes.CDLL(None, use_errno=True)


def borrowed_sockets(pid: int):
    """Yield a duplicate of every socket in pid's descriptor table (Linux >= 5.6, root or ptrace).

    Each one is closed when the caller moves on; the owner's socket is untouched.
    """
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except FileNotFoundError:
                continue
            fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                raise OSError(ctypes.get_errno(), f"pidfd_getfd({pid}, {name})")
            with socket.socket(fileno=fd) as sock:
                yield sock
    finally:
        os.close(pidfd)
