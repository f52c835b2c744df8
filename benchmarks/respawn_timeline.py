"""Where a respawn's time goes: one child killed, the kernel's own timestamps of each step.

    python benchmarks/respawn_timeline.py                       # Python floor, Perl, netserver (this tree)
    python benchmarks/respawn_timeline.py --src OTHER/src       # and netserver from another tree
    python benchmarks/respawn_timeline.py --kills 10 --syscalls # and each process's system calls, last kill

Each server runs with 4 children; for every kill ``perf record -a`` holds the
scheduler's and the system-call tracepoints while one child gets ``kill -9``.
The steps, medians over the kills (µs):

* **victim exits**: the signal until the victim's ``sched_process_exit``;
* **parent wakes**: until the parent's first system call returns (netserver: its
  epoll_wait, on the end of file of the victim's ready pipe; the floor and Perl:
  their wait for the zombie).  The victim's address space is torn down meanwhile;
* **until clone**: the parent's own work before it calls clone;
* **clone**: the fork itself (the parent's page tables are copied);
* **child first runs**: the new task's first event.  A child the kernel places
  on the parent's CPU waits here until the parent sleeps;
* **child boots**: until the child's last system call, the wait it is found in.

``benchmarks/respawn_paired.py`` measures the whole (kill until the new child
waits) without perf's overhead, which adds a few microseconds to every system call.
Needs root and perf (``apt-get install linux-perf``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import tools
from harness.procfs import children_of
from respawn_paired import commands  # the same servers, started the same way

BENCH = Path(__file__).resolve().parent
EVENTS = ",".join(("signal:signal_generate", "sched:sched_process_exit", "sched:sched_process_fork",
                   "raw_syscalls:sys_enter", "raw_syscalls:sys_exit"))
STEPS = ("victim exits", "parent wakes", "until clone", "clone", "child first runs", "child boots", "total")
LINE = re.compile(r"\s*(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)")


def one_kill(parent: int, workdir: str) -> tuple[list[float], dict[str, list[tuple[float, str]]]]:
    """Kill one child under perf; the step durations, and each process's system calls (µs after the kill)."""
    victim = sorted(children_of(parent))[0]
    data = os.path.join(workdir, "perf.data")
    perf = subprocess.Popen(["perf", "record", "-q", "-a", "-o", data, "-e", EVENTS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf is recording
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.3)
    perf.send_signal(signal.SIGINT)
    perf.wait(30)
    script = subprocess.run(["perf", "script", "-i", data, "-F", "pid,time,event,trace"],
                            capture_output=True, text=True, timeout=60).stdout
    events = []
    for line in script.splitlines():
        match = LINE.match(line)
        if match:
            events.append((int(match[1]), float(match[2]) * 1e6, match[3], match[4]))
    killed = next(t for _, t, e, x in events if e == "signal:signal_generate" and "sig=9" in x and f"pid={victim}" in x)
    exited = next(t for p, t, e, _ in events if e == "sched:sched_process_exit" and p == victim)
    fork_at, fork_text = next((t, x) for p, t, e, x in events if e == "sched:sched_process_fork" and p == parent
                              and t > killed)
    child = int(re.search(r"child_pid=(\d+)", fork_text)[1])
    woke = next(t for p, t, e, _ in events if p == parent and e == "raw_syscalls:sys_exit" and t > exited)
    clone = max(t for p, t, e, x in events if p == parent and e == "raw_syscalls:sys_enter" and x.startswith("NR 56 ")
                and t < fork_at)
    child_events = [t for p, t, _, _ in events if p == child]
    child_waits = max(t for p, t, e, _ in events if p == child and e == "raw_syscalls:sys_enter")
    steps = [exited - killed, woke - exited, clone - woke, fork_at - clone, min(child_events) - fork_at,
             child_waits - min(child_events), child_waits - killed]
    calls = {who: [(t - killed, x.split()[1]) for p, t, e, x in events if p == pid and e == "raw_syscalls:sys_enter"
                   and killed <= t <= child_waits] for who, pid in (("parent", parent), ("child", child))}
    return steps, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", default=[], help="another netserver src/ to measure too")
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--syscalls", action="store_true", help="print the last kill's system calls (µs, number)")
    args = parser.parse_args()
    if shutil.which("perf") is None or os.geteuid() != 0:
        raise SystemExit("needs root and perf (apt-get install linux-perf)")
    tools.compile_python()
    for label, (argv, env) in commands(4, args.src).items():
        server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows, calls = [], {}
        try:
            time.sleep(1.5)  # booted
            with tempfile.TemporaryDirectory() as workdir:
                for _ in range(args.kills):
                    steps, calls = one_kill(server.pid, workdir)
                    rows.append(steps)
                    time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(10)
        print(label)
        for index, step in enumerate(STEPS):
            values = [row[index] for row in rows]
            print(f"  {step:18} {statistics.median(values):7.0f} µs  ({min(values):.0f}-{max(values):.0f})")
        if args.syscalls:
            for who, made in calls.items():
                print(f"  {who} system calls (µs after the kill, number): "
                      + " ".join(f"{t:.0f}:{nr}" for t, nr in made))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
