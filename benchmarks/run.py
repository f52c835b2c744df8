"""Run netserver's benchmark suite: netserver side by side with its peers.

    python benchmarks/run.py [--quick] [--workloads 1,2,3,4,5,6] [--servers ...]
                             [--repeat 3] [--duration S] [--out benchmarks/results]

Writes <out>/<timestamp>.json (raw results, one record per measurement),
<out>/<timestamp>.md (the table) and <out>/<timestamp>.png (the plot), and
prints the table.  With the default --out the plot is also copied to
benchmarks/latest.png, which the README shows; with another --out (a CI
smoke run) it goes to <out>/latest.png and the work tree is left alone.

--quick: 1 s runs, one repeat, N=4, workload 1 and the start-up figure of
workload 4; it takes a few seconds and is what CI's smoke test runs.

See benchmarks/README.md for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ab, imports, procfs, report, revisions, tools  # noqa: E402
from harness.http_workloads import HTTP_ALIAS, HTTP_WORKLOADS  # noqa: E402
from harness.peers import ALL, PEERS, VARIANTS  # noqa: E402
from harness.servers import reap_orphans  # noqa: E402
from harness.workloads import WORKLOADS, Config, Context  # noqa: E402

FIGURES = ("startup", "memory", "respawn", "hup")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="netserver benchmark suite: line echo against peers, ratios within one run."
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="Smoke run: 1 s runs, one repeat, N=4, workload 1 and the start-up figure only.",
    )
    ap.add_argument(
        "--workloads",
        default=None,
        help="Comma-separated workload keys among %s, or %s for the HTTP ones (default: all; with --quick: 1,4)."
        % (",".join(WORKLOADS), HTTP_ALIAS),
    )
    ap.add_argument(
        "--servers",
        default=None,
        help="Comma-separated peers among %s (default: all of them), netserver's memory variants %s, "
        "or netserver@REV: netserver at git revision REV (a sha, HEAD~1, a branch), run from a worktree "
        "for an A/B against netserver." % (",".join(PEERS), ",".join(VARIANTS)),
    )
    ap.add_argument(
        "--repeat", type=int, default=None, help="Kept repetitions of each figure (default 3; 1 with --quick)."
    )
    ap.add_argument(
        "--duration",
        type=float,
        default=None,
        help="Seconds per run of workloads 1 and 3; workload 2 runs max(10, 2x) (default 5; 1 with --quick).",
    )
    ap.add_argument("--workers", default=None, help="Comma-separated worker counts (default 4,32; 4 with --quick).")
    ap.add_argument(
        "--figures",
        default=None,
        help="Workload 4 figures among %s (default: all; startup with --quick)." % ",".join(FIGURES),
    )
    ap.add_argument(
        "--client-cpu", type=int, default=None, help="Pin the load client to this CPU (default: no pinning)."
    )
    ap.add_argument(
        "--out", default=str(tools.BENCH_DIR / "results"), help="Results directory (default benchmarks/results)."
    )
    ap.add_argument(
        "--install",
        dest="install",
        action="store_true",
        default=None,
        help="apt-get/pip install missing peers and tools (the default, except with --quick).",
    )
    ap.add_argument(
        "--no-install",
        dest="install",
        action="store_false",
        help="Never install anything; skip the peers that are missing.",
    )
    ap.add_argument(
        "--update-readme",
        action="store_true",
        help="Replace the table between the markers in benchmarks/README.md with this run's.",
    )
    ap.add_argument(
        "--from-json",
        metavar="RUN.json",
        help="Measure nothing: rebuild the table, targets and plot of a saved run next to its JSON.",
    )
    args = ap.parse_args(argv)
    args.workloads = args.workloads or ("1,4" if args.quick else ",".join(WORKLOADS))
    keys = [k for key in args.workloads.split(",") for k in (HTTP_WORKLOADS if key == HTTP_ALIAS else (key,))]
    args.workloads = ",".join(dict.fromkeys(keys))
    args.servers_named = args.servers is not None
    args.servers = args.servers or ",".join(PEERS)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.duration = args.duration or (1.0 if args.quick else 5.0)
    args.workers = args.workers or ("4" if args.quick else "4,32")
    args.figures = args.figures or ("startup" if args.quick else ",".join(FIGURES))
    if args.install is None:
        args.install = not args.quick
    for key in args.workloads.split(","):
        if key not in WORKLOADS:
            ap.error("--workloads: %r is not a workload; choose among %s" % (key, ",".join(WORKLOADS)))
    args.server_names, args.revisions = [], {}
    for name in args.servers.split(","):
        rev = revisions.rev_of(name)
        if rev is not None:
            try:
                name = revisions.PREFIX + revisions.resolve(rev)[1]
            except revisions.RevisionError as exc:
                ap.error("--servers: %r: %s" % (name, exc))
            args.revisions[name] = rev
        elif name not in ALL:
            ap.error("--servers: %r is not a peer; choose among %s, or netserver@REV" % (name, ",".join(ALL)))
        if name in args.server_names:
            ap.error("--servers: %s is named twice (%s)" % (name, args.servers))
        args.server_names.append(name)
    for fig in args.figures.split(","):
        if fig not in FIGURES:
            ap.error("--figures: %r is not a figure; choose among %s" % (fig, ",".join(FIGURES)))
    if args.repeat < 1 or args.duration <= 0 or args.duration > 300:
        ap.error("--repeat must be >= 1 and --duration in (0, 300] seconds")
    return args


def machine() -> str:
    return "%s, %d CPUs, Linux %s, Python %s" % (
        platform.machine(),
        os.cpu_count() or 0,
        platform.release(),
        platform.python_version(),
    )


def _output(cmd: list[str]) -> str | None:
    """The stripped standard output of cmd, or None if it could not be run."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def versions() -> dict:
    out = {"python": platform.python_version()}
    for key, cmd in (
        ("Net::Server", ["perl", "-MNet::Server", "-e", "print $Net::Server::VERSION"]),
        ("gcc", ["gcc", "-dumpfullversion"]),
    ):
        out[key] = _output(cmd) or None
    git = ["git", "-C", str(tools.REPO_DIR)]
    head = _output(git + ["rev-parse", "--short", "HEAD"])
    dirty = _output(git + ["status", "--porcelain", "src"])
    if head is None or dirty is None:
        out["netserver"] = None
    else:
        out["netserver"] = (head or "no commit") + (" + uncommitted changes in src/" if dirty else "")
    try:
        from importlib.metadata import version

        out["py-prefork-server"] = version("py-prefork-server")
    except Exception:  # noqa: BLE001 - absent or broken metadata both mean "unknown"
        out["py-prefork-server"] = None
    return out


