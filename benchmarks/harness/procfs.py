"""What the suite reads from /proc: children of a pid, wchan, memory.

Children are found by scanning /proc/*/stat for a matching ppid, because
/proc/PID/task/*/children needs CONFIG_PROC_CHILDREN, which many kernels
(this machine's included) do not have.  The timing-critical polls live in
the C helper client/procwatch.c; these are for bookkeeping and memory.
"""

from __future__ import annotations

import ctypes
import os

PR_SET_CHILD_SUBREAPER = 36


def stat_fields(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of pid, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and ')', so fields are counted from the last ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    return rest[0].decode(), int(rest[1])


def children_of(ppid: int, live_only: bool = True) -> list[int]:
    """Pids whose parent is ppid; zombies are left out unless live_only is False."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = stat_fields(int(name))
        if fields is None or fields[1] != ppid:
            continue
        if live_only and fields[0] in ("Z", "X"):
            continue
        found.append(int(name))
    return sorted(found)


def wchan(pid: int) -> str:
    try:
        with open("/proc/%d/wchan" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def memory_kib(pid: int) -> dict[str, int] | None:
    """USS, PSS and RSS of pid in KiB from /proc/PID/smaps_rollup.

    USS is the memory only this process maps (Private_Clean + Private_Dirty,
    plus private huge pages); PSS adds its share of every shared page.
    """
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in lines[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0])
    return {
        "uss": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0) + values.get("Private_Hugetlb", 0),
        "pss": values.get("Pss", 0),
        "rss": values.get("Rss", 0),
    }


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat from the state field on (the name may hold spaces and parentheses); None if gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by pids (those still alive)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        rest = _stat_fields(pid)
        if rest is not None:
            total += int(rest[11]) + int(rest[12])
    return total / tick


def foreign_cpu_ticks(root: int) -> dict[int, int]:
    """CPU ticks so far of every process that does not descend from root.

    Two snapshots tell how much CPU other work on the machine took during a
    measurement; a process that appears in the second one only started in
    between and counts whole.
    """
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        rest = _stat_fields(pid)
        if rest is None:
            continue
        parents[pid] = int(rest[1])
        ticks[pid] = int(rest[11]) + int(rest[12])
    out = {}
    for pid, t in ticks.items():
        p, hops = pid, 0
        while p > 1 and p != root and hops < 64:
            p, hops = parents.get(p, 0), hops + 1
        if p != root:
            out[pid] = t
    return out


def foreign_cpu_pct(before: dict[int, int], after: dict[int, int], seconds: float) -> float:
    """CPU used by other work between two foreign_cpu_ticks() snapshots, in % of one core."""
    used = sum(t - before.get(pid, 0) for pid, t in after.items() if t >= before.get(pid, 0))
    return 100.0 * used / os.sysconf("SC_CLK_TCK") / max(seconds, 1e-6)


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def become_subreaper() -> bool:
    """Adopt orphaned descendants, so that children a killed server leaves
    behind are reparented to this process and can be reaped by pid."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except OSError:
        return False
