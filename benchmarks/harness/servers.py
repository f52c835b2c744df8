"""Starting, watching and stopping servers; running the load client.

Every server is started in its own session, tracked by pid in a Registry,
and stopped with TERM, then KILL by pid for the parent and every child it
was seen with.  The suite is a child subreaper (procfs.become_subreaper),
so children orphaned by a killed parent come back to it and are reaped by
pid here instead of lingering as zombies under init.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import procfs, tools
from .peers import Launch, Peer

READY_TIMEOUT_S = 20.0
STOP_GRACE_S = 3.0


class ServerError(RuntimeError):
    pass


def free_ports(count: int) -> tuple[int, ...]:
    """Ports free on 127.0.0.1, chosen below the ephemeral range so that the
    load client's own connections never take them."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 32000)
        if port in ports:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return tuple(ports)


def procwatch(
    ppid: int,
    count: int,
    wchan: tuple[str, ...],
    exclude: list[int] | None = None,
    sig: int = 0,
    target: int = 0,
    since_ns: int = 0,
    timeout_s: float = 10.0,
    any_state: bool = False,
    old_gone: bool = False,
) -> dict:
    """Run the C poller (client/procwatch.c); its JSON answer."""
    cmd = [
        str(tools.binary("procwatch")),
        "--ppid",
        str(ppid),
        "--count",
        str(count),
        "--wchan",
        ",".join(wchan),
        "--timeout-ms",
        str(int(timeout_s * 1000)),
    ]
    if any_state:
        cmd.append("--any-state")
    if old_gone:
        cmd.append("--old-gone")
    if exclude:
        cmd += ["--exclude", ",".join(map(str, exclude))]
    if sig:
        cmd += ["--signal", str(int(sig)), "--target", str(target)]
    if since_ns:
        cmd += ["--since-ns", str(since_ns)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 5)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return {"ok": False, "error": "procwatch said: %r %r" % (proc.stdout, proc.stderr)}


def parent_ready(pid: int, wchan: tuple[str, ...], since_ns: int = 0, timeout_s: float = 10.0,
                 no_children: bool = False) -> dict:
    """For a peer without a pool (Fork): the parent itself in the accept path, and with no_children
    (after a load) its connection children gone; procwatch's answer shape."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = time.monotonic_ns()
        if any(token in procfs.wchan(pid) for token in wchan) and not (no_children and procfs.children_of(pid)):
            return {"ok": True, "t_ready_ns": now, "elapsed_us": (now - since_ns) / 1000 if since_ns else 0}
        if time.monotonic() >= deadline:
            return {"ok": False, "error": "the parent was not in %s within %.0f s (wchan %r)"
                    % ("/".join(wchan), timeout_s, procfs.wchan(pid))}
        time.sleep(0.0005)


class Server:
    """One running peer: started by start(), stopped by stop()."""

    def __init__(self, peer: Peer, launch: Launch, log_dir: Path):
        self.peer = peer
        self.launch = launch
        self.log_path = log_dir / ("%s-%s-n%d-%d.log" % (peer.name, launch.variant, launch.workers, launch.ports[0]))
        self.proc: subprocess.Popen | None = None
        self.seen_children: set[int] = set()
        self.startup_ms: float | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> float:
        """Exec the server and wait until all N children (a Fork parent: itself) are in the accept path; ms taken."""
        cmd = self.peer.command(self.launch)
        log = open(self.log_path, "ab")
        try:
            t0 = time.monotonic_ns()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.peer.env(),
                start_new_session=True,
                cwd=str(tools.BENCH_DIR),
            )
        finally:
            log.close()
        if self.peer.pool:
            answer = procwatch(self.pid, self.launch.workers, self.peer.wchan, since_ns=t0, timeout_s=READY_TIMEOUT_S)
        else:
            answer = parent_ready(self.pid, self.peer.wchan, since_ns=t0, timeout_s=READY_TIMEOUT_S)
        self.remember_children()
        if not answer.get("ok"):
            raise ServerError(
                "%s did not get %d children into the accept path: %s (command: %s; log: %s)"
                % (self.peer.name, self.launch.workers, answer.get("error"), " ".join(cmd), self.log_tail())
            )
        self.startup_ms = (answer["t_ready_ns"] - t0) / 1e6
        return self.startup_ms

    def settle(self, timeout_s: float = 5.0) -> dict:
        """Wait until all N children are back in the accept path (after a load
        run some servers replace children); procwatch's answer."""
        if self.peer.pool:
            answer = procwatch(self.pid, self.launch.workers, self.peer.wchan, timeout_s=timeout_s)
        else:
            answer = parent_ready(self.pid, self.peer.wchan, timeout_s=timeout_s, no_children=True)
        self.remember_children()
        return answer

    def children(self) -> list[int]:
        kids = procfs.children_of(self.pid)
        self.seen_children.update(kids)
        return kids

    def remember_children(self) -> None:
        if self.proc is not None:
            self.children()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-3:]) or "(empty)"
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """TERM the parent, KILL it after a grace period, then KILL and reap by
        pid every child it left behind (they were reparented to the suite)."""
        if self.proc is None:
            return
        self.remember_children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_GRACE_S)
        for pid in sorted(self.seen_children):
            kill_and_reap(pid)
        self.proc = None


