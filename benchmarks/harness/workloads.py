"""The workloads.  Each one runs every available peer, alternating them.

Throughput workloads (1-3) start all peers of a case side by side, idle,
and then load them one at a time in rotated order, repetition after
repetition: every peer takes every position in the order, and each ratio
compares runs made minutes apart on the same machine.  The process figures
(workload 4) start a fresh server per repetition, since the start-up is
itself measured.

To add a workload: subclass Workload, give it a key and a title, implement
run(ctx) with ctx.record(...) per measurement; report.py summarizes by the
metric names it records.  A workload runs only the peers that speak its
protocol (Peer.protocols); the HTTP ones are in http_workloads.py.
"""

from __future__ import annotations

import os
import select
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procfs
from .peers import GROWTH_FROM, GROWTH_TO, Launch, Peer
from .servers import Server, ServerError, finish_load, free_ports, procwatch, run_load, start_load, wait_quiet


@dataclass
class Config:
    quick: bool
    repeat: int
    duration: float
    workers: tuple[int, ...]
    client_cpu: int | None
    figures: tuple[str, ...]  # workload 4: startup, memory, respawn, hup

    @property
    def quiet_wait_s(self) -> float:
        """How long to wait for other work on the machine to calm down before each measurement."""
        return 0.0 if self.quick else 10.0

    @property
    def warmup(self) -> float:
        return 0.0 if self.quick else 0.5

    @property
    def persist_duration(self) -> float:
        return self.duration if self.quick else max(10.0, 2 * self.duration)


@dataclass
class Context:
    config: Config
    peers: list[Peer]
    log_dir: Path
    results: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    progress: bool = True
    started: float = field(default_factory=time.monotonic)

    def record(
        self, workload: str, workers: int, peer: Peer, variant: str, rep: int, metrics: dict, discarded: bool = False
    ) -> None:
        self.results.append(
            {
                "workload": workload,
                "workers": workers,
                "peer": peer.name,
                "variant": variant,
                "rep": rep,
                # When the measurement ended, in seconds into the run: the order the peers took turns in.
                "at_s": round(time.monotonic() - self.started, 2),
                "discarded": discarded,
                "metrics": metrics,
            }
        )
        if self.progress:
            brief = next((metrics[k] for k in ("rps", "startup_ms", "growth_ms") if metrics.get(k)), None)
            brief = brief if brief is not None else metrics.get("error", "")
            print(
                "  w%s N=%-2d %-13s %-9s rep %d%s: %s"
                % (
                    workload,
                    workers,
                    peer.name,
                    variant,
                    rep,
                    " (discarded)" if discarded else "",
                    "%.1f" % brief if isinstance(brief, float) else brief,
                ),
                flush=True,
            )

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            print("  note: " + text, flush=True)


def rotated(items: list, k: int) -> list:
    if not items:
        return items
    k %= len(items)
    return items[k:] + items[:k]


class Workload:
    key = ""
    title = ""
    protocol = "line"  # only peers whose Peer.protocols include it run here

    def run(self, ctx: Context) -> None:
        raise NotImplementedError


