"""The HTTP workloads: a hello-world application, 4 workers per server, 50 clients.

All three are Throughput workloads (workloads.py): every HTTP peer of the
run is started side by side, checked with one GET (200 and the hello body,
or it is skipped with the answer in the notes), and loaded one at a time in
rotated order, repetition after repetition.

* ``http-keepalive``: wrk -t2 -c50 on keep-alive connections.  wrk has no
  warm-up of its own, so a run of the warm-up's length comes first and is
  not counted.
* ``http-close``: every request on a new connection with ``Connection:
  close``, from the suite's C client (loadgen --mode http-close), which binds
  its sockets to 16 source addresses (127.0.0.2-17) so that the 4-tuples of
  one address are not what limits the rate (wrk has one source address).
* ``http-fairness``: h2load --h1 -c50 -t2 for the run's duration: the total
  rate and h2load's per-client request rates, of which the table shows the
  slowest and the mean client (``req/s`` line: min and mean); slowest / mean
  is 1 when every client was served alike, 0 when one was never served.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil

from .http_peers import HTTP_WORKERS
from .servers import Server, ServerError, run_accounted, run_load
from .workloads import Config, Context, Throughput

BODY = b"Hello, world!\n"
CLIENTS = 50
WRK_TIMEOUT = "2s"  # wrk's default, written out: a request unanswered this long counts as a timeout
SETTLE_S = 5.0
UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def probe(port: int) -> str | None:
    """One GET /: None when the answer is 200 with the hello body, else what came back."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return "did not answer GET /: %s" % exc
    finally:
        conn.close()
    if resp.status != 200 or body != BODY:
        return "answered GET / with %d %r" % (resp.status, body[:60])
    return None


def threads_per_child(srv: Server) -> int:
    """The most threads any child of srv has now."""
    counts = []
    for pid in srv.children():
        try:
            counts.append(len(os.listdir("/proc/%d/task" % pid)))
        except OSError:
            pass
    return max(counts, default=0)