def quiet_check(seconds: float = 1.0) -> float:
    """How busy the machine is before the run, in percent of all CPUs."""
    b0 = procfs.machine_busy()
    time.sleep(seconds)
    b1 = procfs.machine_busy()
    return 100.0 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1])


def update_readme(table: str, stamp: str, png: str) -> None:
    readme = tools.BENCH_DIR / "README.md"
    start, end = "<!-- latest-table:start -->", "<!-- latest-table:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        print("README.md has no %s ... %s markers; not updated" % (start, end))
        return
    body = table.split("\n", 2)[2].strip()  # drop the "# netserver benchmark" heading
    body = body.replace("\n## ", "\n### ")
    block = "%s\nRun %s (raw results: `results/%s.json`).\n\n%s\n\n![requests/s per server and workload](%s)\n%s" % (
        start,
        stamp,
        stamp,
        body,
        png,
        end,
    )
    text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    readme.write_text(text)


def measure(args: argparse.Namespace, stamp: str) -> dict:
    """Build, install, run the chosen workloads; the raw record of the run."""
    log_dir = tools.BUILD_DIR / "logs" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if not procfs.become_subreaper():
        print("warning: could not become a child subreaper; orphaned server children may outlive a crash")
    # A TERM from outside unwinds through the finally blocks, which stop every server.
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))
    tools.build_all(may_install=args.install)
    tools.compile_python()
    busy = quiet_check(0.5 if args.quick else 2.0)
    if busy > 10.0:
        print("warning: the machine was %.0f%% busy before the run started; other work skews the figures" % busy)

    cfg = Config(
        quick=args.quick,
        repeat=args.repeat,
        duration=args.duration,
        workers=tuple(int(n) for n in args.workers.split(",")),
        client_cpu=args.client_cpu,
        figures=tuple(args.figures.split(",")),
    )
    ctx = Context(config=cfg, peers=[], log_dir=log_dir)
    worktrees = revisions.Worktrees()
    swept = worktrees.sweep()
    if swept:
        ctx.note("removed worktrees that killed runs left in %s: %s" % (worktrees.root, ", ".join(swept)))
    peer_status: dict[str, dict] = {}
    reaped: list[str] = []
    imports_by_peer: dict[str, dict] = {}
    try:
        protocols = {WORKLOADS[key].protocol for key in args.workloads.split(",")}
        for name in args.server_names:
            if not set(ALL[name].protocols if name in ALL else ("line", "http")) & protocols:
                # Named on purpose, it is worth a note; from the default list (every peer), it is not.
                if args.servers_named:
                    ctx.note("%s skipped: it serves none of the protocols of workloads %s" % (name, args.workloads))
                continue
            try:
                peer = revisions.NetServerAt(args.revisions[name], worktrees) if name in args.revisions else ALL[name]()
            except revisions.RevisionError as exc:
                peer_status[name] = {"available": False, "reason": str(exc), "note": ""}
                ctx.note("%s skipped: %s" % (name, exc))
                continue
            if name == "netserver" and args.revisions:
                # An A/B: the work tree runs from a path as long as the commits' (revisions.py says why).
                peer.src = worktrees.snapshot()
            reason = peer.prepare(may_install=args.install)
            peer_status[name] = {"available": reason is None, "reason": reason, "note": peer.note}
            if isinstance(peer, revisions.NetServerAt):
                peer_status[name].update(peer.describe())
            elif name == "netserver":
                peer_status[name]["src"] = str(peer.src)
            if reason is None:
                ctx.peers.append(peer)
            else:
                ctx.note("%s skipped: %s" % (name, reason))
        print("peers: %s" % ", ".join(p.name for p in ctx.peers), flush=True)

        builds = {p.name: p.src for p in ctx.peers if p.name == "netserver" or isinstance(p, revisions.NetServerAt)}
        if "4" in args.workloads.split(",") and "startup" in cfg.figures and builds:
            print("import time: %s" % imports.STATEMENT, flush=True)
            imports_by_peer = imports.measure(cfg.repeat, builds)
        for key in args.workloads.split(","):
            workload = WORKLOADS[key]()
            print("workload %s: %s" % (key, workload.title), flush=True)
            workload.run(ctx)
            # Between workloads no server of ours runs, so every child left is an orphan.
            reaped += reap_orphans(known=set())
    finally:
        reaped += reap_orphans(known=set())
        # Only now: every server, the old build's included, is stopped.
        worktrees.remove_all()
        if reaped:
            kinds = sorted(set(reaped))
            ctx.note(
                "reaped %d processes that stopped servers left behind (reparented to the suite): %s"
                % (len(reaped), ", ".join("%d x %s" % (reaped.count(k), k) for k in kinds))
            )

    meta = {
        "timestamp": stamp,
        "machine": machine(),
        "versions": versions(),
        "mode": "quick" if args.quick else "full",
        "repeat": args.repeat,
        "duration_s": args.duration,
        "workers": list(cfg.workers),
        "workloads": args.workloads.split(","),
        "figures": list(cfg.figures),
        "client_cpu": args.client_cpu,
        "elapsed_s": round(time.monotonic() - started, 1),
        "busy_before_pct": round(busy, 1),
        "loadavg_after": open("/proc/loadavg").read().split()[:3],
        "argv": sys.argv[1:],
        "servers": args.server_names,
    }
    return {
        "meta": meta,
        "peers": peer_status,
        "results": ctx.results,
        "notes": ctx.notes,
        "imports": imports_by_peer.get("netserver"),
        "imports_by_peer": imports_by_peer,
    }