class Throughput(Workload):
    """Line echo under load from the C client, one server per (peer, variant)."""

    listeners = 1
    mode = "conn"  # the client's mode: conn (one request per connection) or persist

    def conns(self, workers: int) -> int:
        return 50

    def duration(self, cfg: Config) -> float:
        return cfg.duration

    def discard_first(self, cfg: Config) -> bool:
        return False

    def worker_counts(self, cfg: Config) -> tuple[int, ...]:
        return cfg.workers

    def check(self, srv: Server) -> str | None:
        """After the start: None if the server answers as it should, else why not (it is then skipped)."""
        return None

    def load(self, srv: Server, workers: int, cfg: Config) -> dict:
        """One measured run against srv; its metrics."""
        return run_load(
            srv.launch.ports, self.conns(workers), self.duration(cfg), self.mode, cfg.warmup, cfg.client_cpu, server=srv
        )

    def run(self, ctx: Context) -> None:
        cfg = ctx.config
        for workers in self.worker_counts(cfg):
            units = []
            for peer in (p for p in ctx.peers if p.takes(self.key, self.protocol)):
                variants = peer.variants(self.listeners)
                if not variants:
                    ctx.note(
                        "workload %s: %s skipped: it supports %d listener(s), this workload needs %d"
                        % (self.key, peer.name, peer.max_listeners, self.listeners)
                    )
                units += [(peer, v) for v in variants]
            servers: dict[tuple[str, str], Server] = {}
            try:
                for peer, variant in units:
                    launch = Launch(
                        free_ports(self.listeners), workers, variant, once=self.mode == "conn", protocol=self.protocol
                    )
                    srv = Server(peer, launch, ctx.log_dir)
                    try:
                        srv.start()
                        wrong = self.check(srv)
                    except ServerError as exc:
                        wrong = "did not start: %s" % exc
                    if wrong:
                        srv.stop()
                        ctx.note("workload %s N=%d: %s %s %s" % (self.key, workers, peer.name, variant, wrong))
                        continue
                    servers[(peer.name, variant)] = srv
                live = [u for u in units if (u[0].name, u[1]) in servers]
                reps = cfg.repeat + (1 if self.discard_first(cfg) else 0)
                for rep in range(reps):
                    for peer, variant in rotated(live, rep):
                        srv = servers[(peer.name, variant)]
                        if not srv.alive():
                            ctx.note(
                                "workload %s N=%d: %s %s died (log: %s)"
                                % (self.key, workers, peer.name, variant, srv.log_tail())
                            )
                            continue
                        settled = srv.settle()
                        if not settled.get("ok"):
                            ctx.note(
                                "workload %s N=%d: %s %s not back to %d children in accept: %s"
                                % (self.key, workers, peer.name, variant, workers, settled.get("error"))
                            )
                        busy = wait_quiet(cfg.quiet_wait_s)
                        try:
                            metrics = self.load(srv, workers, cfg)
                        except ServerError as exc:
                            ctx.note("workload %s N=%d: %s %s: %s" % (self.key, workers, peer.name, variant, exc))
                            continue
                        metrics["busy_before_pct"] = busy
                        ctx.record(
                            self.key,
                            workers,
                            peer,
                            variant,
                            rep,
                            metrics,
                            discarded=self.discard_first(cfg) and rep == 0,
                        )
            finally:
                for srv in servers.values():
                    srv.stop()


class EchoPerConnection(Throughput):
    key = "1"
    title = "Line echo, one request per connection, 50 concurrent clients"


class EchoPersistent(Throughput):
    key = "2"
    title = "Line echo on persistent connections, clients = N"
    mode = "persist"

    def conns(self, workers: int) -> int:
        return workers

    def duration(self, cfg: Config) -> float:
        return cfg.persist_duration

    def discard_first(self, cfg: Config) -> bool:
        return not cfg.quick


class EchoTwoListeners(Throughput):
    key = "3"
    title = "Line echo with two listeners, one request per connection, 50 clients spread over both ports"
    listeners = 2


def mean_memory(pids: list[int]) -> dict:
    samples = [m for m in (procfs.memory_kib(p) for p in pids) if m]
    if not samples:
        return {}
    return {
        "uss_kib": statistics.mean(s["uss"] for s in samples),
        "pss_kib": statistics.mean(s["pss"] for s in samples),
        "uss_max_kib": max(s["uss"] for s in samples),
        "children": len(samples),
    }


