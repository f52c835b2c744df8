"""Respawn, paired: several idle servers at once, one child of each killed in turn, many times.

    python benchmarks/respawn_paired.py                          # Python floor, Perl, netserver (this tree)
    python benchmarks/respawn_paired.py --src OTHER/src          # and netserver from another tree, last but one
    python benchmarks/respawn_paired.py --workers 32 --kills 40

Workload 4's respawn figure takes 5 kills per repetition, one server at a time,
and moves by a millisecond between runs of the suite on this machine.  Here every
server runs for the whole measurement, idle but for the kill, and the kills go
round the servers in a rotating order, so what drifts hits them alike; the last
two servers' figures are also divided kill by kill (the median of the pairs'
ratios).  Each figure is procwatch's, as in workload 4: from ``kill -9`` of one
child until a child that was not there before waits in the accept path.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import time
from pathlib import Path

from harness import tools
from harness.peers import ACCEPT, EPOLL, LOCKS, SELECT
from harness.procfs import children_of
from harness.servers import procwatch

BENCH = Path(__file__).resolve().parent
WCHAN = (ACCEPT, SELECT, EPOLL) + LOCKS


def commands(workers: int, sources: list[str]) -> dict[str, tuple[list[str], dict]]:
    port = 9650
    out: dict[str, tuple[list[str], dict]] = {}
    out["Python floor"] = (tools.python_command(BENCH / "servers" / "pyfloor.py", "--port", f"127.0.0.1:{port}",
                                                "--workers", str(workers), "--once"), tools.python_env())
    out["Perl"] = (["perl", str(BENCH / "servers" / "perl_preforksimple.pl"), "--port", f"127.0.0.1:{port + 1}",
                    "--workers", str(workers)], tools.python_env())
    for index, src in enumerate([*sources, str(tools.REPO_DIR / "src")]):
        label = f"netserver {src}" if index < len(sources) else "netserver"
        argv = (f"--port=127.0.0.1:{port + 2 + index}", f"--max_servers={workers}", "--max_requests=0",
                "--serialize=auto", "--log_level=0", "--once")
        out[label] = (tools.python_command(BENCH / "servers" / "netserver_echo.py", *argv), tools.python_env((src,)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", default=[], help="another netserver src/ to measure too")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=30, help="kills per server (default 30)")
    args = parser.parse_args()
    tools.build_all(may_install=False)
    tools.compile_python()
    procs = {label: subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for label, (cmd, env) in commands(args.workers, args.src).items()}
    samples: dict[str, list[float]] = {label: [] for label in procs}
    try:
        for label, proc in procs.items():
            settled = procwatch(proc.pid, args.workers, WCHAN, timeout_s=5.0)
            if not settled.get("ok"):
                raise SystemExit(f"{label} did not start its {args.workers} children: {settled}")
        labels = list(procs)
        for kill in range(args.kills):
            turn = kill % len(labels)
            for label in labels[turn:] + labels[:turn]:
                pid = procs[label].pid
                kids = children_of(pid)
                answer = procwatch(pid, 1, WCHAN, exclude=kids, sig=signal.SIGKILL, target=kids[kill % len(kids)],
                                   timeout_s=5.0)
                if answer.get("ok"):
                    samples[label].append(answer["elapsed_us"] / 1000)
                procwatch(pid, args.workers, WCHAN, timeout_s=5.0)  # the pool whole again
                time.sleep(0.05)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(10)
    for label, values in samples.items():
        low, _, high = statistics.quantiles(values, n=4)
        print(f"{label:40} N={args.workers} respawn median {statistics.median(values):.2f} ms "
              f"(quartiles {low:.2f}-{high:.2f}, {len(values)} kills)")
    if len(args.src):
        before, after = samples[labels[-2]], samples[labels[-1]]
        ratios = [b / a for a, b in zip(before, after, strict=False)]
        print(f"paired, netserver / {labels[-2]}: median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