def publish(run: dict, out_dir: Path, update: bool) -> None:
    """Summary, targets, table, plot and JSON of a run, written to out_dir."""
    stamp = run["meta"]["timestamp"]
    notes = [n for n in run["notes"] if not n.startswith("no plot:")]
    summary = report.summarize(run["results"])
    summary["imports"] = run.get("imports")
    checks = report.targets(summary)
    comparisons = [
        ab.compare(run["results"], a, b, run.get("imports_by_peer"))
        for a, b in ab.pairs(run["meta"].get("servers", []))
    ]
    default_out = out_dir == (tools.BENCH_DIR / "results").resolve()
    latest = tools.BENCH_DIR / "latest.png" if default_out else out_dir / "latest.png"
    why_not = report.plot(summary, out_dir / ("%s.png" % stamp), latest)
    if why_not:
        notes.append(why_not)
    first = ab.markdown(comparisons, run["peers"], run["meta"].get("versions", {}))
    table = report.markdown(summary, run["meta"], notes, checks, first)
    (out_dir / ("%s.md" % stamp)).write_text(table)
    record = dict(run, summary=summary, targets=checks, ab=comparisons, notes=notes)
    with open(out_dir / ("%s.json" % stamp), "w") as f:
        json.dump(record, f, indent=1)
    print()
    print(table)
    print("results: %s.{json,md%s}" % (out_dir / stamp, "" if why_not else ",png"))
    if update and default_out:
        update_readme(table, stamp, "latest.png")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.from_json:
        path = Path(args.from_json).resolve()
        publish(json.loads(path.read_text()), path.parent, args.update_readme)
        return 0
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    run = measure(args, time.strftime("%Y%m%dT%H%M%S"))
    publish(run, out_dir, args.update_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