class ProcessFigures(Workload):
    """Start-up, memory per child, respawn after kill -9, HUP restart."""

    key = "4"
    title = "Process figures"
    respawns = 5
    startups = 3
    load_s = 2.0
    hup_load_s = 3.0

    def run(self, ctx: Context) -> None:
        cfg = ctx.config
        units = [(peer, "default") for peer in ctx.peers if peer.takes(self.key, self.protocol)]
        for workers in cfg.workers:
            for rep in range(cfg.repeat):
                for peer, variant in rotated(units, rep):
                    srv = Server(peer, Launch(free_ports(1), workers, variant, once=True), ctx.log_dir)
                    metrics: dict = {"busy_before_pct": wait_quiet(cfg.quiet_wait_s)}
                    try:
                        self.measure(ctx, srv, metrics)
                    except ServerError as exc:
                        metrics["error"] = str(exc)
                        ctx.note("workload 4 N=%d: %s: %s" % (workers, peer.name, exc))
                    finally:
                        srv.stop()
                    ctx.record(self.key, workers, peer, variant, rep, metrics)

    def measure(self, ctx: Context, srv: Server, m: dict) -> None:
        figures = ctx.config.figures
        # Start-up is short and easily disturbed, so it is sampled several
        # times: extra start/stop cycles first, then the server that the
        # other figures use.
        samples = []
        for _ in range(self.startups - 1):
            extra = Server(
                srv.peer, Launch(free_ports(1), srv.launch.workers, srv.launch.variant, once=True), ctx.log_dir
            )
            try:
                samples.append(extra.start())
            finally:
                extra.stop()
        samples.append(srv.start())
        m["startup_samples_ms"] = samples
        m["startup_ms"] = statistics.median(samples)
        if not srv.peer.pool:
            return  # no pool (Fork): no idle children to weigh, kill or replace
        if "memory" in figures:
            m["idle_pids"] = srv.children()
            m["idle"] = mean_memory(m["idle_pids"])
            load = run_load(srv.launch.ports, 50, self.load_s, "conn", 0.0, ctx.config.client_cpu)
            m["load_rps"] = load["rps"]
            srv.settle()
            # A server that replaced children during the load shows fresh ones here.
            m["children_replaced_by_load"] = len(set(srv.children()) - set(m["idle_pids"]))
            m["loaded"] = mean_memory(srv.children())
        if "respawn" in figures:
            settled = srv.settle()
            if not settled.get("ok"):
                m["respawn_error"] = "pool did not settle before the kills: %s" % settled.get("error")
            else:
                m.update(self.respawn(srv))
        if "hup" in figures and srv.peer.supports_hup and srv.alive():
            m.update(self.hup(ctx, srv))

    def respawn(self, srv: Server) -> dict:
        samples, failures = [], []
        for _ in range(self.respawns):
            kids = srv.children()
            if not kids:
                failures.append("no children left")
                break
            victim = kids[len(samples) % len(kids)]
            answer = procwatch(
                srv.pid, 1, srv.peer.wchan, exclude=kids, sig=signal.SIGKILL, target=victim, timeout_s=5.0
            )
            srv.remember_children()
            if not answer.get("ok"):
                error = answer.get("error", "?")
                if not srv.alive() and "exited" not in error:
                    error += " (the server's parent exited)"
                failures.append(error)
                break
            samples.append(answer["elapsed_us"] / 1000.0)
            # Let the pool settle fully before the next kill.
            procwatch(srv.pid, srv.launch.workers, srv.peer.wchan, timeout_s=5.0)
        out: dict = {"respawn_samples_ms": samples}
        if samples:
            out["respawn_ms"] = statistics.median(samples)
        if failures:
            out["respawn_error"] = failures[0]
        return out

    def hup(self, ctx: Context, srv: Server) -> dict:
        workers = srv.launch.workers
        out: dict = {}
        kids = srv.children()
        answer = procwatch(
            srv.pid, workers, srv.peer.wchan, exclude=kids, sig=signal.SIGHUP, target=srv.pid, timeout_s=10.0
        )
        srv.remember_children()
        if answer.get("ok"):
            out["hup_idle_ms"] = answer["elapsed_us"] / 1000.0
        else:
            out["hup_error"] = answer.get("error")
            return out
        time.sleep(0.2)
        loadgen = start_load(srv.launch.ports, 50, self.hup_load_s, "conn", ctx.config.client_cpu)
        try:
            time.sleep(self.hup_load_s / 3)
            # Under load the new children are busy serving rather than waiting
            # in accept, so this times the hand-over instead: N live children
            # of the new generation and none of the old one left.
            kids = srv.children()
            answer = procwatch(
                srv.pid,
                workers,
                srv.peer.wchan,
                exclude=kids,
                sig=signal.SIGHUP,
                target=srv.pid,
                timeout_s=10.0,
                any_state=True,
                old_gone=True,
            )
            srv.remember_children()
        finally:
            load = finish_load(loadgen, self.hup_load_s)
        if answer.get("ok"):
            out["hup_load_ms"] = answer["elapsed_us"] / 1000.0
        else:
            out["hup_error"] = answer.get("error")
        out["hup_load_requests"] = load["requests"]
        out["hup_load_errors"] = load["errors"]
        out["hup_load_errors_by_kind"] = {k: v for k, v in load["errors_by_kind"].items() if v}
        return out