def _us(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()
    return float(number) * UNITS[unit]


def parse_wrk(out: str) -> dict:
    """wrk's summary (with --latency): rate, latency percentiles and max, errors by kind."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if not rate or not total:
        raise ServerError("wrk printed no summary: %s" % out.strip()[-300:])
    latency = {p: _us(v) for p, v in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)", out, re.M)}
    stats = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    kinds = dict.fromkeys(("connect", "read", "write", "timeout", "non2xx"), 0)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        kinds.update(zip(("connect", "read", "write", "timeout"), map(int, socket_errors.groups()), strict=True))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    kinds["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return {
        "rps": float(rate.group(1)),
        "requests": int(total.group(1)),
        "latency_us": {
            "p50": latency.get("50"),
            "p99": latency.get("99"),
            "max": _us(stats.group(3)) if stats else None,
        },
        "errors": sum(kinds.values()),
        "errors_by_kind": kinds,
    }


def parse_h2load(out: str) -> dict:
    """h2load's summary: rate, request counts, status codes, latency, per-client request rates."""
    finished = re.search(r"finished in ([\d.]+\w+), ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout", out)  # fmt: skip
    codes = re.search(r"status codes: (\d+) 2xx", out)
    per_client = re.search(r"req/s\s*:\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out)
    latency = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if not finished or not counts or not per_client:
        raise ServerError("h2load printed no summary: %s" % out.strip()[-300:])
    done, succeeded, failed, errored, timeout = map(int, counts.groups()[2:])
    ok_2xx = int(codes.group(1)) if codes else succeeded
    kinds = {"failed": failed, "errored": errored, "timeout": timeout, "non2xx": max(0, succeeded - ok_2xx)}
    slowest, fastest, mean, sd = map(float, per_client.groups())
    return {
        "rps": float(finished.group(2)),
        "requests": done,
        "latency_us": {"mean": _us(latency.group(3)), "max": _us(latency.group(2))} if latency else {},
        "errors": sum(kinds.values()),
        "errors_by_kind": kinds,
        "client_rps": {"min": slowest, "max": fastest, "mean": mean, "sd": sd},
        "fairness": slowest / mean if mean else 0.0,
    }


class HTTPThroughput(Throughput):
    """The hello app under one load client; subclasses say which (measure)."""

    protocol = "http"
    url_path = "/"
    tool = ""  # the load client it needs on PATH: (command, Debian package)
    package = ""

    def run(self, ctx: Context) -> None:
        if self.tool and shutil.which(self.tool) is None:
            ctx.note(
                "workload %s skipped: %s is not installed (apt-get install -y %s)" % (self.key, self.tool, self.package)
            )
            return
        super().run(ctx)

    def conns(self, workers: int) -> int:
        return CLIENTS

    def worker_counts(self, cfg: Config) -> tuple[int, ...]:
        return (HTTP_WORKERS,)

    def check(self, srv: Server) -> str | None:
        return probe(srv.launch.ports[0])

    def load(self, srv: Server, workers: int, cfg: Config) -> dict:
        metrics = self.measure(srv, cfg)
        metrics["threads_per_child"] = threads_per_child(srv)
        return metrics

    def measure(self, srv: Server, cfg: Config) -> dict:
        raise NotImplementedError

    def url(self, srv: Server) -> str:
        return "http://127.0.0.1:%d%s" % (srv.launch.ports[0], self.url_path)

    def client(self, cmd: list[str], parse, srv: Server, seconds: float, grace: float = 30.0) -> dict:
        proc, accounted = run_accounted(cmd, seconds + grace, srv)
        if proc.returncode != 0:
            raise ServerError("%s failed (%d): %s" % (cmd[0], proc.returncode, (proc.stderr or proc.stdout)[-300:]))
        return dict(parse(proc.stdout), **accounted)


class HTTPKeepAlive(HTTPThroughput):
    key = "http-keepalive"
    title = "HTTP hello world, keep-alive, wrk -t2 -c50, 4 workers"
    tool = package = "wrk"

    def wrk(self, srv: Server, seconds: float, cfg: Config) -> list[str]:
        cmd = ["wrk", "-t2", "-c%d" % CLIENTS, "-d%.0fs" % max(1, round(seconds)), "--timeout", WRK_TIMEOUT]
        if cfg.client_cpu is not None:
            cmd = ["taskset", "-c", str(cfg.client_cpu)] + cmd
        return cmd + ["--latency", self.url(srv)]

    def measure(self, srv: Server, cfg: Config) -> dict:
        if cfg.warmup > 0:
            run_accounted(self.wrk(srv, cfg.warmup, cfg), cfg.warmup + 30)
            # The end of the warm-up closes connections in flight; let the children get back to accept
            # (Net::Server::HTTP's spin on such a connection lasts until its timeout_header, see perl_psgi.pl).
            srv.settle(timeout_s=SETTLE_S)
        return self.client(self.wrk(srv, self.duration(cfg), cfg), parse_wrk, srv, self.duration(cfg))


class HTTPClose(HTTPThroughput):
    key = "http-close"
    title = "HTTP hello world, Connection: close, 50 clients from 16 source addresses (C client), 4 workers"

    def measure(self, srv: Server, cfg: Config) -> dict:
        return run_load(srv.launch.ports, CLIENTS, self.duration(cfg), "http-close", cfg.warmup, cfg.client_cpu, srv)


class HTTPFairness(HTTPThroughput):
    key = "http-fairness"
    title = "HTTP hello world, fairness: h2load --h1 -c50 -t2, per-client req/s, 4 workers"
    tool, package = "h2load", "nghttp2-client"

    def measure(self, srv: Server, cfg: Config) -> dict:
        seconds = self.duration(cfg)
        cmd = ["h2load", "--h1", "-c%d" % CLIENTS, "-t2", "-D", "%.0f" % max(1, round(seconds))]
        if cfg.warmup > 0:
            cmd += ["--warm-up-time", "%dms" % round(cfg.warmup * 1000)]
        if cfg.client_cpu is not None:
            cmd = ["taskset", "-c", str(cfg.client_cpu)] + cmd
        # Against servers that close after every response (gunicorn sync, Net::Server::HTTP) h2load 1.52
        # does not end at -D; 10 s past it, the run is given up and the notes say so.
        return self.client(cmd + [self.url(srv)], parse_h2load, srv, seconds + cfg.warmup, grace=10.0)


HTTP_WORKLOADS = {cls.key: cls for cls in (HTTPKeepAlive, HTTPClose, HTTPFairness)}
#: --workloads http: all of them.
HTTP_ALIAS = "http"
