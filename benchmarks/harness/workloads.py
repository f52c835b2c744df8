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

import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procfs
from .peers import Launch, Peer
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
            brief = metrics.get("rps") or metrics.get("startup_ms") or metrics.get("error", "")
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
            for peer in ctx.peers:
                if self.protocol not in peer.protocols:
                    continue
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
        units = [(peer, "default") for peer in ctx.peers if self.protocol in peer.protocols]
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


WORKLOADS: dict[str, type[Workload]] = {
    cls.key: cls for cls in (EchoPerConnection, EchoPersistent, EchoTwoListeners, ProcessFigures)
}
# The HTTP workloads subclass Throughput above, so they are imported last.
from .http_workloads import HTTP_WORKLOADS  # noqa: E402

WORKLOADS.update(HTTP_WORKLOADS)