class InetStartup(Workload):
    """INET: one process per connection, started by a real superserver; connect to echoed line, one at a time.

    Every peer runs under the same superserver (systemd-socket-activate
    --inetd -a), so what differs is the process's own start-up and its one
    echo; the connections are sequential, each after the previous process
    has exited, so no two start-ups overlap.
    """

    key = "5"
    title = "INET: per-connection start-up under a superserver"
    connections = 20

    def run(self, ctx: Context) -> None:
        cfg = ctx.config
        peers = [peer for peer in ctx.peers if self.key in peer.workloads]
        if not peers:
            return
        activate = shutil.which("systemd-socket-activate")
        if activate is None:
            ctx.note("workload 5 skipped: systemd-socket-activate is not installed (apt-get install -y systemd)")
            return
        count = 5 if cfg.quick else self.connections
        for rep in range(cfg.repeat):
            for peer in rotated(peers, rep):
                metrics: dict = {"busy_before_pct": wait_quiet(cfg.quiet_wait_s)}
                try:
                    metrics.update(self.measure(peer, activate, count, ctx.log_dir))
                except ServerError as exc:
                    metrics["error"] = str(exc)
                    ctx.note("workload 5: %s: %s" % (peer.name, exc))
                ctx.record(self.key, 1, peer, "default", rep, metrics)

    def measure(self, peer: Peer, activate: str, count: int, log_dir: Path) -> dict:
        port = free_ports(1)[0]
        env = peer.env() or dict(os.environ)
        cmd = [activate, "--inetd", "-a", "-l", "127.0.0.1:%d" % port]
        for key in ("PYTHONPATH", "NETSERVER_BENCH_PERSONALITY"):  # it passes on only what -E names
            if key in env:
                cmd += ["-E", key]
        cmd += peer.inet_command()
        log_path = log_dir / ("%s-inet-%d.log" % (peer.name, port))
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                    start_new_session=True)
        samples = []
        try:
            deadline = time.monotonic() + 10
            while b"Listening on" not in log_path.read_bytes():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise ServerError("systemd-socket-activate did not listen: %s" % log_path.read_text()[-300:])
                time.sleep(0.01)
            for _ in range(count):
                samples.append(self.one_connection(port))
                # The next start-up must not overlap this process's exit.
                gone = time.monotonic() + 5
                while procfs.children_of(proc.pid) and time.monotonic() < gone:
                    time.sleep(0.001)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        ordered = sorted(samples)
        return {"startup_samples_ms": samples, "startup_ms": statistics.median(samples),
                "startup_p90_ms": ordered[int(0.9 * (len(ordered) - 1))]}

    @staticmethod
    def one_connection(port: int) -> float:
        """ms from connect() to the echoed line, as a client of the service sees its start-up."""
        started = time.monotonic_ns()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"hello world\n")
            reply = b""
            while not reply.endswith(b"\n"):
                if not select.select([sock], [], [], 10)[0]:
                    raise ServerError("no reply within 10 s")
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        if reply != b"hello world\n":
            raise ServerError("the service answered %r" % reply[:80])
        return (time.monotonic_ns() - started) / 1e6


