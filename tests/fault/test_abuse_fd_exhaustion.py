"""Abuse: the child runs out of file descriptors (reliability.md §3, prlimit).

The server starts with RLIMIT_NOFILE = 32:32, set in the preexec_fn exactly as
``prlimit --nofile=32:32 -- python -m netserver ...`` would, so the parent and
its one child share the limit.  The FdHog handler fills every free descriptor
of the child after an ``exhaust`` request; a client that then connects sits in
the accept queue while accept() fails with EMFILE.  For 2 s the child must
not spin (utime + stime grow by < 0.3 s), must not exit (same pid), and must
log the EMFILE about once a second (at least once, and at most once per
started second of the measured window plus one); once SIGUSR1 makes the handler give its descriptors back, the
queued client and a new one are served by that same child.

Controls: the child really holds all 32 descriptors and the queued client is
not answered during the window; a spinning process measured the same way
fails the CPU check.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import subprocess
import sys
import time

from support import procs
from support.clients import connect, read_line, talk

NOFILE = 32
WINDOW = 2.0
CPU_LIMIT = 0.3  # seconds of CPU over WINDOW
EMFILE_LINE = "accept failed: Too many open files"


def low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def cpu_seconds(pid: int) -> float:
    fields = procs.stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_over(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def test_emfile_in_accept_neither_spins_nor_kills_the_child(serve):
    server = serve("--handler", "fault_abuse_handlers:FdHog", "--max_servers", "1", preexec=low_nofile)
    (child,) = server.wait_children(1)
    assert procs.status_field(child, "Pid") == str(child)
    with open(f"/proc/{child}/limits") as limits:
        assert any(line.startswith("Max open files") and line.split()[3:5] == [str(NOFILE)] * 2 for line in limits)
    assert int(talk(server.addr, b"exhaust\n")) == child
    procs.wait_until(lambda: procs.fd_count(child) == NOFILE, 5, message=f"the child to hold {NOFILE} descriptors")

    with connect(server.addr, timeout=10) as queued:
        queued.sendall(b"hello\n")
        procs.wait_until(lambda: EMFILE_LINE in server.log(), 5, message="the EMFILE in the log")
        logged_before, window_start = server.log().count(EMFILE_LINE), time.monotonic()
        used = cpu_over(child, WINDOW)
        logged, window = server.log().count(EMFILE_LINE) - logged_before, time.monotonic() - window_start
        queued.settimeout(0.01)
        try:
            early = queued.recv(1)
        except TimeoutError:
            early = None
        assert early is None, "the queued client was answered while the child had no descriptor"
        print(f"\n[abuse fd exhaustion] over {WINDOW} s at EMFILE: child CPU {used:.3f} s, "
              f"{logged} EMFILE log lines, pid {child} alive {procs.alive(child)}")
        assert used < CPU_LIMIT, f"the child spun: {used:.3f} s of CPU in {WINDOW} s"
        assert 1 <= logged <= math.ceil(window) + 1, f"{logged} EMFILE lines in {window:.2f} s"
        assert procs.alive(child) and server.children() == [child]

        os.kill(child, signal.SIGUSR1)
        released = time.monotonic()
        queued.settimeout(5)
        assert int(read_line(queued)) == child
        print(f"[abuse fd exhaustion] queued client served {time.monotonic() - released:.3f} s after the release")
        assert time.monotonic() - released < 1.0
    assert int(talk(server.addr, b"again\n")) == child
    assert server.children() == [child]


def test_control_a_spinning_process_fails_the_cpu_check():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.1)
        used = cpu_over(spinner.pid, 1.0)
    finally:
        spinner.kill()
        spinner.wait(10)
    assert used > CPU_LIMIT * 1.0 / WINDOW, f"a busy loop used only {used:.3f} s of CPU in 1 s"
