"""Instructions per request in a real serving child, counted by callgrind: steady whatever the machine does.

    python benchmarks/child_instructions.py                    # netserver (this tree) and the epoll floor
    python benchmarks/child_instructions.py --src OTHER/src    # and netserver from another tree (an A/B)
    python benchmarks/child_instructions.py --modes line       # workload 1: a line echoed per connection

Each server runs under ``valgrind --tool=callgrind`` with one child: PreForkSimple
with ``max_servers 1`` (its HTTP child multiplexes), or ``servers/httpfloor.py
--workers 1 --epoll``.  A real client then sends a few thousand requests twice
(keep-alive: h2load --h1 -c10; close: ab -c10), and the slope between the two
counts is the child's user-space instructions per request (per connection in
close mode): start-up, imports and the boot cancel out.  The ``line`` mode does
the same for workload 1: ``servers/netserver_echo.py --once`` (PreForkSimple,
one child) against ``servers/pyfloor.py --once``, a connection per echoed line
from a client in this process.  The kernel's share
(recv, send, epoll) is not counted; ``benchmarks/run.py`` measures the whole.

Wall-clock figures on this shared two-core machine move by 10-20% between runs,
so a change of a few percent in the request path shows here and nowhere else.
The counts repeat to within about 0.1% (PYTHONHASHSEED=0).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import tools

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
PORT = 9791
COUNTS = {"keepalive": (2000, 6000), "close": (1000, 3000), "line": (500, 1500)}


def server_command(kind: str, mode: str) -> list[str]:
    python = os.path.realpath(sys.executable)  # a pyenv shim is a shell script: valgrind needs the binary
    if mode == "line":
        if kind == "floor":
            return [python, "-S", str(BENCH / "servers" / "pyfloor.py"), "--port", f"127.0.0.1:{PORT}",
                    "--workers", "1", "--once"]
        return [python, "-S", str(BENCH / "servers" / "netserver_echo.py"), f"--port=127.0.0.1:{PORT}",
                "--max_servers=1", "--max_requests=0", "--log_level=0", "--once"]
    if kind == "floor":
        return [python, "-S", str(BENCH / "servers" / "httpfloor.py"), "--port", f"127.0.0.1:{PORT}",
                "--workers", "1", "--epoll"]
    return [python, "-S", "-m", "netserver", "--app", "servers.hello_wsgi:app", f"--port=127.0.0.1:{PORT}",
            "--max_servers=1", "--max_requests=0", "--log_level=0"]


def echo_line() -> None:
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as conn:
        conn.sendall(b"hello\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(64)
            if not chunk:
                raise OSError("the server closed before echoing the line")
            reply += chunk


def wait_until_serving(mode: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if mode == "line":
                echo_line()
            else:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/", timeout=5) as reply:
                    reply.read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server under valgrind did not answer within 120 s")


def load(mode: str, count: int) -> None:
    if mode == "line":
        for _ in range(count):
            echo_line()
        return
    url = f"http://127.0.0.1:{PORT}/"
    if mode == "keepalive":
        cmd = ["h2load", "--h1", "-n", str(count), "-c", "10", url]
    else:
        cmd = ["ab", "-q", "-n", str(count), "-c", "10", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    if (f"{count} succeeded" not in out) and ("Failed requests:        0" not in out):
        raise SystemExit("%s did not complete %d requests:\n%s" % (cmd[0], count, out[-800:]))


def child_instructions(kind: str, src: Path, mode: str, count: int) -> int:
    """The serving child's instruction count over its life, having served ``count`` requests."""
    with tempfile.TemporaryDirectory() as out:
        env = tools.python_env((str(src),))
        env["PYTHONHASHSEED"] = "0"
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--trace-children=yes",
                                 f"--callgrind-out-file={out}/cg.%p"] + server_command(kind, mode),
                                env=env, cwd=BENCH, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_serving(mode, time.monotonic() + 120)
            load(mode, count)
            # The floor's parent SIGKILLs its children when it stops: have callgrind dump them first.
            subprocess.run(["callgrind_control", "-d"], capture_output=True, timeout=60)
            time.sleep(1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        totals = {}
        for path in glob.glob(f"{out}/cg.*"):
            pid = int(Path(path).name.split(".")[1])
            with open(path) as handle:
                for line in handle:
                    if line.startswith(("summary:", "totals:")):
                        totals[pid] = max(totals.get(pid, 0), int(line.split()[1]))
                        break
        if len(totals) < 2:
            raise SystemExit(f"callgrind left no count for the child ({sorted(totals)})")
        return totals[max(totals)]  # the child: the higher pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", default=[], help="another netserver src/ to count too")
    parser.add_argument("--modes", default="keepalive,close")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "h2load", "ab"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install valgrind nghttp2-client apache2-utils)")
    tools.compile_python()
    subjects = [("netserver", "netserver", SRC)] + [(f"netserver {s}", "netserver", Path(s)) for s in args.src]
    subjects.append(("floor", "floor", SRC))  # named per mode below
    for mode in args.modes.split(","):
        low, high = COUNTS[mode]
        for label, kind, src in subjects:
            first = child_instructions(kind, src, mode, low)
            second = child_instructions(kind, src, mode, high)
            per = (second - first) / (high - low)
            unit = "request" if mode == "keepalive" else "connection"
            if kind == "floor":
                label = "Python floor" if mode == "line" else "epoll floor"
            print(f"{mode:9} {label:28} {per / 1000:7.1f}k instructions per {unit}", flush=True)


if __name__ == "__main__":
    main()
