"""Which pages a netserver child holds privately, and which of the parent's objects live on them.

    python benchmarks/private_pages.py [--workers 2] [--load 1.0] [--pages] [--keep-going]

Starts ``servers/netserver_echo.py`` (``--once``) with N workers, records every
object the parent holds (address, type, repr) just before it calls
``gc.freeze()`` and forks, optionally loads it with the suite's C client for
``--load`` seconds, then reads one child's ``/proc/PID/pagemap`` (root only:
page frame numbers and the "exclusively mapped" bit) and prints how many of
its pages are private per mapping, the types of the parent's objects found on
those pages and, with ``--pages``, each private page's first objects.

A page is private once any process sharing it writes to it: the child itself
(a reference count, the warm-up counter of a code object on its first
calls, an allocation in a partly used pool) or the parent (which keeps the
new copy and leaves the old one to the child).  This is how the Memory section
of the README was worked out.  Linux only; the machine should be idle.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import procfs, servers, tools  # noqa: E402

# Runs the echo server with gc.freeze wrapped: the wrapper writes the parent's
# objects to OBJECTS first.  Objects frozen before are invisible to
# gc.get_objects(), so this must run before the freeze.
WRAPPER = r"""
import gc, os, runpy, sys
def dump(path):
    objs = gc.get_objects()
    seen = {id(o): o for o in objs}
    for o in objs:
        for r in gc.get_referents(o):
            seen.setdefault(id(r), r)
    with open(path, "w") as f:
        for addr, o in seen.items():
            try:
                text = repr(o)[:60].replace("\n", " ").replace("\t", " ")
            except Exception:
                text = "?"
            f.write("%d\t%s\t%s\n" % (addr, type(o).__name__, text))
real_freeze = gc.freeze
def freeze():
    dump(os.environ["OBJECTS"])
    real_freeze()
gc.freeze = freeze
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def private_pages(pid: int) -> dict[int, str]:
    """Address -> mapping name of every present page mapped by this process alone."""
    out = {}
    with open("/proc/%d/pagemap" % pid, "rb") as pagemap, open("/proc/%d/maps" % pid) as maps:
        for line in maps:
            parts = line.split()
            name = parts[5] if len(parts) > 5 else "[anon]"
            if name.startswith("[v"):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            pagemap.seek(lo // 4096 * 8)
            entries = pagemap.read((hi - lo) // 4096 * 8)
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", entries)):
                if entry >> 63 & 1 and entry >> 56 & 1:  # present, exclusively mapped
                    out[lo + i * 4096] = os.path.basename(name)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--load", type=float, default=0.0, help="seconds of workload 1 before reading (default 0)")
    ap.add_argument("--pages", action="store_true", help="list every private page's first objects")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("pagemap frame numbers need root", file=sys.stderr)
        return 2
    tools.build_all(may_install=False)
    tools.compile_python()
    procfs.become_subreaper()
    port = servers.free_ports(1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        objects = os.path.join(tmp, "objects.tsv")
        wrapper = os.path.join(tmp, "wrapper.py")
        Path(wrapper).write_text(WRAPPER)
        env = tools.python_env(first=(str(tools.REPO_DIR / "src"),))
        env["OBJECTS"] = objects
        cmd = tools.python_command(Path(wrapper), str(HERE / "servers" / "netserver_echo.py"))
        cmd += [
            "--port=127.0.0.1:%d" % port,
            "--max_servers=%d" % args.workers,
            "--max_requests=0",
            "--log_level=0",
            "--once",
        ]
        server = subprocess.Popen(cmd, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            children: list[int] = []
            while time.monotonic() < deadline and len(children) < args.workers:
                time.sleep(0.1)
                children = procfs.children_of(server.pid)
            if len(children) < args.workers or not os.path.exists(objects):
                print("the server did not start its children", file=sys.stderr)
                return 1
            time.sleep(0.5)
            if args.load:
                subprocess.run(
                    servers.loadgen_command([port], 20, args.load, "conn"),
                    capture_output=True,
                    timeout=args.load + 30,
                    check=True,
                )
                time.sleep(0.5)
            child = max(children)
            pages = private_pages(child)
            rows = []
            with open(objects) as f:
                for line in f:
                    addr, kind, text = line.rstrip("\n").split("\t", 2)
                    rows.append((int(addr), kind, text))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
            servers.reap_orphans(known=set())
    rows.sort()
    addrs = [r[0] for r in rows]
    per_mapping = collections.Counter(pages.values())
    kinds: collections.Counter[str] = collections.Counter()
    print(
        "child %d: %d private pages (%d KiB); by mapping: %s"
        % (child, len(pages), len(pages) * 4, ", ".join("%s %d" % kv for kv in per_mapping.most_common()))
    )
    listing = []
    for page in sorted(pages):
        here = rows[bisect.bisect_left(addrs, page) : bisect.bisect_left(addrs, page + 4096)]
        kinds.update(kind for _, kind, _ in here)
        listing.append(
            "%#x %-22s %3d  %s"
            % (page, pages[page][:22], len(here), "; ".join("%s %s" % (k, t[:40]) for _, k, t in here[:4]))
        )
    print("the parent's objects on them, by type: %s" % ", ".join("%s %d" % kv for kv in kinds.most_common(15)))
    if args.pages:
        print("\n".join(listing))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
