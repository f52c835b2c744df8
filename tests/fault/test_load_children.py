"""Children under load (reliability.md B1, B7, B8, D5): kills, recycling, a stopped parent.

Which connections a killed child held is taken from the child itself: the
victim is SIGSTOPped, the peers of the TCP sockets in its descriptor table
are read (pidfd_getfd, then getpeername on our duplicate, closed before the
kill), then it is SIGKILLed.  The ``fault_load_handlers:Journal`` handler's
accepted/done journal must agree with that snapshot.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fault import loadgen
from support import procs

LINE = "fault_load_handlers:Line"


# ---------------------------------------------------------------- observation helpers
class ZombieWatch:
    """Samples the children of pid; a zombie still unreaped after ``patience`` seconds lingers."""

    def __init__(self, pid: int, patience: float = 0.5) -> None:
        self.pid = pid
        self.patience = patience
        self.first_seen: dict[int, float] = {}
        self.lingering: set[int] = set()
        self.samples = 0

    def sample(self) -> None:
        now = time.monotonic()
        zombies = set()
        try:  # the parent is single-threaded: its main task's list is all its children, zombies included
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as handle:
                kids = [int(word) for word in handle.read().split()]
        except FileNotFoundError:
            kids = []
        for other in kids:
            fields = procs.stat_fields(other)
            if fields and fields[0] == "Z" and int(fields[1]) == self.pid:
                zombies.add(other)
        self.first_seen = {pid: self.first_seen.get(pid, now) for pid in zombies}
        self.lingering |= {pid for pid, first in self.first_seen.items() if now - first >= self.patience}
        self.samples += 1


def peers_held(pid: int) -> set[str]:
    """'ip:port' of every connected TCP peer in pid's descriptor table (stop pid first)."""
    held = set()
    for sock in procs.borrowed_sockets(pid):
        if sock.type != socket.SOCK_STREAM or sock.family != socket.AF_INET:
            continue
        try:
            peer = sock.getpeername()
        except OSError:  # the listener
            continue
        held.add(f"{peer[0]}:{peer[1]}")
    return held


@dataclass
class Kill:
    pid: int
    stopped: float  # time.monotonic() once the victim was stopped
    held: set[str]


def source(request: loadgen.Request) -> str:
    return f"{request.source[0]}:{request.source[1]}"


def unexplained_failures(failures: list[loadgen.Request], kills: list[Kill], slack: float = 0.05):
    """Failures that are not a connection some killed child held while it was killed."""
    unexplained = []
    for request in failures:
        end = request.started + request.total
        held = request.outcome in ("reset", "short") and any(
            source(request) in kill.held and request.started <= kill.stopped <= end + slack for kill in kills)
        if not held:
            unexplained.append(request)
    return unexplained


def journal(path: Path) -> dict[int, Counter]:
    """pid -> Counter of peers accepted and not done (the connections open when the journal stopped)."""
    accepted: dict[int, Counter] = {}
    done: dict[int, Counter] = {}
    for line in path.read_text().splitlines():
        kind, pid, peer = line.split()
        (accepted if kind == "A" else done).setdefault(int(pid), Counter())[peer] += 1
    return {pid: peers - done.get(pid, Counter()) for pid, peers in accepted.items()}


def open_files(pid: int) -> Counter:
    """What pid has open, by kind: 'pipe', 'socket', 'anon_inode:[eventpoll]', or the path."""
    kinds = Counter()
    for target in procs.fd_targets(pid):
        kinds[target.split(":[")[0] if target.startswith(("pipe:", "socket:")) else target] += 1
    return kinds


def stop(pid: int) -> float:
    os.kill(pid, signal.SIGSTOP)
    procs.wait_until(lambda: procs.state(pid) in ("T", "Z", None), 2, interval=0.001, message=f"{pid} to stop")
    return time.monotonic()