class PoolGrowth(Workload):
    """A dynamic pool's growth: from GROWTH_FROM idle children to covering GROWTH_TO held connections.

    Only peers with a dynamic pool (``Peer.grows``) run it, with the same
    spare settings (peers.GROWTH_SPARES).  Each repetition starts the server
    afresh, waits for its GROWTH_FROM children in the accept path, then opens
    GROWTH_TO connections at once, each sending one line and keeping the
    connection open (the handler echoes until EOF, so each one holds a
    child); the figure is the time from the first connect() to the last echo,
    when every held connection has been served by a child of its own.
    """

    key = "6"
    title = "PreFork growth: from %d children to %d held connections served" % (GROWTH_FROM, GROWTH_TO)
    timeout_s = 30.0

    def run(self, ctx: Context) -> None:
        cfg = ctx.config
        units = [peer for peer in ctx.peers if peer.grows]
        if not units:
            ctx.note("workload 6: no peer with a dynamic pool among --servers (perl-prefork, netserver-prefork)")
        for rep in range(cfg.repeat):
            for peer in rotated(units, rep):
                srv = Server(peer, Launch(free_ports(1), GROWTH_FROM, "growth", once=False), ctx.log_dir)
                metrics: dict = {"busy_before_pct": wait_quiet(cfg.quiet_wait_s)}
                try:
                    srv.start()
                    metrics.update(self.grow(srv))
                except (ServerError, OSError) as exc:
                    metrics["error"] = str(exc)
                    ctx.note("workload 5: %s: %s" % (peer.name, exc))
                finally:
                    srv.stop()
                ctx.record(self.key, GROWTH_TO, peer, "growth", rep, metrics)

    def grow(self, srv: Server) -> dict:
        port = srv.launch.ports[0]
        selector = selectors.DefaultSelector()
        socks: list[socket.socket] = []
        pending: dict[socket.socket, bytes] = {}
        try:
            t0 = time.monotonic_ns()
            for _ in range(GROWTH_TO):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"hello\n")  # on loopback the handshake is done: the line waits in the backlog
                sock.setblocking(False)
                socks.append(sock)
                pending[sock] = b""
                selector.register(sock, selectors.EVENT_READ)
            connected_ms = (time.monotonic_ns() - t0) / 1e6
            deadline = time.monotonic() + self.timeout_s
            while pending and time.monotonic() < deadline:
                for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
                    sock = key.fileobj
                    data = sock.recv(64)
                    if not data:
                        raise ServerError("a held connection was closed before its echo")
                    pending[sock] += data
                    if pending[sock].endswith(b"\n"):
                        del pending[sock]
                        selector.unregister(sock)
            elapsed_ms = (time.monotonic_ns() - t0) / 1e6
            children = len(srv.children())
            if pending:
                raise ServerError("%d of %d held connections not served within %.0f s (%d children)"
                                  % (len(pending), GROWTH_TO, self.timeout_s, children))
            return {"growth_ms": elapsed_ms, "connect_ms": connected_ms, "children": children}
        finally:
            selector.close()
            for sock in socks:
                sock.close()


WORKLOADS: dict[str, type[Workload]] = {
    cls.key: cls for cls in (EchoPerConnection, EchoPersistent, EchoTwoListeners, ProcessFigures, InetStartup,
                             PoolGrowth)
}
# The HTTP workloads subclass Throughput above, so they are imported last.
from .http_workloads import HTTP_WORKLOADS  # noqa: E402

WORKLOADS.update(HTTP_WORKLOADS)