def kill_and_reap(pid: int) -> None:
    """KILL and reap pid if it is an orphan adopted by the suite.

    Only a process whose parent is now the suite is touched: a pid seen
    earlier as a server child may since have been reused by someone else.
    """
    fields = procfs.stat_fields(pid)
    if fields is None or fields[1] != os.getpid():
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def reap_orphans(known: set[int]) -> list[str]:
    """Kill and reap every child of the suite that is not in known: processes
    that stopped servers left behind and that were reparented to the suite.
    Call it only when no server or load client of the suite is running."""
    reaped = []
    for pid in procfs.children_of(os.getpid(), live_only=False):
        if pid in known:
            continue
        fields = procfs.stat_fields(pid)
        try:
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read().strip()
        except OSError:
            comm = "?"
        kill_and_reap(pid)
        reaped.append("%s%s" % (comm, " (zombie)" if fields and fields[0] == "Z" else ""))
    return reaped


def wait_quiet(max_wait_s: float, limit_pct: float = 15.0) -> float | None:
    """Wait up to max_wait_s until the machine, with the suite idle, is at most
    limit_pct busy (of all CPUs); the last busy figure seen, None if not asked."""
    if max_wait_s <= 0:
        return None
    deadline = time.monotonic() + max_wait_s
    while True:
        b0 = procfs.machine_busy()
        time.sleep(0.3)
        b1 = procfs.machine_busy()
        busy = 100.0 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
        if busy <= limit_pct or time.monotonic() >= deadline:
            return round(busy, 1)
        time.sleep(1.0)


def loadgen_command(
    ports: tuple[int, ...], conns: int, duration: float, mode: str, warmup: float = 0.0, client_cpu: int | None = None
) -> list[str]:
    cmd = [
        str(tools.binary("loadgen")),
        "--conns",
        str(conns),
        "--duration",
        "%.3f" % duration,
        "--mode",
        mode,
        "--warmup",
        "%.3f" % warmup,
    ]
    for p in ports:
        cmd += ["--port", str(p)]
    if client_cpu is not None:
        cmd += ["--cpu", str(client_cpu)]
    return cmd


def run_load(
    ports: tuple[int, ...],
    conns: int,
    duration: float,
    mode: str,
    warmup: float = 0.0,
    client_cpu: int | None = None,
    server: Server | None = None,
) -> dict:
    """One load run of the C client; its figures, with the accounting of run_accounted()."""
    cmd = loadgen_command(ports, conns, duration, mode, warmup, client_cpu)
    proc, accounted = run_accounted(cmd, duration + warmup + 30, server)
    if proc.returncode != 0:
        raise ServerError("loadgen failed (%d): %s" % (proc.returncode, proc.stderr.strip()))
    out = json.loads(proc.stdout)
    accounted.pop("client_cpu_pct", None)  # loadgen counts its own, over the measured window
    return dict(out, **accounted)


def run_accounted(
    cmd: list[str], timeout: float, server: Server | None = None
) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a load client to its end; the finished process and, over the whole run (warm-up
    included), the CPU used by the server (parent and children), by the client (from its
    rusage), by every process outside the suite, and how busy the machine was."""
    pids = ([server.pid] + server.children()) if server is not None else []
    me = os.getpid()
    cpu0, busy0, other0 = procfs.cpu_seconds(pids), procfs.machine_busy(), procfs.foreign_cpu_ticks(me)
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ServerError("%s did not finish within %.0f s" % (cmd[0], timeout)) from exc
    elapsed = time.monotonic() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1, busy1, other1 = procfs.cpu_seconds(pids), procfs.machine_busy(), procfs.foreign_cpu_ticks(me)
    client_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    out = {"client_cpu_pct": round(100.0 * client_s / elapsed, 1)}
    if pids:
        out["server_cpu_pct"] = round(100.0 * (cpu1 - cpu0) / elapsed, 1)
    out["other_cpu_pct"] = round(procfs.foreign_cpu_pct(other0, other1, elapsed), 1)
    total = busy1[1] - busy0[1]
    if total > 0:
        out["machine_busy_pct"] = round(100.0 * (busy1[0] - busy0[0]) / total, 1)
    return proc, out


def start_load(
    ports: tuple[int, ...], conns: int, duration: float, mode: str, client_cpu: int | None = None
) -> subprocess.Popen:
    cmd = loadgen_command(ports, conns, duration, mode, 0.0, client_cpu)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_load(proc: subprocess.Popen, duration: float) -> dict:
    try:
        out, err = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise ServerError("loadgen did not finish in time") from exc
    if proc.returncode != 0:
        raise ServerError("loadgen failed (%d): %s" % (proc.returncode, err.strip()))
    return json.loads(out)