# ---------------------------------------------------------------- B1
def test_kill_9_a_random_child_every_100ms_fails_only_what_it_held(serve, tmp_path):
    book = tmp_path / "journal"
    server = serve("--handler", "fault_load_handlers:Journal", "--max_servers", "4", "--max_requests", "0",
                   env={"FAULT_LOAD_JOURNAL": str(book)})
    server.wait_children(4)
    chooser = random.Random(20203)
    kills: list[Kill] = []
    zombies = ZombieWatch(server.pid)
    with loadgen.Load(server.addr, duration=60, slow_workers=2, slow_ms=100) as load:
        time.sleep(0.3)
        previous = set(server.children())
        next_kill = time.monotonic()
        end = next_kill + 10.0
        while next_kill < end:
            time.sleep(max(0.0, next_kill - time.monotonic()))
            next_kill += 0.1
            current = set(server.children())
            # Only children already there 100 ms ago: a child killed before it reports ready is a boot failure.
            candidates = sorted(current & previous - {kill.pid for kill in kills})
            previous = current
            zombies.sample()
            if not candidates:
                continue
            victim = chooser.choice(candidates)
            stopped = stop(victim)
            held = peers_held(victim)
            os.kill(victim, signal.SIGKILL)
            kills.append(Kill(victim, stopped, held))
        last_kill = time.monotonic()
        victims = {kill.pid for kill in kills}
        server.wait_children(4, timeout=5, exclude=victims)
        refilled = time.monotonic() - last_kill
        zombies.sample()
        time.sleep(0.3)
        load.stop()
    summary = load.summary
    failures = summary.failures
    held = sum(len(kill.held) for kill in kills)
    print(f"\nchild kills: {summary.describe()}; {len(kills)} kills holding {held} connections; "
          f"pool full {refilled * 1000:.0f} ms after the last kill")

    assert len(kills) >= 90
    assert failures, "no kill hit a connection in flight: the check below would pass vacuously"
    assert unexplained_failures(failures, kills) == [], unexplained_failures(failures, kills)[:10]
    assert len(failures) <= len(kills)
    # The journal agrees with the snapshot: what a victim had accepted and not finished answering, it held.
    # (Not every such connection fails: the answer may have been sent just before the journal's "done".)
    still_open = journal(book)
    journal_open = 0
    for kill in kills:
        open_peers = still_open.get(kill.pid, Counter())
        assert set(open_peers) <= kill.held, (kill, open_peers)
        journal_open += sum(open_peers.values())
    print(f"journal: {journal_open} connections open in the victims; {len(failures)} failed")
    assert summary.max_connect < 1.0
    assert refilled < 1.0
    assert not zombies.lingering and zombies.samples >= 90
    assert not [pid for pid in procs.children_of(server.pid, include_zombies=True) if procs.state(pid) == "Z"]

    # Negative control: a failure on a connection a live child served is reported.
    live = set(server.children())
    served_by_live = {peer for kind, pid, peer in map(str.split, book.read_text().splitlines())
                      if kind == "D" and int(pid) in live}
    innocent = next(r for r in summary.requests if r.outcome == "ok" and source(r) in served_by_live
                    and not any(source(r) in kill.held for kill in kills))
    assert unexplained_failures([dataclasses.replace(innocent, outcome="reset")], kills)


def test_zombie_watch_reports_an_unreaped_child():
    """Negative control for the zombie checks: an unreaped child of ours is reported."""
    process = subprocess.Popen(["true"])
    try:
        procs.wait_until(lambda: procs.state(process.pid) == "Z", 5, message="a zombie")
        watch = ZombieWatch(os.getpid(), patience=0.3)
        watch.sample()
        time.sleep(0.35)
        watch.sample()
        assert process.pid in watch.lingering
    finally:
        process.wait(5)


# ---------------------------------------------------------------- B8
def test_a_child_that_serves_its_max_requests_at_once_is_not_a_boot_failure(serve):
    """The quick form of the check below: 500 one-request children, none logged as a boot failure."""
    server = serve("--handler", "fault_load_handlers:LinePid", "--max_servers", "4", "--max_requests", "1")
    server.wait_children(4)
    summary = loadgen.run(server.addr, count=500, duration=60, concurrency=8, answer="pid")
    log = server.log()
    print(f"\nquick recycles: {summary.describe()}; {log.count('failed to boot')} logged as boot failures")
    assert summary.ok == 500 and len(summary.pids) == 500
    assert "failed to boot" not in log, [line for line in log.splitlines() if "failed to boot" in line][:5]


def test_10000_recycles_leave_no_zombie_and_no_parent_fd_within_60s(serve):
    server = serve("--handler", "fault_load_handlers:LinePid", "--max_servers", "4", "--max_requests", "1")
    server.wait_children(4)
    fds_before = open_files(server.pid)
    zombies = ZombieWatch(server.pid)
    with loadgen.Load(server.addr, count=10_000, duration=60, concurrency=8, answer="pid") as load:
        while not load.done:
            zombies.sample()
            time.sleep(0.05)
    summary = load.summary
    server.wait_children(4, timeout=5)
    fds_after = open_files(server.pid)
    boot_failures = server.log().count("failed to boot")
    print(f"\nrecycles: {summary.describe()}; {len(summary.pids)} children served; "
          f"{boot_failures} exits logged as boot failures")

    assert summary.failed == 0
    assert boot_failures == 0
    assert fds_after == fds_before  # same count of each kind (numbers move: each child has its own ready pipe)
    assert not zombies.lingering and zombies.samples >= 20
    assert not [pid for pid in procs.children_of(server.pid, include_zombies=True) if procs.state(pid) == "Z"]
    assert len(summary.pids) == summary.ok  # every request in a new child: the recycling really happened
    recycled, elapsed = summary.ok, summary.elapsed
    assert recycled == 10_000 and elapsed < 60, (
        f"{summary.describe()}; {boot_failures} of the children were logged as 'failed to boot' (each "
        "delays its replacement by the boot back-off)")


# ---------------------------------------------------------------- B7, D5
def test_parent_stays_single_threaded_and_a_3s_sigstop_kills_no_child(serve):
    server = serve("--handler", LINE, "--max_servers", "4", "--max_requests", "0", "--check_for_dead", "0.5")
    kids = server.wait_children(4)
    threads: list[str | None] = []
    ours: set[str | None] = set()

    def sample(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            threads.append(procs.status_field(server.pid, "Threads"))
            ours.add(procs.status_field(os.getpid(), "Threads"))
            time.sleep(0.02)

    with loadgen.Load(server.addr, duration=60, slow_workers=2) as load:
        sample(1.0)
        server.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        assert procs.state(server.pid) == "T" or procs.wait_until(lambda: procs.state(server.pid) == "T", 1)
        sample(3.0)
        server.signal(signal.SIGCONT)
        resumed = time.monotonic()
        sample(2.0)
        load.stop()
    summary = load.summary
    after = server.children()
    served_while_stopped = sum(1 for r in summary.between(stopped, resumed) if r.outcome == "ok")
    served_after = sum(1 for r in summary.between(resumed + 1.0, resumed + 2.0) if r.outcome == "ok")
    print(f"\nSIGSTOP under load: {summary.describe()}; {served_while_stopped} served while the parent was "
          f"stopped; {len(threads)} thread samples")

    assert len(threads) >= 200 and set(threads) == {"1"}, Counter(threads)
    assert summary.failed == 0, (summary.describe(), summary.failures[:20])
    assert summary.max_connect < 1.0
    assert after == kids  # same pids, full pool: nothing killed, nothing spawned
    assert served_while_stopped > 0 and served_after > 0
    assert "exited abnormally" not in server.log()

    # Negative controls: the thread sampler sees our own load thread, and the pool check sees a replaced child.
    assert ours and all(count is not None and int(count) > 1 for count in ours)
    server.signal(signal.SIGSTOP)
    try:
        os.kill(kids[0], signal.SIGKILL)
        time.sleep(0.3)
    finally:
        server.signal(signal.SIGCONT)
    assert server.wait_children(4, timeout=2, exclude=(kids[0],)) != kids
